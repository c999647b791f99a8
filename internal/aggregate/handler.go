// Package aggregate runs commands against event-sourced aggregates of any
// domain: load (snapshot + later events), decide, validate, append with
// optimistic concurrency, snapshot. A domain plugs in as a Type of pure
// functions; this package knows nothing of any particular domain.
package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tributary-es/tributary/internal/decider"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
)

// Event is what a domain's events must tell the event log about themselves.
type Event interface {
	EventType() string
	SchemaVersion() int
}

// Type describes one aggregate type by its pure functions: a domain
// declares it (decider.Aggregate) without depending on this package.
type Type[S any, C any, E Event] = decider.Aggregate[S, C, E]

// VersionMismatchError: the command named an expected version that is not
// the current one. Nothing was written.
type VersionMismatchError struct {
	Expected, Current int64
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("expected version %d but the stream is at %d", e.Expected, e.Current)
}

// appendError is a failed append (not a refusal): it wraps the store's error
// as it is (ErrConcurrency, ErrAppendOutcomeUnknown, ...).
type appendError struct{ err error }

func (e *appendError) Error() string { return e.err.Error() }

func (e *appendError) Unwrap() error { return e.err }

// ErrConflict: concurrent commands kept winning the race for this aggregate
// through all of the handler's retries. Nothing was written; retry later.
var ErrConflict = errors.New("concurrent modification: retries exhausted")

// Options tune a Handler.
type Options struct {
	// SnapshotEvery stores a snapshot once this many events were appended
	// since the last usable one. 0 means 100.
	SnapshotEvery int
	// ConflictRetries bounds the retries of a command without an expected
	// version that lost a race to another process. 0 means 32: with the
	// jittered backoff (up to 16 ms) a loser keeps trying for a few hundred
	// milliseconds, long enough for a busy peer's queue on the same
	// aggregate to drain, so 409 means real, lasting contention.
	ConflictRetries int
	// CacheSize is how many aggregates' current state the handler keeps in
	// memory (least recently used go first). 0 means 10,000; negative
	// disables the cache.
	CacheSize int
}

// Handler runs commands for one aggregate type. It is safe for concurrent use.
type Handler[S any, C any, E Event] struct {
	typ     Type[S, C, E]
	store   *postgres.Store
	schemas *log.Schemas
	opts    Options
	// locks serializes commands on one aggregate inside this process, so that
	// optimistic concurrency only has to settle races between processes.
	locks *keyedMutex
	// cache holds the state after this process's last command on an
	// aggregate. It saves the load of a command, never its safety: the append
	// still names the cached version, a conflict evicts the entry, and a
	// refusal or version mismatch is only answered after a fresh load.
	cache *lru.Cache[string, loaded[S]]
}

// loaded is an aggregate's state at a version, the version of the snapshot
// it was (last) folded from, and its owner: the principal of its first
// event.
type loaded[S any] struct {
	state                    S
	version, snapshotVersion int64
	owner                    string
}

// NewHandler returns a handler that stores typ's events in store after
// validating them against schemas.
func NewHandler[S any, C any, E Event](typ Type[S, C, E], store *postgres.Store, schemas *log.Schemas, opts Options) *Handler[S, C, E] {
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = 100
	}
	if opts.ConflictRetries <= 0 {
		opts.ConflictRetries = 32
	}
	h := &Handler[S, C, E]{typ: typ, store: store, schemas: schemas, opts: opts, locks: newKeyedMutex()}
	if opts.CacheSize == 0 {
		opts.CacheSize = 10_000
	}
	if opts.CacheSize > 0 {
		h.cache, _ = lru.New[string, loaded[S]](opts.CacheSize) // only fails for a size <= 0
	}
	return h
}

// TypeName returns the aggregate type's name.
func (h *Handler[S, C, E]) TypeName() string { return h.typ.Name }

// Request is one command with its context.
type Request[C any] struct {
	AggregateID string
	Command     C
	// ExpectedVersion, if set, must equal the current version or the command
	// fails fast with a *VersionMismatchError (no retries).
	ExpectedVersion *int64
	// Metadata is stored with every event. CausationID should be the command's id.
	Metadata log.Metadata
	// Idempotency, if set, is completed atomically with the append.
	Idempotency *postgres.IdempotencyCompletion
	// Authorize, if set, is asked before anything is decided about an
	// aggregate that exists, with its owner (the principal of its first
	// event); its error is returned as it is and nothing is written. Nil
	// lets the command act on any aggregate: for the platform's own actors,
	// such as a process manager.
	Authorize func(owner string) error
}

// Result is what a command did.
type Result[S any] struct {
	AggregateType, AggregateID string
	// Version is the stream's version after the command.
	Version int64
	// Events are the appended events; empty if the command decided none.
	Events []log.Event
	// State is the aggregate's state after the command.
	State S
}

