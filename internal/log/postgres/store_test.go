package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

func newEvents(t *testing.T, types ...string) []log.NewEvent {
	t.Helper()
	out := make([]log.NewEvent, len(types))
	for i, typ := range types {
		out[i] = log.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: typ, SchemaVersion: 1, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

var meta = log.Metadata{CorrelationID: "corr-1", CausationID: "cmd-1", Principal: "alice",
	TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}

func TestAppendExpectedVersions(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	req := func(expected postgres.ExpectedVersion, types ...string) postgres.AppendRequest {
		return postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: expected, Events: newEvents(t, types...), Metadata: meta}
	}

	got, err := store.Append(ctx, req(postgres.NoStream, "Made", "Changed"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Version != 1 || got[1].Version != 2 || got[1].GlobalPosition <= got[0].GlobalPosition {
		t.Fatalf("first append: versions/positions %+v", got)
	}
	if _, err := store.Append(ctx, req(postgres.NoStream, "Made")); !errors.Is(err, postgres.ErrConcurrency) {
		t.Fatalf("NoStream on an existing stream: got %v, want ErrConcurrency", err)
	}
	if _, err := store.Append(ctx, req(1, "Changed")); !errors.Is(err, postgres.ErrConcurrency) {
		t.Fatalf("stale exact version: got %v, want ErrConcurrency", err)
	}
	// An expected version beyond the current one must not leave a gap.
	if _, err := store.Append(ctx, req(5, "Changed")); !errors.Is(err, postgres.ErrConcurrency) {
		t.Fatalf("future exact version: got %v, want ErrConcurrency", err)
	}
	if got, err = store.Append(ctx, req(2, "Changed")); err != nil || got[0].Version != 3 {
		t.Fatalf("exact version 2: %v %+v", err, got)
	}
	if got, err = store.Append(ctx, req(postgres.AnyVersion, "Changed")); err != nil || got[0].Version != 4 {
		t.Fatalf("any version: %v %+v", err, got)
	}

	events, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "thing", AggregateID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 {
		t.Fatalf("stream has %d events, want 4", len(events))
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Errorf("event %d has version %d", i, e.Version)
		}
		if e.Metadata != meta {
			t.Errorf("event %d metadata %+v, want %+v", i, e.Metadata, meta)
		}
		if e.RecordedAt.IsZero() || e.ID == uuid.Nil {
			t.Errorf("event %d lacks id or recorded time: %+v", i, e)
		}
	}
}

// Concurrent appends at the same expected version: exactly one wins (G1).
func TestConcurrentAppendsAtOneVersionOneWins(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: postgres.NoStream, Events: newEvents(t, "Made"), Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	const racers = 32
	var wg sync.WaitGroup
	results := make(chan error, racers)
	for range racers {
		wg.Go(func() {
			_, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: 1, Events: newEvents(t, "Changed"), Metadata: meta})
			results <- err
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, postgres.ErrConcurrency):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d appends won at version 1, want exactly 1", won)
	}
	if v, _ := store.StreamVersion(ctx, "thing", "t1"); v != 2 {
		t.Fatalf("stream version %d, want 2", v)
	}
}

// AnyVersion appends from many goroutines all land, with contiguous versions.
func TestConcurrentAnyVersionAppendsAreContiguous(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	const writers = 8
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range 5 {
				if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: postgres.AnyVersion, Events: newEvents(t, "Changed"), Metadata: meta}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	events, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "thing", AggregateID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("version gap: event %d has version %d", i, e.Version)
		}
	}
	if len(events) != writers*5 {
		t.Fatalf("%d events, want %d", len(events), writers*5)
	}
}

