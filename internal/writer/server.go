// Package writer is the command side's HTTP API: commands become events
// appended to the event store, and streams can be read back for audit and
// temporal queries.
package writer

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
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
		TracerProvider: noop.NewTracerProvider(), Propagator: httpapi.DefaultPropagator()}
}

// Server serves the writer's HTTP API.
type Server struct {
	cfg      Config
	store    *postgres.Store
	accounts *AccountHandler
	// transfers is nil unless WithTransfers was called.
	transfers *TransferHandler
	logger    *slog.Logger
	metrics   *metrics
	gatherer  prometheus.Gatherer
	spec      http.Handler
	// stateAt answers temporal queries per aggregate type.
	stateAt map[string]stateFunc
}

// NewServer returns the writer API over store. Its metrics are registered in
// reg; spec serves the OpenAPI document at GET /openapi.json (see
// apispec.Handler).
func NewServer(cfg Config, store *postgres.Store, accounts *AccountHandler, reg *prometheus.Registry, spec http.Handler, logger *slog.Logger) *Server {
	s := &Server{
		cfg: cfg, store: store, accounts: accounts, logger: logger,
		metrics: newMetrics(reg), gatherer: reg, spec: spec,
		stateAt: map[string]stateFunc{
			accounts.TypeName(): func(ctx context.Context, id string, v int64, t time.Time) (any, int64, error) {
				return accounts.StateAt(ctx, id, v, t)
			},
		},
	}
	return s
}

// route is one pattern of the API's ServeMux and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routes are the API's routes; schemas/openapi/writer.yaml documents each.
func (s *Server) routes() []route {
	return append(append(s.accountRoutes(), s.transferRoutes()...),
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
