package writer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// A command beyond MaxInFlight waits AdmissionWait for room and is then
// shed: 503 overloaded with Retry-After (as the OpenAPI document says),
// nothing of it written — no event, no Idempotency-Key — and counted. The
// command in flight meanwhile completes, and its room is given back.
func TestCommandsBeyondTheBoundAreShedHavingWrittenNothing(t *testing.T) {
	cfg := writer.DefaultConfig()
	cfg.MaxInFlight = 1
	cfg.AdmissionWait = 200 * time.Millisecond
	st := newStackWith(t, 1, cfg)
	openActive(st, "busy", 10)
	events, keys := st.CountEvents(t), st.IdempotencyKeyCount(t)

	// Hold a command in flight: its append waits for a lock on the events.
	unlock := lockEvents(t, st)
	held := make(chan writertest.Response, 1)
	go func() {
		held <- st.Do(0, "POST", "/v1/counters/busy/increments", `{"amount":5,"unit":"items","note":"held"}`)
	}()
	waitForLockWait(t, st)

	began := time.Now()
	shed := st.Do(0, "POST", "/v1/counters", `{"id":"shed-1","owner":"Ada","unit":"items","initial":1}`, "Idempotency-Key", "shed-key")
	waited := time.Since(began)
	writertest.CheckProblem(t, shed, http.StatusServiceUnavailable, "overloaded")
	if got := shed.Header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
	if waited < cfg.AdmissionWait {
		t.Fatalf("shed after %s, before the admission wait of %s", waited, cfg.AdmissionWait)
	}

	unlock()
	if r := <-held; r.Status != http.StatusOK {
		t.Fatalf("the command held in flight: %d %s", r.Status, r.Body)
	}
	if n := st.CountEvents(t); n != events+1 {
		t.Fatalf("%d events after one command done and one shed, want %d", n, events+1)
	}
	if n := st.IdempotencyKeyCount(t); n != keys {
		t.Fatalf("%d Idempotency-Keys after the shed command's, want %d", n, keys)
	}
	if v := st.StreamVersion(t, domaintest.AggregateType, "shed-1"); v != 0 {
		t.Fatalf("the shed command's counter is at version %d", v)
	}

	// The room is free again: the same request, retried, is done.
	st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"shed-1","owner":"Ada","unit":"items","initial":1}`, "Idempotency-Key", "shed-key")
	metrics := string(st.Must(http.StatusOK, "GET", "/metrics", "").Body)
	if want := `tributary_commands_total{aggregate_type="counter",command="CreateCounter",outcome="shed"} 1`; !strings.Contains(metrics, want) {
		t.Fatalf("metrics lack %s", want)
	}
}

// lockEvents locks the events table of st's database (appends wait) until
// unlock is called, or the test ends.
func lockEvents(t *testing.T, st *writertest.Stack) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, "LOCK TABLE events IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Error(err)
		}
	}
}

// waitForLockWait waits until a session of st's database waits for a lock.
func waitForLockWait(t *testing.T, st *writertest.Stack) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := st.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no command waits for the lock on the events")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Without a bound (MaxInFlight 0) no command is shed: 32 held at once all
// complete.
func TestNoBoundShedsNothing(t *testing.T) {
	cfg := writer.DefaultConfig()
	cfg.MaxInFlight = 0
	cfg.AdmissionWait = 0
	st := newStackWith(t, 1, cfg)
	openActive(st, "many", 0)
	unlock := lockEvents(t, st)
	const n = 32
	done := make(chan writertest.Response, n)
	for range n {
		go func() {
			done <- st.Do(0, "POST", "/v1/counters/many/increments", `{"amount":1,"unit":"items","note":"n"}`)
		}()
	}
	waitForLockWait(t, st)
	time.Sleep(100 * time.Millisecond) // more of them in flight
	unlock()
	for range n {
		if r := <-done; r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
}
