package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// run dispatches the subcommands — serve (the default), relay, processes and
// migrate — over the domains of a registry (main's: the build's,
// domains.All).
func run(ctx context.Context, domains *registry.Registry, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "migrate" || args[0] == "relay" || args[0] == "processes") {
		cmd, args = args[0], args[1:]
	}
	s, err := parseSettings(cmd, args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: s.logLevel}))
	if cmd != "migrate" {
		tracing, err := telemetry.Setup(ctx, "tributary-writer", getenv)
		if err != nil {
			return config.UsageError{Err: err}
		}
		defer shutdownTracing(tracing, logger)
		s.propagator = tracing.Propagator
		if tracing.Exporting {
			s.tracerProvider = tracing.TracerProvider
		}
	}
	switch cmd {
	case "migrate":
		if err := postgres.Migrate(ctx, s.databaseURL); err != nil {
			return err
		}
		logger.Info("database schema is up to date")
		return nil
	case "relay":
		s.relay, s.processes = true, false
		return serve(ctx, s, domains, logger, false)
	case "processes":
		s.relay, s.processes = false, true
		return serve(ctx, s, domains, logger, false)
	}
	return serve(ctx, s, domains, logger, true)
}

// openPool connects to Postgres and checks that it answers, with a message
// naming the setting when it does not.
func openPool(ctx context.Context, s settings) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(s.databaseURL)
	if err != nil {
		return nil, config.UsageError{Err: fmt.Errorf("DATABASE_URL: %w", err)}
	}
	cfg.MaxConns = int32(s.dbMaxConns)
	if s.tracerProvider != nil {
		cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(telemetry.ChildrenOnly(s.tracerProvider)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach Postgres at DATABASE_URL (host %s, port %d): %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// shutdownTracing flushes the spans not exported yet, waiting at most 5s.
func shutdownTracing(t *telemetry.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.Warn("flush spans", "err", err)
	}
}
