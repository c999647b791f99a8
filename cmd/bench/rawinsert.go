package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// rawPayload is a small event-like jsonb document for the ceiling's inserts.
const rawPayload = `{"amount":100,"currency":"EUR","source":"bench"}`

const rawInsertSQL = `INSERT INTO bench_raw (aggregate_id, payload) VALUES ($1, $2)`

// createRawTable creates the table of the ceiling measurement in the
// benchmark's database.
func createRawTable(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("raw inserts: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE TABLE bench_raw (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_id text  NOT NULL,
    payload      jsonb NOT NULL
)`)
	if err != nil {
		return fmt.Errorf("raw inserts: create table bench_raw: %w", err)
	}
	return nil
}

// measureRaw measures the Postgres ceiling: clients goroutines, each with a
// connection of its own, insert one row per autocommit statement.
func measureRaw(ctx context.Context, databaseURL string, clients, accounts int, warmup, duration time.Duration) (measurement, error) {
	conns, err := connectAll(ctx, databaseURL, clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	if err != nil {
		return measurement{}, err
	}
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = accountID(i)
	}
	return drive(ctx, clients, warmup, duration, func(ctx context.Context, client int) error {
		_, err := conns[client].Exec(ctx, rawInsertSQL, ids[rand.IntN(len(ids))], rawPayload)
		return err
	})
}

// connectAll opens n connections at once. On error, the slice holds the ones
// that did open, for the caller to close.
func connectAll(ctx context.Context, databaseURL string, n int) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = pgx.Connect(ctx, databaseURL) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return conns, fmt.Errorf("raw inserts: connect %d clients: %w", n, err)
		}
	}
	return conns, nil
}
