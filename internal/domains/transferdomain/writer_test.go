package transferdomain_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/banktest"
)

// POST /v1/transfers records the request; bad requests get problems and
// store nothing; the transfer's stream and state can be read.
func TestRequestTransfer(t *testing.T) {
	st := banktest.NewStack(t, 1)
	banktest.OpenActive(st, "a", 1_000) // the source: a transfer needs its owner
	r := st.Must(http.StatusCreated, "POST", "/v1/transfers",
		`{"id":"t-1","from":"a","to":"b","amount":300,"currency":"EUR","reference":"rent"}`, "X-Correlation-ID", "corr-t-1")
	c := r.Command(t)
	if c.AggregateType != "transfer" || c.AggregateID != "t-1" || c.StreamVersion != 1 || c.CorrelationID != "corr-t-1" ||
		r.Header.Get("Location") != "/v1/streams/transfer/t-1" {
		t.Fatalf("request: %+v, Location %q", c, r.Header.Get("Location"))
	}
	before := st.EventCount()
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
		r := st.Do(0, "POST", "/v1/transfers", tc.body)
		if r.Status != tc.status || !strings.HasSuffix(r.JSON(t)["type"].(string), "/"+tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.body, r.Status, r.Body, tc.status, tc.code)
		}
	}
	if n := st.EventCount(); n != before {
		t.Fatalf("refused requests stored %d events", n-before)
	}
	if r := st.Must(http.StatusOK, "GET", "/v1/streams/transfer/t-1/state", ""); !strings.Contains(string(r.Body), `"status":"requested"`) {
		t.Fatalf("state: %s", r.Body)
	}
	st.Must(http.StatusOK, "GET", "/v1/streams/transfer/t-1", "")
}

// TestTransferNeedsTheSourcesOwner: a principal may move money out of its
// own accounts only; into anyone's.
func TestTransferNeedsTheSourcesOwner(t *testing.T) {
	st := banktest.NewStack(t, 1)
	banktest.OpenActive(st, "alice-1", 5_000)
	bob := st.Authorization("bob")
	st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"bob-1","owner":"Bob","currency":"EUR"}`, "Authorization", bob)
	st.Must(http.StatusOK, "POST", "/v1/accounts/bob-1/activate", "", "Authorization", bob)
	before := st.DatabaseDigest()
	for name, body := range map[string]string{
		"from-alice":   `{"id":"t1","from":"alice-1","to":"bob-1","amount":10,"currency":"EUR"}`,
		"from-unknown": `{"id":"t2","from":"nobody-1","to":"bob-1","amount":10,"currency":"EUR"}`,
	} {
		r := st.Do(0, "POST", "/v1/transfers", body, "Authorization", bob, "Idempotency-Key", "k-"+name)
		if r.Status != http.StatusForbidden {
			t.Fatalf("bob, %s: %d, want 403: %s", name, r.Status, r.Body)
		}
	}
	if st.DatabaseDigest() != before {
		t.Fatal("refused transfers changed Postgres")
	}
	// Into alice's account from his own: fine.
	st.Must(http.StatusCreated, "POST", "/v1/transfers", `{"id":"t3","from":"bob-1","to":"alice-1","amount":5,"currency":"EUR","reference":"gift"}`, "Authorization", bob)
}
