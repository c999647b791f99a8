package reader_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/reader"
)

// FuzzQueries throws arbitrary requests at the reader's handler, over read
// models that hold two accounts: it must never panic, answer 5xx only as the
// documented "stale" 503 of a version it cannot see yet, answer every error
// as a problem document, and answer as schemas/openapi/reader.yaml says.
//
//	go test -run '^$' -fuzz FuzzQueries -fuzztime 60s ./internal/reader/
func FuzzQueries(f *testing.F) {
	seeds := []struct{ method, path, minVersion, ifNoneMatch string }{
		{"GET", "/v1/accounts/fz-1", "", ""},
		{"GET", "/v1/accounts/fz-1?min_version=3", "", `"3"`},
		{"GET", "/v1/accounts/fz-1?min_version=99", "", ""},
		{"GET", "/v1/accounts/fz-1", `"2"`, ""},
		{"GET", "/v1/accounts/fz-1/transactions?limit=1&cursor=x", "", ""},
		{"GET", "/v1/accounts?status=active&limit=1", "", ""},
		{"GET", "/v1/accounts?sort=balance&currency=EUR", "", ""},
		{"GET", "/v1/accounts?status=active&sort", "", ""},
		{"GET", "/v1/correlations/c-1?min_position=1", "", ""},
		{"GET", "/v1/transfers/..%2Fx", "", ""},
		{"HEAD", "/v1/accounts/%2e%2e/transactions", "", "*"},
		{"DELETE", "/v1/accounts/fz-1", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.minVersion, s.ifNoneMatch)
	}
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 20 * time.Millisecond // a version out of reach answers "stale" at once
	p := newPipeline(f, cfg)
	var last written
	for i := range 2 {
		last = p.openActive(fmt.Sprintf("fz-%d", i), 100)
	}
	p.read(fmt.Sprintf("/v1/accounts/fz-1/transactions?min_version=%d", last.version))
	spec := apispec.NewValidator(f, "reader")
	handler := p.reader.Config.Handler

	f.Fuzz(func(t *testing.T, method, path, minVersion, ifNoneMatch string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://reader"+path, nil)
		if err != nil {
			return // not an HTTP request a server could receive
		}
		for name, value := range map[string]string{reader.MinVersionHeader: minVersion, "If-None-Match": ifNoneMatch} {
			if value != "" {
				req.Header.Set(name, value)
			}
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		spec.Check(t, req, nil, rec.Code, rec.Header(), rec.Body.Bytes())

		stale := rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), `"https://tributary.dev/problems/stale"`)
		if rec.Code >= 500 && !stale {
			t.Fatalf("%s %q: status %d: %s", method, path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && method != http.MethodHead {
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %q: status %d with content type %q", method, path, rec.Code, ct)
			}
		}
	})
}
