package writer_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/writer"
)

func TestReadStreamPages(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a1", 100) // versions 1-3
	for range 7 {
		st.must(http.StatusOK, "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"x"}`)
	}
	var versions []int64
	after := "0"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r := st.must(http.StatusOK, "GET", "/v1/streams/account/a1?limit=4&after="+after, "")
		var page writer.StreamPage
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			versions = append(versions, e.Version)
			if e.AggregateID != "a1" || e.CorrelationID == "" || e.GlobalPosition == 0 || len(e.Payload) == 0 {
				t.Fatalf("incomplete envelope %+v", e)
			}
		}
		if page.NextAfter == nil {
			break
		}
		after = strconv.FormatInt(*page.NextAfter, 10)
	}
	if len(versions) != 10 {
		t.Fatalf("paged versions %v, want 1..10", versions)
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("paged versions %v, want 1..10 in order", versions)
		}
	}
	st.must(http.StatusNotFound, "GET", "/v1/streams/account/nobody", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1?limit=0", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1?limit=1001", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1?after=x", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1?after", "") // found by FuzzCommands: read as absent
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1?limit=", "")
}

// The state of an aggregate as of a version or a time (temporal query).
func TestStateAsOfVersionAndTime(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a1", 100)                                                                                  // v3, balance 100
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/deposits", `{"amount":50,"currency":"EUR","source":"x"}`) // v4
	var cut time.Time
	if err := st.pool.QueryRow(context.Background(), `SELECT recorded_at FROM events WHERE version = 4`).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/withdrawals", `{"amount":120,"currency":"EUR","reason":"x"}`) // v5

	state := func(query string) (int64, map[string]any) {
		t.Helper()
		r := st.must(http.StatusOK, "GET", "/v1/streams/account/a1/state"+query, "")
		var body struct {
			Version int64          `json:"version"`
			State   map[string]any `json:"state"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		if r.header.Get("ETag") == "" {
			t.Fatal("no ETag")
		}
		return body.Version, body.State
	}
	if v, s := state(""); v != 5 || s["balance"] != float64(30) {
		t.Fatalf("now: v%d %v", v, s)
	}
	if v, s := state("?version=1"); v != 1 || s["balance"] != float64(0) || s["status"] != "pending" {
		t.Fatalf("version 1: v%d %v", v, s)
	}
	if v, s := state("?version=4"); v != 4 || s["balance"] != float64(150) || s["status"] != "active" {
		t.Fatalf("version 4: v%d %v", v, s)
	}
	if v, s := state("?at=" + url.QueryEscape(cut.Format(time.RFC3339Nano))); v != 4 || s["balance"] != float64(150) {
		t.Fatalf("at %s: v%d %v", cut, v, s)
	}
	st.must(http.StatusNotFound, "GET", "/v1/streams/account/a1/state?at=2000-01-01T00:00:00Z", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1/state?at=yesterday", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1/state?at=", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1/state?version", "")
	st.must(http.StatusBadRequest, "GET", "/v1/streams/account/a1/state?version=-1", "")
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	st := newStack(t, 1)
	st.must(http.StatusOK, "GET", "/healthz", "")
	st.must(http.StatusOK, "GET", "/readyz", "")
	st.openActive("a1", 5)
	r := st.must(http.StatusOK, "GET", "/metrics", "")
	for _, want := range []string{
		`tributary_commands_total{aggregate_type="account",command="OpenAccount",outcome="accepted"} 1`,
		`tributary_events_appended_total{aggregate_type="account",event_type="FundsDeposited"} 1`,
		`tributary_writer_http_request_duration_seconds_count{code="201",method="POST",route="POST /v1/accounts"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Not ready once Postgres is gone.
	st.pool.Close()
	st.must(http.StatusServiceUnavailable, "GET", "/readyz", "")
}

// A FundsDeposited stored as raw v1 JSON (no source) reads as v2 with
// source "unknown" through the API, counts in the state, and its stored row
// stays as it was (G8).
func TestV1EventsReadAsV2ThroughTheAPI(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a1", 0) // versions 1-2
	ctx := context.Background()
	if _, err := st.pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        VALUES (gen_random_uuid(), 'account', 'a1', 3, 'FundsDeposited', 1, '{"amount": 250, "currency": "EUR"}', 'legacy', 'legacy', 'legacy')`); err != nil {
		t.Fatal(err)
	}
	r := st.must(http.StatusOK, "GET", "/v1/streams/account/a1?after=2", "")
	var page writer.StreamPage
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	_ = json.Unmarshal(page.Events[0].Payload, &payload)
	if page.Events[0].SchemaVersion != 2 || payload["source"] != "unknown" || payload["amount"] != float64(250) {
		t.Fatalf("v1 event read as v%d %v", page.Events[0].SchemaVersion, payload)
	}
	// The writer decides on the upcast event: the 250 can be withdrawn.
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/withdrawals", `{"amount":250,"currency":"EUR","reason":"x"}`)
	var stored string
	var version int
	if err := st.pool.QueryRow(ctx, `SELECT payload::text, schema_version FROM events WHERE version = 3`).Scan(&stored, &version); err != nil {
		t.Fatal(err)
	}
	if stored != `{"amount": 250, "currency": "EUR"}` || version != 1 {
		t.Fatalf("stored row changed to v%d %s", version, stored)
	}
}
