package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-es/tributary/internal/log"
)

// groupCommit gathers appends that arrive while earlier ones are on their
// way to Postgres, and sends each gathering as one statement in one
// transaction (tributary_append_commands): one round trip and one WAL flush for many
// commands. Each command still succeeds or conflicts on its own.
//
// A committer goroutine runs while appends wait: it sends the oldest ones,
// settles them, and takes the next batch at once, so under load batches
// follow each other without a hand-off between goroutines; it ends when the
// queue is empty. Callers only wait for their own append to be settled.
type groupCommit struct {
	store *Store
	// maxInFlight bounds the batches on their way at once (one committer
	// each); maxBatch the commands in one batch.
	maxInFlight, maxBatch int
	// batchTimeout bounds one batch's round trip; past it, its commands'
	// outcome is unknown (ErrAppendOutcomeUnknown).
	batchTimeout time.Duration

	mu         sync.Mutex
	waiting    []*pendingAppend
	committers int
}

type pendingAppend struct {
	ctx    context.Context // the caller's, without its cancellation: the trace of the batch
	req    AppendRequest
	done   chan struct{} // closed once events and err are set
	events []log.Event
	err    error
}

// defaultBatchTimeout bounds one batch's round trip. A batch runs detached
// from the callers' contexts: once sent, its outcome is reported to every
// waiter (see WithBatchTimeout).
const defaultBatchTimeout = 30 * time.Second

func newGroupCommit(s *Store, maxInFlight, maxBatch int) *groupCommit {
	return &groupCommit{store: s, maxInFlight: maxInFlight, maxBatch: maxBatch, batchTimeout: defaultBatchTimeout}
}

func (g *groupCommit) append(ctx context.Context, req AppendRequest) ([]log.Event, error) {
	p := &pendingAppend{ctx: context.WithoutCancel(ctx), req: req, done: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, p)
	if g.committers < g.maxInFlight {
		g.committers++
		go g.commit()
	}
	g.mu.Unlock()
	<-p.done
	return p.events, p.err
}

// commit sends batches until no append is waiting.
func (g *groupCommit) commit() {
	var args batchArgs
	g.mu.Lock()
	for len(g.waiting) > 0 {
		batch := g.take()
		g.mu.Unlock()
		g.send(batch[0].ctx, batch, &args)
		g.store.announceAppend()
		for _, p := range batch {
			close(p.done)
		}
		g.mu.Lock()
	}
	g.committers--
	g.mu.Unlock()
}

// take removes the oldest waiting appends from the queue, at most maxBatch
// and at most one per stream: the batch checks every command's expected
// version before it inserts any, so a second append to the same stream waits
// for the next batch (where it sees the first one's events). g.mu is held.
func (g *groupCommit) take() []*pendingAppend {
	n := min(len(g.waiting), g.maxBatch)
	batch := make([]*pendingAppend, 0, n)
	streams := make(map[streamKey]struct{}, n)
	rest := g.waiting[:0]
	for _, p := range g.waiting {
		k := streamKey{p.req.AggregateType, p.req.AggregateID}
		if _, dup := streams[k]; dup || len(batch) == g.maxBatch {
			rest = append(rest, p)
			continue
		}
		streams[k] = struct{}{}
		batch = append(batch, p)
	}
	clear(g.waiting[len(rest):])
	g.waiting = rest
	return batch
}

type streamKey struct{ aggregateType, aggregateID string }

func (g *groupCommit) send(ctx context.Context, batch []*pendingAppend, args *batchArgs) {
	ctx, cancel := context.WithTimeout(ctx, g.batchTimeout)
	defer cancel()
	err := g.execute(ctx, batch, args)
	if (isUniqueViolation(err, "events_stream_version") || isKeyCompletedAlready(err) || isKeyOfAnotherRequest(err) ||
		isCardinalityViolation(err)) && len(batch) > 1 {
		// Another process took a version between a command's check and its
		// insert, or completed a command's Idempotency-Key first (or for
		// another request), or two commands of the batch carry the same key:
		// the whole batch failed. Send the commands one by one: only the late
		// one fails.
		for _, p := range batch {
			g.settle(p, g.execute(ctx, []*pendingAppend{p}, args))
		}
		return
	}
	for _, p := range batch {
		g.settle(p, err)
	}
}

