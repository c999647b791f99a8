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
	openActive(st, "a1", 100) // versions 1-3
	for range 7 {
		st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"x"}`)
	}
	var versions []int64
	after := "0"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r := st.Must(http.StatusOK, "GET", "/v1/streams/counter/a1?limit=4&after="+after, "")
		var page writer.StreamPage
		if err := json.Unmarshal(r.Body, &page); err != nil {
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
	st.Must(http.StatusNotFound, "GET", "/v1/streams/counter/nobody", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1?limit=0", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1?limit=1001", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1?after=x", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1?after", "") // found by FuzzCommands: read as absent
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1?limit=", "")
}

// The state of an aggregate as of a version or a time (temporal query).
func TestStateAsOfVersionAndTime(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 100)                                                                               // v3, value 100
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", `{"amount":50,"unit":"items","note":"x"}`) // v4
	var cut time.Time
	if err := st.Pool.QueryRow(context.Background(), `SELECT recorded_at FROM events WHERE version = 4`).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/decrements", `{"amount":120,"unit":"items","note":"x"}`) // v5

	state := func(query string) (int64, map[string]any) {
		t.Helper()
		r := st.Must(http.StatusOK, "GET", "/v1/streams/counter/a1/state"+query, "")
		var body struct {
			Version int64          `json:"version"`
			State   map[string]any `json:"state"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		if r.Header.Get("ETag") == "" {
			t.Fatal("no ETag")
		}
		return body.Version, body.State
	}
	if v, s := state(""); v != 5 || s["value"] != float64(30) {
		t.Fatalf("now: v%d %v", v, s)
	}
	if v, s := state("?version=1"); v != 1 || s["value"] != float64(0) || s["status"] != "pending" {
		t.Fatalf("version 1: v%d %v", v, s)
	}
	if v, s := state("?version=4"); v != 4 || s["value"] != float64(150) || s["status"] != "active" {
		t.Fatalf("version 4: v%d %v", v, s)
	}
	if v, s := state("?at=" + url.QueryEscape(cut.Format(time.RFC3339Nano))); v != 4 || s["value"] != float64(150) {
		t.Fatalf("at %s: v%d %v", cut, v, s)
	}
	st.Must(http.StatusNotFound, "GET", "/v1/streams/counter/a1/state?at=2000-01-01T00:00:00Z", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1/state?at=yesterday", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1/state?at=", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1/state?version", "")
	st.Must(http.StatusBadRequest, "GET", "/v1/streams/counter/a1/state?version=-1", "")
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	st := newStack(t, 1)
	st.Must(http.StatusOK, "GET", "/healthz", "")
	st.Must(http.StatusOK, "GET", "/readyz", "")
	openActive(st, "a1", 5)
	r := st.Must(http.StatusOK, "GET", "/metrics", "")
	for _, want := range []string{
		`tributary_commands_total{aggregate_type="counter",command="CreateCounter",outcome="accepted"} 1`,
		`tributary_events_appended_total{aggregate_type="counter",event_type="CounterIncremented"} 1`,
		`tributary_writer_http_request_duration_seconds_count{code="201",method="POST",route="POST /v1/counters"} 1`,
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Not ready once Postgres is gone.
	st.Pool.Close()
	st.Must(http.StatusServiceUnavailable, "GET", "/readyz", "")
}

// A CounterIncremented stored as raw v1 JSON (no note) reads as v2 with
// note "unknown" through the API, counts in the state, and its stored row
// stays as it was (G8).
func TestV1EventsReadAsV2ThroughTheAPI(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 0) // versions 1-2
	ctx := context.Background()
	if _, err := st.Pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        VALUES (gen_random_uuid(), 'counter', 'a1', 3, 'CounterIncremented', 1, '{"amount": 250, "unit": "items"}', 'legacy', 'legacy', 'legacy')`); err != nil {
		t.Fatal(err)
	}
	r := st.Must(http.StatusOK, "GET", "/v1/streams/counter/a1?after=2", "")
	var page writer.StreamPage
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	_ = json.Unmarshal(page.Events[0].Payload, &payload)
	if page.Events[0].SchemaVersion != 2 || payload["note"] != "unknown" || payload["amount"] != float64(250) {
		t.Fatalf("v1 event read as v%d %v", page.Events[0].SchemaVersion, payload)
	}
	// The writer decides on the upcast event: the 250 can be taken.
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/decrements", `{"amount":250,"unit":"items","note":"x"}`)
	var stored string
	var version int
	if err := st.Pool.QueryRow(ctx, `SELECT payload::text, schema_version FROM events WHERE version = 3`).Scan(&stored, &version); err != nil {
		t.Fatal(err)
	}
	if stored != `{"unit": "items", "amount": 250}` || version != 1 {
		t.Fatalf("stored row changed to v%d %s", version, stored)
	}
}
