package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// An append records an idempotency key that was not claimed first, completed,
// in its own transaction; the key cannot be recorded again — by a second run
// of the request, or for another request — and the append that tries writes
// nothing. Through group commit and through the AnyVersion append alike.
func TestAnAppendRecordsItsUnclaimedKeyOnce(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	for _, expected := range []postgres.ExpectedVersion{postgres.NoStream, postgres.AnyVersion} {
		t.Run(fmt.Sprintf("expected %d", expected), func(t *testing.T) {
			stream, key := fmt.Sprintf("s%d", -expected), fmt.Sprintf("step%d", -expected)
			completion := &postgres.IdempotencyCompletion{Principal: "pm", Key: key, Status: 200, RequestHash: []byte("h")}
			first, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: stream, Expected: expected,
				Events: newEvents(t, "Made", "Changed"), Metadata: meta, Idempotency: completion})
			if err != nil {
				t.Fatal(err)
			}
			stored, completed, err := store.LookupIdempotencyKey(ctx, "pm", key)
			if err != nil || !completed || !stored.AppendedEvents() || stored.Status != 200 || stored.AggregateID != stream ||
				stored.FirstVersion != 1 || stored.LastVersion != 2 {
				t.Fatalf("the key after the append: %+v completed=%v, %v; want versions 1-2 of %s, status 200", stored, completed, err, stream)
			}
			// The same request again, and another request with the key: refused,
			// nothing written.
			again := postgres.AnyVersion
			if expected != postgres.AnyVersion {
				again = postgres.ExpectedVersion(first[len(first)-1].Version)
			}
			_, err = store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: stream, Expected: again,
				Events: newEvents(t, "Changed"), Metadata: meta, Idempotency: completion})
			if !errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
				t.Fatalf("the same key again: %v, want ErrIdempotencyKeyCompleted", err)
			}
			other := *completion
			other.RequestHash = []byte("another request")
			if err := store.CompleteIdempotencyKey(ctx, "pm", key, other.RequestHash, 422, json.RawMessage(`{}`)); !errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
				t.Fatalf("completing the completed key: %v, want ErrIdempotencyKeyCompleted", err)
			}
			if v, err := store.StreamVersion(ctx, "thing", stream); err != nil || v != 2 {
				t.Fatalf("%s is at version %d (%v), want 2: a refused append wrote", stream, v, err)
			}
		})
	}

	// A key claimed by one request cannot be completed for another.
	if out, _, err := store.ClaimIdempotencyKey(ctx, "alice", "claimed", []byte("mine"), time.Minute); err != nil || out != postgres.Claimed {
		t.Fatalf("claim: %v %v", out, err)
	}
	_, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: "claimed", Expected: postgres.NoStream,
		Events: newEvents(t, "Made"), Metadata: meta,
		Idempotency: &postgres.IdempotencyCompletion{Principal: "alice", Key: "claimed", Status: 201, RequestHash: []byte("not mine")}})
	if !errors.Is(err, postgres.ErrIdempotencyKeyMismatch) {
		t.Fatalf("completing another request's claim: %v, want ErrIdempotencyKeyMismatch", err)
	}
	if err := store.CompleteIdempotencyKey(ctx, "alice", "claimed", []byte("not mine"), 422, json.RawMessage(`{}`)); !errors.Is(err, postgres.ErrIdempotencyKeyMismatch) {
		t.Fatalf("completing another request's claim with a refusal: %v, want ErrIdempotencyKeyMismatch", err)
	}
	if v, _ := store.StreamVersion(ctx, "thing", "claimed"); v != 0 {
		t.Fatalf("claimed is at version %d, want 0", v)
	}
	// A refusal recorded without a claim is remembered, once.
	if err := store.CompleteIdempotencyKey(ctx, "pm", "refused", []byte("h"), 422, json.RawMessage(`{"detail":"no"}`)); err != nil {
		t.Fatal(err)
	}
	if stored, completed, err := store.LookupIdempotencyKey(ctx, "pm", "refused"); err != nil || !completed || stored.Status != 422 || string(stored.Body) != `{"detail": "no"}` && string(stored.Body) != `{"detail":"no"}` {
		t.Fatalf("the refusal's key: %+v completed=%v, %v", stored, completed, err)
	}
	if _, completed, err := store.LookupIdempotencyKey(ctx, "pm", "unknown"); err != nil || completed {
		t.Fatalf("an unknown key: completed=%v, %v", completed, err)
	}
}

// Many runs of one step at once — on one stream, and on different streams
// (so that group commit puts several in one batch) — append exactly once.
func TestConcurrentRunsOfOneKeyAppendOnce(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	const runs = 16
	for _, sameStream := range []bool{true, false} {
		key := fmt.Sprintf("step-same-stream-%v", sameStream)
		var wg sync.WaitGroup
		var mu sync.Mutex
		outcomes := map[string]int{}
		for i := range runs {
			stream := "one"
			if !sameStream {
				stream = fmt.Sprintf("stream-%d", i)
			}
			wg.Go(func() {
				_, err := store.Append(ctx, postgres.AppendRequest{AggregateType: key, AggregateID: stream, Expected: postgres.NoStream,
					Events: newEvents(t, "Made"), Metadata: meta,
					Idempotency: &postgres.IdempotencyCompletion{Principal: "pm", Key: key, Status: 200, RequestHash: []byte("h")}})
				outcome := "appended"
				switch {
				case errors.Is(err, postgres.ErrIdempotencyKeyCompleted):
					outcome = "key completed"
				case errors.Is(err, postgres.ErrConcurrency):
					outcome = "conflict"
				case err != nil:
					outcome = err.Error()
				}
				mu.Lock()
				outcomes[outcome]++
				mu.Unlock()
			})
		}
		wg.Wait()
		var events int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE aggregate_type = $1`, key).Scan(&events); err != nil {
			t.Fatal(err)
		}
		if events != 1 || outcomes["appended"] != 1 || outcomes["appended"]+outcomes["key completed"]+outcomes["conflict"] != runs {
			t.Fatalf("same stream %v: %d events stored, outcomes %v; want exactly one append, the rest refused", sameStream, events, outcomes)
		}
	}
}
