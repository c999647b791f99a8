package readertest

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// CheckDocumentIsServed fails t unless p's reader serves an OpenAPI 3.1
// document at /openapi.json whose paths are routes (sorted), and answers
// its health and metrics routes.
func CheckDocumentIsServed(t testing.TB, p *Pipeline, routes []string) {
	t.Helper()
	r := p.Read("/openapi.json")
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	r.JSON(t, &doc)
	if r.Status != http.StatusOK || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("GET /openapi.json: %d, openapi %q", r.Status, doc.OpenAPI)
	}
	paths := slices.Sorted(maps.Keys(doc.Paths))
	if !slices.Equal(paths, routes) {
		t.Fatalf("documented paths %v, want the reader's routes %v", paths, routes)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := p.Read(path); r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.Status)
		}
	}
}
