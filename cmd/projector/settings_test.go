package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Bad configuration stops the projector with a message naming the setting
// and exit code 2, before it connects to anything.
func TestBadConfigurationNamesTheSetting(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string
	}{
		{"unknown projection", nil, testenv.Getenv("PROJECTIONS", "counter-summary,nope"), `--projections / PROJECTIONS: unknown projection "nope"`},
		{"no projection", []string{"--projections", " , "}, testenv.Getenv(), "--projections / PROJECTIONS names no projection"},
		{"batch too large", nil, testenv.Getenv("PROJECTOR_BATCH_SIZE", "20000"), "--batch-size / PROJECTOR_BATCH_SIZE must be from 1 to 10000"},
		{"too many retries", []string{"--retries", "50"}, testenv.Getenv(), "--retries / PROJECTOR_RETRIES must be from 0 to 20"},
		{"short session", nil, testenv.Getenv("PROJECTOR_SESSION_TIMEOUT", "1s"), "--session-timeout / PROJECTOR_SESSION_TIMEOUT must be at least 6s"},
		{"fetch wait too short", nil, testenv.Getenv("PROJECTOR_FETCH_MAX_WAIT", "1ms"), "--fetch-max-wait / PROJECTOR_FETCH_MAX_WAIT must be from 10ms to 30s"},
		{"fetch bytes too small", nil, testenv.Getenv("PROJECTOR_FETCH_MAX_BYTES", "1000"), "--fetch-max-bytes / PROJECTOR_FETCH_MAX_BYTES must be from 64 KiB to 256 MiB"},
		{"partition share above the fetch", []string{"--fetch-max-partition-bytes", "2000000"}, testenv.Getenv(), "--fetch-max-partition-bytes / PROJECTOR_FETCH_MAX_PARTITION_BYTES from 16 KiB"},
		{"zero poll", []string{"--poll", "0s"}, testenv.Getenv(), "must be positive"},
		{"no drop grace", nil, testenv.Getenv("PROJECTOR_DROP_GRACE", "0s"), "--drop-grace / PROJECTOR_DROP_GRACE must be at least 15s"},
		{"bad redis url", nil, testenv.Getenv("REDIS_URL", "http://x"), "--redis-url / REDIS_URL"},
		{"prefix with a space", nil, testenv.Getenv("REDIS_PREFIX", "a b"), "--redis-prefix / REDIS_PREFIX must be non-empty"},
		{"broker without port", nil, testenv.Getenv("KAFKA_BROKERS", "kafka"), `KAFKA_BROKERS: "kafka" is not host:port`},
		{"bad listen address", nil, testenv.Getenv("PROJECTOR_HTTP_ADDR", "nowhere"), "--http-addr / PROJECTOR_HTTP_ADDR"},
		{"rebuild without a name", []string{"rebuild"}, testenv.Getenv(), "rebuild needs a projection name"},
		{"dlq without a subcommand", []string{"dlq"}, testenv.Getenv(), "dlq needs a subcommand: list or replay"},
		{"stray argument", []string{"run", "extra"}, testenv.Getenv(), `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), fixture, tc.args, tc.getenv, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if code := config.ExitCode(err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
		})
	}
}
