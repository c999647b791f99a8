package writer_test

import (
	"net/http"
	"strings"
	"testing"
)

// Every kind of bad input gets a clear RFC 9457 problem and changes nothing (G10).
func TestBadInputGetsProblemAndChangesNothing(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 1000)
	st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"pending","owner":"Bo","unit":"items"}`)
	openActive(st, "retired", 0)
	st.Must(http.StatusOK, "POST", "/v1/counters/retired/retire", `{"reason":"done"}`)

	const increment = `{"amount":100,"unit":"items","note":"x"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		problem                  string // the problem type's last segment
	}{
		{"malformed JSON", "POST", "/v1/counters/a1/increments", `{"amount":`, nil, 400, "malformed-json"},
		{"not an object", "POST", "/v1/counters/a1/increments", `[1,2]`, nil, 400, "wrong-type"},
		{"unknown field", "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"x","extra":1}`, nil, 400, "malformed-json"},
		{"string amount", "POST", "/v1/counters/a1/increments", `{"amount":"100","unit":"items","note":"x"}`, nil, 400, "wrong-type"},
		{"fractional amount", "POST", "/v1/counters/a1/increments", `{"amount":1.5,"unit":"items","note":"x"}`, nil, 400, "wrong-type"},
		{"amount beyond int64", "POST", "/v1/counters/a1/increments", `{"amount":99999999999999999999,"unit":"items","note":"x"}`, nil, 400, "wrong-type"},
		{"two objects", "POST", "/v1/counters/a1/increments", increment + increment, nil, 400, "malformed-json"},
		{"trailing garbage", "POST", "/v1/counters/a1/increments", increment + `x`, nil, 400, "malformed-json"},
		{"empty body", "POST", "/v1/counters/a1/increments", ``, nil, 400, "empty-body"},
		{"null body", "POST", "/v1/counters/a1/start", `null`, nil, 400, "wrong-type"},
		{"null body with members required", "POST", "/v1/counters/a1/increments", ` null `, nil, 400, "wrong-type"},
		{"member name in another case", "POST", "/v1/counters/a1/increments", `{"Amount":1,"unit":"items","note":"x"}`, nil, 400, "malformed-json"},
		{"member of an empty command", "POST", "/v1/counters/a1/start", `{"reason":"x"}`, nil, 400, "malformed-json"},
		{"negative amount", "POST", "/v1/counters/a1/increments", `{"amount":-5,"unit":"items","note":"x"}`, nil, 400, "invalid-amount"},
		{"missing note", "POST", "/v1/counters/a1/increments", `{"amount":5,"unit":"items"}`, nil, 400, "missing-note"},
		{"missing owner", "POST", "/v1/counters", `{"unit":"items"}`, nil, 400, "missing-owner"},
		{"unsupported unit", "POST", "/v1/counters", `{"owner":"Ada","unit":"XXX"}`, nil, 400, "unsupported-unit"},
		{"oversize body", "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"` + strings.Repeat("x", 70_000) + `"}`, nil, 413, "body-too-large"},
		{"wrong content type", "POST", "/v1/counters/a1/increments", increment, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"unknown command", "POST", "/v1/counters/a1/explode", `{}`, nil, 404, "not-found"},
		{"wrong method", "DELETE", "/v1/counters/a1", ``, nil, 404, "not-found"},
		{"unknown counter", "POST", "/v1/counters/nobody/increments", increment, nil, 404, "counter-not-found"},
		{"already created", "POST", "/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`, nil, 409, "already-created"},
		{"below zero", "POST", "/v1/counters/a1/decrements", `{"amount":5000,"unit":"items","note":"x"}`, nil, 422, "below-zero"},
		{"inactive counter", "POST", "/v1/counters/pending/increments", increment, nil, 422, "counter-not-active"},
		{"retired counter", "POST", "/v1/counters/retired/increments", increment, nil, 422, "counter-not-active"},
		{"step limit", "POST", "/v1/counters/a1/increments", `{"amount":1000001,"unit":"items","note":"x"}`, nil, 422, "step-limit-exceeded"},
		{"unit mismatch", "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"grams","note":"x"}`, nil, 422, "unit-mismatch"},
		{"retire with value", "POST", "/v1/counters/a1/retire", ``, nil, 422, "value-not-zero"},
		{"start twice", "POST", "/v1/counters/a1/start", ``, nil, 422, "not-pending"},
		{"stale If-Match", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `"1"`}, 412, "version-mismatch"},
		{"weak If-Match", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `W/"3"`}, 400, "invalid-if-match"},
		{"If-Match with a sign", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `"+3"`}, 400, "invalid-if-match"},
		{"If-Match with a leading zero", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `"03"`}, 400, "invalid-if-match"},
		{"garbage If-Match", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `three`}, 400, "invalid-if-match"},
		{"correlation id with spaces", "POST", "/v1/counters/a1/increments", increment, []string{"X-Correlation-ID", "a b"}, 400, "invalid-header"},
		{"huge idempotency key", "POST", "/v1/counters/a1/increments", increment, []string{"Idempotency-Key", strings.Repeat("k", 200)}, 400, "invalid-header"},
		// Hostile ids.
		{"very long id", "POST", "/v1/counters/" + strings.Repeat("a", 65) + "/increments", increment, nil, 400, "invalid-id"},
		{"very long id in body", "POST", "/v1/counters", `{"id":"` + strings.Repeat("a", 300) + `","owner":"Ada","unit":"items"}`, nil, 400, "invalid-id"},
		{"unicode id", "POST", "/v1/counters/%C3%A5ctr/increments", increment, nil, 400, "invalid-id"},
		{"unicode id in body", "POST", "/v1/counters", `{"id":"åctr","owner":"Ada","unit":"items"}`, nil, 400, "invalid-id"},
		{"encoded slash", "POST", "/v1/counters/a1%2Fa2/increments", increment, nil, 400, "invalid-id"},
		{"encoded traversal", "POST", "/v1/counters/a1%2F..%2Fa2/increments", increment, nil, 400, "invalid-path"},
		{"encoded dot-dot", "POST", "/v1/counters/%2e%2e/increments", increment, nil, 400, "invalid-path"},
		{"redis hash tag in id", "POST", "/v1/counters", `{"id":"{a1}","owner":"Ada","unit":"items"}`, nil, 400, "invalid-id"},
		{"NUL in id", "POST", "/v1/counters/a%001/increments", increment, nil, 400, "invalid-id"},
		{"dot id", "POST", "/v1/counters", `{"id":".","owner":"Ada","unit":"items"}`, nil, 400, "invalid-id"},
		{"hostile stream id", "GET", "/v1/streams/counter/%2e%2e%2fetc", ``, nil, 400, "invalid-path"},
		{"hostile state id", "GET", "/v1/streams/counter/a%20b/state", ``, nil, 400, "invalid-id"},
		{"unknown stream type", "GET", "/v1/streams/nothing/a1", ``, nil, 404, "unknown-aggregate-type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := st.EventCount()
			r := st.Do(0, tc.method, tc.path, tc.body, tc.headers...)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q, want application/problem+json", ct)
			}
			p := r.JSON(t)
			if p["type"] != "https://tributary.dev/problems/"+tc.problem || p["status"] != float64(tc.status) || p["title"] == "" || p["detail"] == "" {
				t.Fatalf("problem %v, want type %s and status %d with title and detail", p, tc.problem, tc.status)
			}
			if after := st.EventCount(); after != before {
				t.Fatalf("bad input stored %d events", after-before)
			}
		})
	}
}

