// Package readertest runs the platform end to end for the reader's tests,
// as net/http/httptest runs HTTP servers: a Pipeline is a registry's
// domains served by a writer (with its relay and process managers) on a
// fresh database, an in-process Kafka, every projection of the registry in
// a Redis prefix of the test's own, and a reader whose every answer is
// checked against the registry's assembled reader document; Models are
// read models built straight from events a test makes, with the reader
// over them. It names no domain: the platform's tests give it the fixture
// domain (package domaintest), a domain's tests their own.
package readertest

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
	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/writer"
)

// Partitions is the number of partitions of a Pipeline's topics and of the
// read models Models builds.
const Partitions = 8

// Pipeline is the whole platform for one test, on the real servers. The
// writer and the reader trust the tokens of Auth; requests are sent as the
// owner unless a test says otherwise.
type Pipeline struct {
	t      testing.TB
	Auth   *Issuer
	Store  *postgres.Store
	Redis  *redis.Client
	Prefix string
	Writer *httptest.Server
	Reader *httptest.Server
	check  *apispec.Validator
	// NewProjector makes another member of the pipeline's projections, as
	// a second projector process would be.
	NewProjector func(readmodels.Projection) *projector.Projector
}

// Config is the reader's default configuration with a MaxWait of a
// minute, for tests whose reads must find the version they wait for: on a
// machine loaded by the whole suite under -race, an event can take more
// than the default 2 s from its append to the read model. Tests of the
// bound itself set their own.
func Config() reader.Config {
	cfg := reader.DefaultConfig()
	cfg.MaxWait = time.Minute
	return cfg
}

// NewPipeline starts the platform of reg's domains with the reader's cfg
// (its authenticator is Auth's unless cfg names one). It returns once every
// projection serves its first generation.
func NewPipeline(t testing.TB, reg *registry.Registry, cfg reader.Config) *Pipeline {
	t.Helper()
	return NewHookedPipeline(t, reg, cfg, nil)
}

// NewHookedPipeline is NewPipeline whose projectors of the projections
// named in hooks run with those hooks.
func NewHookedPipeline(t testing.TB, reg *registry.Registry, cfg reader.Config, hooks map[string]projector.Hooks) *Pipeline {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	cluster := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	logger := slog.New(slog.DiscardHandler)
	topics := kafka.Topics{Prefix: "tributary", Partitions: Partitions, ReplicationFactor: -1}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	p := &Pipeline{t: t, Auth: NewIssuer(t), Store: postgres.NewStore(pool, reg.Upcasters()), Redis: rdb, Prefix: prefix}
	wcfg := writer.DefaultConfig()
	wcfg.Authenticator = p.Auth.Authn
	ws, err := writer.New(pool, wcfg, aggregate.Options{}, reg.Writer(), prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	p.Writer = httptest.NewServer(ws.Handler())
	t.Cleanup(p.Writer.Close)

	rcfg := relay.DefaultConfig()
	rcfg.Topics = topics
	rcfg.AggregateTypes = reg.AggregateTypes()
	rcfg.PollInterval = 2 * time.Millisecond
	client := testenv.KafkaClient(t, cluster.ListenAddrs(), relay.ProducerOptions(5*time.Second)...)
	rl := relay.New(rcfg, dbURL, pool, reg.Upcasters(), client, relay.NewMetrics(prometheus.NewRegistry()), logger, relay.Hooks{})
	if err := rl.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = rl.Run(ctx) })

	// The domains' process managers, as the writer process runs them: on
	// the API's handlers.
	for _, pm := range reg.Processes() {
		runner, err := pm.New(registry.ProcessDeps{Handlers: ws.Handlers(), Client: []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)},
			Topics: topics, Group: topics.Prefix + "." + pm.Name, SessionTimeout: 10 * time.Second, Upcasters: reg.Upcasters(),
			Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = runner.Run(ctx) })
	}

	pcfg := projector.DefaultConfig()
	pcfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	pcfg.FetchMaxWait = 50 * time.Millisecond
	pcfg.Topics = topics
	pcfg.GroupPrefix = prefix
	pcfg.RedisPrefix = prefix
	pcfg.Poll = 50 * time.Millisecond
	pcfg.SessionTimeout = 6 * time.Second
	deps := projector.Deps{Redis: rdb, Schemas: reg.Schemas(), Upcasters: reg.Upcasters(),
		Metrics: projector.NewMetrics(prometheus.NewRegistry()), Logger: logger}
	p.NewProjector = func(proj readmodels.Projection) *projector.Projector {
		pr := projector.New(proj, pcfg, deps)
		if h, ok := hooks[proj.Name()]; ok {
			pr.WithHooks(h)
		}
		return pr
	}
	for _, proj := range reg.Projections() {
		pr := p.NewProjector(proj)
		wg.Go(func() { _ = pr.Run(ctx) })
	}

	// The first generation of every projection is served once it has caught
	// up with the (empty) topics: tests start from there, so that a busy
	// machine's slow start does not read as a stale answer.
	WaitFor(t, time.Minute, "every read model served", func() bool {
		for _, name := range reg.ProjectionNames() {
			if _, err := readmodels.ActiveView(context.Background(), rdb, readmodels.NewLayout(prefix, name)); err != nil {
				return false
			}
		}
		return true
	})
	if cfg.Authenticator == nil {
		cfg.Authenticator = p.Auth.Authn
	}
	p.Reader = httptest.NewServer(NewReader(t, reg, cfg, rdb, prefix, reg.API("reader").Handler(), logger).Handler())
	t.Cleanup(p.Reader.Close)
	p.check = apispec.NewValidator(t, reg.API("reader"))
	return p
}

