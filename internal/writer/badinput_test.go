package writer_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// Every kind of bad input gets a clear RFC 9457 problem and changes nothing (G10).
func TestBadInputGetsProblemAndChangesNothing(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 1000)
	st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"pending","owner":"Bo","unit":"items"}`)
	openActive(st, "retired", 0)
	st.Must(http.StatusOK, "POST", "/v1/counters/retired/retire", `{"reason":"done"}`)

	const increment = `{"amount":100,"unit":"items","note":"x"}`
	// The domain's own refusals, and the ids its bodies carry; the
	// platform's (framing, headers, paths) follow.
	tests := []writertest.BadInput{
		{Name: "malformed JSON", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":`, Status: 400, Problem: "malformed-json"},
		{Name: "unknown field", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1,"unit":"items","note":"x","extra":1}`, Status: 400, Problem: "malformed-json"},
		{Name: "string amount", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":"100","unit":"items","note":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "fractional amount", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1.5,"unit":"items","note":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "amount beyond int64", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":99999999999999999999,"unit":"items","note":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "null body", Method: "POST", Path: "/v1/counters/a1/start", Body: `null`, Status: 400, Problem: "wrong-type"},
		{Name: "member name in another case", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"Amount":1,"unit":"items","note":"x"}`, Status: 400, Problem: "malformed-json"},
		{Name: "member of an empty command", Method: "POST", Path: "/v1/counters/a1/start", Body: `{"reason":"x"}`, Status: 400, Problem: "malformed-json"},
		{Name: "negative amount", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":-5,"unit":"items","note":"x"}`, Status: 400, Problem: "invalid-amount"},
		{Name: "missing note", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":5,"unit":"items"}`, Status: 400, Problem: "missing-note"},
		{Name: "missing owner", Method: "POST", Path: "/v1/counters", Body: `{"unit":"items"}`, Status: 400, Problem: "missing-owner"},
		{Name: "unsupported unit", Method: "POST", Path: "/v1/counters", Body: `{"owner":"Ada","unit":"XXX"}`, Status: 400, Problem: "unsupported-unit"},
		{Name: "oversize body", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1,"unit":"items","note":"` + strings.Repeat("x", 70_000) + `"}`, Status: 413, Problem: "body-too-large"},
		{Name: "unknown counter", Method: "POST", Path: "/v1/counters/nobody/increments", Body: increment, Status: 404, Problem: "counter-not-found"},
		{Name: "already created", Method: "POST", Path: "/v1/counters", Body: `{"id":"a1","owner":"Ada","unit":"items"}`, Status: 409, Problem: "already-created"},
		{Name: "below zero", Method: "POST", Path: "/v1/counters/a1/decrements", Body: `{"amount":5000,"unit":"items","note":"x"}`, Status: 422, Problem: "below-zero"},
		{Name: "inactive counter", Method: "POST", Path: "/v1/counters/pending/increments", Body: increment, Status: 422, Problem: "counter-not-active"},
		{Name: "retired counter", Method: "POST", Path: "/v1/counters/retired/increments", Body: increment, Status: 422, Problem: "counter-not-active"},
		{Name: "step limit", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1000001,"unit":"items","note":"x"}`, Status: 422, Problem: "step-limit-exceeded"},
		{Name: "unit mismatch", Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1,"unit":"grams","note":"x"}`, Status: 422, Problem: "unit-mismatch"},
		{Name: "retire with value", Method: "POST", Path: "/v1/counters/a1/retire", Status: 422, Problem: "value-not-zero"},
		{Name: "start twice", Method: "POST", Path: "/v1/counters/a1/start", Status: 422, Problem: "not-pending"},
		{Name: "very long id in body", Method: "POST", Path: "/v1/counters", Body: `{"id":"` + strings.Repeat("a", 300) + `","owner":"Ada","unit":"items"}`, Status: 400, Problem: "invalid-id"},
		{Name: "unicode id", Method: "POST", Path: "/v1/counters/%C3%A5ctr/increments", Body: increment, Status: 400, Problem: "invalid-id"},
		{Name: "unicode id in body", Method: "POST", Path: "/v1/counters", Body: `{"id":"åctr","owner":"Ada","unit":"items"}`, Status: 400, Problem: "invalid-id"},
		{Name: "redis hash tag in id", Method: "POST", Path: "/v1/counters", Body: `{"id":"{a1}","owner":"Ada","unit":"items"}`, Status: 400, Problem: "invalid-id"},
		{Name: "dot id", Method: "POST", Path: "/v1/counters", Body: `{"id":".","owner":"Ada","unit":"items"}`, Status: 400, Problem: "invalid-id"},
	}
	writertest.CheckBadInput(t, st, append(tests, writertest.PlatformRefusals(writertest.Command{
		AggregateType: "counter", Collection: "/v1/counters", ID: "a1", Verb: "increments", Body: increment,
	})...))
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
