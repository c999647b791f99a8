package accountdomain_test

import (
	"net/http"
	"strings"
	"testing"
)

// Every kind of bad input to the account commands — the platform's
// refusals and the account's rules alike — gets a clear RFC 9457 problem
// and changes nothing (G10).
func TestBadInputGetsProblemAndChangesNothing(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 1000)
	st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"pending","owner":"Bo","currency":"EUR"}`)
	openActive(st, "closed", 0)
	st.Must(http.StatusOK, "POST", "/v1/accounts/closed/close", `{"reason":"done"}`)

	const deposit = `{"amount":100,"currency":"EUR","source":"x"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		problem                  string // the problem type's last segment
	}{
		{"malformed JSON", "POST", "/v1/accounts/a1/deposits", `{"amount":`, nil, 400, "malformed-json"},
		{"not an object", "POST", "/v1/accounts/a1/deposits", `[1,2]`, nil, 400, "wrong-type"},
		{"unknown field", "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"x","extra":1}`, nil, 400, "malformed-json"},
		{"string amount", "POST", "/v1/accounts/a1/deposits", `{"amount":"100","currency":"EUR","source":"x"}`, nil, 400, "wrong-type"},
		{"fractional amount", "POST", "/v1/accounts/a1/deposits", `{"amount":1.5,"currency":"EUR","source":"x"}`, nil, 400, "wrong-type"},
		{"amount beyond int64", "POST", "/v1/accounts/a1/deposits", `{"amount":99999999999999999999,"currency":"EUR","source":"x"}`, nil, 400, "wrong-type"},
		{"two objects", "POST", "/v1/accounts/a1/deposits", deposit + deposit, nil, 400, "malformed-json"},
		{"trailing garbage", "POST", "/v1/accounts/a1/deposits", deposit + `x`, nil, 400, "malformed-json"},
		{"empty body", "POST", "/v1/accounts/a1/deposits", ``, nil, 400, "empty-body"},
		{"null body", "POST", "/v1/accounts/a1/activate", `null`, nil, 400, "wrong-type"},
		{"null body with members required", "POST", "/v1/accounts/a1/deposits", ` null `, nil, 400, "wrong-type"},
		{"member name in another case", "POST", "/v1/accounts/a1/deposits", `{"Amount":1,"currency":"EUR","source":"x"}`, nil, 400, "malformed-json"},
		{"member of an empty command", "POST", "/v1/accounts/a1/activate", `{"reason":"x"}`, nil, 400, "malformed-json"},
		{"negative amount", "POST", "/v1/accounts/a1/deposits", `{"amount":-5,"currency":"EUR","source":"x"}`, nil, 400, "invalid-amount"},
		{"missing source", "POST", "/v1/accounts/a1/deposits", `{"amount":5,"currency":"EUR"}`, nil, 400, "missing-source"},
		{"missing owner", "POST", "/v1/accounts", `{"currency":"EUR"}`, nil, 400, "missing-owner"},
		{"unsupported currency", "POST", "/v1/accounts", `{"owner":"Ada","currency":"XXX"}`, nil, 400, "unsupported-currency"},
		{"oversize body", "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"` + strings.Repeat("x", 70_000) + `"}`, nil, 413, "body-too-large"},
		{"wrong content type", "POST", "/v1/accounts/a1/deposits", deposit, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type"},
		{"unknown command", "POST", "/v1/accounts/a1/explode", `{}`, nil, 404, "not-found"},
		{"wrong method", "DELETE", "/v1/accounts/a1", ``, nil, 404, "not-found"},
		{"unknown account", "POST", "/v1/accounts/nobody/deposits", deposit, nil, 404, "account-not-found"},
		{"already open", "POST", "/v1/accounts", `{"id":"a1","owner":"Ada","currency":"EUR"}`, nil, 409, "already-open"},
		{"insufficient funds", "POST", "/v1/accounts/a1/withdrawals", `{"amount":5000,"currency":"EUR","reason":"x"}`, nil, 422, "insufficient-funds"},
		{"inactive account", "POST", "/v1/accounts/pending/deposits", deposit, nil, 422, "account-not-active"},
		{"closed account", "POST", "/v1/accounts/closed/deposits", deposit, nil, 422, "account-not-active"},
		{"deposit limit", "POST", "/v1/accounts/a1/deposits", `{"amount":100000001,"currency":"EUR","source":"x"}`, nil, 422, "deposit-limit-exceeded"},
		{"currency mismatch", "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"USD","source":"x"}`, nil, 422, "currency-mismatch"},
		{"close with balance", "POST", "/v1/accounts/a1/close", ``, nil, 422, "balance-not-zero"},
		{"activate twice", "POST", "/v1/accounts/a1/activate", ``, nil, 422, "not-pending"},
		{"stale If-Match", "POST", "/v1/accounts/a1/deposits", deposit, []string{"If-Match", `"1"`}, 412, "version-mismatch"},
		{"weak If-Match", "POST", "/v1/accounts/a1/deposits", deposit, []string{"If-Match", `W/"3"`}, 400, "invalid-if-match"},
		{"If-Match with a sign", "POST", "/v1/accounts/a1/deposits", deposit, []string{"If-Match", `"+3"`}, 400, "invalid-if-match"},
		{"If-Match with a leading zero", "POST", "/v1/accounts/a1/deposits", deposit, []string{"If-Match", `"03"`}, 400, "invalid-if-match"},
		{"garbage If-Match", "POST", "/v1/accounts/a1/deposits", deposit, []string{"If-Match", `three`}, 400, "invalid-if-match"},
		{"correlation id with spaces", "POST", "/v1/accounts/a1/deposits", deposit, []string{"X-Correlation-ID", "a b"}, 400, "invalid-header"},
		{"huge idempotency key", "POST", "/v1/accounts/a1/deposits", deposit, []string{"Idempotency-Key", strings.Repeat("k", 200)}, 400, "invalid-header"},
		// Hostile ids.
		{"very long id", "POST", "/v1/accounts/" + strings.Repeat("a", 65) + "/deposits", deposit, nil, 400, "invalid-id"},
		{"very long id in body", "POST", "/v1/accounts", `{"id":"` + strings.Repeat("a", 300) + `","owner":"Ada","currency":"EUR"}`, nil, 400, "invalid-id"},
		{"unicode id", "POST", "/v1/accounts/%C3%A5ccount/deposits", deposit, nil, 400, "invalid-id"},
		{"unicode id in body", "POST", "/v1/accounts", `{"id":"åccount","owner":"Ada","currency":"EUR"}`, nil, 400, "invalid-id"},
		{"encoded slash", "POST", "/v1/accounts/a1%2Fa2/deposits", deposit, nil, 400, "invalid-id"},
		{"encoded traversal", "POST", "/v1/accounts/a1%2F..%2Fa2/deposits", deposit, nil, 400, "invalid-path"},
		{"encoded dot-dot", "POST", "/v1/accounts/%2e%2e/deposits", deposit, nil, 400, "invalid-path"},
		{"redis hash tag in id", "POST", "/v1/accounts", `{"id":"{a1}","owner":"Ada","currency":"EUR"}`, nil, 400, "invalid-id"},
		{"NUL in id", "POST", "/v1/accounts/a%001/deposits", deposit, nil, 400, "invalid-id"},
		{"dot id", "POST", "/v1/accounts", `{"id":".","owner":"Ada","currency":"EUR"}`, nil, 400, "invalid-id"},
		{"hostile stream id", "GET", "/v1/streams/account/%2e%2e%2fetc", ``, nil, 400, "invalid-path"},
		{"hostile state id", "GET", "/v1/streams/account/a%20b/state", ``, nil, 400, "invalid-id"},
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
