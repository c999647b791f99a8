package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// OnBehalfOf is stored by every append path — group commit's plain
// statement, its statement with a snapshot and an Idempotency-Key, and the
// AnyVersion append — and read back by ReadStream and by the relay's feed.
func TestOnBehalfOfIsStoredAndRead(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	step := log.Metadata{CorrelationID: "corr-1", CausationID: "evt-1", Principal: "process-manager", OnBehalfOf: "user:alice"}
	own := log.Metadata{CorrelationID: "corr-2", CausationID: "cmd-2", Principal: "user:bob"}
	if out, _, err := store.ClaimIdempotencyKey(ctx, "process-manager", "k", []byte("h"), time.Minute); err != nil || out != postgres.Claimed {
		t.Fatalf("claim: %v %v", out, err)
	}
	appends := []postgres.AppendRequest{
		{AggregateType: "thing", AggregateID: "plain", Expected: postgres.NoStream, Events: newEvents(t, "Made"), Metadata: step},
		{AggregateType: "thing", AggregateID: "snapshot-and-key", Expected: postgres.NoStream, Events: newEvents(t, "Made", "Changed"), Metadata: step,
			Snapshot:    &postgres.Snapshot{Version: 2, SchemaVersion: 1, State: json.RawMessage(`{}`)},
			Idempotency: &postgres.IdempotencyCompletion{Principal: "process-manager", Key: "k", Status: 200, RequestHash: []byte("h")}},
		{AggregateType: "thing", AggregateID: "any-version", Expected: postgres.AnyVersion, Events: newEvents(t, "Made"), Metadata: step},
		{AggregateType: "thing", AggregateID: "for-itself", Expected: postgres.NoStream, Events: newEvents(t, "Made"), Metadata: own},
	}
	want := make(map[string]log.Metadata)
	for _, req := range appends {
		stored, err := store.Append(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", req.AggregateID, err)
		}
		for _, e := range stored {
			want[e.ID.String()] = req.Metadata
		}
		read, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "thing", AggregateID: req.AggregateID})
		if err != nil {
			t.Fatal(err)
		}
		if len(read) != len(req.Events) {
			t.Fatalf("%s: read %d events, appended %d", req.AggregateID, len(read), len(req.Events))
		}
		for _, e := range read {
			if e.Metadata != req.Metadata {
				t.Errorf("%s v%d read with metadata %+v, want %+v", req.AggregateID, e.Version, e.Metadata, req.Metadata)
			}
		}
	}
	var column int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE on_behalf_of = 'user:alice'`).Scan(&column); err != nil || column != 4 {
		t.Fatalf("%d rows with on_behalf_of = user:alice (%v), want 4", column, err)
	}

	feed, err := postgres.AcquireFeed(ctx, dbURL, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close(ctx)
	// The feed serves only what lies below the oldest transaction still
	// running on the server, in any database: other tests' transactions can
	// hold it back for a moment, so read until every event has come.
	var fed []postgres.FeedEvent
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fed, err = feed.Next(ctx, postgres.Position{}, 100); err != nil {
			t.Fatal(err)
		}
		if len(fed) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	if len(fed) != len(want) {
		t.Fatalf("the feed returned %d events, %d were appended", len(fed), len(want))
	}
	for _, e := range fed {
		if w := want[e.ID.String()]; e.Metadata != w {
			t.Errorf("feed: %s v%d has metadata %+v, want %+v", e.AggregateID, e.Version, e.Metadata, w)
		}
	}
}

// A stream's owner is the principal of its version 1, whoever appended
// after it: read alone (StreamOwner) and with a decision, with the events
// from version 1, from after a snapshot, and past an outdated snapshot.
func TestStreamOwner(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	appendAs := func(id string, expected postgres.ExpectedVersion, principal string, n int, snap *postgres.Snapshot) {
		t.Helper()
		types := make([]string, n)
		for i := range types {
			types[i] = "Changed"
		}
		if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "thing", AggregateID: id, Expected: expected, Events: newEvents(t, types...),
			Metadata: log.Metadata{CorrelationID: "c", CausationID: "c", Principal: principal, OnBehalfOf: "not-the-owner"}, Snapshot: snap}); err != nil {
			t.Fatal(err)
		}
	}
	// "plain": alice created it, bob and the process manager appended after.
	appendAs("plain", postgres.NoStream, "alice", 1, nil)
	appendAs("plain", 1, "bob", 2, nil)
	appendAs("plain", 3, "process-manager", 1, nil)
	// "snapshotted": alice created it; bob's append up to 6 took a snapshot
	// of state schema 2, and one more event followed.
	appendAs("snapshotted", postgres.NoStream, "alice", 1, nil)
	appendAs("snapshotted", 1, "bob", 5, &postgres.Snapshot{Version: 6, SchemaVersion: 2, State: json.RawMessage(`{}`)})
	appendAs("snapshotted", 6, "bob", 1, nil)

	for _, id := range []string{"plain", "snapshotted"} {
		owner, err := store.StreamOwner(ctx, "thing", id)
		if err != nil || owner != "alice" {
			t.Errorf("StreamOwner(%s) = %q, %v; want alice", id, owner, err)
		}
	}
	if owner, err := store.StreamOwner(ctx, "thing", "nobody"); err != nil || owner != "" {
		t.Errorf("StreamOwner of a stream without events = %q, %v; want empty", owner, err)
	}
	if owner, err := store.StreamOwner(ctx, "other-type", "plain"); err != nil || owner != "" {
		t.Errorf("StreamOwner of another type's stream of the same id = %q, %v; want empty", owner, err)
	}

	tests := []struct {
		name, id      string
		stateSchema   int
		snapshot      bool
		events        int
		owner         string
		streamVersion int64
	}{
		{"no snapshot", "plain", 2, false, 4, "alice", 4},
		{"from a snapshot", "snapshotted", 2, true, 1, "alice", 7},
		{"past an outdated snapshot", "snapshotted", 3, false, 7, "alice", 7},
		{"no stream", "nobody", 2, false, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := store.LoadForDecision(ctx, "thing", tt.id, tt.stateSchema)
			if err != nil {
				t.Fatal(err)
			}
			if (d.Snapshot != nil) != tt.snapshot || len(d.Events) != tt.events || d.Version() != tt.streamVersion {
				t.Fatalf("snapshot %+v, %d events, version %d; want snapshot %v, %d events, version %d",
					d.Snapshot, len(d.Events), d.Version(), tt.snapshot, tt.events, tt.streamVersion)
			}
			if d.Owner != tt.owner {
				t.Errorf("Owner = %q, want %q", d.Owner, tt.owner)
			}
		})
	}
}
