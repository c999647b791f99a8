package writer_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/propagators/b3"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// 64 concurrent increments into one counter and 64 concurrent decrements from
// another that holds enough for half of them, spread over two writer
// processes: every accepted command has exactly one event, versions are
// 1..N without a gap, the value equals the fold, and never goes negative.
func TestConcurrentCommandsOnOneAggregate(t *testing.T) {
	st := newStack(t, 2)
	openActive(st, "increments", 0)
	openActive(st, "decrements", 32*100)

	type outcome struct {
		status int
		events []uuid.UUID
	}
	run := func(path, body string) []outcome {
		var wg sync.WaitGroup
		out := make([]outcome, 64)
		for i := range out {
			wg.Go(func() {
				r := st.Do(i%2, "POST", path, body)
				out[i].status = r.Status
				if r.Status == http.StatusOK {
					for _, e := range r.Command(t).Events {
						out[i].events = append(out[i].events, e.ID)
					}
				}
			})
		}
		wg.Wait()
		return out
	}

	check := func(id string, outcomes []outcome, wantAccepted func(int) bool, wantBalance func(accepted int) int64) {
		t.Helper()
		s, stored := fold(t, st, id)
		seen := make(map[uuid.UUID]int)
		for _, e := range stored {
			seen[e.ID]++
		}
		accepted := 0
		for _, o := range outcomes {
			switch o.status {
			case http.StatusOK:
				accepted++
				if len(o.events) != 1 || seen[o.events[0]] != 1 {
					t.Errorf("%s: an accepted command's events %v are stored %d times, want exactly one event once", id, o.events, seen[o.events[0]])
				}
			case http.StatusUnprocessableEntity, http.StatusConflict:
			default:
				t.Errorf("%s: unexpected status %d", id, o.status)
			}
		}
		for i, e := range stored {
			if e.Version != int64(i+1) {
				t.Fatalf("%s: version gap: event %d has version %d", id, i, e.Version)
			}
		}
		// Create, initial increment (if any), start: the rest are the commands.
		creating := len(stored) - accepted
		if creating < 2 || creating > 3 {
			t.Fatalf("%s: %d events for %d accepted commands", id, len(stored), accepted)
		}
		if !wantAccepted(accepted) {
			t.Errorf("%s: %d commands accepted", id, accepted)
		}
		if s.Value != wantBalance(accepted) {
			t.Errorf("%s: value %d after %d accepted commands, want %d", id, s.Value, accepted, wantBalance(accepted))
		}
	}

	increments := run("/v1/counters/increments/increments", `{"amount":100,"unit":"items","note":"test"}`)
	check("increments", increments, func(n int) bool { return n == 64 }, func(n int) int64 { return int64(n) * 100 })

	decrements := run("/v1/counters/decrements/decrements", `{"amount":100,"unit":"items","note":"test"}`)
	refusedBelowZero := 0
	for _, o := range decrements {
		if o.status == http.StatusUnprocessableEntity {
			refusedBelowZero++
		}
	}
	check("decrements", decrements,
		func(n int) bool { return n == 32 && refusedBelowZero == 32 },
		func(n int) int64 { return 3200 - int64(n)*100 })
}

