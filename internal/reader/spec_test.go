package reader_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/reader"
)

// specHandler serves the reader's OpenAPI document.
func specHandler(t testing.TB) http.Handler {
	t.Helper()
	return registered.API("reader").Handler()
}

// responseChecker checks every exchange with the reader against its OpenAPI
// document: every response a test provokes must be documented.
func responseChecker(t testing.TB) func(*http.Request, []byte, *http.Response, []byte) {
	v := apispec.NewValidator(t, registered.API("reader"))
	return func(req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
		t.Helper()
		v.Check(t, req, reqBody, resp.StatusCode, resp.Header, body)
	}
}

// The document is served at /openapi.json, and every route of the reader is
// in it.
func TestOpenAPIDocumentIsServedAndComplete(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	r := p.read("/openapi.json")
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if r.status != http.StatusOK || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("GET /openapi.json: %d, openapi %q", r.status, doc.OpenAPI)
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
		if r := p.read(path); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.status)
		}
	}
}
