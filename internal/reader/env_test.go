package reader_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
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
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/transfers"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

const partitions = 8

// pipeline is the whole platform for one test, on the real servers: the
// writer's API and its relay on a fresh database, an in-process Kafka, the
// four projections in a Redis prefix of the test's own, and the reader.
// The writer and the reader trust the tokens of the test's issuer; requests
// are sent as the owner unless a test says otherwise.
type pipeline struct {
	t      testing.TB
	auth   *issuer
	store  *postgres.Store
	rdb    *redis.Client
	prefix string
	writer *httptest.Server
	reader *httptest.Server
	check  func(req *http.Request, reqBody []byte, resp *http.Response, body []byte)
	// newProjector makes another member of the pipeline's projections, as
	// a second projector process would be.
	newProjector func(readmodels.Projection) *projector.Projector
}

func newPipeline(t testing.TB, cfg reader.Config) *pipeline {
	t.Helper()
	return newHookedPipeline(t, cfg, projector.Hooks{})
}

// newHookedPipeline is newPipeline whose account-summary projectors run
// with hooks.
func newHookedPipeline(t testing.TB, cfg reader.Config, summaryHooks projector.Hooks) *pipeline {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	cluster := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	logger := slog.New(slog.DiscardHandler)
	topics := kafka.Topics{Prefix: "tributary", Partitions: partitions, ReplicationFactor: -1}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	p := &pipeline{t: t, auth: newIssuer(t), store: postgres.NewStore(pool, registered.Upcasters()), rdb: rdb, prefix: prefix}
	wcfg := writer.DefaultConfig()
	wcfg.Authenticator = p.auth.authn
	ws, err := writer.New(pool, wcfg, aggregate.Options{}, registered.Writer(), prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	p.writer = httptest.NewServer(ws.Handler())
	t.Cleanup(p.writer.Close)

	rcfg := relay.DefaultConfig()
	rcfg.Topics = topics
	rcfg.AggregateTypes = []string{account.AggregateType, transfer.AggregateType}
	rcfg.PollInterval = 2 * time.Millisecond
	client := testenv.KafkaClient(t, cluster.ListenAddrs(), relay.ProducerOptions(5*time.Second)...)
	rl := relay.New(rcfg, dbURL, pool, registered.Upcasters(), client, relay.NewMetrics(prometheus.NewRegistry()), logger, relay.Hooks{})
	if err := rl.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = rl.Run(ctx) })

	eventSchemas, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	// The transfers process manager, as the writer process runs it.
	pmStore := postgres.NewStore(pool, registered.Upcasters())
	steps := transfers.NewSteps(pmStore, aggregate.NewHandler(account.Aggregate(), pmStore, eventSchemas, aggregate.Options{}),
		aggregate.NewHandler(transfer.Aggregate(), pmStore, eventSchemas, aggregate.Options{}), 5*time.Second, logger)
	mcfg := transfers.DefaultConfig()
	mcfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	mcfg.Topics = topics
	pm := transfers.NewManager(mcfg, steps, registered.Upcasters(), logger)
	wg.Go(func() { _ = pm.Run(ctx) })
	pcfg := projector.DefaultConfig()
	pcfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	pcfg.FetchMaxWait = 50 * time.Millisecond
	pcfg.Topics = topics
	pcfg.GroupPrefix = prefix
	pcfg.RedisPrefix = prefix
	pcfg.Poll = 50 * time.Millisecond
	pcfg.SessionTimeout = 6 * time.Second
	deps := projector.Deps{Redis: rdb, Schemas: eventSchemas, Upcasters: registered.Upcasters(),
		Metrics: projector.NewMetrics(prometheus.NewRegistry()), Logger: logger}
	p.newProjector = func(proj readmodels.Projection) *projector.Projector {
		pr := projector.New(proj, pcfg, deps)
		if proj.Name() == accounts.SummaryName {
			pr.WithHooks(summaryHooks)
		}
		return pr
	}
	for _, proj := range []readmodels.Projection{
		accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{},
		correlation.Projection{Types: []string{account.AggregateType, transfer.AggregateType}},
		transferview.Projection{},
	} {
		pr := p.newProjector(proj)
		wg.Go(func() { _ = pr.Run(ctx) })
	}

	// The first generation of every projection is served once it has caught
	// up with the (empty) topics: tests start from there, so that a busy
	// machine's slow start does not read as a stale answer.
	waitFor(t, time.Minute, "every read model served", func() bool {
		for _, name := range []string{accounts.SummaryName, accounts.HistoryName, accounts.DirectoryName, correlation.Name, transferview.Name} {
			if _, err := readmodels.ActiveView(context.Background(), rdb, readmodels.NewLayout(prefix, name)); err != nil {
				return false
			}
		}
		return true
	})
	if cfg.Authenticator == nil {
		cfg.Authenticator = p.auth.authn
	}
	p.reader = httptest.NewServer(newReader(t, cfg, rdb, prefix, specHandler(t), logger).Handler())
	t.Cleanup(p.reader.Close)
	p.check = responseChecker(t)
	return p
}

// response is an HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
}

// do sends a request to srv as the owner and checks the pair against the
// OpenAPI document when srv is the reader. headers are name, value pairs.
func (p *pipeline) do(srv *httptest.Server, method, path, body string, headers ...string) response {
	p.t.Helper()
	return p.doAs(asOwner, srv, method, path, body, headers...)
}

// doAs is do as c.
func (p *pipeline) doAs(c caller, srv *httptest.Server, method, path, body string, headers ...string) response {
	p.t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a := p.auth.authorization(p.t, c); a != "" {
		req.Header.Set("Authorization", a)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if srv == p.reader {
		p.check(req, []byte(body), resp, b)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// read is a GET on the reader as the owner.
func (p *pipeline) read(path string, headers ...string) response {
	p.t.Helper()
	return p.do(p.reader, http.MethodGet, path, "", headers...)
}

// readAs is a GET on the reader as c.
func (p *pipeline) readAs(c caller, path string, headers ...string) response {
	p.t.Helper()
	return p.doAs(c, p.reader, http.MethodGet, path, "", headers...)
}

// command is a POST to the writer that must succeed with want.
func (p *pipeline) command(want int, path, body string, headers ...string) writer.CommandResponse {
	p.t.Helper()
	r := p.do(p.writer, http.MethodPost, path, body, headers...)
	if r.status != want {
		p.t.Fatalf("POST %s %s: %d %s, want %d", path, body, r.status, r.body, want)
	}
	var c writer.CommandResponse
	r.json(p.t, &c)
	return c
}

// waitFor polls cond every few milliseconds until it holds or the deadline
// passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newReader is the reader over the read models under prefix, serving this
// build's domains' queries.
func newReader(t testing.TB, cfg reader.Config, rdb redis.UniversalClient, prefix string, spec http.Handler, logger *slog.Logger) *reader.Server {
	t.Helper()
	api, err := reader.NewServer(cfg, rdb, prefix, registered.Reader(), prometheus.NewRegistry(), spec, logger)
	if err != nil {
		t.Fatal(err)
	}
	return api
}
