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
	p := newPipeline(t, reader.DefaultConfig())
	v := openActive(p, "bad-1", 100)
	p.Read(fmt.Sprintf("/v1/counters/bad-1?min_version=%d", v.version)) // built
	tests := []struct {
		path   string
		header []string
		status int
		typ    string
	}{
		{"/v1/counters/" + strings.Repeat("x", 65), nil, 400, "invalid-id"},
		{"/v1/counters/%C3%A9t%C3%A9", nil, 400, "invalid-id"},
		{"/v1/counters/a%2F..%2Fb", nil, 400, "invalid-path"}, // decoded, a ".." segment
		{"/v1/counters/./bad-1", nil, 400, "invalid-path"},
		{"/v1/counters//x", nil, 400, "invalid-path"},
		{"/.", nil, 400, "invalid-path"}, // found by FuzzQueries: the router redirected it
		{"/v1/counters/a%00b", nil, 400, "invalid-id"},
		{"/v1/counters/-leading-dash", nil, 400, "invalid-id"},
		{"/v1/counters/nobody", nil, 404, "unknown-counter"},
		{"/v1/counters/bad-1?min_version=0", nil, 400, "invalid-query"},
		{"/v1/counters/bad-1?min_version=x", nil, 400, "invalid-query"},
		{"/v1/counters/bad-1?min_version=-3", nil, 400, "invalid-query"},
		{"/v1/counters/bad-1", []string{reader.MinVersionHeader, "soon"}, 400, "invalid-min-version"},
		{"/v1/counters/bad-1", []string{reader.MinVersionHeader, `"0"`}, 400, "invalid-min-version"},
		{"/v1/counters/bad-1", []string{reader.MinVersionHeader, `"7`}, 400, "invalid-min-version"},
		{"/v1/counters/bad-1", []string{reader.MinVersionHeader, `+7`}, 400, "invalid-min-version"},
		{"/v1/correlations/" + strings.Repeat("c", 129), nil, 400, "invalid-id"},
		{"/v1/correlations/x?min_position=0", nil, 400, "invalid-query"},
		// A parameter without a value is refused, not read as absent.
		{"/v1/counters/bad-1?min_version=", nil, 400, "invalid-query"},
		{"/v1/correlations/x?min_position", nil, 400, "invalid-query"},
		{"/v1/nothing", nil, 404, "not-found"},
	}
	if r := p.Do(p.Reader, http.MethodDelete, "/v1/counters/bad-1", ""); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE a counter: %d Allow %q %s", r.Status, r.Header.Get("Allow"), r.Body)
	}
	for _, tc := range tests {
		r := p.ReadAs(readertest.AsOwner, tc.path, tc.header...)
		var prob struct{ Type, Title string }
		r.JSON(t, &prob)
		if r.Status != tc.status || prob.Type != "https://tributary.dev/problems/"+tc.typ ||
			r.Header.Get("Content-Type") != "application/problem+json" || prob.Title == "" {
			t.Errorf("GET %s %v: %d %s %s; want %d %s", tc.path, tc.header, r.Status, r.Header.Get("Content-Type"), r.Body, tc.status, tc.typ)
		}
	}
}

// The summary carries its version as ETag; If-None-Match with it answers
// 304 until the counter changes.
func TestETagAndNotModified(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
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
