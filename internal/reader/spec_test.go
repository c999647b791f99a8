package reader_test

import (
	"testing"

	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// The document is served at /openapi.json, and every route of the reader is
// in it.
func TestOpenAPIDocumentIsServedAndComplete(t *testing.T) {
	p := newPipeline(t, readertest.Config())
	readertest.CheckDocumentIsServed(t, p, []string{"/healthz", "/metrics", "/openapi.json", "/readyz", "/v1/correlations/{id}", "/v1/counters/{id}"})
}
