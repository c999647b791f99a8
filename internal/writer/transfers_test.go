package writer_test

import (
	"net/http"
	"strings"
	"testing"
)

// POST /v1/transfers records the request; bad requests get problems and
// store nothing; the transfer's stream and state can be read.
func TestRequestTransfer(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a", 1_000) // the source: a transfer needs its owner
	r := st.must(http.StatusCreated, "POST", "/v1/transfers",
		`{"id":"t-1","from":"a","to":"b","amount":300,"currency":"EUR","reference":"rent"}`, "X-Correlation-ID", "corr-t-1")
	c := r.command(t)
	if c.AggregateType != "transfer" || c.AggregateID != "t-1" || c.StreamVersion != 1 || c.CorrelationID != "corr-t-1" ||
		r.header.Get("Location") != "/v1/streams/transfer/t-1" {
		t.Fatalf("request: %+v, Location %q", c, r.header.Get("Location"))
	}
	before := st.eventCount()
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"id":"t-1","from":"a","to":"b","amount":300,"currency":"EUR","reference":"rent"}`, 409, "already-requested"},
		{`{"from":"a","to":"a","amount":1,"currency":"EUR","reference":"x"}`, 400, "same-account"},
		{`{"from":"a","to":"b","amount":0,"currency":"EUR","reference":"x"}`, 400, "invalid-amount"},
		{`{"from":"a","to":"b","amount":5,"currency":"euro","reference":"x"}`, 400, "invalid-currency"},
		{`{"from":"../a","to":"b","amount":5,"currency":"EUR","reference":"x"}`, 400, "invalid-from"},
		{`{"from":"a","to":"b","amount":5,"currency":"EUR"}`, 400, "missing-reference"},
		{`{"id":"bad id","from":"a","to":"b","amount":5,"currency":"EUR","reference":"x"}`, 400, "invalid-id"},
		{`{"from":"a","to":"b","amount":"5","currency":"EUR","reference":"x"}`, 400, "wrong-type"},
	} {
		r := st.do(0, "POST", "/v1/transfers", tc.body)
		if r.status != tc.status || !strings.HasSuffix(r.json(t)["type"].(string), "/"+tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
	if n := st.eventCount(); n != before {
		t.Fatalf("refused requests stored %d events", n-before)
	}
	if r := st.must(http.StatusOK, "GET", "/v1/streams/transfer/t-1/state", ""); !strings.Contains(string(r.body), `"status":"requested"`) {
		t.Fatalf("state: %s", r.body)
	}
	st.must(http.StatusOK, "GET", "/v1/streams/transfer/t-1", "")
}