// A failed append writes nothing: not the events, not the snapshot, not the
// idempotency completion that rode in the same batch.
func TestFailedAppendWritesNothing(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: postgres.NoStream, Events: newEvents(t, "Made"), Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	if out, _, err := store.ClaimIdempotencyKey(ctx, "alice", "k1", []byte("h"), time.Minute); err != nil || out != postgres.Claimed {
		t.Fatalf("claim: %v %v", out, err)
	}
	_, err := store.Append(ctx, postgres.AppendRequest{
		AggregateType: "thing", AggregateID: "t1", Expected: postgres.NoStream, Events: newEvents(t, "Made"), Metadata: meta,
		Snapshot:    &postgres.Snapshot{Version: 1, SchemaVersion: 1, State: json.RawMessage(`{"bad":true}`)},
		Idempotency: &postgres.IdempotencyCompletion{Principal: "alice", Key: "k1", Status: 201, RequestHash: []byte("h")},
	})
	if !errors.Is(err, postgres.ErrConcurrency) {
		t.Fatalf("got %v, want ErrConcurrency", err)
	}
	var snapshots, completed, events int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM snapshots), (SELECT count(*) FROM idempotency_keys WHERE completed_at IS NOT NULL), (SELECT count(*) FROM events)`).Scan(&snapshots, &completed, &events); err != nil {
		t.Fatal(err)
	}
	if snapshots != 0 || completed != 0 || events != 1 {
		t.Fatalf("after a failed append: %d snapshots, %d completed keys, %d events; want 0, 0, 1", snapshots, completed, events)
	}
}

// A v1 FundsDeposited stored as raw v1 JSON reads as v2 with source
// "unknown", and its stored row is unchanged (G8).
func TestUpcastOnReadLeavesStoredRowAlone(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	upcasters := log.NewUpcasters().Register("account", "FundsDeposited", 1, func(p json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return nil, err
		}
		m["source"] = "unknown"
		return json.Marshal(m)
	})
	store := postgres.NewStore(pool, upcasters)
	const raw = `{"amount": 500, "currency": "EUR"}`
	if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        VALUES ($1, 'account', 'a1', 1, 'FundsDeposited', 1, $2, 'c', 'c', 'legacy')`, uuid.New(), raw); err != nil {
		t.Fatal(err)
	}
	var before string
	if err := pool.QueryRow(ctx, `SELECT payload::text || schema_version FROM events`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	events, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "account", AggregateID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.LoadForDecision(ctx, "account", "a1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(events, d.Events...) {
		var p map[string]any
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if e.SchemaVersion != 2 || p["source"] != "unknown" || p["amount"] != float64(500) {
			t.Fatalf("read as v%d %v, want v2 with source unknown and amount 500", e.SchemaVersion, p)
		}
	}
	var after string
	if err := pool.QueryRow(ctx, `SELECT payload::text || schema_version FROM events`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Fatalf("stored row changed: %s -> %s", before, after)
	}
}

