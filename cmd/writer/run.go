package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

// usageError is a bad command line or setting: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

type settings struct {
	databaseURL     string
	dbMaxConns      int
	httpAddr        string
	migrate         bool
	snapshotEvery   int
	maxBodyBytes    int64
	principalHeader string
	shutdownTimeout time.Duration
	logLevel        slog.Level
	pprofAddr       string
}

func parseSettings(cmd string, args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	fs := config.New("writer "+cmd, stderr)
	fs.StringVar(&s.databaseURL, "database-url", "", "Postgres URL of the event store (required)")
	fs.Env("database-url", "DATABASE_URL")
	fs.IntVar(&s.dbMaxConns, "db-max-conns", 32, "largest number of Postgres connections")
	fs.Env("db-max-conns", "DATABASE_MAX_CONNS")
	fs.StringVar(&s.httpAddr, "http-addr", ":8080", "address the HTTP API listens on")
	fs.Env("http-addr", "WRITER_HTTP_ADDR")
	fs.BoolVar(&s.migrate, "migrate", false, "apply database migrations at start")
	fs.Env("migrate", "WRITER_MIGRATE")
	fs.IntVar(&s.snapshotEvery, "snapshot-every", 100, "store a snapshot every N events of an aggregate")
	fs.Env("snapshot-every", "SNAPSHOT_EVERY")
	fs.Int64Var(&s.maxBodyBytes, "max-body-bytes", 64<<10, "largest command body accepted; larger ones get 413")
	fs.Env("max-body-bytes", "WRITER_MAX_BODY_BYTES")
	fs.StringVar(&s.principalHeader, "principal-header", "X-Principal", "header an authenticating proxy sets to the acting principal")
	fs.Env("principal-header", "WRITER_PRINCIPAL_HEADER")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.Env("shutdown-timeout", "SHUTDOWN_TIMEOUT")
	fs.StringVar(&s.pprofAddr, "pprof-addr", "", "if set, serve Go's /debug/pprof profiles on this address (keep it private)")
	fs.Env("pprof-addr", "PPROF_ADDR")
	fs.TextVar(&s.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.Env("log-level", "LOG_LEVEL")
	if err := fs.Parse(args, getenv); err != nil {
		return s, usageError{err}
	}
	if fs.NArg() > 0 {
		return s, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case s.databaseURL == "":
		return s, usageError{fmt.Errorf("%s is required, e.g. postgres://postgres@127.0.0.1:5432/tributary", fs.Setting("database-url"))}
	case s.dbMaxConns < 1:
		return s, usageError{fmt.Errorf("%s must be at least 1", fs.Setting("db-max-conns"))}
	case s.snapshotEvery < 1:
		return s, usageError{fmt.Errorf("%s must be at least 1", fs.Setting("snapshot-every"))}
	case s.maxBodyBytes < 1024:
		return s, usageError{fmt.Errorf("%s must be at least 1024", fs.Setting("max-body-bytes"))}
	}
	if _, _, err := net.SplitHostPort(s.httpAddr); err != nil {
		return s, usageError{fmt.Errorf("%s: %v", fs.Setting("http-addr"), err)}
	}
	if _, err := pgxpool.ParseConfig(s.databaseURL); err != nil {
		return s, usageError{fmt.Errorf("%s is not a valid Postgres URL: %v", fs.Setting("database-url"), err)}
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "migrate") {
		cmd, args = args[0], args[1:]
	}
	s, err := parseSettings(cmd, args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: s.logLevel}))
	if cmd == "migrate" {
		if err := postgres.Migrate(ctx, s.databaseURL); err != nil {
			return err
		}
		logger.Info("database schema is up to date")
		return nil
	}
	return serve(ctx, s, logger)
}

// openPool connects to Postgres and checks that it answers, with a message
// naming the setting when it does not.
func openPool(ctx context.Context, s settings) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(s.databaseURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("DATABASE_URL: %w", err)}
	}
	cfg.MaxConns = int32(s.dbMaxConns)
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

// Upcasters returns every upcaster of the domains this binary serves.
func Upcasters() *log.Upcasters {
	return log.NewUpcasters().
		Register(account.AggregateType, "FundsDeposited", 1, account.UpcastFundsDepositedV1)
}

func serve(ctx context.Context, s settings, logger *slog.Logger) error {
	if s.migrate {
		if err := postgres.Migrate(ctx, s.databaseURL); err != nil {
			return err
		}
	}
	pool, err := openPool(ctx, s)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		return err
	}
	eventSchemas, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		return err
	}
	store := postgres.NewStore(pool, Upcasters())
	accounts := aggregate.NewHandler(writer.AccountType(), store, eventSchemas, aggregate.Options{SnapshotEvery: s.snapshotEvery})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := writer.DefaultConfig()
	cfg.MaxBodyBytes, cfg.PrincipalHeader = s.maxBodyBytes, s.principalHeader
	api := writer.NewServer(cfg, store, accounts, reg, logger)

	srv := &http.Server{
		Addr:              s.httpAddr,
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.pprofAddr != "" {
		stop, err := servePprof(s.pprofAddr, logger)
		if err != nil {
			return usageError{fmt.Errorf("PPROF_ADDR: %w", err)}
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return usageError{fmt.Errorf("WRITER_HTTP_ADDR: listen on %s: %w", s.httpAddr, err)}
	}
	logger.Info("writer listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining in-flight requests", "timeout", s.shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("writer stopped")
	return nil
}
