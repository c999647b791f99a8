package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
)

// writerMaxConns is the writer's Postgres pool size in this benchmark.
const writerMaxConns = 64

// writerServer is the writer's HTTP API served from this process on a real
// TCP listener, wired as cmd/writer's serve() wires it.
type writerServer struct {
	// pool is closed with the server when the server owns it.
	pool    *pgxpool.Pool
	api     *writer.Server
	srv     *http.Server
	served  chan error
	baseURL string
}

// startWriter serves the writer API over the database at databaseURL on
// 127.0.0.1 and an ephemeral port, with a pool of its own, verifying the
// tokens of a.
func startWriter(ctx context.Context, databaseURL string, a *benchAuth) (*writerServer, error) {
	pool, err := openWriterPool(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	domains, err := domains.All()
	if err != nil {
		pool.Close()
		return nil, err
	}
	w, err := serveWriter(ctx, pool, a, domains, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		pool.Close()
		return nil, err
	}
	w.pool = pool
	return w, nil
}

// openWriterPool opens the writer's Postgres pool (writerMaxConns) and
// checks the schema, as cmd/writer does.
func openWriterPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = writerMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("writer: %w", err)
	}
	return pool, nil
}

// serveWriter serves the writer API over pool, which stays the caller's,
// with its metrics in reg; every request must carry a token of a.
func serveWriter(ctx context.Context, pool *pgxpool.Pool, a *benchAuth, domains *registry.Registry, reg *prometheus.Registry, logger *slog.Logger) (*writerServer, error) {
	cfg := writer.DefaultConfig()
	cfg.Authenticator = a.authenticator
	api, err := writer.New(pool, cfg, aggregate.Options{SnapshotEvery: 100}, domains.Writer(), reg, logger)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("writer: listen: %w", err)
	}
	w := &writerServer{
		api: api,
		srv: &http.Server{
			Handler:           api.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		},
		served:  make(chan error, 1),
		baseURL: "http://" + ln.Addr().String(),
	}
	go func() { w.served <- w.srv.Serve(ln) }()
	return w, nil
}

// close drains the HTTP server and closes the pool if it owns it, so the
// next phase starts with none of the writer's connections open.
func (w *writerServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.srv.Shutdown(ctx)
	if serveErr := <-w.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if w.pool != nil {
		w.pool.Close()
	}
	if err != nil {
		return fmt.Errorf("writer: shutdown: %w", err)
	}
	return nil
}
