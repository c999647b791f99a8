package reader_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// newModels builds every read model of the fixture from these events: the
// owner's counter and a move out of it to bob's counter (a "job" counter
// records it), carried out by the process manager on the owner's behalf,
// and one increment of bob's own that reuses the owner's correlation id.
func newModels(t *testing.T) *readertest.Models {
	t.Helper()
	m := readertest.NewModels(t, fixture)
	const pm = "process-manager"
	typ := domaintest.AggregateType
	created := m.Event(typ, "ctr-ada", "create-ada", domaintest.Created{Owner: "Ada", Unit: "items"}, nil, readertest.Owner, "")
	m.Event(typ, "ctr-ada", "create-ada", domaintest.Incremented{Amount: 500, Unit: "items", Note: "stocked"}, &created, readertest.Owner, "")
	m.Event(typ, "ctr-ada", "start-ada", domaintest.Started{}, nil, readertest.Operator, "")
	m.Event(typ, "ctr-bob", "create-bob", domaintest.Created{Owner: "Bob", Unit: "items"}, nil, "bob", "")
	m.Event(typ, "ctr-bob", "start-bob", domaintest.Started{}, nil, readertest.Operator, "")
	requested := m.Event(typ, "job-ada", "corr-ada", domaintest.Created{Owner: "Ada", Unit: "items"}, nil, readertest.Owner, "")
	taken := m.Event(typ, "ctr-ada", "corr-ada", domaintest.Decremented{Amount: 200, Unit: "items", Note: "job-ada"}, &requested, pm, readertest.Owner)
	added := m.Event(typ, "ctr-bob", "corr-ada", domaintest.Incremented{Amount: 200, Unit: "items", Note: "job-ada"}, &taken, pm, readertest.Owner)
	m.Event(typ, "ctr-bob", "corr-ada", domaintest.Incremented{Amount: 7, Unit: "items", Note: "cash"}, &added, "bob", "")
	m.Event(typ, "job-ada", "corr-ada", domaintest.Retired{Reason: "done"}, &added, pm, readertest.Owner)
	m.Event(typ, "ctr-bob", "corr-ada", domaintest.Incremented{Amount: 1, Unit: "items", Note: "migration"}, nil, "", "")
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
	readertest.CheckEveryRouteServesOnlyWhomItMay(t, m, srv, cfg.MaxWait, readertest.Access{
		// A request for each route of the document.
		Samples: map[string]readertest.RouteSample{
			"/v1/counters/{id}":     {Path: "/v1/counters/ctr-ada", Owner: 200, Stranger: 403, Versioned: true},
			"/v1/correlations/{id}": {Path: "/v1/correlations/corr-ada", Owner: 200, Stranger: 404},
			"/healthz":              {Path: "/healthz", Public: true},
			"/readyz":               {Path: "/readyz", Public: true},
			"/metrics":              {Path: "/metrics", Public: true},
			"/openapi.json":         {Path: "/openapi.json", Public: true},
		},
		// An id nobody has is 404 whoever asks; what exists and is not
		// theirs, 403, whatever its kind.
		Unknown: []string{"/v1/counters/ctr-nobody", "/v1/correlations/nobody"},
		Others:  []string{"/v1/counters/ctr-bob"},
	})

	// What the owner and the operator are served carries the owner.
	var sum, job domaintest.Summary
	m.Get(srv, readertest.AsOwner, "/v1/counters/ctr-ada").JSON(t, &sum)
	m.Get(srv, readertest.AsOperator, "/v1/counters/job-ada").JSON(t, &job)
	if sum.Principal != readertest.Owner || sum.Value != 300 || sum.Version != 4 || job.Principal != readertest.Owner || job.Status != "retired" {
		t.Fatalf("summary %+v, job %+v", sum, job)
	}
}

