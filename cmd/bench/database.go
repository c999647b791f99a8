package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/log/postgres"
)

// benchDatabase is the database a run works in: created fresh, migrated, and
// dropped at the end whatever happened.
type benchDatabase struct {
	adminURL string
	name     string
	// url points at the benchmark's database.
	url string
	// created is set once CREATE DATABASE was sent, so drop knows it has
	// something to drop.
	created bool
}

// serverInfo is what the report says about the Postgres server.
type serverInfo struct {
	version        string
	maxConnections int
}

func newBenchDatabase(adminURL string) *benchDatabase {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails since Go 1.24
	name := "bench_" + hex.EncodeToString(b)
	u, _ := url.Parse(adminURL) // validated with the flags
	u.Path = "/" + name
	return &benchDatabase{adminURL: adminURL, name: name, url: u.String()}
}

// create makes and migrates the database, and describes the server.
func (d *benchDatabase) create(ctx context.Context) (serverInfo, error) {
	var info serverInfo
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return info, fmt.Errorf("connect to Postgres at %s (set --database-url / BENCH_DATABASE_URL): %w", redact(d.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = conn.QueryRow(ctx, "SELECT version(), current_setting('max_connections')::int").Scan(&info.version, &info.maxConnections)
	if err != nil {
		return info, fmt.Errorf("read the Postgres version: %w", err)
	}
	d.created = true
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return info, fmt.Errorf("create database %s: %w", d.name, err)
	}
	if err := postgres.Migrate(ctx, d.url); err != nil {
		return info, fmt.Errorf("database %s: %w", d.name, err)
	}
	return info, nil
}

// drop removes the database, closing any connection still open on it. It
// does not depend on the run's context, which may be cancelled by now.
func (d *benchDatabase) drop() error {
	if !d.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w (drop it by hand)", d.name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w (drop it by hand)", d.name, err)
	}
	return nil
}

// redact hides a password in a Postgres URL.
func redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