// Paths with dot segments sent as they are (not cleaned by the client) are refused.
func TestRawDotSegmentsAreRefused(t *testing.T) {
	st := newStack(t, 1)
	for _, path := range []string{"/v1/counters/../counters/a1/increments", "/v1/counters/./a1/increments", "/v1/counters//increments"} {
		conn := st.Servers[0].Listener.Addr().String()
		req, _ := http.NewRequest("POST", "http://"+conn+"/", strings.NewReader(`{}`))
		req.URL.Opaque = path // sent verbatim, no client-side cleaning
		req.Header.Set("Content-Type", "application/json")
		res, err := st.Servers[0].Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", path, res.StatusCode)
		}
	}
}

// Headers over the writer's limit get a 431 problem document (not net/http's
// plain text), before anything else is looked at; nothing is stored.
func TestHugeHeadersGetAProblem(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 100)
	before := st.DatabaseDigest()
	r := st.Do(0, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"x"}`, "X-Padding", strings.Repeat("p", 40<<10))
	if r.Status != http.StatusRequestHeaderFieldsTooLarge || r.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.Body), "headers-too-large") {
		t.Fatalf("%d %s: %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	if st.DatabaseDigest() != before {
		t.Fatal("a refused request changed Postgres")
	}
	// Just under the limit is served.
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"x"}`, "X-Padding", strings.Repeat("p", 30<<10))
}
