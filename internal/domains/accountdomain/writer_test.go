package accountdomain_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/writer"
)

// An optional member may be null, which is the same as absent; the
// document says so with type [T, "null"], and the validator checks these
// requests against it.
func TestNullOptionalMembersAreAbsent(t *testing.T) {
	st := banktest.NewStack(t, 1)
	opened := st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":null,"owner":"Ada","currency":"EUR","initialDeposit":null}`).Command(t)
	if len(opened.Events) != 1 || opened.Events[0].Type != "AccountOpened" {
		t.Fatalf("opened with %+v, want AccountOpened alone", opened.Events)
	}
	st.Must(http.StatusOK, "POST", "/v1/accounts/"+opened.AggregateID+"/activate", `{}`)
	st.Must(http.StatusOK, "POST", "/v1/accounts/"+opened.AggregateID+"/close", `{"reason":null}`)
}

// A FundsDeposited stored as raw v1 JSON (no source) reads as v2 with
// source "unknown" through the API, counts in the state, and its stored row
// stays as it was (G8).
func TestV1EventsReadAsV2ThroughTheAPI(t *testing.T) {
	st := banktest.NewStack(t, 1)
	banktest.OpenActive(st, "a1", 0) // versions 1-2
	ctx := context.Background()
	if _, err := st.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        VALUES (gen_random_uuid(), 'account', 'a1', 3, 'FundsDeposited', 1, '{"amount": 250, "currency": "EUR"}', 'legacy', 'legacy', 'legacy')`); err != nil {
		t.Fatal(err)
	}
	r := st.Must(http.StatusOK, "GET", "/v1/streams/account/a1?after=2", "")
	var page writer.StreamPage
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	_ = json.Unmarshal(page.Events[0].Payload, &payload)
	if page.Events[0].SchemaVersion != 2 || payload["source"] != "unknown" || payload["amount"] != float64(250) {
		t.Fatalf("v1 event read as v%d %v", page.Events[0].SchemaVersion, payload)
	}
	// The writer decides on the upcast event: the 250 can be withdrawn.
	st.Must(http.StatusOK, "POST", "/v1/accounts/a1/withdrawals", `{"amount":250,"currency":"EUR","reason":"x"}`)
	var stored string
	var version int
	if err := st.Pool.QueryRow(ctx, `SELECT payload::text, schema_version FROM events WHERE version = 3`).Scan(&stored, &version); err != nil {
		t.Fatal(err)
	}
	if stored != `{"amount": 250, "currency": "EUR"}` || version != 1 {
		t.Fatalf("stored row changed to v%d %s", version, stored)
	}
}
