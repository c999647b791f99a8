package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// ErrConcurrency means the stream is not at the expected version: another
// command appended first. Nothing was written.
var ErrConcurrency = errors.New("stream is not at the expected version")

// ErrAppendOutcomeUnknown means Postgres did not answer an append (the
// connection failed, or the batch timed out): its transaction may still
// commit. An Idempotency-Key claimed for it must not be released — a retry
// waits for the claim to expire, and the key's single completion settles
// which run stands.
var ErrAppendOutcomeUnknown = errors.New("the append's outcome is unknown")

// outcomeUnknown tells whether err leaves an append's outcome open: any
// error that is not Postgres' own answer.
func outcomeUnknown(err error) bool {
	var pgErr *pgconn.PgError
	return err != nil && !errors.As(err, &pgErr)
}

// ExpectedVersion is the version a stream must be at for an append to succeed.
// Use AnyVersion, NoStream or a positive exact version.
type ExpectedVersion int64

const (
	// AnyVersion appends whatever the stream's version is.
	AnyVersion ExpectedVersion = -1
	// NoStream appends only if the stream has no events yet.
	NoStream ExpectedVersion = 0
)

// anyVersionAttempts bounds the store's own retries of an AnyVersion append
// that collided with a concurrent one.
const anyVersionAttempts = 10

// Store is the event store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	upcasters *log.Upcasters
	group     *groupCommit
	tracer    trace.Tracer
	// traced tells whether a tracer provider other than a no-op one was
	// given: without it Append makes no span (and builds no attributes).
	traced bool
	// appended holds a value once appends committed since it was last
	// received (see Appended).
	appended chan struct{}
}

// StoreOption tunes a Store.
type StoreOption func(*Store)

// WithGroupCommit sets how many append batches may be on their way to
// Postgres at once (default 1; each has its own committer goroutine and
// connection), and how many commands one batch holds at most (default 128).
// Appends that arrive while all slots are busy wait and go together in the
// next batch. One slot measured best: with 16 clients on the writer
// benchmark, two slots made smaller batches and fewer commands/s
// (docs/BENCHMARKS.md; BenchmarkAppendConcurrent compares them).
func WithGroupCommit(maxInFlight, maxBatch int) StoreOption {
	return func(s *Store) { s.group.maxInFlight, s.group.maxBatch = max(1, maxInFlight), max(1, maxBatch) }
}

// WithBatchTimeout bounds the round trip of one group-commit batch (30s by
// default). A batch that runs out answers its appends with
// ErrAppendOutcomeUnknown: they may still commit.
func WithBatchTimeout(d time.Duration) StoreOption {
	return func(s *Store) {
		if d > 0 {
			s.group.batchTimeout = d
		}
	}
}

// WithTracerProvider makes an "append" span of every Append with tp
// (none by default); the pool's own tracer (otelpgx) shows the statements.
func WithTracerProvider(tp trace.TracerProvider) StoreOption {
	return func(s *Store) {
		if _, off := tp.(noop.TracerProvider); off {
			return
		}
		s.tracer, s.traced = tp.Tracer("github.com/tributary-es/tributary/internal/log/postgres"), true
	}
}

