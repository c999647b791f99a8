package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Bad configuration stops the writer with a message naming the setting and
// exit code 2.
func TestBadConfigurationNamesTheSetting(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string
	}{
		{"missing database url", nil, testenv.Getenv(), "--database-url / DATABASE_URL is required"},
		{"missing kafka brokers", nil, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "--kafka-brokers / KAFKA_BROKERS is required for the relay"},
		{"brokers and embedded", []string{"--kafka-embedded"}, testenv.Getenv("DATABASE_URL", "postgres://x/y", "KAFKA_BROKERS", "k:9092"), "exclude each other"},
		{"broker without port", nil, testenv.Getenv("DATABASE_URL", "postgres://x/y", "KAFKA_BROKERS", "kafka"), `KAFKA_BROKERS: "kafka" is not host:port`},
		{"bad sasl mechanism", nil, testenv.Getenv("DATABASE_URL", "postgres://x/y", "KAFKA_BROKERS", "k:9092", "KAFKA_SASL_MECHANISM", "MD5"), `KAFKA_SASL_MECHANISM "MD5"`},
		{"zero partitions", nil, testenv.Getenv("DATABASE_URL", "postgres://x/y", "KAFKA_BROKERS", "k:9092", "KAFKA_PARTITIONS", "0"), "--kafka-partitions / KAFKA_PARTITIONS must be from 1 to 10000"},
		{"short process session", []string{"--process-session-timeout", "1s"}, testenv.Getenv("DATABASE_URL", "postgres://x/y", "KAFKA_BROKERS", "k:9092"), "--process-session-timeout / WRITER_PROCESS_SESSION_TIMEOUT must be at least 6s"},
		{"process managers need brokers", []string{"--relay=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "--kafka-brokers / KAFKA_BROKERS is required for the process managers"},
		{"process managers alone need real brokers", []string{"processes", "--kafka-embedded"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "'writer processes' needs --kafka-brokers"},
		{"relay alone needs brokers", []string{"relay"}, testenv.Getenv("DATABASE_URL", "postgres://x/y", "WRITER_RELAY", "false"), "KAFKA_BROKERS is required for the relay"},
		{"bad database url", []string{"--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://%zz"), "--database-url / DATABASE_URL is not a valid Postgres URL"},
		{"bad snapshot interval from env", nil, testenv.Getenv("DATABASE_URL", "postgres://x/y", "SNAPSHOT_EVERY", "often", "WRITER_RELAY", "false"), `invalid SNAPSHOT_EVERY="often" (flag --snapshot-every)`},
		{"zero snapshot interval", []string{"--snapshot-every", "0", "--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "--snapshot-every / SNAPSHOT_EVERY must be at least 1"},
		{"negative in-flight bound", []string{"--max-in-flight", "-1", "--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "--max-in-flight / WRITER_MAX_IN_FLIGHT must be 0 (no bound) or more"},
		{"long admission wait from env", []string{"--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y", "WRITER_ADMISSION_WAIT", "2m"), "--admission-wait / WRITER_ADMISSION_WAIT must be between 0 and 1m"},
		{"bad admission wait", []string{"--admission-wait", "soon", "--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), `invalid value "soon" for flag -admission-wait`},
		{"bad listen address", []string{"--http-addr", "nowhere", "--relay=false", "--processes=false"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), "--http-addr / WRITER_HTTP_ADDR"},
		{"unknown flag", []string{"--frobnicate"}, testenv.Getenv(), "flag provided but not defined: -frobnicate"},
		{"stray argument", []string{"serve", "--relay=false", "--processes=false", "extra"}, testenv.Getenv("DATABASE_URL", "postgres://x/y"), `unexpected argument "extra"`},
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

func TestUnreachablePostgresIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, fixture, []string{"--relay=false", "--processes=false"}, withoutAuth(testenv.Getenv("DATABASE_URL", "postgres://postgres@"+addr+"/x?connect_timeout=2")), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Postgres at DATABASE_URL") {
		t.Fatalf("got %v, want a message naming DATABASE_URL", err)
	}
}

func TestRefusesAnUnmigratedDatabase(t *testing.T) {
	ctx := context.Background()
	empty := emptyDatabaseURL(t)
	var out bytes.Buffer
	err := run(ctx, fixture, []string{"--http-addr", "127.0.0.1:0", "--relay=false", "--processes=false"}, withoutAuth(testenv.Getenv("DATABASE_URL", empty)), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "database is at version 0, this binary needs") {
		t.Fatalf("got %v, want the schema check to refuse", err)
	}
	// The migrate command fixes it.
	if err := run(ctx, fixture, []string{"migrate"}, testenv.Getenv("DATABASE_URL", empty), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "database schema is up to date") {
		t.Fatalf("migrate printed %s", out.String())
	}
}

// SIGTERM (the context's cancellation) drains in-flight requests and exits cleanly.
func TestServeAndShutDownGracefully(t *testing.T) {
	dbURL := emptyDatabaseURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, fixture, []string{"--migrate", "--http-addr", addr, "--kafka-embedded", "--kafka-embedded-port", "0"}, withoutAuth(testenv.Getenv("DATABASE_URL", dbURL)), &out, &out)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil && res.StatusCode == http.StatusOK {
			res.Body.Close()
			break
		}
		if err == nil {
			res.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer never became ready: %v\n%s", err, out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("writer stopped before it was ready: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	res, err := http.Post(base+"/v1/counters", "application/json", strings.NewReader(`{"id":"a1","owner":"Ada","unit":"items"}`))
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create a counter: %v %v", res, err)
	}
	res.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("writer did not stop after SIGTERM")
	}
	if !strings.Contains(out.String(), "writer stopped") {
		t.Fatalf("log lacks the clean stop:\n%s", out.String())
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("writer still serving after shutdown")
	}
}

// emptyDatabaseURL returns a migrated test database rolled back to no schema.
func emptyDatabaseURL(t *testing.T) string {
	t.Helper()
	url := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, url)
	if _, err := pool.Exec(context.Background(), `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	return url
}
