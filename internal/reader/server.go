// Package reader is the query side's HTTP API: the domains' queries
// (Route: summaries, histories, directories) and the platform's causation
// trees, read from the Redis read models only, with read-your-writes on
// request.
//
// Every route but the public ones (PublicPaths) authenticates its caller,
// and serves each only what the access policy (internal/auth) lets them
// read: an aggregate's read models to its owner — the principal of its
// first event, kept in the read model and read with the data — and to
// operators; listings across owners to operators; of a causation tree, the
// events the caller may see.
package reader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Config tunes the query API.
type Config struct {
	// MaxHeaderBytes bounds the request line and headers; larger ones get a
	// 431 problem (see httpapi.LimitHeaderBytes for the server's own limit).
	MaxHeaderBytes int
	// MaxWait bounds how long a query that names a version it must see
	// waits for the projection to reach it before it answers "stale".
	MaxWait time.Duration
	// MaxWaiting bounds the queries waiting for a version at once (each
	// reads its projection every few milliseconds while it waits); one
	// that would wait beyond it answers at once with what the projection
	// has — stale, with Retry-After — instead. 0: no bound.
	MaxWaiting int
	// ViewCache is how long the active generation of a projection is kept
	// between lookups; a rebuilt generation is served within it.
	ViewCache time.Duration
	// DefaultPage and MaxPage are the default and largest page sizes.
	DefaultPage, MaxPage int
	// MaxCorrelationEvents bounds the events of one causation tree: a
	// larger correlation is answered with its earliest events, marked
	// truncated.
	MaxCorrelationEvents int
	// AutoPipeline sends the reads of concurrent queries to Redis together,
	// in pipelines (go-redis' automatic pipelining), instead of one round
	// trip each: fewer system calls on both sides under load, no added
	// latency when idle.
	AutoPipeline bool
	// TracerProvider makes the HTTP server spans.
	TracerProvider trace.TracerProvider
	// Propagator reads the caller's trace context from the request headers
	// (W3C trace context and baggage by default; OTEL_PROPAGATORS).
	Propagator propagation.TextMapPropagator
	// Authenticator establishes the caller of every request but those for
	// PublicPaths. Without one, every such request is refused (401): the
	// reader fails closed.
	Authenticator *auth.Authenticator
}

// PublicPaths returns the routes served without authentication: probes,
// metrics and the API document, which hold nobody's data.
func PublicPaths() []string { return []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} }

// DefaultConfig is a sensible Config.
func DefaultConfig() Config {
	return Config{MaxHeaderBytes: httpapi.DefaultMaxHeaderBytes, MaxWait: 2 * time.Second, MaxWaiting: 1024, ViewCache: 250 * time.Millisecond, DefaultPage: 50, MaxPage: 500, MaxCorrelationEvents: 1000,
		AutoPipeline: true, TracerProvider: noop.NewTracerProvider(), Propagator: httpapi.DefaultPropagator()}
}

// Server serves the reader's HTTP API.
type Server struct {
	cfg      Config
	rdb      redis.UniversalClient
	reads    redis.Cmdable // rdb, or its automatic pipeliner
	root     string
	views    *readmodels.Views
	routes   []Route
	metrics  *metrics
	waits    waitTracker
	waiting  atomic.Int64 // queries in await's loop
	gatherer prometheus.Gatherer
	logger   *slog.Logger
	spec     http.Handler
}

// NewServer returns the query API over the read models kept in rdb under
// the key prefix root: the domains' routes, and the platform's causation
// trees. Its metrics are registered in reg; spec serves the OpenAPI
// document. It fails when a route was not made by Versioned or Handle, or
// two routes share a pattern.
func NewServer(cfg Config, rdb redis.UniversalClient, root string, routes []Route, reg *prometheus.Registry, spec http.Handler, logger *slog.Logger) (*Server, error) {
	seen := map[string]bool{}
	for _, rt := range routes {
		if rt.build == nil {
			return nil, fmt.Errorf("reader: route %q was not made by reader.Versioned or reader.Handle", rt.Pattern)
		}
		if seen[rt.Pattern] {
			return nil, fmt.Errorf("reader: two routes are %q", rt.Pattern)
		}
		seen[rt.Pattern] = true
	}
	var reads redis.Cmdable = rdb
	if cfg.AutoPipeline {
		if ap, err := rdb.AutoPipeline(); err != nil {
			logger.Warn("Redis reads are not pipelined automatically: the client does not support it", "err", err)
		} else {
			reads = ap
		}
	}
	return &Server{
		cfg: cfg, rdb: rdb, reads: reads, root: root, views: readmodels.NewViews(reads, cfg.ViewCache), routes: routes,
		metrics: newMetrics(reg), gatherer: reg, logger: logger, spec: spec,
	}, nil
}

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.Pattern, rt.build(Query{s}))
	}
	mux.HandleFunc("GET /v1/correlations/{id}", s.getCorrelation)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.Handle("GET /openapi.json", s.spec)
	mux.HandleFunc("/", httpapi.Unmatched(mux, http.MethodGet))
	return httpapi.Trace("reader", s.cfg.TracerProvider, s.cfg.Propagator, httpapi.Instrument(s.metrics.httpSeconds,
		httpapi.LimitHeaderBytes(s.cfg.MaxHeaderBytes, httpapi.RejectUncleanPaths(rejectMalformedQueries(
			auth.Require(s.cfg.Authenticator, mux, PublicPaths()...))))))
}

// caller returns the principal the authenticator established for r. A
// handler reached without one (which the middleware prevents) answers 401.
func caller(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		problem.Write(w, r, auth.Unauthorized("the request was not authenticated"))
	}
	return p, ok
}

// rejectMalformedQueries answers 400 to a query string that does not parse,
// instead of acting on the part of it that does.
func rejectMalformedQueries(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			problem.Write(w, r, InvalidQuery("the query string is malformed: "+err.Error()))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "not-ready", "Not ready", "Redis is unreachable: "+err.Error()))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// fail answers with the problem err stands for, logging what is not the
// client's doing.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, readmodels.ErrNotReady):
		w.Header().Set("Retry-After", "1")
		problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "read-model-not-ready", "Read model not ready",
			err.Error()+": it is served once it has caught up with the log"))
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.logger.Info("query cancelled by the client", "path", r.URL.Path)
		problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "cancelled", "Cancelled", "the request was cancelled"))
	default:
		s.logger.Error("query failed", "path", r.URL.Path, "err", err)
		problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "read-models-unavailable", "Read models unavailable",
			"the read models could not be read; try again"))
	}
}