// With If-Match, exactly one of two commands at the same version wins; the
// other gets 412 and writes nothing.
func TestIfMatchExactlyOneWins(t *testing.T) {
	st := newStack(t, 2)
	openActive(st, "a1", 0)
	for round := range 20 {
		version := int64(2 + round) // created, started, then one increment a round
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for proc := range 2 {
			wg.Go(func() {
				statuses[proc] = st.Do(proc, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"race"}`,
					"If-Match", fmt.Sprintf(`"%d"`, version)).Status
			})
		}
		wg.Wait()
		won := 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				won++
			case http.StatusPreconditionFailed:
			default:
				t.Fatalf("round %d: status %d", round, s)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d winners (%v), want exactly 1", round, won, statuses)
		}
	}
	s, stored := fold(t, st, "a1")
	if s.Value != 20 || len(stored) != 22 {
		t.Fatalf("value %d with %d events, want 20 with 22", s.Value, len(stored))
	}
	r := st.Must(http.StatusPreconditionFailed, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"late"}`, "If-Match", `"3"`)
	if got := r.JSON(t); got["currentVersion"] != float64(22) {
		t.Fatalf("412 problem %v, want currentVersion 22", got)
	}
}

// Retrying with the same Idempotency-Key returns the first response and
// stores nothing; the same key with another body gets 422 (G2).
func TestIdempotencyKey(t *testing.T) {
	st := newStack(t, 1)
	const createBody = `{"id":"a1","owner":"Ada","unit":"items","initial":500}`
	first := st.Must(http.StatusCreated, "POST", "/v1/counters", createBody, "Idempotency-Key", "create-1")
	events := st.EventCount()
	for range 3 {
		again := st.Must(http.StatusCreated, "POST", "/v1/counters", createBody, "Idempotency-Key", "create-1")
		if string(again.Body) != string(first.Body) || again.Header.Get("ETag") != first.Header.Get("ETag") ||
			again.Header.Get("Location") != first.Header.Get("Location") || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay differs:\nfirst  %s %v\nreplay %s %v", first.Body, first.Header, again.Body, again.Header)
		}
	}
	if n := st.EventCount(); n != events {
		t.Fatalf("replays stored %d more events", n-events)
	}
	r := st.Must(http.StatusUnprocessableEntity, "POST", "/v1/counters", `{"id":"a1","owner":"Eve","unit":"items"}`, "Idempotency-Key", "create-1")
	if got := r.JSON(t)["type"]; got != "https://tributary.dev/problems/idempotency-key-reused" {
		t.Fatalf("problem type %v", got)
	}
	// Keys belong to a principal: another principal's same key is another
	// request (bob, an operator, may act on alice's counter).
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/start", "", "Idempotency-Key", "create-1", "Authorization", st.Authorization("bob", "operator"))

	// A refused command is remembered too: the retry does not run again even
	// though it would succeed now.
	decrement := `{"amount":800,"unit":"items","note":"used"}`
	refused := st.Must(http.StatusUnprocessableEntity, "POST", "/v1/counters/a1/decrements", decrement, "Idempotency-Key", "w-1")
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", `{"amount":1000,"unit":"items","note":"stocked"}`)
	replayed := st.Must(http.StatusUnprocessableEntity, "POST", "/v1/counters/a1/decrements", decrement, "Idempotency-Key", "w-1")
	if string(replayed.Body) != string(refused.Body) || replayed.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("refusal replay %s (%s), want %s", replayed.Body, replayed.Header.Get("Content-Type"), refused.Body)
	}
	if s, _ := fold(t, st, "a1"); s.Value != 1500 {
		t.Fatalf("value %d, want 1500: the replayed decrement must not run", s.Value)
	}

	// While a request with the key is still running, a retry gets 409. The
	// first request is held inside its append by a transaction of the test
	// that has taken the next version of the stream and not committed yet.
	ctx := context.Background()
	tx, err := st.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        SELECT gen_random_uuid(), 'counter', 'a1', max(version) + 1, 'Blocker', 1, '{}', 'x', 'x', 'test' FROM events WHERE aggregate_id = 'a1'`); err != nil {
		t.Fatal(err)
	}
	const increment = `{"amount":1,"unit":"items","note":"x"}`
	firstDone := make(chan writertest.Response, 1)
	go func() {
		firstDone <- st.Do(0, "POST", "/v1/counters/a1/increments", increment, "Idempotency-Key", "busy")
	}()
	writertest.WaitUntil(t, 10*time.Second, func() bool {
		var waiting int
		_ = st.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return waiting > 0
	})
	st.Must(http.StatusConflict, "POST", "/v1/counters/a1/increments", increment, "Idempotency-Key", "busy")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-firstDone; r.Status != http.StatusOK {
		t.Fatalf("the held request ended with %d: %s", r.Status, r.Body)
	}
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", increment, "Idempotency-Key", "busy")
	if s, _ := fold(t, st, "a1"); s.Value != 1501 {
		t.Fatalf("value %d, want 1501", s.Value)
	}
}

// Concurrent retries of one keyed command append once.
func TestIdempotencyKeyUnderConcurrentRetries(t *testing.T) {
	st := newStack(t, 2)
	openActive(st, "a1", 0)
	before := st.EventCount()
	var wg sync.WaitGroup
	statuses := make([]int, 16)
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = st.Do(i%2, "POST", "/v1/counters/a1/increments", `{"amount":7,"unit":"items","note":"retry"}`, "Idempotency-Key", "dup").Status
		})
	}
	wg.Wait()
	for _, s := range statuses {
		if s != http.StatusOK && s != http.StatusConflict {
			t.Fatalf("status %d among %v", s, statuses)
		}
	}
	if after := st.EventCount(); after != before+1 {
		t.Fatalf("%d events appended by 16 retries of one command, want 1", after-before)
	}
	if s, _ := fold(t, st, "a1"); s.Value != 7 {
		t.Fatalf("value %d, want 7", s.Value)
	}
}

// The caller's trace context is read with the configured propagator
// (OTEL_PROPAGATORS): with B3, a B3 caller's trace is continued and stored
// as W3C trace context; with the default (W3C), the B3 header means nothing.
func TestTraceContextIsReadWithTheConfiguredPropagator(t *testing.T) {
	const b3Header = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
	cfg := writer.DefaultConfig()
	cfg.Propagator = b3.New()
	for _, tt := range []struct {
		name string
		st   *writertest.Stack
		want string
	}{
		{"b3", newStackWith(t, 1, cfg), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"default", newStack(t, 1), ""},
	} {
		tt.st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"a1","owner":"Ada","unit":"items"}`, "b3", b3Header)
		_, stored := fold(t, tt.st, "a1")
		if len(stored) != 1 || stored[0].TraceParent != tt.want {
			t.Errorf("%s: stored %+v, want traceparent %q", tt.name, stored, tt.want)
		}
	}
}

