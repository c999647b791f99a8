package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/telemetry"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/transfers"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

const partitions = 4

// pipeline is the whole platform for one test, wired as cmd/writer,
// cmd/writer relay, cmd/projector and cmd/reader wire it (tracing, kprom,
// otelpgx, redisotel, bearer tokens verified), each part on its own
// listener with its own registry and /metrics: a fresh database, kfake, a
// Redis prefix of its own.
type pipeline struct {
	t       testing.TB
	writer  string // base URLs
	relay   string
	proj    string
	reader  string
	prefix  string
	brokers []string
	dbURL   string
	// authorization is the Authorization header of the principal who sends
	// the tests' commands and queries, and so owns their accounts.
	authorization string
	// registries are each part's metrics, by job name.
	registries map[string]*prometheus.Registry
}

// pipelineOptions tune a pipeline.
type pipelineOptions struct {
	tracerProvider trace.TracerProvider // nil: none
	summaryHooks   projector.Hooks      // hooks of the account-summary projector
	// transfers adds transfers: the relay publishes their events, the
	// transfers process manager runs (as in the writer), and the projector
	// keeps the transfers read model.
	transfers bool
}

func newPipeline(t testing.TB, o pipelineOptions) *pipeline {
	t.Helper()
	tp := o.tracerProvider
	dbURL := testenv.PostgresURL(t)
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if tp != nil {
		pcfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(telemetry.ChildrenOnly(tp)))
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cluster := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	if tp != nil {
		if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(telemetry.ChildrenOnly(tp))); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.DiscardHandler)
	topics := kafka.Topics{Prefix: "tributary", Partitions: partitions, ReplicationFactor: -1}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	signer, authenticator := testenv.Auth(t)
	token, err := signer.Token("ada", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{t: t, prefix: prefix, brokers: cluster.ListenAddrs(), dbURL: dbURL, authorization: "Bearer " + token}

	// The writer.
	wreg := processRegistry()
	wcfg := writer.DefaultConfig()
	wcfg.Authenticator = authenticator
	if tp != nil {
		wcfg.TracerProvider = tp
	}
	ws, err := writer.New(pool, wcfg, aggregate.Options{}, registered.Writer(), wreg, logger)
	if err != nil {
		t.Fatal(err)
	}
	p.writer = serve(t, ws.Handler())

	// The relay, as `writer relay` runs it.
	rreg := processRegistry()
	rcfg := relay.DefaultConfig()
	rcfg.Topics = topics
	rcfg.AggregateTypes = []string{account.AggregateType}
	if o.transfers {
		rcfg.AggregateTypes = append(rcfg.AggregateTypes, transfer.AggregateType)
	}
	rcfg.PollInterval = 5 * time.Millisecond
	rcfg.TracerProvider = tp
	client := testenv.KafkaClient(t, cluster.ListenAddrs(), append(relay.ProducerOptions(5*time.Second),
		kafka.ClientMetrics(rreg, nil))...)
	rl := relay.New(rcfg, dbURL, pool, registered.Upcasters(), client, relay.NewMetrics(rreg), logger, relay.Hooks{})
	if err := rl.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = rl.Run(ctx) })
	p.relay = serve(t, metricsHandler(rreg))

	// The projector, with the four projections.
	preg := processRegistry()
	eventSchemas, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	prcfg := projector.DefaultConfig()
	prcfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	prcfg.FetchMaxWait = 50 * time.Millisecond
	prcfg.Topics = topics
	prcfg.GroupPrefix = prefix
	prcfg.RedisPrefix = prefix
	prcfg.Poll = 100 * time.Millisecond
	prcfg.SessionTimeout = 6 * time.Second
	prcfg.Retries, prcfg.RetryBackoff = 1, 10*time.Millisecond
	deps := projector.Deps{Redis: rdb, Schemas: eventSchemas, Upcasters: registered.Upcasters(),
		Metrics: projector.NewMetrics(preg), Logger: logger, TracerProvider: tp, KafkaMetrics: preg}
	projections := []readmodels.Projection{
		accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{},
		correlation.Projection{Types: rcfg.AggregateTypes},
	}
	if o.transfers {
		projections = append(projections, transferview.Projection{})
		wg.Go(func() {
			_ = newTransfersManager(t, pool, cluster.ListenAddrs(), topics, tp, eventSchemas, logger).Run(ctx)
		})
	}
	for _, proj := range projections {
		pr := projector.New(proj, prcfg, deps)
		if proj.Name() == accounts.SummaryName {
			pr.WithHooks(o.summaryHooks)
		}
		wg.Go(func() { _ = pr.Run(ctx) })
	}
	p.proj = serve(t, metricsHandler(preg))

	// The reader.
	rdcfg := reader.DefaultConfig()
	rdcfg.MaxWait = time.Minute // reads must find their version, also on a machine loaded by the whole suite
	rdcfg.Authenticator = authenticator
	if tp != nil {
		rdcfg.TracerProvider = tp
	}
	rdreg := processRegistry()
	rd, err := reader.NewServer(rdcfg, rdb, prefix, registered.Reader(), rdreg, registered.API("reader").Handler(), logger)
	if err != nil {
		t.Fatal(err)
	}
	p.reader = serve(t, rd.Handler())
	p.registries = map[string]*prometheus.Registry{"writer": wreg, "relay": rreg, "projector": preg, "reader": rdreg}
	return p
}

// processRegistry is a registry with the Go and process collectors, as
// every command starts with.
func processRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// serve serves h on a loopback port until the test ends and returns its
// base URL.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// do sends a request to the writer or the reader as the pipeline's
// principal and returns the status and body.
func (p *pipeline) do(t testing.TB, method, url, body string, headers ...string) (int, []byte) {
	t.Helper()
	return do(t, method, url, body, append([]string{"Authorization", p.authorization}, headers...)...)
}

// do sends a request and returns the status and body.
func do(t testing.TB, method, url, body string, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newTransfersManager is the transfers process manager as cmd/writer runs it.
func newTransfersManager(t testing.TB, pool *pgxpool.Pool, brokers []string, topics kafka.Topics, tp trace.TracerProvider,
	eventSchemas *log.Schemas, logger *slog.Logger) *transfers.Manager {
	t.Helper()
	var opts []postgres.StoreOption
	if tp != nil {
		opts = append(opts, postgres.WithTracerProvider(tp))
	}
	store := postgres.NewStore(pool, registered.Upcasters(), opts...)
	steps := transfers.NewSteps(store,
		aggregate.NewHandler(account.Aggregate(), store, eventSchemas, aggregate.Options{}),
		aggregate.NewHandler(transfer.Aggregate(), store, eventSchemas, aggregate.Options{}),
		10*time.Second, logger)
	cfg := transfers.DefaultConfig()
	cfg.Client = []kgo.Opt{kgo.SeedBrokers(brokers...)}
	cfg.Topics = topics
	cfg.TracerProvider = tp
	return transfers.NewManager(cfg, steps, registered.Upcasters(), logger)
}

// registered is this build's registry of domains, made once for the
// package's tests (each make costs the schemas' and documents' assembly).
var registered = domains.Must()