// Response is an HTTP answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing t if it cannot.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.Status, r.Body, err)
	}
}

// Do sends a request to srv as the owner and checks the exchange against
// the reader's document when srv is the reader. headers are name, value
// pairs.
func (p *Pipeline) Do(srv *httptest.Server, method, path, body string, headers ...string) Response {
	p.t.Helper()
	return p.DoAs(AsOwner, srv, method, path, body, headers...)
}

// DoAs is Do as c.
func (p *Pipeline) DoAs(c Caller, srv *httptest.Server, method, path, body string, headers ...string) Response {
	p.t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a := p.Auth.Authorization(p.t, c); a != "" {
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
	if srv == p.Reader {
		p.check.Check(p.t, req, []byte(body), resp.StatusCode, resp.Header, b)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Read is a GET on the reader as the owner.
func (p *Pipeline) Read(path string, headers ...string) Response {
	p.t.Helper()
	return p.Do(p.Reader, http.MethodGet, path, "", headers...)
}

// ReadWhenThere is Read asked again until the answer is not a 503: for a
// test reader with a short wait bound, whose first reads may come before
// the pipeline got the version there on a machine busy with other tests.
// It gives up after 30 s and returns the last answer.
func (p *Pipeline) ReadWhenThere(path string, headers ...string) Response {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := p.Read(path, headers...)
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ReadAs is a GET on the reader as c.
func (p *Pipeline) ReadAs(c Caller, path string, headers ...string) Response {
	p.t.Helper()
	return p.DoAs(c, p.Reader, http.MethodGet, path, "", headers...)
}

// Command is a POST to the writer (as the owner) that must answer want.
func (p *Pipeline) Command(want int, path, body string, headers ...string) writer.CommandResponse {
	p.t.Helper()
	r := p.Do(p.Writer, http.MethodPost, path, body, headers...)
	if r.Status != want {
		p.t.Fatalf("POST %s %s: %d %s, want %d", path, body, r.Status, r.Body, want)
	}
	var c writer.CommandResponse
	r.JSON(p.t, &c)
	return c
}

// WaitFor polls cond every few milliseconds until it holds or the deadline
// passes, failing t then.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// NewReader is the reader over the read models under prefix, serving reg's
// queries and spec as its document.
func NewReader(t testing.TB, reg *registry.Registry, cfg reader.Config, rdb redis.UniversalClient, prefix string, spec http.Handler, logger *slog.Logger) *reader.Server {
	t.Helper()
	api, err := reader.NewServer(cfg, rdb, prefix, reg.Reader(), prometheus.NewRegistry(), spec, logger)
	if err != nil {
		t.Fatal(err)
	}
	return api
}
