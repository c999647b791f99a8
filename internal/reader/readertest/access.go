package readertest

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tributary-es/tributary/internal/reader"
)

// RouteSample is a request for one route of the reader's document, for
// CheckEveryRouteServesOnlyWhomItMay: its path, what the owner and the
// stranger must get, whether it takes a version (min_version) and whether
// it is public.
type RouteSample struct {
	Path              string
	Owner, Stranger   int
	Versioned, Public bool
}

// Access is what CheckEveryRouteServesOnlyWhomItMay asks of a reader.
type Access struct {
	// Samples are a request for each route of the document, by its path
	// template; a route without one fails the check, so a new route cannot
	// go untested.
	Samples map[string]RouteSample
	// Unknown are paths of ids nobody has: 404 to the stranger.
	Unknown []string
	// Others are paths of what exists but is not the owner's: 403 to the
	// owner.
	Others []string
}

// CheckEveryRouteServesOnlyWhomItMay checks G11 on every route of the
// reader document of m's registry, on srv (m's reader, with a MaxWait of
// maxWait): the public ones serve anyone; every other one answers 401 with
// a bearer challenge without valid credentials, serves the owner and the
// operator as the samples say and refuses the stranger — also when it asks
// for a version (at once, no "stale" that tells it) or sends If-None-Match
// (no 304). Every error is a problem document, and the refused requests
// change nothing in Redis.
func CheckEveryRouteServesOnlyWhomItMay(t *testing.T, m *Models, srv *httptest.Server, maxWait time.Duration, a Access) {
	t.Helper()
	doc := m.reg.API("reader").OpenAPI()
	if got, want := slices.Sorted(maps.Keys(doc.Paths.Map())), slices.Sorted(maps.Keys(a.Samples)); !slices.Equal(got, want) {
		t.Fatalf("the document's routes %v, the test's %v", got, want)
	}
	before := m.Snapshot()
	if len(before) < 20 {
		t.Fatalf("only %d keys under the prefix: too weak a test", len(before))
	}
	checked := 0
	for template, item := range doc.Paths.Map() {
		s := a.Samples[template]
		for method, op := range item.Operations() {
			if method != http.MethodGet {
				t.Fatalf("%s %s: the test sends GETs only", method, template)
			}
			checkPublic(t, template, op, s.Public)
			checked += checkCallers(t, m, srv, s)
			if s.Versioned {
				checkVersionRefused(t, m, srv, s.Path, maxWait)
			}
		}
	}
	if checked != len(a.Samples)*5 {
		t.Fatalf("%d exchanges checked, want %d", checked, len(a.Samples)*5)
	}
	for _, path := range a.Unknown {
		if r := m.Get(srv, AsStranger, path); r.Status != http.StatusNotFound {
			t.Errorf("GET %s as the stranger: %d %s, want 404", path, r.Status, r.Body)
		}
	}
	for _, path := range a.Others {
		if r := m.Get(srv, AsOwner, path); r.Status != http.StatusForbidden {
			t.Errorf("GET %s as the owner of another aggregate: %d %s, want 403", path, r.Status, r.Body)
		}
	}
	if after := m.Snapshot(); !maps.Equal(before, after) {
		t.Fatalf("refused requests changed Redis: %d keys before, %d after", len(before), len(after))
	}
}

// checkPublic fails t unless the route template is public (op has an empty
// security requirement) in the document, in the test (public) and in
// reader.PublicPaths alike, or in none.
func checkPublic(t *testing.T, template string, op *openapi3.Operation, public bool) {
	t.Helper()
	documented := op.Security != nil && len(*op.Security) == 0
	if documented != public || documented != slices.Contains(reader.PublicPaths(), template) {
		t.Fatalf("%s: public in the document %v, in the test %v, in reader.PublicPaths %v", template, documented, public,
			slices.Contains(reader.PublicPaths(), template))
	}
}

// checkCallers sends s to srv as every caller and fails t unless each gets
// what it may; it returns the number of exchanges checked.
func checkCallers(t *testing.T, m *Models, srv *httptest.Server, s RouteSample) int {
	t.Helper()
	checked := 0
	for _, c := range []Caller{Anonymous, Forged, AsStranger, AsOwner, AsOperator} {
		want := http.StatusOK
		switch {
		case s.Public:
		case c == Anonymous || c == Forged:
			want = http.StatusUnauthorized
		case c == AsStranger:
			want = s.Stranger
		case c == AsOwner:
			want = s.Owner
		}
		r := m.Get(srv, c, s.Path)
		if r.Status != want {
			t.Errorf("GET %s as %s: %d %s, want %d", s.Path, c, r.Status, r.Body, want)
		}
		if want == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s as %s: 401 without a bearer challenge", s.Path, c)
		}
		if want >= 400 && r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s as %s: %d as %s", s.Path, c, r.Status, r.Header.Get("Content-Type"))
		}
		if want == http.StatusOK && c == AsStranger && !s.Public {
			t.Errorf("GET %s: the stranger is served", s.Path)
		}
		checked++
	}
	return checked
}

// checkVersionRefused asks path for a version out of reach: the owner
// waits and hears it is stale; the stranger is refused at once (well
// within maxWait), and If-None-Match with any tag gets it no 304; nobody
// is refused as unauthenticated.
func checkVersionRefused(t *testing.T, m *Models, srv *httptest.Server, path string, maxWait time.Duration) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	started := time.Now()
	if r := m.Get(srv, AsStranger, path+sep+"min_version=99", "If-None-Match", "*"); r.Status != http.StatusForbidden {
		t.Errorf("GET %s?min_version=99 as the stranger: %d %s, want 403", path, r.Status, r.Body)
	}
	if waited := time.Since(started); waited > maxWait/2 {
		t.Errorf("GET %s?min_version=99 as the stranger: refused after %v, want at once", path, waited)
	}
	if r := m.Get(srv, AsStranger, path, "If-None-Match", "*"); r.Status != http.StatusForbidden {
		t.Errorf("GET %s If-None-Match * as the stranger: %d %s, want 403", path, r.Status, r.Body)
	}
	if r := m.Get(srv, Anonymous, path+sep+"min_version=99"); r.Status != http.StatusUnauthorized {
		t.Errorf("GET %s?min_version=99 anonymously: %d %s, want 401", path, r.Status, r.Body)
	}
	if r := m.Get(srv, AsOwner, path+sep+"min_version=99", "Prefer", "wait=0.05"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("GET %s?min_version=99 as the owner: %d %s, want 503 stale", path, r.Status, r.Body)
	}
}
