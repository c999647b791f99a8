package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// A request whose claim expired while it ran (a stalled database) and a
// retry that took its key over: whichever completes the key first stands;
// the other stores nothing and learns that the key is completed (G2). The
// chaos suite's 40 s Postgres stall found both runs of a withdrawal stored.
func TestAnIdempotencyKeyIsCompletedOnce(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	hash := []byte("withdraw 10")
	for _, viaGroupCommit := range []bool{false, true} {
		t.Run(map[bool]string{false: "single append", true: "group commit"}[viaGroupCommit], func(t *testing.T) {
			id := map[bool]string{false: "a1", true: "a2"}[viaGroupCommit]
			key := "k-" + id
			complete := postgres.IdempotencyCompletion{Principal: "alice", Key: key, Status: 201, RequestHash: hash}
			for range 2 { // the first run, then the retry that takes its key over
				if out, _, err := store.ClaimIdempotencyKey(ctx, "alice", key, hash, time.Millisecond); err != nil || out != postgres.Claimed {
					t.Fatalf("claim: %v %v", out, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			expected := postgres.NoStream
			if viaGroupCommit {
				if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: id, Expected: postgres.NoStream,
					Events: newEvents(t, "Made"), Metadata: meta}); err != nil {
					t.Fatal(err)
				}
				expected = 1 // an exact version goes through group commit
			}
			first, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: id, Expected: expected,
				Events: newEvents(t, "Withdrawn"), Metadata: meta, Idempotency: &complete})
			if err != nil {
				t.Fatalf("the run that completes first: %v", err)
			}
			_, err = store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: id, Expected: postgres.ExpectedVersion(first[0].Version),
				Events: newEvents(t, "Withdrawn"), Metadata: meta, Idempotency: &complete})
			if !errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
				t.Fatalf("the late run: %v, want ErrIdempotencyKeyCompleted", err)
			}
			evs, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "thing", AggregateID: id})
			if err != nil {
				t.Fatal(err)
			}
			if last := evs[len(evs)-1]; last.Version != first[0].Version {
				t.Fatalf("the stream ends at v%d %s, want the first run's v%d", last.Version, last.Type, first[0].Version)
			}
			// A refusal of the late run cannot overwrite the answer either.
			err = store.CompleteIdempotencyKey(ctx, "alice", key, hash, 422, json.RawMessage(`{"status":422}`))
			if !errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
				t.Fatalf("the late run's refusal: %v, want ErrIdempotencyKeyCompleted", err)
			}
			out, stored, err := store.ClaimIdempotencyKey(ctx, "alice", key, hash, time.Minute)
			if err != nil || out != postgres.Replay || stored.Status != 201 || !stored.AppendedEvents() {
				t.Fatalf("a retry now: %v %+v %v, want the first run's 201 replayed", out, stored, err)
			}
		})
	}
}

// An append Postgres did not answer (here: nobody listens) says that its
// outcome is unknown, so that nobody releases the key claimed for it while
// its transaction may still commit (chaos, seed 2: a release that ran before
// a stalled append committed let a retry deposit twice).
func TestAnUnansweredAppendHasAnUnknownOutcome(t *testing.T) {
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	_, err = postgres.NewStore(dead, nil).Append(context.Background(), postgres.AppendRequest{AggregateType: "thing", AggregateID: "u1",
		Expected: 3, Events: newEvents(t, "Made"), Metadata: meta})
	if !errors.Is(err, postgres.ErrAppendOutcomeUnknown) {
		t.Fatalf("append without an answer: %v, want ErrAppendOutcomeUnknown", err)
	}
	store := postgres.NewStore(testenv.Postgres(t), nil)
	_, err = store.Append(context.Background(), postgres.AppendRequest{AggregateType: "thing", AggregateID: "u1", Expected: 7,
		Events: newEvents(t, "Made"), Metadata: meta})
	if !errors.Is(err, postgres.ErrConcurrency) || errors.Is(err, postgres.ErrAppendOutcomeUnknown) {
		t.Fatalf("a refused append: %v, want ErrConcurrency, a known outcome", err)
	}
}