// Load returns the snapshot and only the events after it; a snapshot of
// another state schema version is ignored (G9).
func TestLoadForDecisionUsesOnlyCurrentSnapshots(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	types := make([]string, 10)
	for i := range types {
		types[i] = "Changed"
	}
	if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: postgres.NoStream, Events: newEvents(t, types[:7]...), Metadata: meta,
		Snapshot: &postgres.Snapshot{Version: 7, SchemaVersion: 2, State: json.RawMessage(`{"at":7}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: 7, Events: newEvents(t, types[:3]...), Metadata: meta}); err != nil {
		t.Fatal(err)
	}

	d, err := store.LoadForDecision(ctx, "thing", "t1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if d.Snapshot == nil || d.Snapshot.Version != 7 || string(d.Snapshot.State) != `{"at": 7}` {
		t.Fatalf("snapshot %+v, want the one at version 7", d.Snapshot)
	}
	if len(d.Events) != 3 || d.Events[0].Version != 8 || d.Version() != 10 {
		t.Fatalf("events after the snapshot: %d from version %d (stream at %d), want 3 from 8 at 10", len(d.Events), d.Events[0].Version, d.Version())
	}

	d, err = store.LoadForDecision(ctx, "thing", "t1", 3) // the state's shape moved on
	if err != nil {
		t.Fatal(err)
	}
	if d.Snapshot != nil || len(d.Events) != 10 {
		t.Fatalf("with an outdated snapshot: snapshot %+v and %d events, want none and all 10", d.Snapshot, len(d.Events))
	}
}

func TestIdempotencyKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	hash := []byte("request-1")

	if out, _, err := store.ClaimIdempotencyKey(ctx, "alice", "k", hash, time.Minute); err != nil || out != postgres.Claimed {
		t.Fatalf("first claim: %v %v", out, err)
	}
	if out, _, _ := store.ClaimIdempotencyKey(ctx, "alice", "k", hash, time.Minute); out != postgres.InProgress {
		t.Fatalf("second claim while running: %v, want InProgress", out)
	}
	if out, _, _ := store.ClaimIdempotencyKey(ctx, "alice", "k", []byte("other"), time.Minute); out != postgres.Mismatch {
		t.Fatalf("claim with another request: %v, want Mismatch", out)
	}
	if out, _, _ := store.ClaimIdempotencyKey(ctx, "bob", "k", []byte("other"), time.Minute); out != postgres.Claimed {
		t.Fatalf("another principal's key: %v, want Claimed", out)
	}

	events, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1", Expected: postgres.NoStream,
		Events: newEvents(t, "Made", "Changed"), Metadata: meta, Idempotency: &postgres.IdempotencyCompletion{Principal: "alice", Key: "k", Status: 201, RequestHash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	out, stored, err := store.ClaimIdempotencyKey(ctx, "alice", "k", hash, time.Minute)
	if err != nil || out != postgres.Replay {
		t.Fatalf("claim after completion: %v %v, want Replay", out, err)
	}
	want := postgres.StoredResponse{Status: 201, AggregateType: "thing", AggregateID: "t1", FirstVersion: events[0].Version, LastVersion: events[1].Version}
	if !stored.AppendedEvents() || stored.Status != want.Status || stored.FirstVersion != 1 || stored.LastVersion != 2 || stored.AggregateID != "t1" {
		t.Fatalf("stored response %+v, want %+v", stored, want)
	}

	// A released claim may be taken again; an expired one too.
	if err := store.ReleaseIdempotencyKey(ctx, "bob", "k"); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := store.ClaimIdempotencyKey(ctx, "bob", "k", hash, time.Millisecond); out != postgres.Claimed {
		t.Fatalf("claim after release: %v", out)
	}
	time.Sleep(5 * time.Millisecond) // let the 1 ms claim expire: the clock is the subject here
	if out, _, _ := store.ClaimIdempotencyKey(ctx, "bob", "k", hash, time.Minute); out != postgres.Claimed {
		t.Fatalf("claim after expiry: %v, want Claimed", out)
	}

	// A refusal is remembered by its body.
	if err := store.CompleteIdempotencyKey(ctx, "bob", "k", hash, 422, json.RawMessage(`{"status":422}`)); err != nil {
		t.Fatal(err)
	}
	out, stored, _ = store.ClaimIdempotencyKey(ctx, "bob", "k", hash, time.Minute)
	if out != postgres.Replay || stored.AppendedEvents() || stored.Status != 422 || string(stored.Body) != `{"status":422}` {
		t.Fatalf("refusal replay: %v %+v", out, stored)
	}
}

func TestCheckSchema(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		t.Fatalf("migrated database: %v", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE tributary_schema_version SET version = 0`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.CheckSchema(ctx, pool); !errors.Is(err, postgres.ErrSchemaOutdated) {
		t.Fatalf("outdated schema: got %v, want ErrSchemaOutdated", err)
	}
}

// Group commit: many concurrent appends to different streams, some of them
// at a stale version, all settle on their own — the stale ones conflict and
// write nothing, the rest land with their snapshots and idempotency records.
func TestGroupCommitSettlesEachCommandOnItsOwn(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil, postgres.WithGroupCommit(2, 64))
	const streams = 60
	var wg sync.WaitGroup
	errs := make([]error, streams)
	for i := range streams {
		wg.Go(func() {
			id := fmt.Sprintf("s%d", i)
			expected := postgres.NoStream
			if i%10 == 0 {
				expected = 3 // stale: the stream is empty
			}
			key := fmt.Sprintf("k%d", i)
			if out, _, err := store.ClaimIdempotencyKey(ctx, "p", key, []byte("h"), time.Minute); err != nil || out != postgres.Claimed {
				t.Errorf("claim %s: %v %v", key, out, err)
			}
			_, errs[i] = store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: id, Expected: expected,
				Events: newEvents(t, "Made", "Changed"), Metadata: meta,
				Snapshot:    &postgres.Snapshot{Version: 2, SchemaVersion: 1, State: json.RawMessage(`{}`)},
				Idempotency: &postgres.IdempotencyCompletion{Principal: "p", Key: key, Status: 201, RequestHash: []byte("h")}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		stale := i%10 == 0
		if stale != errors.Is(err, postgres.ErrConcurrency) || (!stale && err != nil) {
			t.Errorf("stream %d (stale %v): %v", i, stale, err)
		}
	}
	var events, snapshots, completed int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM snapshots),
        (SELECT count(*) FROM idempotency_keys WHERE completed_at IS NOT NULL AND last_version = 2)`).Scan(&events, &snapshots, &completed); err != nil {
		t.Fatal(err)
	}
	if events != 54*2 || snapshots != 54 || completed != 54 {
		t.Fatalf("%d events, %d snapshots, %d completed keys; want 108, 54, 54", events, snapshots, completed)
	}
}

// A version taken by another process between a command's check and its
// insert fails the whole batch in Postgres; the store then sends the batch's
// commands one by one, so only the late command conflicts.
func TestGroupCommitLateConflictFailsOnlyItsCommand(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil, postgres.WithGroupCommit(1, 64))
	holdVersionOne := func(stream string) pgx.Tx {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(ctx) })
		if _, err := tx.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
            VALUES (gen_random_uuid(), 'thing', $1, 1, 'Made', 1, '{}', 'c', 'c', 'other-process')`, stream); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	lockWaits := func() int {
		var n int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n
	}
	appendAsync := func(stream string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: stream, Expected: postgres.NoStream,
				Events: newEvents(t, "Made"), Metadata: meta})
			done <- err
		}()
		return done
	}

	txW, txX := holdVersionOne("w"), holdVersionOne("x")
	w := appendAsync("w") // takes the only slot and waits on txW's row
	waitFor(t, func() bool { return lockWaits() == 1 })
	x := appendAsync("x")
	others := make([]chan error, 5)
	for i := range others {
		others[i] = appendAsync(fmt.Sprintf("o%d", i))
	}
	waitFor(t, func() bool { return postgres.WaitingAppends(store) == 6 })
	if err := txW.Rollback(ctx); err != nil { // w's own insert goes through
		t.Fatal(err)
	}
	if err := <-w; err != nil {
		t.Fatalf("w: %v", err)
	}
	waitFor(t, func() bool { return lockWaits() == 1 }) // the batch of six waits on txX's row
	if err := txX.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-x; !errors.Is(err, postgres.ErrConcurrency) {
		t.Fatalf("x: got %v, want ErrConcurrency", err)
	}
	for i, o := range others {
		if err := <-o; err != nil {
			t.Fatalf("innocent command %d of the failed batch: %v", i, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 1+1+5 {
		t.Fatalf("%d events (%v), want 7", n, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExpireIdempotencyKeys(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	for _, key := range []string{"old-done", "old-running", "old-claim-expired", "new"} {
		if out, _, err := store.ClaimIdempotencyKey(ctx, "p", key, []byte("h"), time.Hour); err != nil || out != postgres.Claimed {
			t.Fatalf("claim %s: %v %v", key, out, err)
		}
	}
	if err := store.CompleteIdempotencyKey(ctx, "p", "old-done", []byte("h"), 200, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key LIKE 'old-%'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET claimed_until = now() - interval '1 minute' WHERE key = 'old-claim-expired'`); err != nil {
		t.Fatal(err)
	}
	n, err := store.ExpireIdempotencyKeys(ctx, 24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("expired %d (%v), want 2: the old completed key and the old abandoned claim", n, err)
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT key FROM idempotency_keys ORDER BY key`)
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		left = append(left, k)
	}
	rows.Close()
	if len(left) != 2 || left[0] != "new" || left[1] != "old-running" {
		t.Fatalf("left %v, want [new old-running] (a request still holding its claim is never expired)", left)
	}
}

// Appended announces appends once they were sent: one value for any number
// of them, and an append never waits for anyone to take it.
func TestAppendedAnnouncesAppendsWithoutEverBlockingThem(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	select {
	case <-store.Appended():
		t.Fatal("announced before any append")
	default:
	}
	for v := range 3 { // nobody takes the announcements meanwhile
		_, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "t1",
			Expected: postgres.ExpectedVersion(v), Events: newEvents(t, "Changed"), Metadata: meta})
		if err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-store.Appended():
	default:
		t.Fatal("three appends and no announcement")
	}
	select {
	case <-store.Appended():
		t.Fatal("a second announcement for appends already announced")
	default:
	}
}
