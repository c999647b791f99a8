package reader_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// Bad input gets a problem document and the status that says why: hostile
// ids and paths, versions asked for wrongly, unknown models and routes, on
// the fixture's versioned query and the platform's correlations. (Each
// domain tests its own queries' parameters in its package.)
func TestBadQueriesGetProblems(t *testing.T) {
	p := newPipeline(t, readertest.Config())
	v := openActive(p, "bad-1", 100)
	p.Read(fmt.Sprintf("/v1/counters/bad-1?min_version=%d", v.version)) // built
	tests := []readertest.BadQuery{
		{Path: "/v1/counters/" + strings.Repeat("x", 65), Status: 400, Problem: "invalid-id"},
		{Path: "/v1/counters/%C3%A9t%C3%A9", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/counters/a%2F..%2Fb", Status: 400, Problem: "invalid-path"}, // decoded, a ".." segment
		{Path: "/v1/counters/./bad-1", Status: 400, Problem: "invalid-path"},
		{Path: "/v1/counters//x", Status: 400, Problem: "invalid-path"},
		{Path: "/.", Status: 400, Problem: "invalid-path"}, // found by FuzzQueries: the router redirected it
		{Path: "/v1/counters/a%00b", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/counters/-leading-dash", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/counters/nobody", Status: 404, Problem: "unknown-counter"},
		{Path: "/v1/counters/bad-1?min_version=0", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/counters/bad-1?min_version=x", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/counters/bad-1?min_version=-3", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/counters/bad-1", Headers: []string{reader.MinVersionHeader, "soon"}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/counters/bad-1", Headers: []string{reader.MinVersionHeader, `"0"`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/counters/bad-1", Headers: []string{reader.MinVersionHeader, `"7`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/counters/bad-1", Headers: []string{reader.MinVersionHeader, `+7`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/correlations/" + strings.Repeat("c", 129), Status: 400, Problem: "invalid-id"},
		{Path: "/v1/correlations/x?min_position=0", Status: 400, Problem: "invalid-query"},
		// A parameter without a value is refused, not read as absent.
		{Path: "/v1/counters/bad-1?min_version=", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/correlations/x?min_position", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/nothing", Status: 404, Problem: "not-found"},
	}
	if r := p.Do(p.Reader, http.MethodDelete, "/v1/counters/bad-1", ""); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE a counter: %d Allow %q %s", r.Status, r.Header.Get("Allow"), r.Body)
	}
	readertest.CheckBadQueries(t, p, tests)
}

// The summary carries its version as ETag; If-None-Match with it answers
// 304 until the counter changes.
func TestETagAndNotModified(t *testing.T) {
	p := newPipeline(t, readertest.Config())
	v := openActive(p, "etag-1", 100)
	r := p.Read(fmt.Sprintf("/v1/counters/etag-1?min_version=%d", v.version))
	tag := r.Header.Get("ETag")
	if r.Status != http.StatusOK || tag != fmt.Sprintf(`"%d"`, v.version) {
		t.Fatalf("read: %d ETag %q %s", r.Status, tag, r.Body)
	}
	for _, inm := range []string{tag, "W/" + tag, `"999", ` + tag, "*"} {
		if r := p.Read("/v1/counters/etag-1", "If-None-Match", inm); r.Status != http.StatusNotModified || len(r.Body) != 0 || r.Header.Get("ETag") != tag {
			t.Fatalf("If-None-Match %s: %d %q", inm, r.Status, r.Body)
		}
	}
	c := p.Command(http.StatusOK, "/v1/counters/etag-1/increments", `{"amount":5,"unit":"items","note":"gift"}`)
	r = p.Read("/v1/counters/etag-1", "If-None-Match", tag, reader.MinVersionHeader, fmt.Sprint(c.StreamVersion))
	if r.Status != http.StatusOK || r.Header.Get("ETag") != fmt.Sprintf(`"%d"`, c.StreamVersion) {
		t.Fatalf("after an increment with the old ETag: %d %s", r.Status, r.Body)
	}
}