// A causation tree shows a caller who is not an operator the events they
// may see: their own, and those the process manager appended on their
// behalf; bounded, counted, truncated and waited for over those alone. An
// event whose cause they may not see is a root; nothing to see is 404.
func TestCorrelationShowsOnlyWhatTheCallerMaySee(t *testing.T) {
	m := newModels(t)
	srv := m.Server(reader.DefaultConfig(), false)
	small := reader.DefaultConfig()
	small.MaxCorrelationEvents = 2
	bounded := m.Server(small, false)
	bob, err := m.Auth.Signer.Token("bob", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var corr []log.Event
	for _, e := range m.Events {
		if e.CorrelationID == "corr-ada" {
			corr = append(corr, e)
		}
	}
	tree := func(srv *httptest.Server, c readertest.Caller, path string, headers ...string) (reader.CausationTree, readertest.Response) {
		t.Helper()
		r := m.Get(srv, c, path, headers...)
		var tr reader.CausationTree
		if r.Status == http.StatusOK {
			r.JSON(t, &tr)
		}
		return tr, r
	}
	mayView := func(subject string, isOperator bool) []string {
		var out []string
		for _, e := range corr {
			if (auth.Principal{Subject: subject, Operator: isOperator}).MaySee(e.Principal, e.OnBehalfOf) {
				out = append(out, e.ID.String())
			}
		}
		slices.Sort(out)
		return out
	}

	all, r := tree(srv, readertest.AsOperator, "/v1/correlations/corr-ada")
	if r.Status != http.StatusOK || all.Events != 6 || all.TotalEvents != 6 || all.Truncated || !slices.Equal(readertest.EventIDs(all), mayView(readertest.Operator, true)) {
		t.Fatalf("the operator: %d %s", r.Status, r.Body)
	}
	mine, r := tree(srv, readertest.AsOwner, "/v1/correlations/corr-ada")
	want := mayView(readertest.Owner, false)
	if r.Status != http.StatusOK || len(want) != 4 || mine.Events != 4 || mine.TotalEvents != 4 || mine.Truncated || !slices.Equal(readertest.EventIDs(mine), want) {
		t.Fatalf("the owner: %d %s; want the events %v", r.Status, r.Body, want)
	}
	// The owner's chain: the job created → taken → added (bob's increment
	// of his own in between is not theirs) → the job retired, one root.
	if len(mine.Roots) != 1 || mine.Roots[0].Type != "CounterCreated" || len(mine.Roots[0].Children) != 1 ||
		mine.Roots[0].Children[0].Children[0].Children[0].Type != "CounterRetired" {
		t.Fatalf("the owner's tree: %s", r.Body)
	}
	for _, n := range []*reader.Node{mine.Roots[0], mine.Roots[0].Children[0]} {
		if n.Principal == "" || (n.Principal != readertest.Owner && n.OnBehalfOf != readertest.Owner) {
			t.Fatalf("a node of the owner's tree: principal %q on behalf of %q", n.Principal, n.OnBehalfOf)
		}
	}
	// Bob sees his own deposit only, as a root: its cause is not his.
	r = m.Get(srv, readertest.Anonymous, "/v1/correlations/corr-ada", "Authorization", "Bearer "+bob)
	var his reader.CausationTree
	r.JSON(t, &his)
	if r.Status != http.StatusOK || his.Events != 1 || his.TotalEvents != 1 || len(his.Roots) != 1 || his.Roots[0].Principal != "bob" ||
		!slices.Equal(readertest.EventIDs(his), mayView("bob", false)) {
		t.Fatalf("bob: %d %s", r.Status, r.Body)
	}
	if _, r := tree(srv, readertest.AsStranger, "/v1/correlations/corr-ada"); r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "unknown-correlation") {
		t.Fatalf("the stranger: %d %s, want 404 as for an unknown correlation", r.Status, r.Body)
	}
	// The bound applies to what each may see.
	if tr, r := tree(bounded, readertest.AsOwner, "/v1/correlations/corr-ada"); r.Status != http.StatusOK || tr.Events != 2 || tr.TotalEvents != 4 || !tr.Truncated {
		t.Fatalf("the owner with a bound of 2: %d %s", r.Status, r.Body)
	}
	if tr, r := tree(bounded, readertest.AsOperator, "/v1/correlations/corr-ada"); r.Status != http.StatusOK || tr.Events != 2 || tr.TotalEvents != 6 || !tr.Truncated {
		t.Fatalf("the operator with a bound of 2: %d %s", r.Status, r.Body)
	}
	// Read-your-writes: the owner's own event is there; bob's, never.
	var bobs, ownersLast log.Event
	for _, e := range corr {
		switch {
		case e.Principal == "bob":
			bobs = e
		case e.OnBehalfOf == readertest.Owner:
			ownersLast = e
		}
	}
	if _, r := tree(srv, readertest.AsOwner, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", ownersLast.GlobalPosition)); r.Status != http.StatusOK {
		t.Fatalf("the owner at the position of its event: %d %s", r.Status, r.Body)
	}
	for c, present := range map[readertest.Caller]int64{readertest.AsOwner: 4, readertest.AsStranger: 0} {
		_, r := tree(srv, c, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", bobs.GlobalPosition), "Prefer", "wait=0.05")
		var prob struct {
			Type          string
			EventsPresent int64
		}
		r.JSON(t, &prob)
		if r.Status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.EventsPresent != present {
			t.Fatalf("%s at the position of bob's event: %d %s; want stale with eventsPresent %d", c, r.Status, r.Body, present)
		}
	}
	if _, r := tree(srv, readertest.AsOperator, fmt.Sprintf("/v1/correlations/corr-ada?min_position=%d", bobs.GlobalPosition)); r.Status != http.StatusOK {
		t.Fatalf("the operator at the position of bob's event: %d %s", r.Status, r.Body)
	}
}

// A reader without an authenticator fails closed: the public paths only,
// whatever token comes.
func TestReaderWithoutAuthenticatorRefusesEveryone(t *testing.T) {
	m := newModels(t)
	srv := m.Server(reader.DefaultConfig(), true)
	for _, path := range []string{"/v1/counters/ctr-ada", "/v1/counters/job-ada", "/v1/correlations/corr-ada", "/v1/nothing"} {
		for _, c := range []readertest.Caller{readertest.Anonymous, readertest.AsOwner, readertest.AsOperator} {
			if r := m.Get(srv, c, path); r.Status != http.StatusUnauthorized {
				t.Errorf("GET %s as %s without an authenticator: %d %s", path, c, r.Status, r.Body)
			}
		}
	}
	for _, path := range reader.PublicPaths() {
		if r := m.Get(srv, readertest.Anonymous, path); r.Status != http.StatusOK {
			t.Errorf("GET %s without an authenticator: %d", path, r.Status)
		}
	}
}

// Headers over the reader's limit get a 431 problem document (checked
// against the OpenAPI document), before anything else.
func TestHugeHeadersGetAProblem(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	r := p.Read("/v1/counters/a1", "X-Padding", strings.Repeat("p", 40<<10))
	if r.Status != http.StatusRequestHeaderFieldsTooLarge || r.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.Body), "headers-too-large") {
		t.Fatalf("%d %s: %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
}
