package aggregate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// A second domain, written here in a few lines, shows that the platform core
// runs any aggregate type without knowing it.

type counter struct {
	Count int64 `json:"count"`
}

type increment struct{ By int64 }

type incremented struct {
	By int64 `json:"by"`
}

func (incremented) EventType() string  { return "Incremented" }
func (incremented) SchemaVersion() int { return 1 }

var errNotPositive = errors.New("increment must be positive")

func counterType(stateSchemaVersion int) aggregate.Type[counter, increment, incremented] {
	return aggregate.Type[counter, increment, incremented]{
		Name:    "counter",
		Initial: func(string) counter { return counter{} },
		Decide: func(_ counter, c increment) ([]incremented, error) {
			if c.By <= 0 {
				return nil, errNotPositive
			}
			return []incremented{{By: c.By}}, nil
		},
		Evolve: func(s counter, e incremented) counter { s.Count += e.By; return s },
		DecodeEvent: func(typ string, payload []byte) (incremented, error) {
			var e incremented
			if typ != "Incremented" {
				return e, fmt.Errorf("unknown event %q", typ)
			}
			return e, json.Unmarshal(payload, &e)
		},
		StateSchemaVersion: stateSchemaVersion,
	}
}

func counterSchemas(t testing.TB) *log.Schemas {
	t.Helper()
	s, err := log.LoadSchemas(fstest.MapFS{"events/counter/Incremented.v1.json": {Data: []byte(`{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://schemas.tributary.dev/events/counter/Incremented.v1.json",
        "type": "object", "required": ["by"], "additionalProperties": false,
        "properties": {"by": {"type": "integer", "minimum": 1, "maximum": 1000}}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testMeta = log.Metadata{CorrelationID: "c", CausationID: "c", Principal: "test"}

// prefill appends n Incremented{By: 1} events straight to the store, without
// snapshots, as a long history written before snapshots existed would be.
func prefill(t testing.TB, store *postgres.Store, id string, n int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		batch := make([]log.NewEvent, min(1000, n-done))
		for i := range batch {
			batch[i] = log.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "Incremented", SchemaVersion: 1, Payload: json.RawMessage(`{"by":1}`)}
		}
		if _, err := store.Append(ctx, postgres.AppendRequest{AggregateType: "counter", AggregateID: id,
			Expected: postgres.ExpectedVersion(done), Events: batch, Metadata: testMeta}); err != nil {
			t.Fatal(err)
		}
		done += len(batch)
	}
}

func do(t testing.TB, h *aggregate.Handler[counter, increment, incremented], id string, by int64) aggregate.Result[counter] {
	t.Helper()
	res, err := h.Handle(context.Background(), aggregate.Request[increment]{AggregateID: id, Command: increment{By: by}, Metadata: testMeta})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// With snapshots every 100 events, a load never reads more than 100 events,
// however long the history (G9).
func TestSnapshotsBoundTheLoad(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	h := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{SnapshotEvery: 100})
	prefill(t, store, "c1", 10_000)

	// The first command folds all 10,000 events and leaves a snapshot.
	if res := do(t, h, "c1", 1); res.Version != 10_001 || res.State.Count != 10_001 {
		t.Fatalf("after first command: version %d count %d", res.Version, res.State.Count)
	}
	for i := range 250 {
		res := do(t, h, "c1", 1)
		d, err := store.LoadForDecision(ctx, "counter", "c1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if d.Snapshot == nil || len(d.Events) >= 100 {
			t.Fatalf("command %d: load read %d events after snapshot %+v, want fewer than 100", i, len(d.Events), d.Snapshot)
		}
		if res.State.Count != res.Version {
			t.Fatalf("command %d: count %d at version %d", i, res.State.Count, res.Version)
		}
	}
	state, version, err := h.Load(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	folded, _, err := h.StateAt(ctx, "c1", 0, zeroTime)
	if err != nil {
		t.Fatal(err)
	}
	if version != 10_251 || state != folded || state.Count != 10_251 {
		t.Fatalf("loaded %+v at %d, folded %+v; want count 10251", state, version, folded)
	}
}

// A snapshot written under an older state schema is ignored, never trusted,
// and so is one that does not decode.
func TestOutdatedOrBrokenSnapshotIsIgnored(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil)
	prefill(t, store, "c1", 150)
	// A lying snapshot under schema version 1: count 999999 at version 150.
	if _, err := pool.Exec(ctx, `INSERT INTO snapshots (aggregate_type, aggregate_id, version, schema_version, state)
        VALUES ('counter', 'c1', 150, 1, '{"count": 999999}')`); err != nil {
		t.Fatal(err)
	}
	v1 := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{})
	if s, _, _ := v1.Load(ctx, "c1"); s.Count != 999999 {
		t.Fatalf("control: the v1 handler should trust its own snapshot, got %d", s.Count)
	}

	v2 := aggregate.NewHandler(counterType(2), store, counterSchemas(t), aggregate.Options{SnapshotEvery: 100})
	s, version, err := v2.Load(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 150 || version != 150 {
		t.Fatalf("v2 handler loaded count %d at %d, want 150 at 150 (outdated snapshot ignored)", s.Count, version)
	}
	// Its next command replaces the outdated snapshot with a current one.
	do(t, v2, "c1", 1)
	var schema, at int
	if err := pool.QueryRow(ctx, `SELECT schema_version, version FROM snapshots WHERE aggregate_id = 'c1'`).Scan(&schema, &at); err != nil {
		t.Fatal(err)
	}
	if schema != 2 || at != 151 {
		t.Fatalf("snapshot now v%d at %d, want v2 at 151", schema, at)
	}

	// A current-version snapshot that does not decode is not trusted either.
	if _, err := pool.Exec(ctx, `UPDATE snapshots SET state = '{"count": "not a number"}'`); err != nil {
		t.Fatal(err)
	}
	if s, _, err := v2.Load(ctx, "c1"); err != nil || s.Count != 151 {
		t.Fatalf("with a broken snapshot: %+v %v, want count 151", s, err)
	}
}

func TestExpectedVersionFailsFast(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	h := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{})
	do(t, h, "c1", 1)
	do(t, h, "c1", 1)
	stale := int64(1)
	_, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 1}, ExpectedVersion: &stale, Metadata: testMeta})
	var mismatch *aggregate.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.Current != 2 || mismatch.Expected != 1 {
		t.Fatalf("got %v, want a version mismatch at current 2", err)
	}
	current := int64(2)
	if _, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 1}, ExpectedVersion: &current, Metadata: testMeta}); err != nil {
		t.Fatalf("expected version 2: %v", err)
	}
}

func TestDecideErrorsAndInvalidEventsStoreNothing(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	h := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{})
	if _, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 0}, Metadata: testMeta}); !errors.Is(err, errNotPositive) {
		t.Fatalf("got %v, want the decider's error", err)
	}
	// Decide allows 5000 but the event's schema caps "by" at 1000 (G8).
	_, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 5000}, Metadata: testMeta})
	var schemaErr *log.SchemaError
	if !errors.As(err, &schemaErr) {
		t.Fatalf("got %v, want a *log.SchemaError", err)
	}
	if v, _ := store.StreamVersion(ctx, "counter", "c1"); v != 0 {
		t.Fatalf("stream at version %d after refused commands, want 0", v)
	}
}

// Two handlers on one store stand for two writer processes: their commands
// on one aggregate race through optimistic concurrency and all land, once.
func TestHandlersInTwoProcessesSettleRaces(t *testing.T) {
	ctx := context.Background()
	store := postgres.NewStore(testenv.Postgres(t), nil)
	procs := []*aggregate.Handler[counter, increment, incremented]{
		aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{ConflictRetries: 50}),
		aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{ConflictRetries: 50, CacheSize: -1}),
	}
	var wg sync.WaitGroup
	const perProc = 40
	for _, h := range procs {
		for range 4 {
			wg.Go(func() {
				for range perProc / 4 {
					if _, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 1}, Metadata: testMeta}); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	wg.Wait()
	s, v, err := procs[0].Load(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if v != 2*perProc || s.Count != 2*perProc {
		t.Fatalf("count %d at version %d, want %d", s.Count, v, 2*perProc)
	}
}

// An append whose outcome is unknown (its batch ran out of time: it may
// still commit) is reported as such, also when the command was decided on
// cached state and its caller has gone: the handler must not load and
// decide again (with the caller's cancelled context that load fails, and the
// writer, no longer seeing an unknown outcome, would release the command's
// Idempotency-Key while the append can still commit; chaos found a
// withdrawal stored twice that way).
func TestAnAppendOfUnknownOutcomeIsNeverDecidedAgain(t *testing.T) {
	pool := testenv.Postgres(t)
	store := postgres.NewStore(pool, nil, postgres.WithBatchTimeout(300*time.Millisecond))
	h := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{})
	do(t, h, "c1", 1) // the state is cached now

	// Hold the events table: the next append waits past its batch's timeout.
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	cmdCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond) // the client gives up first
	defer cancel()
	_, err = h.Handle(cmdCtx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 2}, Metadata: testMeta})
	if !errors.Is(err, postgres.ErrAppendOutcomeUnknown) {
		t.Fatalf("got %v, want ErrAppendOutcomeUnknown", err)
	}
}

// Current and Owner answer from the cache what this process's last command
// left there — without the store (here, a closed pool) — and load what the
// cache does not hold.
func TestCurrentAndOwnerServeTheCache(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	h := aggregate.NewHandler(counterType(1), store, counterSchemas(t), aggregate.Options{})
	meta := testMeta
	meta.Principal = "alice"
	for range 2 {
		if _, err := h.Handle(ctx, aggregate.Request[increment]{AggregateID: "cached", Command: increment{By: 3}, Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	prefill(t, store, "not-cached", 4) // by "test", around the handler

	state, version, owner, err := h.Current(ctx, "not-cached")
	if err != nil || state.Count != 4 || version != 4 || owner != "test" {
		t.Fatalf("Current(not-cached) = %+v v%d owner %q, %v; want count 4 at v4 owned by test", state, version, owner, err)
	}
	if owner, err := h.Owner(ctx, "not-cached"); err != nil || owner != "test" {
		t.Fatalf("Owner(not-cached) = %q, %v; want test", owner, err)
	}
	if owner, err := h.Owner(ctx, "nobody"); err != nil || owner != "" {
		t.Fatalf("Owner(nobody) = %q, %v; want none", owner, err)
	}

	pool.Close()
	state, version, owner, err = h.Current(ctx, "cached")
	if err != nil || state.Count != 6 || version != 2 || owner != "alice" {
		t.Fatalf("Current(cached) = %+v v%d owner %q, %v; want count 6 at v2 owned by alice, from the cache", state, version, owner, err)
	}
	if owner, err := h.Owner(ctx, "cached"); err != nil || owner != "alice" {
		t.Fatalf("Owner(cached) = %q, %v; want alice, from the cache", owner, err)
	}
	if _, err := h.Owner(ctx, "not-cached"); err == nil {
		t.Fatal("Owner(not-cached) answered with the pool closed: a load was not added to the cache, so it must have asked the store")
	}
}

// statements counts what a pool sends Postgres: aggregate loads and
// group-commit appends (a pgx QueryTracer).
type statements struct {
	mu             sync.Mutex
	loads, appends int
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	sql := strings.TrimSpace(data.SQL)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.HasPrefix(sql, "WITH snap AS"):
		s.loads++
	case strings.Contains(sql, "tributary_append_commands("):
		s.appends++
	}
	return ctx
}

func (*statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the counts so far and starts again from zero.
func (s *statements) take() (loads, appends int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	loads, appends, s.loads, s.appends = s.loads, s.appends, 0, 0
	return loads, appends
}

// A command that creates an aggregate (Type.Creates) is decided without
// reading the store first; when the aggregate existed after all, its
// append's version check refuses it, nothing is written, and the command is
// decided again on the aggregate's state — owner check, expected version
// and Idempotency-Key included — as if it had been read first.
func TestACreatingCommandIsNotReadFirst(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	count := &statements{}
	cfg.ConnConfig.Tracer = count
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := postgres.NewStore(pool, nil)
	// Every increment may create its counter: the worst case for the
	// assumption, all of whose misses this test takes.
	typ := counterType(1)
	typ.Creates = func(increment) bool { return true }
	first := aggregate.NewHandler(typ, store, counterSchemas(t), aggregate.Options{})
	other := aggregate.NewHandler(typ, store, counterSchemas(t), aggregate.Options{CacheSize: -1}) // another process

	do(t, first, "c1", 2)
	if loads, appends := count.take(); loads != 0 || appends != 1 {
		t.Fatalf("a new aggregate: %d loads and %d appends, want 0 and 1", loads, appends)
	}
	do(t, first, "c1", 3) // cached
	if loads, appends := count.take(); loads != 0 || appends != 1 {
		t.Fatalf("a cached aggregate: %d loads and %d appends, want 0 and 1", loads, appends)
	}

	// Another process does not hold c1: its assumption fails at the append.
	res := do(t, other, "c1", 4)
	if res.Version != 3 || res.State.Count != 9 {
		t.Fatalf("on an existing aggregate: count %d at v%d, want 9 at v3", res.State.Count, res.Version)
	}
	if loads, appends := count.take(); loads != 1 || appends != 2 {
		t.Fatalf("an existing aggregate: %d loads and %d appends, want 1 and 2 (the refused one, then the decided one)", loads, appends)
	}

	// Decided again means checked again: the owner, ...
	errNotOwner := errors.New("not the owner")
	mallory := testMeta
	mallory.Principal = "mallory"
	_, err = other.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 1}, Metadata: mallory,
		Authorize: func(owner string) error {
			if owner != mallory.Principal {
				return errNotOwner
			}
			return nil
		}})
	if !errors.Is(err, errNotOwner) {
		t.Fatalf("a stranger's command on an existing aggregate: %v, want the owner check's refusal", err)
	}
	// ... the expected version, ...
	zero := int64(0)
	_, err = other.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 1}, ExpectedVersion: &zero, Metadata: testMeta})
	var mismatch *aggregate.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.Expected != 0 || mismatch.Current != 3 {
		t.Fatalf("expected version 0 on an existing aggregate: %v, want a mismatch at 3", err)
	}
	// ... and the Idempotency-Key, recorded with the append that stored the
	// events and only with it.
	hash := []byte("request")
	res, err = other.Handle(ctx, aggregate.Request[increment]{AggregateID: "c1", Command: increment{By: 5}, Metadata: testMeta,
		Idempotency: &postgres.IdempotencyCompletion{Principal: "test", Key: "k1", Status: 201, RequestHash: hash}})
	if err != nil || res.Version != 4 {
		t.Fatalf("with an Idempotency-Key: v%d, %v; want v4", res.Version, err)
	}
	stored, completed, err := store.LookupIdempotencyKey(ctx, "test", "k1")
	if err != nil || !completed || stored.FirstVersion != 4 || stored.LastVersion != 4 {
		t.Fatalf("the key: %+v completed %v, %v; want completed for version 4", stored, completed, err)
	}

	// Nothing was written twice, nor by the refused commands.
	s, v, err := first.Load(ctx, "c1")
	if err != nil || v != 4 || s.Count != 14 {
		t.Fatalf("c1: count %d at v%d, %v; want 14 at v4", s.Count, v, err)
	}
	events, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: "counter", AggregateID: "c1"})
	if err != nil || len(events) != 4 {
		t.Fatalf("c1 holds %d events, %v; want 4", len(events), err)
	}
	if events[0].Principal != "test" {
		t.Fatalf("c1's owner is %q, want test", events[0].Principal)
	}
}
