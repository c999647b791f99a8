package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// settings is every setting of the reader, from flags or the environment.
type settings struct {
	redis           config.Redis
	auth            config.Auth
	httpAddr        string
	shutdownTimeout time.Duration
	startTimeout    time.Duration
	logLevel        slog.Level
	api             reader.Config
}

func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	s := settings{api: reader.DefaultConfig()}
	fs := config.New("reader", stderr)
	s.redis.Register(fs)
	s.auth.Register(fs)
	fs.StringVar(&s.httpAddr, "http-addr", ":8082", "address of the query API, /metrics, /healthz and /readyz")
	fs.Env("http-addr", "READER_HTTP_ADDR")
	fs.DurationVar(&s.api.MaxWait, "max-wait", s.api.MaxWait, "longest a query naming a version it must see waits for the projection (read-your-writes)")
	fs.Env("max-wait", "READER_MAX_WAIT")
	fs.IntVar(&s.api.MaxWaiting, "max-waiting", s.api.MaxWaiting, "most queries waiting for a version at once; more answer at once with what the projection has (0: no bound)")
	fs.Env("max-waiting", "READER_MAX_WAITING")
	fs.DurationVar(&s.api.ViewCache, "view-cache", s.api.ViewCache, "how long the served generation of a projection is kept between lookups (0: look up on every query)")
	fs.Env("view-cache", "READER_VIEW_CACHE")
	fs.IntVar(&s.api.DefaultPage, "default-page", s.api.DefaultPage, "page size of a listing without limit")
	fs.Env("default-page", "READER_DEFAULT_PAGE")
	fs.IntVar(&s.api.MaxPage, "max-page", s.api.MaxPage, "largest limit a listing accepts")
	fs.Env("max-page", "READER_MAX_PAGE")
	fs.IntVar(&s.api.MaxCorrelationEvents, "max-correlation-events", s.api.MaxCorrelationEvents, "most events of one causation tree; a larger correlation is answered with its earliest, marked truncated")
	fs.Env("max-correlation-events", "READER_MAX_CORRELATION_EVENTS")
	fs.BoolVar(&s.api.AutoPipeline, "redis-auto-pipeline", s.api.AutoPipeline, "send the Redis reads of concurrent queries together in pipelines (fewer round trips under load)")
	fs.Env("redis-auto-pipeline", "READER_REDIS_AUTO_PIPELINE")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long requests in flight may take to finish on SIGTERM")
	fs.Env("shutdown-timeout", "SHUTDOWN_TIMEOUT")
	fs.DurationVar(&s.startTimeout, "start-timeout", 15*time.Second, "how long the start waits for Redis")
	fs.Env("start-timeout", "READER_START_TIMEOUT")
	fs.TextVar(&s.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.Env("log-level", "LOG_LEVEL")
	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q (the reader takes flags only; -h lists them)", fs.Arg(0))}
	}
	if err := s.redis.Check(fs); err != nil {
		return s, config.UsageError{Err: err}
	}
	switch {
	case s.api.MaxWait < 0 || s.api.MaxWait > time.Minute:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 0s to 1m", fs.Setting("max-wait"))}
	case s.api.MaxWaiting < 0:
		return s, config.UsageError{Err: fmt.Errorf("%s must be 0 (no bound) or more", fs.Setting("max-waiting"))}
	case s.api.ViewCache < 0 || s.api.ViewCache > 10*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 0s to 10s (the projector's drop grace must stay longer)", fs.Setting("view-cache"))}
	case s.api.MaxPage < 1 || s.api.MaxPage > 10_000:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 1 to 10000", fs.Setting("max-page"))}
	case s.api.MaxCorrelationEvents < 1 || s.api.MaxCorrelationEvents > 100_000:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 1 to 100000", fs.Setting("max-correlation-events"))}
	case s.api.DefaultPage < 1 || s.api.DefaultPage > s.api.MaxPage:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 1 to %s", fs.Setting("default-page"), fs.Setting("max-page"))}
	case s.shutdownTimeout <= 0 || s.startTimeout <= 0:
		return s, config.UsageError{Err: fmt.Errorf("%s and %s must be positive", fs.Setting("shutdown-timeout"), fs.Setting("start-timeout"))}
	}
	if _, _, err := net.SplitHostPort(s.httpAddr); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("%s: %v", fs.Setting("http-addr"), err)}
	}
	if err := s.auth.Check(fs); err != nil {
		return s, config.UsageError{Err: err}
	}
	return s, nil
}

// authenticator builds the authenticator the settings describe; with a
// JWKS URL it keeps the key set fresh until ctx ends.
func authenticator(ctx context.Context, s settings) (*auth.Authenticator, error) {
	cfg := s.auth.Config()
	a, err := auth.New(ctx, cfg)
	switch {
	case err == nil:
		return a, nil
	case cfg.JWKSFile != "":
		return nil, config.UsageError{Err: fmt.Errorf("AUTH_JWKS_FILE=%s cannot be used: %w", cfg.JWKSFile, err)}
	case cfg.JWKSURL != "":
		return nil, fmt.Errorf("cannot use the token issuer's keys at AUTH_JWKS_URL=%s: %w", cfg.JWKSURL, err)
	}
	return nil, config.UsageError{Err: fmt.Errorf("AUTH_MODE=%s: %w", cfg.Mode, err)}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	s, err := parseSettings(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: s.logLevel}))
	if s.api.Authenticator, err = authenticator(ctx, s); err != nil {
		return err
	}
	if s.api.Authenticator.Mode() == auth.ModeOff {
		logger.Warn("AUTH_MODE=off: every caller is the operator 'anonymous' and may read every read model; for local experiments only")
	}
	tracing, err := telemetry.Setup(ctx, "tributary-reader", getenv)
	if err != nil {
		return config.UsageError{Err: err}
	}
	defer shutdownTracing(tracing, logger)
	opts, _ := s.redis.Options()
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	if tracing.Exporting {
		if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(telemetry.ChildrenOnly(tracing.TracerProvider))); err != nil {
			return fmt.Errorf("trace Redis: %w", err)
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, s.startTimeout)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis at REDIS_URL=%s: %w", s.redis.Redacted(), err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.api.TracerProvider, s.api.Propagator = tracing.TracerProvider, tracing.Propagator
	domains, err := domains.All()
	if err != nil {
		return err
	}
	api, err := reader.NewServer(s.api, rdb, s.redis.Prefix, domains.Reader(), reg, domains.API("reader").Handler(), logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return fmt.Errorf("READER_HTTP_ADDR %s: %w", s.httpAddr, err)
	}
	srv := &http.Server{Handler: api.Handler(), MaxHeaderBytes: httpapi.ServerMaxHeaderBytes(s.api.MaxHeaderBytes),
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	logger.Info("reader started", "http_addr", ln.Addr().String(), "redis_url", s.redis.Redacted(), "redis_prefix", s.redis.Prefix,
		"auth_mode", string(s.api.Authenticator.Mode()))
	err = g.Wait()
	logger.Info("reader stopped")
	return err
}

// shutdownTracing flushes the spans not exported yet, waiting at most 5s.
func shutdownTracing(t *telemetry.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.Warn("flush spans", "err", err)
	}
}
