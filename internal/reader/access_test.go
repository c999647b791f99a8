package reader_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/readmodels/modeltest"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/testenv"
)

// models is the reader over read models built straight from events the
// test makes (modeltest), with the principals it chooses: no writer, no
// Kafka, and nothing but the test writing to its Redis prefix.
type models struct {
	t      *testing.T
	rdb    *redis.Client
	prefix string
	auth   *issuer
	spec   *apispec.Validator
	events []log.Event
}

// event is an event the test appends, caused by the event cause (nil: by a
// command): its version and global position follow from those before it.
func (m *models) event(aggregateType, id, corr string, ev interface {
	EventType() string
	SchemaVersion() int
}, cause *log.Event, principal, onBehalfOf string) log.Event {
	payload, err := json.Marshal(ev)
	if err != nil {
		m.t.Fatal(err)
	}
	version := int64(1)
	for _, e := range m.events {
		if e.AggregateType == aggregateType && e.AggregateID == id {
			version++
		}
	}
	causation := "command-" + uuid.NewString()
	if cause != nil {
		causation = cause.ID.String()
	}
	e := log.Event{ID: uuid.Must(uuid.NewV7()), AggregateType: aggregateType, AggregateID: id, Version: version,
		Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
		RecordedAt:     time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(len(m.events)) * time.Second),
		GlobalPosition: int64(len(m.events) + 1),
		Metadata:       log.Metadata{CorrelationID: corr, CausationID: causation, Principal: principal, OnBehalfOf: onBehalfOf}}
	m.events = append(m.events, e)
	return e
}

// newModels builds every read model from these events: the owner's account
// and a transfer out of it to bob's account, carried out by the process
// manager on the owner's behalf, and one deposit of bob's own that reuses
// the owner's correlation id.
func newModels(t *testing.T) *models {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	m := &models{t: t, rdb: rdb, prefix: prefix, auth: newIssuer(t), spec: apispec.NewValidator(t, registered.API("reader"))}
	const pm = "process-manager"
	opened := m.event(account.AggregateType, "acc-ada", "open-ada", account.AccountOpened{Owner: "Ada", Currency: "EUR"}, nil, owner, "")
	m.event(account.AggregateType, "acc-ada", "open-ada", account.FundsDeposited{Amount: 500, Currency: "EUR", Source: "salary"}, &opened, owner, "")
	m.event(account.AggregateType, "acc-ada", "activate-ada", account.AccountActivated{}, nil, operator, "")
	m.event(account.AggregateType, "acc-bob", "open-bob", account.AccountOpened{Owner: "Bob", Currency: "EUR"}, nil, "bob", "")
	m.event(account.AggregateType, "acc-bob", "activate-bob", account.AccountActivated{}, nil, operator, "")
	requested := m.event(transfer.AggregateType, "tr-ada", "corr-ada",
		transfer.TransferRequested{From: "acc-ada", To: "acc-bob", Amount: 200, Currency: "EUR", Reference: "rent"}, nil, owner, "")
	withdrawn := m.event(account.AggregateType, "acc-ada", "corr-ada", account.FundsWithdrawn{Amount: 200, Currency: "EUR", Reason: "tr-ada"}, &requested, pm, owner)
	deposited := m.event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 200, Currency: "EUR", Source: "tr-ada"}, &withdrawn, pm, owner)
	m.event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 7, Currency: "EUR", Source: "cash"}, &deposited, "bob", "")
	m.event(transfer.AggregateType, "tr-ada", "corr-ada", transfer.TransferCompleted{}, &deposited, pm, owner)
	m.event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 1, Currency: "EUR", Source: "migration"}, nil, "", "")
	for _, p := range []readmodels.Projection{
		accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{},
		correlation.Projection{Types: []string{account.AggregateType, transfer.AggregateType}}, transferview.Projection{},
	} {
		var evs []log.Event
		for _, e := range m.events {
			if slices.Contains(p.AggregateTypes(), e.AggregateType) {
				evs = append(evs, e)
			}
		}
		modeltest.Project(t, rdb, prefix, p, partitions, evs)
	}
	return m
}