// Correlation id, causation id, principal and trace context are stored with
// every event of a command.
func TestMetadataIsStoredWithEvents(t *testing.T) {
	st := newStack(t, 1)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"a1","owner":"Ada","unit":"items","initial":5}`,
		"X-Correlation-ID", "req-42", "traceparent", traceparent)
	cmd := r.Command(t)
	if cmd.CorrelationID != "req-42" || r.Header.Get("X-Correlation-ID") != "req-42" {
		t.Fatalf("correlation id %q / header %q", cmd.CorrelationID, r.Header.Get("X-Correlation-ID"))
	}
	_, stored := fold(t, st, "a1")
	if len(stored) != 2 {
		t.Fatalf("%d events", len(stored))
	}
	for _, e := range stored {
		if e.CorrelationID != "req-42" || e.CausationID != cmd.CausationID || e.Principal != writertest.DefaultPrincipal || e.TraceParent != traceparent {
			t.Errorf("event %d metadata %+v", e.Version, e.Metadata)
		}
	}
	// Without X-Correlation-ID the command's own id correlates.
	r = st.Must(http.StatusOK, "POST", "/v1/counters/a1/start", "")
	if c := r.Command(t); c.CorrelationID != c.CausationID || c.CorrelationID == "" {
		t.Fatalf("new correlation %q, causation %q", c.CorrelationID, c.CausationID)
	}
}

// A writer process decides on the state it cached after its own last
// command; when another process moved the aggregate on, a refusal based on
// that stale state is re-checked against the store, and a stale version
// never reaches the log.
func TestStaleCacheInOneProcessNeverDecidesWrongly(t *testing.T) {
	st := newStack(t, 2)
	openActive(st, "a1", 0) // process 0 now caches a value of 0 at version 2
	if r := st.Do(1, "POST", "/v1/counters/a1/increments", `{"amount":100,"unit":"items","note":"x"}`); r.Status != http.StatusOK {
		t.Fatalf("increment in process 1: %d %s", r.Status, r.Body)
	}
	// Process 0's cache says 0: it must not refuse for insufficient value.
	if r := st.Do(0, "POST", "/v1/counters/a1/decrements", `{"amount":60,"unit":"items","note":"x"}`); r.Status != http.StatusOK {
		t.Fatalf("decrement in process 0 after an increment in process 1: %d %s", r.Status, r.Body)
	}
	// Process 1's cache says 100: its decrement of 60 races the store's truth (40).
	r := st.Do(1, "POST", "/v1/counters/a1/decrements", `{"amount":60,"unit":"items","note":"x"}`)
	if r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("overdraft through a stale cache: %d %s", r.Status, r.Body)
	}
	// If-Match with the version process 1 has not seen yet is still accepted.
	if r := st.Do(1, "POST", "/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"x"}`, "If-Match", `"4"`); r.Status != http.StatusOK {
		t.Fatalf("If-Match current version through a stale cache: %d %s", r.Status, r.Body)
	}
	s, stored := fold(t, st, "a1")
	if s.Value != 41 || len(stored) != 5 {
		t.Fatalf("value %d with %d events, want 41 with 5", s.Value, len(stored))
	}
}

func TestServerChosenIDAndResponseShape(t *testing.T) {
	st := newStack(t, 1)
	r := st.Must(http.StatusCreated, "POST", "/v1/counters", `{"owner":"Ada","unit":"meters","initial":1000}`)
	c := r.Command(t)
	if _, err := uuid.Parse(c.AggregateID); err != nil {
		t.Fatalf("server-chosen id %q is not a UUID", c.AggregateID)
	}
	if c.StreamVersion != 2 || len(c.Events) != 2 || c.GlobalPosition != c.Events[1].GlobalPosition ||
		r.Header.Get("ETag") != `"2"` || r.Header.Get("Location") != "/v1/streams/counter/"+c.AggregateID {
		t.Fatalf("response %+v headers %v", c, r.Header)
	}
	s, _ := fold(t, st, c.AggregateID)
	if s.Status != domaintest.StatusPending || s.Value != 1000 || s.Unit != "meters" {
		t.Fatalf("state %+v", s)
	}
}