// NewStore returns a store over pool that upcasts every event it reads.
// upcasters may be nil when no event type has an old schema version.
func NewStore(pool *pgxpool.Pool, upcasters *log.Upcasters, opts ...StoreOption) *Store {
	s := &Store{pool: pool, upcasters: upcasters, tracer: noop.NewTracerProvider().Tracer(""), appended: make(chan struct{}, 1)}
	s.group = newGroupCommit(s, 1, 128)
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Pool returns the connection pool, for health checks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Appended receives a value after appends through this store were sent to
// Postgres: one value for any number of them since it was last received,
// none while nobody asks (it never blocks an append). It tells a relay in
// the same process that there may be events to publish, so it need not poll
// for them (relay.Config.Appended); one reader only.
func (s *Store) Appended() <-chan struct{} { return s.appended }

// announceAppend makes Appended receive a value, unless one is waiting.
func (s *Store) announceAppend() {
	select {
	case s.appended <- struct{}{}:
	default:
	}
}

// Snapshot is the folded state of an aggregate at a version, as JSON.
type Snapshot struct {
	Version       int64
	SchemaVersion int
	State         json.RawMessage
}

// IdempotencyCompletion records an idempotency key, completed, in the same
// transaction as the append, so a retry can never append twice: it completes
// the key's claim, or inserts the key when the request did not claim it
// first. The append fails with ErrIdempotencyKeyCompleted when the key was
// completed already, and with ErrIdempotencyKeyMismatch when it belongs to
// another request (another RequestHash); nothing is written then.
type IdempotencyCompletion struct {
	Principal, Key string
	Status         int
	// RequestHash identifies the request (ClaimIdempotencyKey's requestHash).
	RequestHash []byte
}

// AppendRequest is one atomic append to one stream.
type AppendRequest struct {
	AggregateType, AggregateID string
	Expected                   ExpectedVersion
	Events                     []log.NewEvent
	Metadata                   log.Metadata
	// Snapshot, if set, is stored in the same transaction; its Version must be
	// the stream's version after this append.
	Snapshot *Snapshot
	// Idempotency, if set, records the key completed in the same transaction.
	Idempotency *IdempotencyCompletion
}

const appendSQL = `
WITH current AS (
    SELECT coalesce(max(version), 0) AS v FROM events
    WHERE aggregate_type = $1 AND aggregate_id = $2
)
INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                    payload, correlation_id, causation_id, principal, on_behalf_of, traceparent, tracestate)
SELECT e.id, $1, $2, current.v + e.ord, e.type, e.schema_version,
       e.payload::jsonb, $7, $8, $9, $13, $10, $11
FROM current,
     unnest($4::uuid[], $5::text[], $6::int[], $12::text[])
         WITH ORDINALITY AS e(id, type, schema_version, payload, ord)
WHERE $3::bigint < 0 OR current.v = $3
RETURNING event_id, version, global_position, recorded_at`

// The snapshot and the idempotency completion run in the same implicit
// transaction as the insert (one pgx batch, one Sync). Each is guarded on the
// last appended event existing, so neither writes when the insert did not.
const snapshotSQL = `
INSERT INTO snapshots (aggregate_type, aggregate_id, version, schema_version, state)
SELECT $1, $2, $3, $4, $5::jsonb WHERE EXISTS (SELECT 1 FROM events WHERE event_id = $6)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
    SET version = excluded.version, schema_version = excluded.schema_version,
        state = excluded.state, taken_at = now()
    WHERE snapshots.version < excluded.version OR snapshots.schema_version <> excluded.schema_version`

const completeKeySQL = `
INSERT INTO idempotency_keys AS k (principal, key, request_hash, claimed_until, completed_at, response_status,
                                   aggregate_type, aggregate_id, first_version, last_version)
SELECT $1, $2, $7, now(), now(), $3, $4, $5, appended.first, appended.last
FROM (SELECT min(version) AS first, max(version) AS last FROM events WHERE event_id = ANY($6::uuid[])) appended
WHERE appended.last IS NOT NULL
ON CONFLICT (principal, key) DO UPDATE
    SET completed_at = excluded.completed_at, response_status = excluded.response_status, request_hash = excluded.request_hash,
        aggregate_type = excluded.aggregate_type, aggregate_id = excluded.aggregate_id,
        first_version = excluded.first_version, last_version = excluded.last_version`

// Append writes req.Events to the stream as versions current+1, current+2, …
// atomically. It returns the stored events with their versions, global
// positions and recorded time, or ErrConcurrency when the stream is not at
// req.Expected (or a concurrent append won the race).
//
// Appends at an exact expected version (or NoStream) go through group commit:
// concurrent ones share a round trip and a commit, each still atomic on its
// own. The version they expect was committed before their transaction took
// its id, so the transaction id that the relay orders by keeps per-stream
// order. AnyVersion appends go alone, as the first write of their own
// transaction, for the same reason.
func (s *Store) Append(ctx context.Context, req AppendRequest) (events []log.Event, err error) {
	if !s.traced {
		return s.append(ctx, req)
	}
	ctx, span := s.tracer.Start(ctx, "append "+req.AggregateType, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.DBSystemNamePostgreSQL,
			semconv.DBOperationName("append"),
			attribute.String("tributary.aggregate.type", req.AggregateType),
			attribute.String("tributary.aggregate.id", req.AggregateID),
			attribute.Int64("tributary.expected_version", int64(req.Expected)),
			attribute.Int("tributary.events", len(req.Events)),
		),
		trace.WithAttributes(telemetry.EventAttributes(req.Metadata.CorrelationID, req.Metadata.CausationID)...))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else if len(events) > 0 {
			span.SetAttributes(attribute.Int64("tributary.version", events[len(events)-1].Version),
				attribute.Int64("tributary.global_position", events[len(events)-1].GlobalPosition))
		}
		span.End()
	}()
	return s.append(ctx, req)
}

