package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Bad configuration stops the reader with a message naming the setting and
// exit code 2.
func TestBadConfigurationNamesTheSetting(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string
	}{
		{"bad redis url", nil, testenv.Getenv("REDIS_URL", "mysql://x"), "--redis-url / REDIS_URL"},
		{"prefix with a brace", []string{"--redis-prefix", "a{b"}, testenv.Getenv(), "--redis-prefix / REDIS_PREFIX must be non-empty, without braces or spaces"},
		{"negative wait", nil, testenv.Getenv("READER_MAX_WAIT", "-1s"), "--max-wait / READER_MAX_WAIT must be from 0s to 1m"},
		{"wait not a duration", nil, testenv.Getenv("READER_MAX_WAIT", "2"), `invalid READER_MAX_WAIT="2" (flag --max-wait)`},
		{"view cache too long", []string{"--view-cache", "1m"}, testenv.Getenv(), "--view-cache / READER_VIEW_CACHE must be from 0s to 10s"},
		{"page too large", []string{"--max-page", "100000"}, testenv.Getenv(), "--max-page / READER_MAX_PAGE must be from 1 to 10000"},
		{"default above max", []string{"--default-page", "600"}, testenv.Getenv(), "--default-page / READER_DEFAULT_PAGE must be from 1 to --max-page"},
		{"correlation bound zero", nil, testenv.Getenv("READER_MAX_CORRELATION_EVENTS", "0"), "--max-correlation-events / READER_MAX_CORRELATION_EVENTS must be from 1 to 100000"},
		{"bad listen address", nil, testenv.Getenv("READER_HTTP_ADDR", "nowhere"), "--http-addr / READER_HTTP_ADDR"},
		{"unknown flag", []string{"--frobnicate"}, testenv.Getenv(), "flag provided but not defined: -frobnicate"},
		{"stray argument", []string{"serve"}, testenv.Getenv(), `unexpected argument "serve"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, tc.getenv, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if code := config.ExitCode(err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
		})
	}
}

// An unreachable Redis stops the start naming the setting, without its
// password.
func TestUnreachableRedisIsNamed(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--start-timeout", "500ms"}, testenv.Getenv("REDIS_URL", "redis://:s3cret@127.0.0.1:1/0"), &out)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL=redis://:xxxxx@127.0.0.1:1/0") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("got %v, want the unreachable REDIS_URL named, password masked", err)
	}
	if config.ExitCode(err) != 1 {
		t.Fatalf("exit code %d, want 1", config.ExitCode(err))
	}
}

// The reader serves until its context ends, then stops cleanly.
func TestServeAndShutDownGracefully(t *testing.T) {
	_, prefix := testenv.Redis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- run(ctx, nil, testenv.Getenv("REDIS_URL", "redis://"+testenv.RedisAddr()+"/0", "REDIS_PREFIX", prefix, "READER_HTTP_ADDR", addr), io.Discard)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-stopped:
			t.Fatalf("reader stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing is projected under this prefix: the read model is not ready,
	// and the reader says so instead of answering 404.
	resp, err := http.Get("http://" + addr + "/v1/accounts/acc-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("an account before the model is built: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v after a clean stop", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reader did not stop")
	}
}