// settle sets a command's outcome from its batch's error and returned rows.
func (g *groupCommit) settle(p *pendingAppend, err error) {
	r := p.req
	switch {
	case isUniqueViolation(err, "events_stream_version"):
		p.events, p.err = nil, fmt.Errorf("append to %s/%s at version %d: %w", r.AggregateType, r.AggregateID, r.Expected, ErrConcurrency)
	case isKeyCompletedAlready(err):
		p.events, p.err = nil, fmt.Errorf("append to %s/%s: %w", r.AggregateType, r.AggregateID, ErrIdempotencyKeyCompleted)
	case isKeyOfAnotherRequest(err):
		p.events, p.err = nil, fmt.Errorf("append to %s/%s: %w", r.AggregateType, r.AggregateID, ErrIdempotencyKeyMismatch)
	case outcomeUnknown(err):
		p.events, p.err = nil, fmt.Errorf("append to %s/%s: %w: %w", r.AggregateType, r.AggregateID, ErrAppendOutcomeUnknown, err)
	case err != nil:
		p.events, p.err = nil, fmt.Errorf("append to %s/%s: %w", r.AggregateType, r.AggregateID, err)
	case len(p.events) == 0:
		p.err = fmt.Errorf("append to %s/%s at version %d: %w", r.AggregateType, r.AggregateID, r.Expected, ErrConcurrency)
	case len(p.events) != len(r.Events):
		p.events, p.err = nil, fmt.Errorf("append to %s/%s: %d of %d events came back", r.AggregateType, r.AggregateID, len(p.events), len(r.Events))
	default:
		slices.SortFunc(p.events, func(a, b log.Event) int { return cmp.Compare(a.Version, b.Version) })
	}
}

// eventAt locates a sent event: its command in the batch, its place in the command.
type eventAt struct{ cmd, ord int }

// batchArgs is a batch laid out as tributary_append_commands' arguments, one
// array per column. A committer reuses one for all its batches: pgx encodes
// the arguments before Query returns.
type batchArgs struct {
	cType, cID, cCorrelation, cCausation, cPrincipal []string
	cOnBehalfOf, cTraceParent, cTraceState           []string
	cSnapState                                       []string
	cIdemPrincipal, cIdemKey                         []string
	cIdemHash                                        [][]byte
	cExpected, cSnapVersion                          []int64
	cSnapSchema, cIdemStatus                         []int32
	eCmd, eOrd, eSchema                              []int32
	eID                                              [][16]byte // not uuid.UUID: pgx would encode each through its driver.Valuer, as text
	eType                                            []string
	ePayload                                         [][]byte // encoded as text without a copy to a string
	// sent locates each event of the batch.
	sent map[uuid.UUID]eventAt
}

