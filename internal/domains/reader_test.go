package domains_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
)

// newModels builds every read model from these events: the owner's account
// and a transfer out of it to bob's account, carried out by the process
// manager on the owner's behalf, and one deposit of bob's own that reuses
// the owner's correlation id.
func newModels(t *testing.T) *readertest.Models {
	t.Helper()
	m := readertest.NewModels(t, registered)
	const pm = "process-manager"
	opened := m.Event(account.AggregateType, "acc-ada", "open-ada", account.AccountOpened{Owner: "Ada", Currency: "EUR"}, nil, readertest.Owner, "")
	m.Event(account.AggregateType, "acc-ada", "open-ada", account.FundsDeposited{Amount: 500, Currency: "EUR", Source: "salary"}, &opened, readertest.Owner, "")
	m.Event(account.AggregateType, "acc-ada", "activate-ada", account.AccountActivated{}, nil, readertest.Operator, "")
	m.Event(account.AggregateType, "acc-bob", "open-bob", account.AccountOpened{Owner: "Bob", Currency: "EUR"}, nil, "bob", "")
	m.Event(account.AggregateType, "acc-bob", "activate-bob", account.AccountActivated{}, nil, readertest.Operator, "")
	requested := m.Event(transfer.AggregateType, "tr-ada", "corr-ada",
		transfer.TransferRequested{From: "acc-ada", To: "acc-bob", Amount: 200, Currency: "EUR", Reference: "rent"}, nil, readertest.Owner, "")
	withdrawn := m.Event(account.AggregateType, "acc-ada", "corr-ada", account.FundsWithdrawn{Amount: 200, Currency: "EUR", Reason: "tr-ada"}, &requested, pm, readertest.Owner)
	deposited := m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 200, Currency: "EUR", Source: "tr-ada"}, &withdrawn, pm, readertest.Owner)
	m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 7, Currency: "EUR", Source: "cash"}, &deposited, "bob", "")
	m.Event(transfer.AggregateType, "tr-ada", "corr-ada", transfer.TransferCompleted{}, &deposited, pm, readertest.Owner)
	m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 1, Currency: "EUR", Source: "migration"}, nil, "", "")
	m.Project()
	return m
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
	srv := m.Server(cfg, false)
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
	before := m.Snapshot()
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
			for _, c := range []readertest.Caller{readertest.Anonymous, readertest.Forged, readertest.AsStranger, readertest.AsOwner, readertest.AsOperator} {
				want := http.StatusOK
				switch {
				case public:
				case c == readertest.Anonymous || c == readertest.Forged:
					want = http.StatusUnauthorized
				case c == readertest.AsStranger:
					want = s.stranger
				case c == readertest.AsOwner:
					want = s.owner
				}
				r := m.Get(srv, c, s.path)
				if r.Status != want {
					t.Errorf("GET %s as %s: %d %s, want %d", s.path, c, r.Status, r.Body, want)
				}
				if want == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("GET %s as %s: 401 without a bearer challenge", s.path, c)
				}
				if want >= 400 && r.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("GET %s as %s: %d as %s", s.path, c, r.Status, r.Header.Get("Content-Type"))
				}
				if want == http.StatusOK && c == readertest.AsStranger && !public {
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
			if r := m.Get(srv, readertest.AsStranger, s.path+sep+"min_version=99", "If-None-Match", "*"); r.Status != http.StatusForbidden {
				t.Errorf("GET %s?min_version=99 as the stranger: %d %s, want 403", s.path, r.Status, r.Body)
			}
			if waited := time.Since(started); waited > cfg.MaxWait/2 {
				t.Errorf("GET %s?min_version=99 as the stranger: refused after %v, want at once", s.path, waited)
			}
			if r := m.Get(srv, readertest.AsStranger, s.path, "If-None-Match", "*"); r.Status != http.StatusForbidden {
				t.Errorf("GET %s If-None-Match * as the stranger: %d %s, want 403", s.path, r.Status, r.Body)
			}
			if r := m.Get(srv, readertest.Anonymous, s.path+sep+"min_version=99"); r.Status != http.StatusUnauthorized {
				t.Errorf("GET %s?min_version=99 anonymously: %d %s, want 401", s.path, r.Status, r.Body)
			}
			if r := m.Get(srv, readertest.AsOwner, s.path+sep+"min_version=99", "Prefer", "wait=0.05"); r.Status != http.StatusServiceUnavailable {
				t.Errorf("GET %s?min_version=99 as the owner: %d %s, want 503 stale", s.path, r.Status, r.Body)
			}
		}
	}
	if checked != len(samples)*5 {
		t.Fatalf("%d exchanges checked, want %d", checked, len(samples)*5)
	}
	// An id nobody has is 404 whoever asks; what exists and is not theirs,
	// 403, whatever its kind.
	for _, path := range []string{"/v1/accounts/acc-nobody", "/v1/accounts/acc-nobody/transactions", "/v1/transfers/tr-nobody", "/v1/correlations/nobody"} {
		if r := m.Get(srv, readertest.AsStranger, path); r.Status != http.StatusNotFound {
			t.Errorf("GET %s as the stranger: %d %s, want 404", path, r.Status, r.Body)
		}
	}
	for _, path := range []string{"/v1/accounts/acc-bob", "/v1/accounts/acc-bob/transactions"} {
		if r := m.Get(srv, readertest.AsOwner, path); r.Status != http.StatusForbidden {
			t.Errorf("GET %s as the owner of another account: %d %s, want 403", path, r.Status, r.Body)
		}
	}
	if after := m.Snapshot(); !maps.Equal(before, after) {
		t.Fatalf("refused requests changed Redis: %d keys before, %d after", len(before), len(after))
	}

	// What the owner and the operator are served carries the owner.
	var sum accounts.Summary
	m.Get(srv, readertest.AsOwner, "/v1/accounts/acc-ada").JSON(t, &sum)
	var tr transferview.Summary
	m.Get(srv, readertest.AsOperator, "/v1/transfers/tr-ada").JSON(t, &tr)
	var page accountdomain.Transactions
	m.Get(srv, readertest.AsOwner, "/v1/accounts/acc-ada/transactions").JSON(t, &page)
	if sum.Principal != readertest.Owner || sum.Balance != 300 || tr.Principal != readertest.Owner || tr.Status != "completed" || len(page.Items) != 4 {
		t.Fatalf("summary %+v, transfer %+v, %d history entries", sum, tr, len(page.Items))
	}
}

// The document is served at /openapi.json, and every route of the reader is
// in it.
func TestOpenAPIDocumentIsServedAndComplete(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	r := p.Read("/openapi.json")
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	r.JSON(t, &doc)
	if r.Status != http.StatusOK || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("GET /openapi.json: %d, openapi %q", r.Status, doc.OpenAPI)
	}
	var paths []string
	for path := range doc.Paths {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	want := []string{"/healthz", "/metrics", "/openapi.json", "/readyz", "/v1/accounts", "/v1/accounts/{id}",
		"/v1/accounts/{id}/transactions", "/v1/correlations/{id}", "/v1/transfers/{id}"}
	if !slices.Equal(paths, want) {
		t.Fatalf("documented paths %v, want the reader's routes %v", paths, want)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := p.Read(path); r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.Status)
		}
	}
}

// newPipeline is the whole platform of this build's domains for one test
// (package readertest).
func newPipeline(t testing.TB, cfg reader.Config) *readertest.Pipeline {
	t.Helper()
	return readertest.NewPipeline(t, registered, cfg)
}
