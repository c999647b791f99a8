package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Transaction ids sort as numbers, not as text: 10 comes after 9, 100 after
// 99 (small ids, below the watermark on any server).
// (Sorting the text form once put a stream's version 2 before its version 1,
// and the checkpoint then skipped version 1 for good.)
func TestFeedSortsTransactionIDsAsNumbers(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal, transaction_id)
        VALUES (gen_random_uuid(), 'thing', 't1', 1, 'Made', 1, '{"n": 1}', 'c', 'c', 'p', '9'),
               (gen_random_uuid(), 'thing', 't1', 2, 'Changed', 1, '{"n": 2}', 'c', 'c', 'p', '10'),
               (gen_random_uuid(), 'thing', 't1', 3, 'Changed', 1, '{"n": 3}', 'c', 'c', 'p', '99'),
               (gen_random_uuid(), 'thing', 't1', 4, 'Changed', 1, '{"n": 4}', 'c', 'c', 'p', '100')`); err != nil {
		t.Fatal(err)
	}
	feed, err := postgres.AcquireFeed(ctx, dbURL, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close(ctx)
	var versions []int64
	pos := postgres.Position{}
	for {
		batch, err := feed.Next(ctx, pos, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		versions = append(versions, batch[0].Version)
		if string(batch[0].Payload) == "" {
			t.Fatal("empty payload")
		}
		pos = batch[0].Position
		if err := feed.Commit(ctx, pos); err != nil {
			t.Fatal(err)
		}
	}
	if len(versions) != 4 || versions[0] != 1 || versions[1] != 2 || versions[2] != 3 || versions[3] != 4 {
		t.Fatalf("feed returned versions %v, want [1 2 3 4]", versions)
	}
	if cp, _ := feed.Checkpoint(ctx); cp.TransactionID != 100 {
		t.Fatalf("checkpoint %+v", cp)
	}
}

// Only one process holds a feed; it is free again once the holder closes.
func TestFeedLeadership(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	first, err := postgres.AcquireFeed(ctx, dbURL, "relay", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.AcquireFeed(ctx, dbURL, "relay", nil); err != postgres.ErrNotLeader {
		t.Fatalf("second acquire: %v, want ErrNotLeader", err)
	}
	other, err := postgres.AcquireFeed(ctx, dbURL, "another-name", nil)
	if err != nil {
		t.Fatalf("a feed of another name: %v", err)
	}
	other.Close(ctx)
	first.Close(ctx)
	again, err := postgres.AcquireFeed(ctx, dbURL, "relay", nil)
	if err != nil {
		t.Fatalf("acquire after the leader closed: %v", err)
	}
	again.Close(ctx)
}

// The backlog count walks the commit-order index from the checkpoint, also
// in the generic plan a prepared statement switches to after five runs: a
// relay measures it every second, and a scan of the whole table grows with
// the table.
func TestTheBacklogCountUsesTheCommitOrderIndex(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal)
        SELECT gen_random_uuid(), 'thing', 't' || (g / 10), g % 10 + 1, 'Made', 1, '{}', 'c', 'c', 'p' FROM generate_series(0, 49999) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	defer conn.Exec(context.Background(), `DEALLOCATE ALL; RESET plan_cache_mode`) //nolint:errcheck // the pool's connection goes back clean
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE backlog(text, bigint, bigint) AS `+postgres.BacklogSQL); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE backlog('0', 0, 10000000)`)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "events_commit_order") || strings.Contains(text, "Seq Scan") {
		t.Fatalf("the backlog's generic plan does not walk events_commit_order:\n%s", text)
	}
}