// fill lays batch out, replacing what a held before.
func (a *batchArgs) fill(batch []*pendingAppend) {
	if a.sent == nil {
		a.sent = make(map[uuid.UUID]eventAt, len(batch))
	}
	clear(a.sent)
	a.cType, a.cID, a.cCorrelation, a.cCausation, a.cPrincipal = a.cType[:0], a.cID[:0], a.cCorrelation[:0], a.cCausation[:0], a.cPrincipal[:0]
	a.cOnBehalfOf, a.cTraceParent, a.cTraceState, a.cSnapState = a.cOnBehalfOf[:0], a.cTraceParent[:0], a.cTraceState[:0], a.cSnapState[:0]
	a.cIdemPrincipal, a.cIdemKey, a.cIdemHash = a.cIdemPrincipal[:0], a.cIdemKey[:0], a.cIdemHash[:0]
	a.cExpected, a.cSnapVersion, a.cSnapSchema, a.cIdemStatus = a.cExpected[:0], a.cSnapVersion[:0], a.cSnapSchema[:0], a.cIdemStatus[:0]
	a.eCmd, a.eOrd, a.eSchema, a.eID, a.eType, a.ePayload = a.eCmd[:0], a.eOrd[:0], a.eSchema[:0], a.eID[:0], a.eType[:0], a.ePayload[:0]
	for i, p := range batch {
		r, m := p.req, p.req.Metadata
		a.cType, a.cID, a.cExpected = append(a.cType, r.AggregateType), append(a.cID, r.AggregateID), append(a.cExpected, int64(r.Expected))
		a.cCorrelation, a.cCausation, a.cPrincipal = append(a.cCorrelation, m.CorrelationID), append(a.cCausation, m.CausationID), append(a.cPrincipal, m.Principal)
		a.cOnBehalfOf, a.cTraceParent, a.cTraceState = append(a.cOnBehalfOf, m.OnBehalfOf), append(a.cTraceParent, m.TraceParent), append(a.cTraceState, m.TraceState)
		snapVersion, snapSchema, snapState := int64(0), int32(0), "null"
		if s := r.Snapshot; s != nil {
			snapVersion, snapSchema, snapState = s.Version, int32(s.SchemaVersion), string(s.State)
		}
		a.cSnapVersion, a.cSnapSchema, a.cSnapState = append(a.cSnapVersion, snapVersion), append(a.cSnapSchema, snapSchema), append(a.cSnapState, snapState)
		idemPrincipal, idemKey, idemStatus, idemHash := "", "", int32(0), []byte{}
		if k := r.Idempotency; k != nil {
			idemPrincipal, idemKey, idemStatus, idemHash = k.Principal, k.Key, int32(k.Status), requestHash(k.RequestHash)
		}
		a.cIdemPrincipal, a.cIdemKey, a.cIdemStatus = append(a.cIdemPrincipal, idemPrincipal), append(a.cIdemKey, idemKey), append(a.cIdemStatus, idemStatus)
		a.cIdemHash = append(a.cIdemHash, idemHash)
		for j, e := range r.Events {
			a.sent[e.ID] = eventAt{cmd: i, ord: j}
			a.eCmd, a.eOrd, a.eSchema = append(a.eCmd, int32(i+1)), append(a.eOrd, int32(j+1)), append(a.eSchema, int32(e.SchemaVersion))
			a.eID, a.eType, a.ePayload = append(a.eID, [16]byte(e.ID)), append(a.eType, e.Type), append(a.ePayload, e.Payload)
		}
	}
}

// execute sends one batch and collects each command's returned events.
func (g *groupCommit) execute(ctx context.Context, batch []*pendingAppend, a *batchArgs) error {
	for _, p := range batch {
		p.events = nil
	}
	a.fill(batch)
	rows, err := g.store.pool.Query(ctx, appendBatchSQL,
		a.cType, a.cID, a.cExpected, a.cCorrelation, a.cCausation, a.cPrincipal, a.cOnBehalfOf, a.cTraceParent, a.cTraceState,
		a.cSnapVersion, a.cSnapSchema, a.cSnapState, a.cIdemPrincipal, a.cIdemKey, a.cIdemStatus, a.cIdemHash,
		a.eCmd, a.eOrd, a.eID, a.eType, a.eSchema, a.ePayload)
	if err == nil {
		for rows.Next() {
			var e log.Event
			if err = rows.Scan((*[16]byte)(&e.ID), &e.Version, &e.GlobalPosition, &e.RecordedAt); err != nil {
				break
			}
			at, ok := a.sent[e.ID]
			if !ok {
				err = fmt.Errorf("batch returned event %s that it did not send", e.ID)
				break
			}
			p := batch[at.cmd]
			src := p.req.Events[at.ord]
			e.AggregateType, e.AggregateID = p.req.AggregateType, p.req.AggregateID
			e.Type, e.SchemaVersion, e.Payload, e.Metadata = src.Type, src.SchemaVersion, src.Payload, p.req.Metadata
			p.events = append(p.events, e)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	return err
}

// appendBatchSQL appends a batch of commands in one statement: see
// migrations/004_append_commands.sql for how each command succeeds or
// conflicts on its own (its latest form is in 008_idempotency_in_the_append.sql). A loop in plpgsql (003) paid an executor start-up and
// a plan per command, ~100 µs each, more than the inserts themselves. The
// batch holds one command per stream (groupCommit.take).
const appendBatchSQL = `SELECT o_event_id, o_version, o_global_position, o_recorded_at
FROM tributary_append_commands($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`

// isCardinalityViolation tells whether err is an upsert meeting one row
// twice: two commands of a batch with the same idempotency key.
func isCardinalityViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "21000"
}
