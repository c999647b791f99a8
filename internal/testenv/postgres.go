// Package testenv gives tests their own isolated piece of the real servers:
// a fresh Postgres database per test, a unique Redis key prefix, a kfake
// cluster. Nothing a test does is seen by another test or a later run.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/log/postgres"
)

// DefaultPostgresURL is the machine's Postgres (trust auth) unless
// TEST_DATABASE_URL names another server.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// PostgresURL creates a new, migrated database for this test, drops it when
// the test ends, and returns its URL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testenv: connect to Postgres at %s (set TEST_DATABASE_URL): %v", base, err)
	}
	defer admin.Close(context.Background())

	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + "_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", base, err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	if err := postgres.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dbURL
}

// Postgres returns a pool on a new, migrated database for this test.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PostgresPool(t, PostgresURL(t))
}

// PostgresPool returns a pool on the database at url, closed when the test ends.
func PostgresPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	// Small enough that `make test`'s four packages at a time, each with a
	// few pools, stay under the server's max_connections (100 by default);
	// enough for the tests' own concurrency (a pool queues beyond it).
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
