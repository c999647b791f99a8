package accountdomain_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// FuzzQueries throws arbitrary requests at the reader's handler, over read
// models that hold two accounts of the owner, from the owner, a stranger,
// an operator, a forged token or nobody (caller, modulo 5): it must never
// panic, answer 5xx only as the documented "stale" 503 of a version it
// cannot see yet, answer every error as a problem document, answer as
// the reader document of this build says, and serve nobody but the owner and the
// operator anything but the public paths.
//
//	go test -run '^$' -fuzz FuzzQueries -fuzztime 60s ./internal/domains/accountdomain/
func FuzzQueries(f *testing.F) {
	seeds := []struct {
		method, path, minVersion, ifNoneMatch string
		caller                                readertest.Caller
	}{
		{"GET", "/v1/accounts/fz-1", "", "", readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1?min_version=3", "", `"3"`, readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1?min_version=99", "", "", readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1", `"2"`, "", readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1/transactions?limit=1&cursor=x", "", "", readertest.AsOwner},
		{"GET", "/v1/accounts?status=active&limit=1", "", "", readertest.AsOperator},
		{"GET", "/v1/accounts?sort=balance&currency=EUR", "", "", readertest.AsOperator},
		{"GET", "/v1/accounts?status=active&sort", "", "", readertest.AsOperator},
		{"GET", "/v1/correlations/c-1?min_position=1", "", "", readertest.AsOwner},
		{"GET", "/v1/transfers/..%2Fx", "", "", readertest.AsOwner},
		{"HEAD", "/v1/accounts/%2e%2e/transactions", "", "*", readertest.AsOwner},
		{"DELETE", "/v1/accounts/fz-1", "", "", readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1?min_version=99", "", "*", readertest.AsStranger},
		{"GET", "/v1/accounts/fz-0/transactions", "", "", readertest.AsStranger},
		{"GET", "/v1/accounts?status=active", "", "", readertest.AsOwner},
		{"GET", "/v1/accounts/fz-1", "", "", readertest.Anonymous},
		{"GET", "/v1/accounts/fz-1", "", "", readertest.Forged},
		{"GET", "/healthz", "", "", readertest.Anonymous},
		{"HEAD", "/metrics", "", "", readertest.Anonymous},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.minVersion, s.ifNoneMatch, byte(s.caller))
	}
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 20 * time.Millisecond // a version out of reach answers "stale" at once
	p := newPipeline(f, cfg)
	var last written
	for i := range 2 {
		last = openAccount(p, fmt.Sprintf("fz-%d", i), 100)
	}
	p.Read(fmt.Sprintf("/v1/accounts/fz-1/transactions?min_version=%d", last.version))
	spec := apispec.NewValidator(f, registered.API("reader"))
	handler := p.Reader.Config.Handler
	authorization := make([]string, readertest.Forged+1)
	for c := range authorization {
		authorization[c] = p.Auth.Authorization(f, readertest.Caller(c))
	}

	f.Fuzz(func(t *testing.T, method, path, minVersion, ifNoneMatch string, who byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://reader"+path, nil)
		if err != nil {
			return // not an HTTP request a server could receive
		}
		c := readertest.Caller(who % byte(len(authorization)))
		if a := authorization[c]; a != "" {
			req.Header.Set("Authorization", a)
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
		// The stranger owns nothing here, and the others are not
		// authenticated: they get nothing but the public paths' answers,
		// not even a "stale" that would tell a version (one of nothing, as
		// for an unknown id, tells nothing).
		var progress struct{ CurrentVersion, EventsPresent int64 }
		if stale {
			_ = json.Unmarshal(rec.Body.Bytes(), &progress)
		}
		served := rec.Code < 400 || (stale && (progress.CurrentVersion > 0 || progress.EventsPresent > 0))
		if served && (c == readertest.AsStranger || c == readertest.Anonymous || c == readertest.Forged) && !slices.Contains(reader.PublicPaths(), req.URL.Path) {
			t.Fatalf("%s %q as %s: status %d: %s", method, path, c, rec.Code, rec.Body)
		}
		if (c == readertest.Anonymous || c == readertest.Forged) && !slices.Contains(reader.PublicPaths(), req.URL.Path) && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusBadRequest {
			t.Fatalf("%s %q as %s: status %d, want 401 (or 400 for a malformed path or query)", method, path, c, rec.Code)
		}
	})
}
