package writertest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Request is a request a fuzz target starts from: its method, path (from
// the writer's root), body and the headers a fuzzer may vary.
type Request struct {
	Method, Path, Body, ContentType, IfMatch, IdempotencyKey string
}

// FuzzCommands fuzzes the handler of process 0 of st with seeds as its
// corpus's start: arbitrary requests, from the owner of the aggregate
// aggregateType id (which st holds, owned by DefaultPrincipal), a stranger
// or nobody, following from the body's length. The handler must never
// panic, never answer 5xx, answer every error as a problem document, never
// store an event for a request it refused or for a GET, never store one
// for a request without a token, never change the aggregate for anyone
// but its owner, and answer as st.Spec says.
func FuzzCommands(f *testing.F, st *Stack, aggregateType, id string, seeds []Request) {
	f.Helper()
	for _, s := range seeds {
		f.Add(s.Method, s.Path, s.Body, s.ContentType, s.IfMatch, s.IdempotencyKey)
	}
	// Mostly the owner, else a stranger or nobody (neither may ever store
	// anything).
	callers := []string{st.Bearer, st.Bearer, st.Authorization("mallory"), ""}

	f.Fuzz(func(t *testing.T, method, path, body, contentType, ifMatch, key string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://writer"+path, strings.NewReader(body))
		if err != nil {
			return // not an HTTP request a server could receive
		}
		authorization := callers[len(body)%len(callers)]
		for name, value := range map[string]string{"Content-Type": contentType, "If-Match": ifMatch, "Idempotency-Key": key, "Authorization": authorization} {
			if value != "" {
				req.Header.Set(name, value)
			}
		}
		before := st.CountEvents(t)
		version := st.StreamVersion(t, aggregateType, id)
		rec := httptest.NewRecorder()
		st.Handlers[0].ServeHTTP(rec, req)
		after := st.CountEvents(t)
		st.Spec.Check(t, req, []byte(body), rec.Code, rec.Header(), rec.Body.Bytes())

		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %q: status %d with content type %q", method, path, rec.Code, ct)
			}
			if after != before {
				t.Fatalf("%s %q: refused with %d but stored %d events", method, path, rec.Code, after-before)
			}
		}
		if method != "POST" && after != before {
			t.Fatalf("%s %q stored events", method, path)
		}
		if authorization == "" && after != before {
			t.Fatalf("%s %q without a token stored %d events (status %d)", method, path, after-before, rec.Code)
		}
		if v := st.StreamVersion(t, aggregateType, id); authorization != st.Bearer && v != version {
			t.Fatalf("%s %q from a stranger moved %s from version %d to %d (status %d)", method, path, id, version, v, rec.Code)
		}
	})
}
