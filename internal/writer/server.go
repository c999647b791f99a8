// Package writer is the command side's HTTP API: commands become events
// appended to the event store, and streams can be read back for audit and
// temporal queries.
package writer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/problem"
)

// Config tunes the HTTP API.
type Config struct {
	// MaxBodyBytes bounds a command's body; larger ones get 413.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds the request line and headers; larger ones get a
	// 431 problem (see httpapi.LimitHeaderBytes for the server's own limit).
	MaxHeaderBytes int
	// IdempotencyClaim is how long a request holds its Idempotency-Key before
	// a retry may take it over (when the first holder died).
	IdempotencyClaim time.Duration
	// Authenticator establishes who sends each request (auth.New); every
	// route but the operations needs it. Nil refuses every such request.
	Authenticator *auth.Authenticator
	// MaxStreamPage bounds how many events one stream read returns.
	MaxStreamPage int
	// MaxInFlight bounds the commands worked on at once; a command beyond
	// it waits up to AdmissionWait for room, then gets 503 (type
	// overloaded, Retry-After) having read and written nothing. 0: no bound.
	MaxInFlight int
	// AdmissionWait is how long a command beyond MaxInFlight waits for room.
	AdmissionWait time.Duration
	// TracerProvider makes the HTTP server spans; the incoming W3C trace
	// context is continued and stored with the events either way.
	TracerProvider trace.TracerProvider
	// Propagator reads the caller's trace context from the request headers
	// (W3C trace context and baggage by default; OTEL_PROPAGATORS).
	Propagator propagation.TextMapPropagator
}

// DefaultConfig is a sensible Config.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 64 << 10, MaxHeaderBytes: httpapi.DefaultMaxHeaderBytes, IdempotencyClaim: 30 * time.Second, MaxStreamPage: 1000,
		MaxInFlight: 512, AdmissionWait: time.Second,
		TracerProvider: noop.NewTracerProvider(), Propagator: httpapi.DefaultPropagator()}
}

// Server serves the writer's HTTP API.
type Server struct {
	cfg      Config
	handlers *aggregate.Handlers
	store    *postgres.Store
	logger   *slog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer
	spec     http.Handler
	admitted *admission
	// commands are the domains' routes, built.
	commands []route
}

// App is what the writer serves: the domains' aggregate types and the
// routes of their commands, the schemas their events must meet, the
// upcasters of their older events, and the OpenAPI document served at GET
// /openapi.json (apispec.Document.Handler). A registry of domains makes it.
type App struct {
	Aggregates []aggregate.Kind
	Routes     []Route
	Schemas    *log.Schemas
	Upcasters  *log.Upcasters
	Spec       http.Handler
}

// New wires the writer's API over pool: the event store (with app's
// upcasters), a handler for each of app's aggregate types, and app's
// command routes.
func New(pool *pgxpool.Pool, cfg Config, opts aggregate.Options, app App, reg *prometheus.Registry, logger *slog.Logger) (*Server, error) {
	store := postgres.NewStore(pool, app.Upcasters, postgres.WithTracerProvider(cfg.TracerProvider))
	handlers, err := aggregate.Bind(app.Aggregates, store, app.Schemas, opts)
	if err != nil {
		return nil, err
	}
	return NewServer(cfg, handlers, app.Routes, reg, app.Spec, logger)
}

// NewServer returns the writer API: routes run their commands with
// handlers, and the streams and states of every aggregate type handlers
// hold can be read. Its metrics are registered in reg; spec serves the
// OpenAPI document. It fails when a route is malformed or names an
// aggregate type handlers do not hold, or two routes share a pattern.
func NewServer(cfg Config, handlers *aggregate.Handlers, routes []Route, reg *prometheus.Registry, spec http.Handler, logger *slog.Logger) (*Server, error) {
	s := &Server{
		cfg: cfg, handlers: handlers, store: handlers.Store(), logger: logger,
		metrics: newMetrics(reg), gatherer: reg, spec: spec,
		admitted: newAdmission(cfg.MaxInFlight, cfg.AdmissionWait),
	}
	seen := make(map[string]bool, len(routes))
	for _, rt := range routes {
		if seen[rt.Pattern] {
			return nil, fmt.Errorf("writer: two routes are %q", rt.Pattern)
		}
		seen[rt.Pattern] = true
		if rt.build == nil {
			return nil, fmt.Errorf("writer: route %q was not made by writer.Command", rt.Pattern)
		}
		h, err := rt.build(s)
		if err != nil {
			return nil, fmt.Errorf("writer: %w", err)
		}
		s.commands = append(s.commands, route{rt.Pattern, h})
	}
	return s, nil
}

// Handlers returns the handlers the API runs commands with, to share with
// process managers in the same process: one cache of states and one lock
// per aggregate for all, so that none finds the others' appends a
// conflict.
func (s *Server) Handlers() *aggregate.Handlers { return s.handlers }

// route is one pattern of the API's ServeMux and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routes are the API's routes: the domains' commands, then the platform's
// (streams, states, operations).
func (s *Server) routes() []route {
	return append(append([]route(nil), s.commands...),
		route{"GET /v1/streams/{type}/{id}", http.HandlerFunc(s.readStream)},
		route{"GET /v1/streams/{type}/{id}/state", http.HandlerFunc(s.readState)},
		route{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})},
		route{"GET /readyz", http.HandlerFunc(s.ready)},
		route{"GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})},
		route{"GET /openapi.json", s.spec},
	)
}

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	mux.HandleFunc("/", httpapi.Unmatched(mux, http.MethodGet, http.MethodPost))
	return httpapi.Trace("writer", s.cfg.TracerProvider, s.cfg.Propagator, httpapi.Instrument(s.metrics.httpSeconds,
		httpapi.LimitHeaderBytes(s.cfg.MaxHeaderBytes, httpapi.RejectUncleanPaths(auth.Require(s.cfg.Authenticator, mux, publicPaths...)))))
}

// publicPaths are the routes served without authentication: the probes,
// the metrics and the API document hold nobody's data.
var publicPaths = []string{"/healthz", "/readyz", "/metrics", "/openapi.json"}

// caller is the request's authenticated principal, or a 401 problem.
func caller(r *http.Request) (auth.Principal, *problem.Problem) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		return auth.Principal{}, auth.Unauthorized("the request is not authenticated")
	}
	return p, nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Pool().Ping(ctx); err != nil {
		problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "not-ready", "Not ready", "Postgres is unreachable: "+err.Error()))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
