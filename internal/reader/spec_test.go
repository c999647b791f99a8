package reader_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/reader"
)

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
	want := []string{"/healthz", "/metrics", "/openapi.json", "/readyz", "/v1/correlations/{id}", "/v1/counters/{id}"}
	if !slices.Equal(paths, want) {
		t.Fatalf("documented paths %v, want the reader's routes %v", paths, want)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := p.Read(path); r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.Status)
		}
	}
}
