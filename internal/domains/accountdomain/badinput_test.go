package accountdomain_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// Every kind of bad input to the account commands — the platform's
// refusals and the account's rules alike — gets a clear RFC 9457 problem
// and changes nothing (G10).
func TestBadInputGetsProblemAndChangesNothing(t *testing.T) {
	st := banktest.NewStack(t, 1)
	banktest.OpenActive(st, "a1", 1000)
	st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"pending","owner":"Bo","currency":"EUR"}`)
	banktest.OpenActive(st, "closed", 0)
	st.Must(http.StatusOK, "POST", "/v1/accounts/closed/close", `{"reason":"done"}`)

	const deposit = `{"amount":100,"currency":"EUR","source":"x"}`
	// The domain's own refusals, and the ids its bodies carry; the
	// platform's (framing, headers, paths) follow.
	tests := []writertest.BadInput{
		{Name: "malformed JSON", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":`, Status: 400, Problem: "malformed-json"},
		{Name: "unknown field", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":1,"currency":"EUR","source":"x","extra":1}`, Status: 400, Problem: "malformed-json"},
		{Name: "string amount", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":"100","currency":"EUR","source":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "fractional amount", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":1.5,"currency":"EUR","source":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "amount beyond int64", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":99999999999999999999,"currency":"EUR","source":"x"}`, Status: 400, Problem: "wrong-type"},
		{Name: "null body", Method: "POST", Path: "/v1/accounts/a1/activate", Body: `null`, Status: 400, Problem: "wrong-type"},
		{Name: "member name in another case", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"Amount":1,"currency":"EUR","source":"x"}`, Status: 400, Problem: "malformed-json"},
		{Name: "member of an empty command", Method: "POST", Path: "/v1/accounts/a1/activate", Body: `{"reason":"x"}`, Status: 400, Problem: "malformed-json"},
		{Name: "negative amount", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":-5,"currency":"EUR","source":"x"}`, Status: 400, Problem: "invalid-amount"},
		{Name: "missing source", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":5,"currency":"EUR"}`, Status: 400, Problem: "missing-source"},
		{Name: "missing owner", Method: "POST", Path: "/v1/accounts", Body: `{"currency":"EUR"}`, Status: 400, Problem: "missing-owner"},
		{Name: "unsupported currency", Method: "POST", Path: "/v1/accounts", Body: `{"owner":"Ada","currency":"XXX"}`, Status: 400, Problem: "unsupported-currency"},
		{Name: "oversize body", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":1,"currency":"EUR","source":"` + strings.Repeat("x", 70_000) + `"}`, Status: 413, Problem: "body-too-large"},
		{Name: "unknown account", Method: "POST", Path: "/v1/accounts/nobody/deposits", Body: deposit, Status: 404, Problem: "account-not-found"},
		{Name: "already open", Method: "POST", Path: "/v1/accounts", Body: `{"id":"a1","owner":"Ada","currency":"EUR"}`, Status: 409, Problem: "already-open"},
		{Name: "insufficient funds", Method: "POST", Path: "/v1/accounts/a1/withdrawals", Body: `{"amount":5000,"currency":"EUR","reason":"x"}`, Status: 422, Problem: "insufficient-funds"},
		{Name: "inactive account", Method: "POST", Path: "/v1/accounts/pending/deposits", Body: deposit, Status: 422, Problem: "account-not-active"},
		{Name: "closed account", Method: "POST", Path: "/v1/accounts/closed/deposits", Body: deposit, Status: 422, Problem: "account-not-active"},
		{Name: "deposit limit", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":100000001,"currency":"EUR","source":"x"}`, Status: 422, Problem: "deposit-limit-exceeded"},
		{Name: "currency mismatch", Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":1,"currency":"USD","source":"x"}`, Status: 422, Problem: "currency-mismatch"},
		{Name: "close with balance", Method: "POST", Path: "/v1/accounts/a1/close", Status: 422, Problem: "balance-not-zero"},
		{Name: "activate twice", Method: "POST", Path: "/v1/accounts/a1/activate", Status: 422, Problem: "not-pending"},
		{Name: "very long id in body", Method: "POST", Path: "/v1/accounts", Body: `{"id":"` + strings.Repeat("a", 300) + `","owner":"Ada","currency":"EUR"}`, Status: 400, Problem: "invalid-id"},
		{Name: "unicode id", Method: "POST", Path: "/v1/accounts/%C3%A5ccount/deposits", Body: deposit, Status: 400, Problem: "invalid-id"},
		{Name: "unicode id in body", Method: "POST", Path: "/v1/accounts", Body: `{"id":"åccount","owner":"Ada","currency":"EUR"}`, Status: 400, Problem: "invalid-id"},
		{Name: "redis hash tag in id", Method: "POST", Path: "/v1/accounts", Body: `{"id":"{a1}","owner":"Ada","currency":"EUR"}`, Status: 400, Problem: "invalid-id"},
		{Name: "dot id", Method: "POST", Path: "/v1/accounts", Body: `{"id":".","owner":"Ada","currency":"EUR"}`, Status: 400, Problem: "invalid-id"},
	}
	writertest.CheckBadInput(t, st, append(tests, writertest.PlatformRefusals(writertest.Command{
		AggregateType: "account", Collection: "/v1/accounts", ID: "a1", Verb: "deposits", Body: deposit,
	})...))
}
