// Package stampcard_test is a throwaway domain — a loyalty stamp card with
// one command, one event, one projection and one query — written the way a
// team adds its own: everything in this one package, registered through
// the public registry, run end to end (writer → Kafka → projector → reader)
// without any edit to the platform.
package stampcard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/decider"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/writer"
)

// The decider: a card collects stamps, at most ten.

const aggregateType = "stampcard"

type card struct {
	Stamps int `json:"stamps"`
}

type addStamp struct{ Shop string }

type stampAdded struct {
	Shop string `json:"shop"`
}

func (stampAdded) EventType() string  { return "StampAdded" }
func (stampAdded) SchemaVersion() int { return 1 }

func decide(c card, cmd addStamp) ([]stampAdded, error) {
	if strings.TrimSpace(cmd.Shop) == "" {
		return nil, decider.Invalid("missing-shop", "shop is required")
	}
	if c.Stamps >= 10 {
		return nil, decider.Violated("card-full", "the card has all ten stamps")
	}
	return []stampAdded{{Shop: cmd.Shop}}, nil
}

func evolve(c card, _ stampAdded) card { return card{Stamps: c.Stamps + 1} }

func decode(eventType string, payload []byte) (stampAdded, error) {
	if eventType != "StampAdded" {
		return stampAdded{}, fmt.Errorf("unknown stamp card event type %q", eventType)
	}
	return decider.Decode[stampAdded, stampAdded](payload)
}

func stampCard() decider.Aggregate[card, addStamp, stampAdded] {
	return decider.Aggregate[card, addStamp, stampAdded]{
		Name: aggregateType, Initial: func(string) card { return card{} }, Decide: decide, Evolve: evolve,
		DecodeEvent: decode, StateSchemaVersion: 1,
	}
}