// Handle loads the aggregate, decides, validates and appends. Errors are the
// Decide function's own, *VersionMismatchError, ErrConflict, a
// *log.SchemaError, or infrastructure failures.
func (h *Handler[S, C, E]) Handle(ctx context.Context, req Request[C]) (Result[S], error) {
	unlock, err := h.locks.lock(ctx, req.AggregateID)
	if err != nil {
		return Result[S]{}, err
	}
	defer unlock()

	for attempt := 0; ; attempt++ {
		res, err := h.handleOnce(ctx, req, attempt == 0)
		if !errors.Is(err, postgres.ErrConcurrency) {
			return res, err
		}
		if req.ExpectedVersion != nil {
			current, verr := h.store.StreamVersion(ctx, h.typ.Name, req.AggregateID)
			if verr != nil {
				return Result[S]{}, verr
			}
			return Result[S]{}, &VersionMismatchError{Expected: *req.ExpectedVersion, Current: current}
		}
		if attempt >= h.opts.ConflictRetries {
			return Result[S]{}, fmt.Errorf("%s/%s: %w", h.typ.Name, req.AggregateID, ErrConflict)
		}
		// Another process won the race; back off a little, with jitter, and retry.
		backoff := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 4)))
		select {
		case <-ctx.Done():
			return Result[S]{}, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// handleOnce decides the command and appends its events. assumeNew lets a
// command that creates an aggregate (Type.Creates) be decided on the
// initial state when the cache does not hold the aggregate, with the
// append's version check (expected 0) as the proof; Handle allows it on the
// first attempt only.
func (h *Handler[S, C, E]) handleOnce(ctx context.Context, req Request[C], assumeNew bool) (Result[S], error) {
	var (
		cur loaded[S]
		src stateSource
		err error
	)
	if c, ok := h.cached(req.AggregateID); ok {
		cur, src = c, fromCache
	} else if assumeNew && h.typ.Creates != nil && h.typ.Creates(req.Command) {
		cur, src = loaded[S]{state: h.typ.Initial(req.AggregateID)}, assumedNew
	} else if cur, err = h.load(ctx, req.AggregateID); err != nil {
		return Result[S]{}, err
	}
	res, err := h.decideAndAppend(ctx, req, cur)
	if err == nil {
		return res, nil
	}
	if h.cache != nil {
		h.cache.Remove(req.AggregateID)
	}
	var failed *appendError
	if src == fromStore || errors.As(err, &failed) {
		// An append that failed is never decided again here: its outcome
		// may be unknown (it may still commit), or its Idempotency-Key
		// completed by another run; a conflict is retried by Handle, which
		// reads the aggregate first on every retry. (So is the conflict of
		// an aggregate assumed new that existed: nothing of it was written.)
		return Result[S]{}, err
	}
	// A refusal (or a version mismatch) decided on cached state, or on an
	// aggregate assumed new, is only trusted once a fresh load confirms it:
	// another process may have moved the aggregate on, or created it.
	if cur, err = h.load(ctx, req.AggregateID); err != nil {
		return Result[S]{}, err
	}
	return h.decideAndAppend(ctx, req, cur)
}

// stateSource is where a command's state came from.
type stateSource int

const (
	fromStore  stateSource = iota // loaded now: the truth as of this command
	fromCache                     // this process's last command left it
	assumedNew                    // not read: the initial state of a creating command
)

// cached returns the aggregate's state if the cache holds it.
func (h *Handler[S, C, E]) cached(id string) (loaded[S], bool) {
	if h.cache == nil {
		return loaded[S]{}, false
	}
	return h.cache.Get(id)
}

// current returns the aggregate's state from the cache, or loaded.
func (h *Handler[S, C, E]) current(ctx context.Context, id string) (loaded[S], error) {
	if cur, ok := h.cached(id); ok {
		return cur, nil
	}
	return h.load(ctx, id)
}

func (h *Handler[S, C, E]) decideAndAppend(ctx context.Context, req Request[C], cur loaded[S]) (Result[S], error) {
	if req.Authorize != nil && cur.version > 0 {
		// Before the version check: a 412 would tell a stranger the version.
		if err := req.Authorize(cur.owner); err != nil {
			return Result[S]{}, err
		}
	}
	if req.ExpectedVersion != nil && *req.ExpectedVersion != cur.version {
		return Result[S]{}, &VersionMismatchError{Expected: *req.ExpectedVersion, Current: cur.version}
	}
	decided, err := h.typ.Decide(cur.state, req.Command)
	if err != nil {
		return Result[S]{}, err
	}
	res := Result[S]{AggregateType: h.typ.Name, AggregateID: req.AggregateID, Version: cur.version, State: cur.state}
	if len(decided) == 0 {
		return res, nil
	}
	newEvents := make([]log.NewEvent, len(decided))
	for i, e := range decided {
		payload, err := json.Marshal(e)
		if err != nil {
			return Result[S]{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		if err := h.schemas.Validate(h.typ.Name, e.EventType(), e.SchemaVersion(), payload); err != nil {
			return Result[S]{}, err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return Result[S]{}, err
		}
		newEvents[i] = log.NewEvent{ID: id, Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Payload: payload}
		res.State = h.typ.Evolve(res.State, e)
	}
	appendReq := postgres.AppendRequest{
		AggregateType: h.typ.Name,
		AggregateID:   req.AggregateID,
		Expected:      postgres.ExpectedVersion(cur.version),
		Events:        newEvents,
		Metadata:      req.Metadata,
		Idempotency:   req.Idempotency,
	}
	newVersion := cur.version + int64(len(decided))
	snapshotVersion := cur.snapshotVersion
	if newVersion-cur.snapshotVersion >= int64(h.opts.SnapshotEvery) {
		state, err := json.Marshal(res.State)
		if err != nil {
			return Result[S]{}, fmt.Errorf("encode snapshot of %s/%s: %w", h.typ.Name, req.AggregateID, err)
		}
		appendReq.Snapshot = &postgres.Snapshot{Version: newVersion, SchemaVersion: h.typ.StateSchemaVersion, State: state}
		snapshotVersion = newVersion
	}
	stored, err := h.store.Append(ctx, appendReq)
	if err != nil {
		return Result[S]{}, &appendError{err}
	}
	res.Events, res.Version = stored, newVersion
	if h.cache != nil {
		owner := cur.owner
		if cur.version == 0 {
			owner = req.Metadata.Principal
		}
		h.cache.Add(req.AggregateID, loaded[S]{state: res.State, version: newVersion, snapshotVersion: snapshotVersion, owner: owner})
	}
	return res, nil
}

// load reads the aggregate's state and version from the store.
func (h *Handler[S, C, E]) load(ctx context.Context, id string) (loaded[S], error) {
	d, err := h.store.LoadForDecision(ctx, h.typ.Name, id, h.typ.StateSchemaVersion)
	if err != nil {
		return loaded[S]{}, err
	}
	cur := loaded[S]{state: h.typ.Initial(id), owner: d.Owner}
	if d.Snapshot != nil {
		if err := json.Unmarshal(d.Snapshot.State, &cur.state); err != nil {
			// A snapshot that does not decode is not trusted: fold from the start.
			state, version, err := h.fold(ctx, id, 0, time.Time{})
			return loaded[S]{state: state, version: version, owner: d.Owner}, err
		}
		cur.snapshotVersion = d.Snapshot.Version
	}
	cur.state, err = h.evolve(cur.state, d.Events)
	cur.version = d.Version()
	return cur, err
}

func (h *Handler[S, C, E]) evolve(state S, events []log.Event) (S, error) {
	for _, stored := range events {
		e, err := h.typ.DecodeEvent(stored.Type, stored.Payload)
		if err != nil {
			return state, fmt.Errorf("%s/%s v%d: %w", stored.AggregateType, stored.AggregateID, stored.Version, err)
		}
		state = h.typ.Evolve(state, e)
	}
	return state, nil
}

// fold replays a stream from its first event, without snapshots, up to
// untilVersion (if positive) and events recorded until (if not zero).
func (h *Handler[S, C, E]) fold(ctx context.Context, id string, untilVersion int64, until time.Time) (S, int64, error) {
	events, err := h.store.ReadStream(ctx, postgres.StreamQuery{
		AggregateType: h.typ.Name, AggregateID: id, UntilVersion: untilVersion, RecordedUntil: until,
	})
	state := h.typ.Initial(id)
	if err != nil {
		return state, 0, err
	}
	state, err = h.evolve(state, events)
	var version int64
	if len(events) > 0 {
		version = events[len(events)-1].Version
	}
	return state, version, err
}

// Load returns the current state of an aggregate and its version (0: none),
// read from the store.
func (h *Handler[S, C, E]) Load(ctx context.Context, id string) (S, int64, error) {
	cur, err := h.load(ctx, id)
	return cur.state, cur.version, err
}

// Current returns an aggregate's state, its version (0: none) and its owner
// (the principal of its first event; "" when there is none): from the
// handler's cache when it holds the aggregate, else loaded from the store.
// The cached state is the one after this process's last command on the
// aggregate, which another process may have moved on since: use Current
// where a state that lags is safe, as a process manager deciding whether a
// step is due (the step itself is then run by Handle, which settles any
// race). A load is not added to the cache.
func (h *Handler[S, C, E]) Current(ctx context.Context, id string) (state S, version int64, owner string, err error) {
	cur, err := h.current(ctx, id)
	return cur.state, cur.version, cur.owner, err
}

// Owner returns the principal of the aggregate's first event, or "" when it
// has none. An owner never changes, so a cached one is as good as the
// store's.
func (h *Handler[S, C, E]) Owner(ctx context.Context, id string) (string, error) {
	if h.cache != nil {
		if cur, ok := h.cache.Peek(id); ok && cur.version > 0 {
			return cur.owner, nil
		}
	}
	return h.store.StreamOwner(ctx, h.typ.Name, id)
}

// StateAt answers a temporal query: the state as of untilVersion (if
// positive) and as of the time until (if not zero), folded from the events.
func (h *Handler[S, C, E]) StateAt(ctx context.Context, id string, untilVersion int64, until time.Time) (S, int64, error) {
	return h.fold(ctx, id, untilVersion, until)
}
