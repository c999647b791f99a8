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

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/writer"
)

// 64 concurrent deposits into one account and 64 concurrent withdrawals from
// another that holds enough for half of them, spread over two writer
// processes: every accepted command has exactly one event, versions are
// 1..N without a gap, the balance equals the fold, and never goes negative.
func TestConcurrentCommandsOnOneAccount(t *testing.T) {
	st := newStack(t, 2)
	st.openActive("deposits", 0)
	st.openActive("withdrawals", 32*100)

	type outcome struct {
		status int
		events []uuid.UUID
	}
	run := func(path, body string) []outcome {
		var wg sync.WaitGroup
		out := make([]outcome, 64)
		for i := range out {
			wg.Go(func() {
				r := st.do(i%2, "POST", path, body)
				out[i].status = r.status
				if r.status == http.StatusOK {
					for _, e := range r.command(t).Events {
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
		s, stored := st.fold(id)
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
		// Open, initial deposit (if any), activate: the rest are the commands.
		opening := len(stored) - accepted
		if opening < 2 || opening > 3 {
			t.Fatalf("%s: %d events for %d accepted commands", id, len(stored), accepted)
		}
		if !wantAccepted(accepted) {
			t.Errorf("%s: %d commands accepted", id, accepted)
		}
		if s.Balance != wantBalance(accepted) {
			t.Errorf("%s: balance %d after %d accepted commands, want %d", id, s.Balance, accepted, wantBalance(accepted))
		}
	}

	deposits := run("/v1/accounts/deposits/deposits", `{"amount":100,"currency":"EUR","source":"test"}`)
	check("deposits", deposits, func(n int) bool { return n == 64 }, func(n int) int64 { return int64(n) * 100 })

	withdrawals := run("/v1/accounts/withdrawals/withdrawals", `{"amount":100,"currency":"EUR","reason":"test"}`)
	refusedForFunds := 0
	for _, o := range withdrawals {
		if o.status == http.StatusUnprocessableEntity {
			refusedForFunds++
		}
	}
	check("withdrawals", withdrawals,
		func(n int) bool { return n == 32 && refusedForFunds == 32 },
		func(n int) int64 { return 3200 - int64(n)*100 })
}

// With If-Match, exactly one of two commands at the same version wins; the
// other gets 412 and writes nothing.
func TestIfMatchExactlyOneWins(t *testing.T) {
	st := newStack(t, 2)
	st.openActive("a1", 0)
	for round := range 20 {
		version := int64(2 + round) // opened, activated, then one deposit a round
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for proc := range 2 {
			wg.Go(func() {
				statuses[proc] = st.do(proc, "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"race"}`,
					"If-Match", fmt.Sprintf(`"%d"`, version)).status
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
	s, stored := st.fold("a1")
	if s.Balance != 20 || len(stored) != 22 {
		t.Fatalf("balance %d with %d events, want 20 with 22", s.Balance, len(stored))
	}
	r := st.must(http.StatusPreconditionFailed, "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"late"}`, "If-Match", `"3"`)
	if got := r.json(t); got["currentVersion"] != float64(22) {
		t.Fatalf("412 problem %v, want currentVersion 22", got)
	}
}

// Retrying with the same Idempotency-Key returns the first response and
// stores nothing; the same key with another body gets 422 (G2).
func TestIdempotencyKey(t *testing.T) {
	st := newStack(t, 1)
	const openBody = `{"id":"a1","owner":"Ada","currency":"EUR","initialDeposit":500}`
	first := st.must(http.StatusCreated, "POST", "/v1/accounts", openBody, "Idempotency-Key", "open-1")
	events := st.eventCount()
	for range 3 {
		again := st.must(http.StatusCreated, "POST", "/v1/accounts", openBody, "Idempotency-Key", "open-1")
		if string(again.body) != string(first.body) || again.header.Get("ETag") != first.header.Get("ETag") ||
			again.header.Get("Location") != first.header.Get("Location") || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay differs:\nfirst  %s %v\nreplay %s %v", first.body, first.header, again.body, again.header)
		}
	}
	if n := st.eventCount(); n != events {
		t.Fatalf("replays stored %d more events", n-events)
	}
	r := st.must(http.StatusUnprocessableEntity, "POST", "/v1/accounts", `{"id":"a1","owner":"Eve","currency":"EUR"}`, "Idempotency-Key", "open-1")
	if got := r.json(t)["type"]; got != "https://tributary.dev/problems/idempotency-key-reused" {
		t.Fatalf("problem type %v", got)
	}
	// Keys belong to a principal: another principal's same key is another
	// request (bob, an operator, may act on alice's account).
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/activate", "", "Idempotency-Key", "open-1", "Authorization", st.authorization("bob", "operator"))

	// A refused command is remembered too: the retry does not run again even
	// though it would succeed now.
	withdraw := `{"amount":800,"currency":"EUR","reason":"rent"}`
	refused := st.must(http.StatusUnprocessableEntity, "POST", "/v1/accounts/a1/withdrawals", withdraw, "Idempotency-Key", "w-1")
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/deposits", `{"amount":1000,"currency":"EUR","source":"salary"}`)
	replayed := st.must(http.StatusUnprocessableEntity, "POST", "/v1/accounts/a1/withdrawals", withdraw, "Idempotency-Key", "w-1")
	if string(replayed.body) != string(refused.body) || replayed.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("refusal replay %s (%s), want %s", replayed.body, replayed.header.Get("Content-Type"), refused.body)
	}
	if s, _ := st.fold("a1"); s.Balance != 1500 {
		t.Fatalf("balance %d, want 1500: the replayed withdrawal must not run", s.Balance)
	}

	// While a request with the key is still running, a retry gets 409. The
	// first request is held inside its append by a transaction of the test
	// that has taken the next version of the stream and not committed yet.
	ctx := context.Background()
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        SELECT gen_random_uuid(), 'account', 'a1', max(version) + 1, 'Blocker', 1, '{}', 'x', 'x', 'test' FROM events WHERE aggregate_id = 'a1'`); err != nil {
		t.Fatal(err)
	}
	const deposit = `{"amount":1,"currency":"EUR","source":"x"}`
	firstDone := make(chan response, 1)
	go func() { firstDone <- st.do(0, "POST", "/v1/accounts/a1/deposits", deposit, "Idempotency-Key", "busy") }()
	waitUntil(t, 10*time.Second, func() bool {
		var waiting int
		_ = st.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return waiting > 0
	})
	st.must(http.StatusConflict, "POST", "/v1/accounts/a1/deposits", deposit, "Idempotency-Key", "busy")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-firstDone; r.status != http.StatusOK {
		t.Fatalf("the held request ended with %d: %s", r.status, r.body)
	}
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/deposits", deposit, "Idempotency-Key", "busy")
	if s, _ := st.fold("a1"); s.Balance != 1501 {
		t.Fatalf("balance %d, want 1501", s.Balance)
	}
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Concurrent retries of one keyed command append once.
func TestIdempotencyKeyUnderConcurrentRetries(t *testing.T) {
	st := newStack(t, 2)
	st.openActive("a1", 0)
	before := st.eventCount()
	var wg sync.WaitGroup
	statuses := make([]int, 16)
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = st.do(i%2, "POST", "/v1/accounts/a1/deposits", `{"amount":7,"currency":"EUR","source":"retry"}`, "Idempotency-Key", "dup").status
		})
	}
	wg.Wait()
	for _, s := range statuses {
		if s != http.StatusOK && s != http.StatusConflict {
			t.Fatalf("status %d among %v", s, statuses)
		}
	}
	if after := st.eventCount(); after != before+1 {
		t.Fatalf("%d events appended by 16 retries of one command, want 1", after-before)
	}
	if s, _ := st.fold("a1"); s.Balance != 7 {
		t.Fatalf("balance %d, want 7", s.Balance)
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
		st   *stack
		want string
	}{
		{"b3", newStackWith(t, 1, cfg), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"default", newStack(t, 1), ""},
	} {
		tt.st.must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"a1","owner":"Ada","currency":"EUR"}`, "b3", b3Header)
		_, stored := tt.st.fold("a1")
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
	r := st.must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"a1","owner":"Ada","currency":"EUR","initialDeposit":5}`,
		"X-Correlation-ID", "req-42", "traceparent", traceparent)
	cmd := r.command(t)
	if cmd.CorrelationID != "req-42" || r.header.Get("X-Correlation-ID") != "req-42" {
		t.Fatalf("correlation id %q / header %q", cmd.CorrelationID, r.header.Get("X-Correlation-ID"))
	}
	_, stored := st.fold("a1")
	if len(stored) != 2 {
		t.Fatalf("%d events", len(stored))
	}
	for _, e := range stored {
		if e.CorrelationID != "req-42" || e.CausationID != cmd.CausationID || e.Principal != defaultPrincipal || e.TraceParent != traceparent {
			t.Errorf("event %d metadata %+v", e.Version, e.Metadata)
		}
	}
	// Without X-Correlation-ID the command's own id correlates.
	r = st.must(http.StatusOK, "POST", "/v1/accounts/a1/activate", "")
	if c := r.command(t); c.CorrelationID != c.CausationID || c.CorrelationID == "" {
		t.Fatalf("new correlation %q, causation %q", c.CorrelationID, c.CausationID)
	}
}

// A writer process decides on the state it cached after its own last
// command; when another process moved the aggregate on, a refusal based on
// that stale state is re-checked against the store, and a stale version
// never reaches the log.
func TestStaleCacheInOneProcessNeverDecidesWrongly(t *testing.T) {
	st := newStack(t, 2)
	st.openActive("a1", 0) // process 0 now caches a balance of 0 at version 2
	if r := st.do(1, "POST", "/v1/accounts/a1/deposits", `{"amount":100,"currency":"EUR","source":"x"}`); r.status != http.StatusOK {
		t.Fatalf("deposit in process 1: %d %s", r.status, r.body)
	}
	// Process 0's cache says 0: it must not refuse for insufficient funds.
	if r := st.do(0, "POST", "/v1/accounts/a1/withdrawals", `{"amount":60,"currency":"EUR","reason":"x"}`); r.status != http.StatusOK {
		t.Fatalf("withdrawal in process 0 after a deposit in process 1: %d %s", r.status, r.body)
	}
	// Process 1's cache says 100: its withdrawal of 60 races the store's truth (40).
	r := st.do(1, "POST", "/v1/accounts/a1/withdrawals", `{"amount":60,"currency":"EUR","reason":"x"}`)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("overdraft through a stale cache: %d %s", r.status, r.body)
	}
	// If-Match with the version process 1 has not seen yet is still accepted.
	if r := st.do(1, "POST", "/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"x"}`, "If-Match", `"4"`); r.status != http.StatusOK {
		t.Fatalf("If-Match current version through a stale cache: %d %s", r.status, r.body)
	}
	s, stored := st.fold("a1")
	if s.Balance != 41 || len(stored) != 5 {
		t.Fatalf("balance %d with %d events, want 41 with 5", s.Balance, len(stored))
	}
}

func TestServerChosenIDAndResponseShape(t *testing.T) {
	st := newStack(t, 1)
	r := st.must(http.StatusCreated, "POST", "/v1/accounts", `{"owner":"Ada","currency":"JPY","initialDeposit":1000}`)
	c := r.command(t)
	if _, err := uuid.Parse(c.AggregateID); err != nil {
		t.Fatalf("server-chosen id %q is not a UUID", c.AggregateID)
	}
	if c.StreamVersion != 2 || len(c.Events) != 2 || c.GlobalPosition != c.Events[1].GlobalPosition ||
		r.header.Get("ETag") != `"2"` || r.header.Get("Location") != "/v1/streams/account/"+c.AggregateID {
		t.Fatalf("response %+v headers %v", c, r.header)
	}
	s, _ := st.fold(c.AggregateID)
	if s.Status != account.StatusPending || s.Balance != 1000 || s.Currency != "JPY" {
		t.Fatalf("state %+v", s)
	}
}