// server is the reader over the models with cfg (the test's authenticator
// unless cfg names one, or none when noAuth).
func (m *models) server(cfg reader.Config, noAuth bool) *httptest.Server {
	m.t.Helper()
	if cfg.Authenticator == nil && !noAuth {
		cfg.Authenticator = m.auth.authn
	}
	srv := httptest.NewServer(newReader(m.t, cfg, m.rdb, m.prefix, specHandler(m.t), slog.New(slog.DiscardHandler)).Handler())
	m.t.Cleanup(srv.Close)
	return srv
}

// get sends GET path to srv as c and checks the exchange against the
// OpenAPI document.
func (m *models) get(srv *httptest.Server, c caller, path string, headers ...string) response {
	m.t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	if a := m.auth.authorization(m.t, c); a != "" {
		req.Header.Set("Authorization", a)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		m.t.Fatal(err)
	}
	m.spec.Check(m.t, req, nil, resp.StatusCode, resp.Header, body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// snapshot is every key under the test's prefix with its serialized value.
func (m *models) snapshot() map[string]string {
	m.t.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	iter := m.rdb.Scan(ctx, 0, m.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		dump, err := m.rdb.Dump(ctx, iter.Val()).Result()
		if err != nil {
			m.t.Fatal(err)
		}
		out[iter.Val()] = dump
	}
	if err := iter.Err(); err != nil {
		m.t.Fatal(err)
	}
	return out
}

// G11 on every route the OpenAPI document names: the public ones serve
// anyone; every other one answers 401 without valid credentials, serves the
// owner and the operator, refuses the stranger (403; a causation tree with
// nothing of theirs is 404, as an unknown one) — also when it asks for a
// version (no wait, no "stale" that tells it) or sends If-None-Match (no
// 304) — and the directory to anyone but an operator. Refused requests
// change nothing in Redis.
func TestEveryRouteServesOnlyWhomItMay(t *testing.T) {
	m := newModels(t)
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 5 * time.Second // a refusal must not wait for it
	srv := m.server(cfg, false)
	doc := registered.API("reader").OpenAPI()
	type sample struct {
		path              string
		owner, stranger   int
		versioned, public bool
	}
	// A request for each route of the document; the test fails on a route
	// without one, so a new route cannot go untested.
	samples := map[string]sample{
		"/v1/accounts/{id}":              {path: "/v1/accounts/acc-ada", owner: 200, stranger: 403, versioned: true},
		"/v1/accounts/{id}/transactions": {path: "/v1/accounts/acc-ada/transactions?limit=2", owner: 200, stranger: 403, versioned: true},
		"/v1/accounts":                   {path: "/v1/accounts?status=active", owner: 403, stranger: 403},
		"/v1/transfers/{id}":             {path: "/v1/transfers/tr-ada", owner: 200, stranger: 403, versioned: true},
		"/v1/correlations/{id}":          {path: "/v1/correlations/corr-ada", owner: 200, stranger: 404},
		"/healthz":                       {path: "/healthz", public: true},
		"/readyz":                        {path: "/readyz", public: true},
		"/metrics":                       {path: "/metrics", public: true},
		"/openapi.json":                  {path: "/openapi.json", public: true},
	}
	if got, want := slices.Sorted(maps.Keys(doc.Paths.Map())), slices.Sorted(maps.Keys(samples)); !slices.Equal(got, want) {
		t.Fatalf("the document's routes %v, the test's %v", got, want)
	}
	before := m.snapshot()
	if len(before) < 20 {
		t.Fatalf("only %d keys under the prefix: too weak a test", len(before))
	}
	checked := 0
	for template, item := range doc.Paths.Map() {
		s := samples[template]
		for method, op := range item.Operations() {
			if method != http.MethodGet {
				t.Fatalf("%s %s: the test sends GETs only", method, template)
			}
			public := op.Security != nil && len(*op.Security) == 0
			if public != s.public || public != slices.Contains(reader.PublicPaths(), template) {
				t.Fatalf("%s: public in the document %v, in the test %v, in reader.PublicPaths %v", template, public, s.public,
					slices.Contains(reader.PublicPaths(), template))
			}
			for _, c := range []caller{anonymous, forged, asStranger, asOwner, asOperator} {
				want := http.StatusOK
				switch {
				case public:
				case c == anonymous || c == forged:
					want = http.StatusUnauthorized
				case c == asStranger:
					want = s.stranger
				case c == asOwner:
					want = s.owner
				}
				r := m.get(srv, c, s.path)
				if r.status != want {
					t.Errorf("GET %s as %s: %d %s, want %d", s.path, c, r.status, r.body, want)
				}
				if want == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("GET %s as %s: 401 without a bearer challenge", s.path, c)
				}
				if want >= 400 && r.header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("GET %s as %s: %d as %s", s.path, c, r.status, r.header.Get("Content-Type"))
				}
				if want == http.StatusOK && c == asStranger && !public {
					t.Errorf("GET %s: the stranger is served", s.path)
				}
				checked++
			}
			if !s.versioned {
				continue
			}
			// Asking for a version out of reach: the owner waits and hears
			// it is stale; the stranger is refused at once, and If-None-Match
			// with any tag gets it no 304.
			sep := "?"
			if strings.Contains(s.path, "?") {
				sep = "&"
			}
			started := time.Now()
			if r := m.get(srv, asStranger, s.path+sep+"min_version=99", "If-None-Match", "*"); r.status != http.StatusForbidden {
				t.Errorf("GET %s?min_version=99 as the stranger: %d %s, want 403", s.path, r.status, r.body)
			}
			if waited := time.Since(started); waited > cfg.MaxWait/2 {
				t.Errorf("GET %s?min_version=99 as the stranger: refused after %v, want at once", s.path, waited)
			}
			if r := m.get(srv, asStranger, s.path, "If-None-Match", "*"); r.status != http.StatusForbidden {
				t.Errorf("GET %s If-None-Match * as the stranger: %d %s, want 403", s.path, r.status, r.body)
			}
			if r := m.get(srv, anonymous, s.path+sep+"min_version=99"); r.status != http.StatusUnauthorized {
				t.Errorf("GET %s?min_version=99 anonymously: %d %s, want 401", s.path, r.status, r.body)
			}
			if r := m.get(srv, asOwner, s.path+sep+"min_version=99", "Prefer", "wait=0.05"); r.status != http.StatusServiceUnavailable {
				t.Errorf("GET %s?min_version=99 as the owner: %d %s, want 503 stale", s.path, r.status, r.body)
			}
		}
	}
	if checked != len(samples)*5 {
		t.Fatalf("%d exchanges checked, want %d", checked, len(samples)*5)
	}
	// An id nobody has is 404 whoever asks; what exists and is not theirs,
	// 403, whatever its kind.
	for _, path := range []string{"/v1/accounts/acc-nobody", "/v1/accounts/acc-nobody/transactions", "/v1/transfers/tr-nobody", "/v1/correlations/nobody"} {
		if r := m.get(srv, asStranger, path); r.status != http.StatusNotFound {
			t.Errorf("GET %s as the stranger: %d %s, want 404", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/v1/accounts/acc-bob", "/v1/accounts/acc-bob/transactions"} {
		if r := m.get(srv, asOwner, path); r.status != http.StatusForbidden {
			t.Errorf("GET %s as the owner of another account: %d %s, want 403", path, r.status, r.body)
		}
	}
	if after := m.snapshot(); !maps.Equal(before, after) {
		t.Fatalf("refused requests changed Redis: %d keys before, %d after", len(before), len(after))
	}

	// What the owner and the operator are served carries the owner.
	var sum accounts.Summary
	m.get(srv, asOwner, "/v1/accounts/acc-ada").json(t, &sum)
	var tr transferview.Summary
	m.get(srv, asOperator, "/v1/transfers/tr-ada").json(t, &tr)
	var page accountdomain.Transactions
	m.get(srv, asOwner, "/v1/accounts/acc-ada/transactions").json(t, &page)
	if sum.Principal != owner || sum.Balance != 300 || tr.Principal != owner || tr.Status != "completed" || len(page.Items) != 4 {
		t.Fatalf("summary %+v, transfer %+v, %d history entries", sum, tr, len(page.Items))
	}
}

// A causation tree shows a caller who is not an operator the events they
// may see: their own, and those the process manager appended on their
// behalf; bounded, counted, truncated and waited for over those alone. An
// event whose cause they may not see is a root; nothing to see is 404.
func TestCorrelationShowsOnlyWhatTheCallerMaySee(t *testing.T) {
	m := newModels(t)
	srv := m.server(reader.DefaultConfig(), false)
	small := reader.DefaultConfig()
	small.MaxCorrelationEvents = 2
	bounded := m.server(small, false)
	bob, err := m.auth.signer.Token("bob", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var corr []log.Event
	for _, e := range m.events {
		if e.CorrelationID == "corr-ada" {
			corr = append(corr, e)
		}
	}
	tree := func(srv *httptest.Server, c caller, path string, headers ...string) (reader.CausationTree, response) {
		t.Helper()
		r := m.get(srv, c, path, headers...)
		var tr reader.CausationTree
		if r.status == http.StatusOK {
			r.json(t, &tr)
		}
		return tr, r
	}
	ids := func(tr reader.CausationTree) []string {
		var out []string
		var walk func([]*reader.Node)
		walk = func(ns []*reader.Node) {
			for _, n := range ns {
				out = append(out, n.EventID)
				walk(n.Children)
			}
		}
		walk(tr.Roots)
		slices.Sort(out)
		return out
	}
	mayView := func(subject string, operator bool) []string {
		var out []string
		for _, e := range corr {
			if (auth.Principal{Subject: subject, Operator: operator}).MaySee(e.Principal, e.OnBehalfOf) {
				out = append(out, e.ID.String())
			}
		}
		slices.Sort(out)
		return out
	}

	all, r := tree(srv, asOperator, "/v1/correlations/corr-ada")
	if r.status != http.StatusOK || all.Events != 6 || all.TotalEvents != 6 || all.Truncated || !slices.Equal(ids(all), mayView(operator, true)) {
		t.Fatalf("the operator: %d %s", r.status, r.body)
	}
	mine, r := tree(srv, asOwner, "/v1/correlations/corr-ada")
	want := mayView(owner, false)
	if r.status != http.StatusOK || len(want) != 4 || mine.Events != 4 || mine.TotalEvents != 4 || mine.Truncated || !slices.Equal(ids(mine), want) {
		t.Fatalf("the owner: %d %s; want the events %v", r.status, r.body, want)
	}
	// The owner's chain: requested → withdrawn → deposited (bob's deposit
	// of his own in between is not theirs) → completed, one root.
	if len(mine.Roots) != 1 || mine.Roots[0].Type != "TransferRequested" || len(mine.Roots[0].Children) != 1 ||
		mine.Roots[0].Children[0].Children[0].Children[0].Type != "TransferCompleted" {
		t.Fatalf("the owner's tree: %s", r.body)
	}
	for _, n := range []*reader.Node{mine.Roots[0], mine.Roots[0].Children[0]} {
		if n.Principal == "" || (n.Principal != owner && n.OnBehalfOf != owner) {
			t.Fatalf("a node of the owner's tree: principal %q on behalf of %q", n.Principal, n.OnBehalfOf)
		}
	}
	// Bob sees his own deposit only, as a root: its cause is not his.
	r = m.get(srv, anonymous, "/v1/correlations/corr-ada", "Authorization", "Bearer "+bob)
	var his reader.CausationTree
	r.json(t, &his)
	if r.status != http.StatusOK || his.Events != 1 || his.TotalEvents != 1 || len(his.Roots) != 1 || his.Roots[0].Principal != "bob" ||
		!slices.Equal(ids(his), mayView("bob", false)) {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	if _, r := tree(srv, asStranger, "/v1/correlations/corr-ada"); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "unknown-correlation") {
		t.Fatalf("the stranger: %d %s, want 404 as for an unknown correlation", r.status, r.body)
	}
	// The bound applies to what each may see.
	if tr, r := tree(bounded, asOwner, "/v1/correlations/corr-ada"); r.status != http.StatusOK || tr.Events != 2 || tr.TotalEvents != 4 || !tr.Truncated {
		t.Fatalf("the owner with a bound of 2: %d %s", r.status, r.body)
	}
	if tr, r := tree(bounded, asOperator, "/v1/correlations/corr-ada"); r.status != http.StatusOK || tr.Events != 2 || tr.TotalEvents != 6 || !tr.Truncated {
		t.Fatalf("the operator with a bound of 2: %d %s", r.status, r.body)
	}
	// Read-your-writes: the owner's own event is there; bob's, never.
	var bobs, ownersLast log.Event
	for _, e := range corr {
		switch {
		case e.Principal == "bob":
			bobs = e
		case e.OnBehalfOf == owner:
			ownersLast = e
		}
	}
	if _, r := tree(srv, asOwner, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", ownersLast.GlobalPosition)); r.status != http.StatusOK {
		t.Fatalf("the owner at the position of its event: %d %s", r.status, r.body)
	}
	for c, present := range map[caller]int64{asOwner: 4, asStranger: 0} {
		_, r := tree(srv, c, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", bobs.GlobalPosition), "Prefer", "wait=0.05")
		var prob struct {
			Type          string
			EventsPresent int64
		}
		r.json(t, &prob)
		if r.status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.EventsPresent != present {
			t.Fatalf("%s at the position of bob's event: %d %s; want stale with eventsPresent %d", c, r.status, r.body, present)
		}
	}
	if _, r := tree(srv, asOperator, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", bobs.GlobalPosition)); r.status != http.StatusOK {
		t.Fatalf("the operator at the position of bob's event: %d %s", r.status, r.body)
	}
}

// A reader without an authenticator fails closed: the public paths only,
// whatever token comes.
func TestReaderWithoutAuthenticatorRefusesEveryone(t *testing.T) {
	m := newModels(t)
	srv := m.server(reader.DefaultConfig(), true)
	for _, path := range []string{"/v1/accounts/acc-ada", "/v1/accounts/acc-ada/transactions", "/v1/accounts?status=active",
		"/v1/transfers/tr-ada", "/v1/correlations/corr-ada", "/v1/nothing"} {
		for _, c := range []caller{anonymous, asOwner, asOperator} {
			if r := m.get(srv, c, path); r.status != http.StatusUnauthorized {
				t.Errorf("GET %s as %s without an authenticator: %d %s", path, c, r.status, r.body)
			}
		}
	}
	for _, path := range reader.PublicPaths() {
		if r := m.get(srv, anonymous, path); r.status != http.StatusOK {
			t.Errorf("GET %s without an authenticator: %d", path, r.status)
		}
	}
}

// Headers over the reader's limit get a 431 problem document (checked
// against the OpenAPI document), before anything else.
func TestHugeHeadersGetAProblem(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	r := p.read("/v1/accounts/a1", "X-Padding", strings.Repeat("p", 40<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge || r.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.body), "headers-too-large") {
		t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// registered is this build's registry of domains, made once for the
// package's tests (each make costs the schemas' and documents' assembly).
var registered = domains.Must()
