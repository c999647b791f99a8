package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

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

// batchTimeout bounds one batch's round trip. A batch runs detached from the
// callers' contexts: once sent, its outcome is reported to every waiter.
const batchTimeout = 30 * time.Second

func newGroupCommit(s *Store, maxInFlight, maxBatch int) *groupCommit {
	return &groupCommit{store: s, maxInFlight: maxInFlight, maxBatch: maxBatch}
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
	g.mu.Lock()
	for len(g.waiting) > 0 {
		batch := g.take()
		g.mu.Unlock()
		g.send(batch[0].ctx, batch)
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

func (g *groupCommit) send(ctx context.Context, batch []*pendingAppend) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	err := g.execute(ctx, batch)
	if (isUniqueViolation(err, "events_stream_version") || isKeyCompletedAlready(err)) && len(batch) > 1 {
		// Another process took a version between a command's check and its
		// insert, or completed a command's Idempotency-Key first, which failed
		// the whole batch. Send the commands one by one: only the late one
		// fails.
		for _, p := range batch {
			g.settle(p, g.execute(ctx, []*pendingAppend{p}))
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

// execute sends one batch and collects each command's returned events.
func (g *groupCommit) execute(ctx context.Context, batch []*pendingAppend) error {
	for _, p := range batch {
		p.events = nil
	}

	c := len(batch)
	sent := make(map[uuid.UUID]eventAt, c)
	var (
		cType, cID, cCorrelation, cCausation, cPrincipal = make([]string, c), make([]string, c), make([]string, c), make([]string, c), make([]string, c)
		cTraceParent, cTraceState, cSnapState            = make([]string, c), make([]string, c), make([]string, c)
		cIdemPrincipal, cIdemKey                         = make([]string, c), make([]string, c)
		cExpected, cSnapVersion                          = make([]int64, c), make([]int64, c)
		cSnapSchema, cIdemStatus                         = make([]int32, c), make([]int32, c)
		eCmd, eOrd, eSchema                              []int32
		eID                                              [][16]byte // not uuid.UUID: pgx would encode each through its driver.Valuer, as text
		eType, ePayload                                  []string
	)
	for i, p := range batch {
		r := p.req
		cType[i], cID[i], cExpected[i] = r.AggregateType, r.AggregateID, int64(r.Expected)
		m := r.Metadata
		cCorrelation[i], cCausation[i], cPrincipal[i], cTraceParent[i], cTraceState[i] = m.CorrelationID, m.CausationID, m.Principal, m.TraceParent, m.TraceState
		if s := r.Snapshot; s != nil {
			cSnapVersion[i], cSnapSchema[i], cSnapState[i] = s.Version, int32(s.SchemaVersion), string(s.State)
		} else {
			cSnapState[i] = "null"
		}
		if k := r.Idempotency; k != nil {
			cIdemPrincipal[i], cIdemKey[i], cIdemStatus[i] = k.Principal, k.Key, int32(k.Status)
		}
		for j, e := range r.Events {
			sent[e.ID] = eventAt{cmd: i, ord: j}
			eCmd = append(eCmd, int32(i+1))
			eOrd = append(eOrd, int32(j+1))
			eID = append(eID, [16]byte(e.ID))
			eType = append(eType, e.Type)
			eSchema = append(eSchema, int32(e.SchemaVersion))
			ePayload = append(ePayload, string(e.Payload))
		}
	}
	rows, err := g.store.pool.Query(ctx, appendBatchSQL,
		cType, cID, cExpected, cCorrelation, cCausation, cPrincipal, cTraceParent, cTraceState,
		cSnapVersion, cSnapSchema, cSnapState, cIdemPrincipal, cIdemKey, cIdemStatus,
		eCmd, eOrd, eID, eType, eSchema, ePayload)
	if err == nil {
		for rows.Next() {
			var e log.Event
			if err = rows.Scan((*[16]byte)(&e.ID), &e.Version, &e.GlobalPosition, &e.RecordedAt); err != nil {
				break
			}
			at, ok := sent[e.ID]
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
// conflicts on its own. A loop in plpgsql (003) paid an executor start-up and
// a plan per command, ~100 µs each, more than the inserts themselves. The
// batch holds one command per stream (groupCommit.take).
const appendBatchSQL = `SELECT o_event_id, o_version, o_global_position, o_recorded_at
FROM tributary_append_commands($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`