func (s *Store) append(ctx context.Context, req AppendRequest) ([]log.Event, error) {
	if len(req.Events) == 0 {
		return nil, errors.New("append: no events")
	}
	if req.Expected < AnyVersion {
		return nil, fmt.Errorf("append: invalid expected version %d", req.Expected)
	}
	if req.Expected != AnyVersion {
		return s.group.append(ctx, req)
	}
	for attempt := 1; ; attempt++ {
		events, err := s.appendOnce(ctx, req)
		if errors.Is(err, ErrConcurrency) && req.Expected == AnyVersion && attempt < anyVersionAttempts {
			continue
		}
		return events, err
	}
}

func (s *Store) appendOnce(ctx context.Context, req AppendRequest) ([]log.Event, error) {
	n := len(req.Events)
	ids := make([]uuid.UUID, n)
	types := make([]string, n)
	versions := make([]int32, n)
	payloads := make([]string, n)
	for i, e := range req.Events {
		ids[i], types[i], versions[i], payloads[i] = e.ID, e.Type, int32(e.SchemaVersion), string(e.Payload)
	}
	m := req.Metadata
	lastID := ids[n-1]

	batch := &pgx.Batch{}
	if req.Expected == AnyVersion {
		// Appends that do not care about the version queue up per stream
		// instead of racing each other.
		batch.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))`, req.AggregateType, req.AggregateID)
	}
	batch.Queue(appendSQL, req.AggregateType, req.AggregateID, int64(req.Expected), ids, types, versions,
		m.CorrelationID, m.CausationID, m.Principal, m.TraceParent, m.TraceState, payloads, m.OnBehalfOf)
	if snap := req.Snapshot; snap != nil {
		batch.Queue(snapshotSQL, req.AggregateType, req.AggregateID, snap.Version, snap.SchemaVersion, string(snap.State), lastID)
	}
	if idem := req.Idempotency; idem != nil {
		batch.Queue(completeKeySQL, idem.Principal, idem.Key, idem.Status, req.AggregateType, req.AggregateID, ids, requestHash(idem.RequestHash))
	}

	results := s.pool.SendBatch(ctx, batch)
	stored, err := scanAppended(results, req)
	if closeErr := results.Close(); err == nil {
		err = closeErr
	}
	if isUniqueViolation(err, "events_stream_version") {
		return nil, fmt.Errorf("append to %s/%s: %w", req.AggregateType, req.AggregateID, ErrConcurrency)
	}
	if isKeyCompletedAlready(err) {
		return nil, fmt.Errorf("append to %s/%s: %w", req.AggregateType, req.AggregateID, ErrIdempotencyKeyCompleted)
	}
	if isKeyOfAnotherRequest(err) {
		return nil, fmt.Errorf("append to %s/%s: %w", req.AggregateType, req.AggregateID, ErrIdempotencyKeyMismatch)
	}
	if outcomeUnknown(err) {
		return nil, fmt.Errorf("append to %s/%s: %w: %w", req.AggregateType, req.AggregateID, ErrAppendOutcomeUnknown, err)
	}
	if err != nil {
		return nil, fmt.Errorf("append to %s/%s: %w", req.AggregateType, req.AggregateID, err)
	}
	if len(stored) != n {
		return nil, fmt.Errorf("append to %s/%s at version %d: %w", req.AggregateType, req.AggregateID, req.Expected, ErrConcurrency)
	}
	return stored, nil
}

func scanAppended(results pgx.BatchResults, req AppendRequest) ([]log.Event, error) {
	if req.Expected == AnyVersion {
		if _, err := results.Exec(); err != nil {
			return nil, err
		}
	}
	rows, err := results.Query()
	if err != nil {
		return nil, err
	}
	byID := make(map[uuid.UUID]int, len(req.Events))
	for i, e := range req.Events {
		byID[e.ID] = i
	}
	stored := make([]log.Event, 0, len(req.Events))
	for rows.Next() {
		var e log.Event
		if err := rows.Scan(&e.ID, &e.Version, &e.GlobalPosition, &e.RecordedAt); err != nil {
			rows.Close()
			return nil, err
		}
		src := req.Events[byID[e.ID]]
		e.AggregateType, e.AggregateID = req.AggregateType, req.AggregateID
		e.Type, e.SchemaVersion, e.Payload, e.Metadata = src.Type, src.SchemaVersion, src.Payload, req.Metadata
		stored = append(stored, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(stored, func(a, b log.Event) int { return cmp.Compare(a.Version, b.Version) })
	for range batchLen(req) - 1 {
		if _, err := results.Exec(); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

func batchLen(req AppendRequest) int {
	n := 1
	if req.Snapshot != nil {
		n++
	}
	if req.Idempotency != nil {
		n++
	}
	return n
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// Decision is what a command needs to decide: the newest usable snapshot (if
// any) and the events after it, upcast to their current schema versions, and
// who may act on the stream.
type Decision struct {
	Snapshot *Snapshot
	Events   []log.Event
	// Owner is the principal of the stream's version-1 event (see
	// StreamOwner); empty when the stream has no events.
	Owner string
}

// Version is the stream's version: that of the last event, or the snapshot's.
func (d Decision) Version() int64 {
	if len(d.Events) > 0 {
		return d.Events[len(d.Events)-1].Version
	}
	if d.Snapshot != nil {
		return d.Snapshot.Version
	}
	return 0
}

// The snapshot, the events after it and the owner come from one statement,
// so they are read from one consistent view in one round trip. A snapshot of
// another state schema version is not selected: it is ignored, never trusted
// (G9). The last column is the owner: on the snapshot row the principal of
// version 1 (one index probe, not among the events read), on the row of
// version 1 its principal, elsewhere empty.
const loadSQL = `
WITH snap AS (
    SELECT version, state FROM snapshots
    WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version = $3
)
SELECT true, version, '', 0, state,
       coalesce((SELECT principal FROM events
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version = 1), '')
FROM snap
UNION ALL
(SELECT false, version, event_type, schema_version, payload,
        CASE WHEN version = 1 THEN principal ELSE '' END
 FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
   AND version > coalesce((SELECT version FROM snap), 0)
 ORDER BY version)`

// LoadForDecision reads the newest snapshot of stateSchemaVersion, the
// events after it and the stream's owner. Events carry only what folding
// needs (type, version, schema version, payload); use ReadStream for the full
// envelope.
func (s *Store) LoadForDecision(ctx context.Context, aggregateType, aggregateID string, stateSchemaVersion int) (Decision, error) {
	rows, err := s.pool.Query(ctx, loadSQL, aggregateType, aggregateID, stateSchemaVersion)
	if err != nil {
		return Decision{}, fmt.Errorf("load %s/%s: %w", aggregateType, aggregateID, err)
	}
	defer rows.Close()
	var d Decision
	for rows.Next() {
		var (
			isSnapshot bool
			owner      string
			e          = log.Event{AggregateType: aggregateType, AggregateID: aggregateID}
		)
		if err := rows.Scan(&isSnapshot, &e.Version, &e.Type, &e.SchemaVersion, &e.Payload, &owner); err != nil {
			return Decision{}, fmt.Errorf("load %s/%s: %w", aggregateType, aggregateID, err)
		}
		if isSnapshot || e.Version == 1 {
			d.Owner = owner
		}
		if isSnapshot {
			d.Snapshot = &Snapshot{Version: e.Version, SchemaVersion: stateSchemaVersion, State: e.Payload}
			continue
		}
		if e, err = s.upcasters.Upcast(e); err != nil {
			return Decision{}, err
		}
		d.Events = append(d.Events, e)
	}
	if err := rows.Err(); err != nil {
		return Decision{}, fmt.Errorf("load %s/%s: %w", aggregateType, aggregateID, err)
	}
	return d, nil
}

const eventColumns = `event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload,
    recorded_at, global_position, correlation_id, causation_id, principal, on_behalf_of, traceparent, tracestate`

// StreamQuery selects a range of one stream.
type StreamQuery struct {
	AggregateType, AggregateID string
	// AfterVersion skips versions up to and including it.
	AfterVersion int64
	// UntilVersion, if positive, stops after that version.
	UntilVersion int64
	// RecordedUntil, if not zero, stops before the first event recorded after it.
	RecordedUntil time.Time
	// Limit, if positive, caps the number of events.
	Limit int
}

// ReadStream returns the events of one stream in version order with their
// full envelope, upcast to their current schema versions (G8).
func (s *Store) ReadStream(ctx context.Context, q StreamQuery) ([]log.Event, error) {
	until := q.UntilVersion
	if until <= 0 {
		until = 1<<63 - 1
	}
	var recordedUntil *time.Time
	if !q.RecordedUntil.IsZero() {
		recordedUntil = &q.RecordedUntil
	}
	limit := int64(q.Limit)
	if limit <= 0 {
		limit = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
        WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 AND version <= $4
          AND ($5::timestamptz IS NULL OR recorded_at <= $5)
        ORDER BY version LIMIT $6`,
		q.AggregateType, q.AggregateID, q.AfterVersion, until, recordedUntil, limit)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", q.AggregateType, q.AggregateID, err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", q.AggregateType, q.AggregateID, err)
	}
	for i := range events {
		if events[i], err = s.upcasters.Upcast(events[i]); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// StreamVersion returns the current version of a stream, 0 if it has no events.
func (s *Store) StreamVersion(ctx context.Context, aggregateType, aggregateID string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2`,
		aggregateType, aggregateID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("version of %s/%s: %w", aggregateType, aggregateID, err)
	}
	return v, nil
}

// StreamOwner returns the principal of the stream's version-1 event — who
// created the stream, and may act on it and read it (G11) — or "" when the
// stream has no events. One index probe; LoadForDecision returns the same as
// Decision.Owner.
func (s *Store) StreamOwner(ctx context.Context, aggregateType, aggregateID string) (string, error) {
	var owner string
	err := s.pool.QueryRow(ctx, `SELECT principal FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND version = 1`,
		aggregateType, aggregateID).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("owner of %s/%s: %w", aggregateType, aggregateID, err)
	}
	return owner, nil
}

func scanEvent(row pgx.CollectableRow) (log.Event, error) {
	var e log.Event
	err := row.Scan(&e.ID, &e.AggregateType, &e.AggregateID, &e.Version, &e.Type, &e.SchemaVersion, &e.Payload,
		&e.RecordedAt, &e.GlobalPosition, &e.CorrelationID, &e.CausationID, &e.Principal, &e.OnBehalfOf, &e.TraceParent, &e.TraceState)
	return e, err
}
