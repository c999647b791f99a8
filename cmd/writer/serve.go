package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
)

// serve runs the command API of domains (when api is set), the relay (when
// s.relay is set) and the domains' process managers (when s.processes is
// set) until ctx is done, then drains: stop accepting requests, finish those
// in flight, stop the relay, close the Kafka client and pool.
func serve(ctx context.Context, s settings, domains *registry.Registry, logger *slog.Logger, api bool) error {
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var handler http.Handler
	var apiServer *writer.Server // shares its handlers with the process managers
	if api {
		cfg := writer.DefaultConfig()
		cfg.MaxBodyBytes = s.maxBodyBytes
		cfg.MaxInFlight, cfg.AdmissionWait = s.maxInFlight, s.admissionWait
		if cfg.Authenticator, err = auth.New(ctx, s.auth.Config()); err != nil {
			return config.UsageError{Err: err}
		}
		if cfg.Authenticator.Mode() == auth.ModeOff {
			logger.Warn("AUTH_MODE=off: every caller is the operator 'anonymous'; never run like this outside a local experiment")
		}
		if s.tracerProvider != nil {
			cfg.TracerProvider = s.tracerProvider
		}
		if s.propagator != nil {
			cfg.Propagator = s.propagator
		}
		if apiServer, err = writer.New(pool, cfg, aggregate.Options{SnapshotEvery: s.snapshotEvery}, domains.Writer(), reg, logger); err != nil {
			return err
		}
		handler = apiServer.Handler()
	} else {
		handler = opsHandler(reg, pool)
	}

	var rl *startedRelay
	if s.relay {
		// The API's appends wake the relay at once; other processes' wait
		// for its poll.
		var appended <-chan struct{}
		if apiServer != nil {
			appended = apiServer.Handlers().Store().Appended()
		}
		if rl, err = newRelay(ctx, s, domains, pool, appended, reg, logger); err != nil {
			return err
		}
		defer rl.close()
		logger.Info("relay ready", "brokers", rl.broker)
	}

	var managers []registry.ProcessRunner
	if s.processes {
		brokers := ""
		if rl != nil && s.kafka.embedded {
			brokers = rl.broker
		}
		if managers, err = newProcesses(s, domains, pool, apiServer, brokers, logger); err != nil {
			return err
		}
	}

	if s.pprofAddr != "" {
		stop, err := servePprof(s.pprofAddr, logger)
		if err != nil {
			return config.UsageError{Err: fmt.Errorf("PPROF_ADDR: %w", err)}
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return config.UsageError{Err: fmt.Errorf("WRITER_HTTP_ADDR: listen on %s: %w", s.httpAddr, err)}
	}
	srv := &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    httpapi.ServerMaxHeaderBytes(httpapi.DefaultMaxHeaderBytes),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	logger.Info("writer listening", "addr", ln.Addr().String(), "api", api, "relay", s.relay, "processes", s.processes, "domains", domains.String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if rl != nil {
		g.Go(func() error { return rl.relay.Run(gctx) })
	}
	for _, m := range managers {
		g.Go(func() error { return m.Run(gctx) })
	}
	if api {
		g.Go(func() error {
			expireIdempotencyKeys(gctx, postgres.NewStore(pool, nil), s.idempotencyTTL, logger)
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down: draining in-flight requests", "timeout", s.shutdownTimeout)
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	logger.Info("writer stopped")
	return nil
}

// opsHandler serves what a relay-only process offers: metrics and health.
func opsHandler(reg *prometheus.Registry, pool interface{ Ping(context.Context) error }) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			http.Error(w, "Postgres unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	return mux
}

// expireIdempotencyKeys deletes, every hour until ctx is done, the keys
// older than ttl: a client must not retry with a key older than that.
func expireIdempotencyKeys(ctx context.Context, store *postgres.Store, ttl time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	for {
		if n, err := store.ExpireIdempotencyKeys(ctx, ttl); err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "expire idempotency keys", "err", err)
		} else if n > 0 {
			logger.InfoContext(ctx, "expired idempotency keys", "count", n, "older_than", ttl)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
