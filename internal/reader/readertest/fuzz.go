package readertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/reader"
)

// Query is a request a fuzz target of the reader starts from: its method,
// path (from the reader's root), the headers a fuzzer may vary, and who
// sends it.
type Query struct {
	Method, Path, MinVersion, IfNoneMatch string
	Caller                                Caller
}

// FuzzQueries fuzzes the handler of p's reader with seeds as its corpus's
// start: arbitrary requests from the owner, a stranger, an operator, a
// forged token or nobody (the caller byte, modulo 5). The reader should
// hold the owner's aggregates, and answer a version out of reach at once
// (a short MaxWait). It must never panic, answer 5xx only as the
// documented "stale" 503 of a version it cannot see yet, answer every
// error as a problem document, answer as the reader document says, and
// serve nobody but the owner and the operator anything but the public
// paths.
func FuzzQueries(f *testing.F, p *Pipeline, seeds []Query) {
	f.Helper()
	for _, s := range seeds {
		f.Add(s.Method, s.Path, s.MinVersion, s.IfNoneMatch, byte(s.Caller))
	}
	handler := p.Reader.Config.Handler
	authorization := make([]string, Forged+1)
	for c := range authorization {
		authorization[c] = p.Auth.Authorization(f, Caller(c))
	}

	f.Fuzz(func(t *testing.T, method, path, minVersion, ifNoneMatch string, who byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://reader"+path, nil)
		if err != nil {
			return // not an HTTP request a server could receive
		}
		c := Caller(who % byte(len(authorization)))
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
		p.check.Check(t, req, nil, rec.Code, rec.Header(), rec.Body.Bytes())
		checkFuzzedAnswer(t, method, path, req, c, rec)
	})
}

// checkFuzzedAnswer fails t if rec, the answer to req (method path, as the
// fuzzer made them) from c, is a 5xx but "stale", an error but a problem
// document (HEAD aside), or anything but a public path's answer served to
// the stranger, nobody or a forged token.
func checkFuzzedAnswer(t *testing.T, method, path string, req *http.Request, c Caller, rec *httptest.ResponseRecorder) {
	t.Helper()
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
	// authenticated: they get nothing but the public paths' answers, not
	// even a "stale" that would tell a version (one of nothing, as for an
	// unknown id, tells nothing).
	var progress struct{ CurrentVersion, EventsPresent int64 }
	if stale {
		_ = json.Unmarshal(rec.Body.Bytes(), &progress)
	}
	public := slices.Contains(reader.PublicPaths(), req.URL.Path)
	served := rec.Code < 400 || (stale && (progress.CurrentVersion > 0 || progress.EventsPresent > 0))
	if served && (c == AsStranger || c == Anonymous || c == Forged) && !public {
		t.Fatalf("%s %q as %s: status %d: %s", method, path, c, rec.Code, rec.Body)
	}
	if (c == Anonymous || c == Forged) && !public && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusBadRequest {
		t.Fatalf("%s %q as %s: status %d, want 401 (or 400 for a malformed path or query)", method, path, c, rec.Code)
	}
}
