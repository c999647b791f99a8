package writer_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzCommands throws arbitrary requests at the writer's handler, from the
// owner of the counter a1, a stranger or nobody: it must never panic, never
// answer 5xx to bad input, answer every error as a problem document, never
// store an event for a request it refused or change a1 for anyone but its
// owner, and answer as the assembled writer document says. It runs on the
// platform's fixture domain; each domain fuzzes its own commands the same
// way in its package.
//
//	go test -run '^$' -fuzz FuzzCommands -fuzztime 60s ./internal/writer/
func FuzzCommands(f *testing.F) {
	seeds := []struct{ method, path, body, contentType, ifMatch, key string }{
		{"POST", "/v1/counters", `{"id":"f1","owner":"Ada","unit":"items","initial":100}`, "application/json", "", ""},
		{"POST", "/v1/counters/a1/start", ``, "", "", ""},
		{"POST", "/v1/counters/a1/increments", `{"amount":100,"unit":"items","note":"x"}`, "application/json", `"3"`, "k1"},
		{"POST", "/v1/counters/a1/decrements", `{"amount":100,"unit":"items","note":"x"}`, "application/json", "", ""},
		{"POST", "/v1/counters/a1/retire", `{"reason":"bye"}`, "application/json", "", ""},
		{"POST", "/v1/counters/a1/increments", `{"amount":1e3,"unit":"items","note":"x"}`, "application/json", "", ""},
		{"POST", "/v1/counters/%2e%2e/increments", `{}`, "application/json", "", ""},
		{"GET", "/v1/streams/counter/a1?after=-1&limit=99999", ``, "", "", ""},
		{"GET", "/v1/streams/counter/a1/state?at=yesterday", ``, "", "", ""},
		{"POST", "/v1/counters", `{"owner":"\u0000","unit":"items"}`, "application/merge-patch+json", "*", "\x00"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body, s.contentType, s.ifMatch, s.key)
	}
	st := newStack(f, 1)
	openActive(st, "a1", 1000)
	// Who sends a request follows from its body's length: mostly a1's owner,
	// else a stranger or nobody (neither may ever store anything).
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
		a1Version := st.StreamVersion(t, "counter", "a1")
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
		if v := st.StreamVersion(t, "counter", "a1"); authorization != st.Bearer && v != a1Version {
			t.Fatalf("%s %q from a stranger moved a1 from version %d to %d (status %d)", method, path, a1Version, v, rec.Code)
		}
	})
}