// The event's schema, as the domain's schemas/ folder would hold it.
var eventSchemas = fstest.MapFS{
	"events/stampcard/StampAdded.v1.json": {Data: []byte(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["shop"],
  "properties": {"shop": {"type": "string", "minLength": 1, "maxLength": 100}},
  "additionalProperties": false
}`)},
}

// The domain's parts of the APIs' documents: its command and its query,
// with the problem codes its rules answer and the schema of its state.
var apiFragments = fstest.MapFS{
	"writer.yaml": {Data: []byte(`
tags:
  - name: stampcards
    description: Loyalty stamp cards.
paths:
  /v1/cards/{id}/stamps:
    parameters:
      - $ref: '#/components/parameters/AggregateIdParam'
    post:
      tags: [stampcards]
      operationId: addStamp
      summary: Add a stamp to a card (at most ten)
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/StampRequest'}
      responses:
        '200': {$ref: '#/components/responses/CommandOK'}
        '400': {$ref: '#/components/responses/CommandBadRequest'}
        '401': {$ref: '#/components/responses/Unauthorized'}
        '403': {$ref: '#/components/responses/Forbidden'}
        '409': {$ref: '#/components/responses/CommandConflict'}
        '412': {$ref: '#/components/responses/CommandPreconditionFailed'}
        '413': {$ref: '#/components/responses/ContentTooLarge'}
        '415': {$ref: '#/components/responses/UnsupportedMediaType'}
        '422': {$ref: '#/components/responses/CommandUnprocessable'}
        '431': {$ref: '#/components/responses/HeadersTooLarge'}
        '500': {$ref: '#/components/responses/InternalServerError'}
        '503': {$ref: '#/components/responses/CommandTimeout'}
components:
  schemas:
    StampRequest:
      type: object
      additionalProperties: false
      required: [shop]
      properties:
        shop: {type: string}
    CardState:
      type: object
      additionalProperties: false
      required: [stamps]
      properties:
        stamps: {type: integer, minimum: 0, maximum: 10}
x-problem-codes:
  '400': [missing-shop]
  '422': [card-full]
x-states:
  stampcard: CardState
`)},
	"reader.yaml": {Data: []byte(`
paths:
  /v1/cards/{id}:
    get:
      operationId: getCard
      summary: A stamp card
      parameters:
        - $ref: '#/components/parameters/AggregateID'
        - $ref: '#/components/parameters/MinVersion'
        - $ref: '#/components/parameters/MinVersionHeader'
        - $ref: '#/components/parameters/Prefer'
      responses:
        '200':
          description: The card; its version is the ETag.
          headers:
            ETag: {$ref: '#/components/headers/ETag'}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Card'}
        '304': {description: Not modified.}
        '400': {$ref: '#/components/responses/BadRequest'}
        '401': {$ref: '#/components/responses/Unauthorized'}
        '403': {$ref: '#/components/responses/Forbidden'}
        '404': {$ref: '#/components/responses/NotFound'}
        '431': {$ref: '#/components/responses/HeadersTooLarge'}
        '503': {$ref: '#/components/responses/Unavailable'}
components:
  schemas:
    Card:
      type: object
      additionalProperties: false
      required: [id, stamps, lastShop, version, principal]
      properties:
        id: {type: string}
        stamps: {type: integer, minimum: 1, maximum: 10}
        lastShop: {type: string}
        version: {type: integer, minimum: 1}
        principal: {type: string}
`)},
}

// The projection: one hash per card, with its owner.

type stampsProjection struct{}

func (stampsProjection) Name() string             { return "stampcards" }
func (stampsProjection) AggregateTypes() []string { return []string{aggregateType} }
func (stampsProjection) Lua() string {
	return `
local k = p .. 'card:' .. id
redis.call('HINCRBY', k, 'stamps', 1)
redis.call('HSET', k, 'lastShop', a[i], 'version', ver)
if redis.call('HEXISTS', k, 'principal') == 0 then redis.call('HSET', k, 'principal', a[i + 1]) end
`
}

func (stampsProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e.Type, e.Payload)
	if err != nil {
		return nil, err
	}
	return []string{ev.Shop, e.Principal}, nil
}

// cardView is the query's answer.
type cardView struct {
	ID        string `json:"id"`
	Stamps    int64  `json:"stamps"`
	LastShop  string `json:"lastShop"`
	Version   int64  `json:"version"`
	Principal string `json:"principal"`
}

func readCard(src reader.Source) func(context.Context, string) (cardView, bool, error) {
	layout := readmodels.NewLayout(src.Root, stampsProjection{}.Name())
	return func(ctx context.Context, id string) (cardView, bool, error) {
		v, err := src.Views.Active(ctx, layout)
		if err != nil {
			return cardView{}, false, err
		}
		f, err := src.Redis.HGetAll(ctx, v.Prefix(id)+"card:"+id).Result()
		if err != nil || len(f) == 0 {
			return cardView{}, false, err
		}
		c := cardView{ID: id, LastShop: f["lastShop"], Principal: f["principal"]}
		c.Stamps, _ = strconv.ParseInt(f["stamps"], 10, 64)
		c.Version, _ = strconv.ParseInt(f["version"], 10, 64)
		return c, true, nil
	}
}

type stampBody struct {
	Shop string `json:"shop"`
}

// domain is the stamp card's registration: all a team writes to add it.
func domain() registry.Domain {
	return registry.Domain{
		Name:       "stampcards",
		Aggregates: []aggregate.Kind{aggregate.Of(stampCard())},
		Events:     eventSchemas,
		API:        apiFragments,
		Commands: []writer.Route{writer.Command(stampCard(), writer.CommandRoute[stampBody, addStamp]{
			Pattern: "POST /v1/cards/{id}/stamps", Name: "AddStamp",
			Command: func(_ string, b stampBody) addStamp { return addStamp{Shop: b.Shop} },
		})},
		Projections: []readmodels.Projection{stampsProjection{}},
		Queries: []reader.Route{reader.Versioned("GET /v1/cards/{id}", reader.VersionedModel[cardView]{
			What: "card", Read: readCard,
			Version: func(c cardView) int64 { return c.Version },
			Owner:   func(c cardView) string { return c.Principal },
		})},
	}
}

func TestAStampCardDomainRunsEndToEnd(t *testing.T) {
	domains, err := registry.New(domain())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	cluster := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	signer, authn := testenv.Auth(t)
	logger := slog.New(slog.DiscardHandler)
	topics := kafka.Topics{Prefix: prefix, Partitions: 4, ReplicationFactor: -1}

	// The writer, as cmd/writer builds it from a registry.
	wcfg := writer.DefaultConfig()
	wcfg.Authenticator = authn
	api, err := writer.New(pool, wcfg, aggregate.Options{}, domains.Writer(), prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	writerSrv := httptest.NewServer(api.Handler())
	t.Cleanup(writerSrv.Close)

	// The relay forwards the registry's aggregate types.
	rcfg := relay.DefaultConfig()
	rcfg.Topics = topics
	rcfg.AggregateTypes = domains.AggregateTypes()
	rcfg.PollInterval = 5 * time.Millisecond
	producer := testenv.KafkaClient(t, cluster.ListenAddrs(), relay.ProducerOptions(5*time.Second)...)
	rl := relay.New(rcfg, dbURL, pool, domains.Upcasters(), producer, relay.NewMetrics(prometheus.NewRegistry()), logger, relay.Hooks{})
	if err := rl.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = rl.Run(ctx) })

	// The projector runs every projection the registry has (the card's and
	// the correlation index over the card's events).
	pcfg := projector.DefaultConfig()
	pcfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	pcfg.Topics, pcfg.GroupPrefix, pcfg.RedisPrefix = topics, prefix, prefix
	pcfg.Poll, pcfg.FetchMaxWait, pcfg.SessionTimeout = 50*time.Millisecond, 50*time.Millisecond, 6*time.Second
	deps := projector.Deps{Redis: rdb, Schemas: domains.Schemas(), Upcasters: domains.Upcasters(),
		Metrics: projector.NewMetrics(prometheus.NewRegistry()), Logger: logger}
	for _, p := range domains.Projections() {
		pr := projector.New(p, pcfg, deps)
		wg.Go(func() { _ = pr.Run(ctx) })
	}

	// The reader serves the registry's queries.
	rd, err := reader.NewServer(reader.Config{MaxWait: 10 * time.Second, ViewCache: 50 * time.Millisecond, DefaultPage: 10, MaxPage: 10,
		MaxCorrelationEvents: 100, MaxHeaderBytes: 1 << 16, Authenticator: authn}, rdb, prefix, domains.Reader(), prometheus.NewRegistry(),
		domains.API("reader").Handler(), logger)
	if err != nil {
		t.Fatal(err)
	}
	readerSrv := httptest.NewServer(rd.Handler())
	t.Cleanup(readerSrv.Close)

	// Every exchange is checked against the documents the registry
	// assembled, the card's fragments included.
	writerSpec, readerSpec := apispec.NewValidator(t, domains.API("writer")), apispec.NewValidator(t, domains.API("reader"))
	do := func(method, url, who, body string, header ...string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		token, err := signer.Token(who, nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		check := writerSpec
		if strings.HasPrefix(url, readerSrv.URL) {
			check = readerSpec
		}
		check.Check(t, req, []byte(body), resp.StatusCode, resp.Header, b)
		return resp.StatusCode, resp.Header, b
	}

	// Three stamps on Carla's card; the third answer's version is what the
	// read must see.
	var etag string
	for i, shop := range []string{"bakery", "florist", "bakery"} {
		status, h, body := do("POST", writerSrv.URL+"/v1/cards/card-1/stamps", "carla", `{"shop":"`+shop+`"}`)
		if status != http.StatusOK {
			t.Fatalf("stamp %d: %d %s", i+1, status, body)
		}
		etag = h.Get("ETag")
	}
	if etag != `"3"` {
		t.Fatalf("the third stamp's ETag is %s, want \"3\"", etag)
	}
	// The domain's rules and the platform's strict input hold for it too.
	if status, _, body := do("POST", writerSrv.URL+"/v1/cards/card-1/stamps", "carla", `{"shop":""}`); status != http.StatusBadRequest ||
		!strings.Contains(string(body), "missing-shop") {
		t.Errorf("an empty shop: %d %s, want 400 missing-shop", status, body)
	}
	if status, _, _ := do("POST", writerSrv.URL+"/v1/cards/card-1/stamps", "carla", `{"shop":"a","shop":"b"}`); status != http.StatusBadRequest {
		t.Errorf("a duplicate member: %d, want 400", status)
	}
	if status, _, _ := do("POST", writerSrv.URL+"/v1/cards/card-1/stamps", "mallory", `{"shop":"thief"}`); status != http.StatusForbidden {
		t.Errorf("a stranger's stamp: %d, want 403", status)
	}

	// Read-your-writes through Kafka and the projector.
	status, h, body := do("GET", readerSrv.URL+"/v1/cards/card-1", "carla", "", reader.MinVersionHeader, etag)
	if status != http.StatusOK {
		t.Fatalf("read at version 3: %d %s", status, body)
	}
	var c cardView
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Stamps != 3 || c.Version != 3 || c.LastShop != "bakery" || c.Principal != "carla" || h.Get("ETag") != `"3"` {
		t.Errorf("the card as read: %+v, ETag %s; want 3 stamps at version 3, last at the bakery, Carla's", c, h.Get("ETag"))
	}
	if status, _, _ := do("GET", readerSrv.URL+"/v1/cards/card-1", "mallory", ""); status != http.StatusForbidden {
		t.Errorf("a stranger reads the card: %d, want 403", status)
	}
	if status, _, body := do("GET", readerSrv.URL+"/v1/cards/card-9", "carla", ""); status != http.StatusNotFound ||
		!strings.Contains(string(body), "unknown-card") {
		t.Errorf("an unknown card: %d %s, want 404 unknown-card", status, body)
	}
	// The served documents hold the card's routes beside the platform's.
	for _, doc := range []struct{ url, want string }{{writerSrv.URL, "/v1/cards/{id}/stamps"}, {readerSrv.URL, "/v1/cards/{id}"}} {
		if status, _, body := do("GET", doc.url+"/openapi.json", "carla", ""); status != http.StatusOK || !strings.Contains(string(body), `"`+doc.want+`"`) ||
			!strings.Contains(string(body), `"/healthz"`) {
			t.Errorf("%s/openapi.json: %d, without %s or the platform's routes", doc.url, status, doc.want)
		}
	}
	// The platform's own routes serve the new type without knowing it.
	if status, _, body := do("GET", writerSrv.URL+"/v1/streams/stampcard/card-1/state?version=2", "carla", ""); status != http.StatusOK ||
		!strings.Contains(string(body), `"stamps":2`) {
		t.Errorf("the card's state at version 2: %d %s", status, body)
	}
}
