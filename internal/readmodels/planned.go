package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Planned is a Projection whose writes are planned in Go, event by event,
// and sent as plain Redis commands, with the step's bookkeeping, in one
// MULTI/EXEC: the same step as the Lua one (owner check, versions, gaps,
// position; see stepScript), at about half of Redis's time an event —
// Redis spends most of a Lua step on the calls a script makes and on the
// script's own strings, not on what the commands do (docs/BENCHMARKS.md,
// "Issue 16: writes planned in Go").
//
// The step reads what Plan may need first — the owner's epoch, the
// versions, and StateHashes' fields of the batch's aggregates — with those
// keys WATCHed, plans every event, then writes in MULTI/EXEC: if any of the
// keys changed in between (another owner claimed the partition, a replay
// wrote), nothing is written and the step runs again from the reads.
//
// Its Lua stays the reference a test holds Plan to.
type Planned interface {
	Projection
	// StateHashes names the partition's hashes (keys Prefix + name) whose
	// field <aggregate id> Plan reads through Writes.Get.
	StateHashes() []string
	// Plan appends to w what one event writes: id and version are its
	// aggregate's, args what Args returned (never empty). An error fails
	// the event: nothing it planned is written.
	Plan(w *Writes, id string, version int64, args []string) error
}

// Writes is what a Planned projection's events write in one step of a
// partition: commands, and the fields of its state hashes, read before the
// step and written once, at its end.
type Writes struct {
	prefix string
	cmds   [][]any
	state  map[string]map[string]field // hash → aggregate id → field
	order  map[string][]string         // hash → ids set, in the order first set
	hashes []string                    // the hashes set, in the order first set
	undo   []undoField                 // the current event's sets, to take back if it fails
}

// field is a state hash's field as the step sees it.
type field struct {
	value         string
	present, read bool
	set           bool
}

type undoField struct {
	hash, id string
	was      field
	existed  bool
}

func newWrites(prefix string) *Writes {
	return &Writes{prefix: prefix, state: make(map[string]map[string]field), order: make(map[string][]string)}
}

// Prefix is the partition's key prefix: the projection's keys are Prefix + name.
func (w *Writes) Prefix() string { return w.prefix }

// Command appends a Redis command, e.g. w.Command("ZADD", w.Prefix()+"history:"+id, version, entry).
func (w *Writes) Command(args ...any) { w.cmds = append(w.cmds, args) }

// Get returns field id of state hash h (one of StateHashes) as the step
// left it, and whether it is there. It panics for a field the step did not
// read: an id other than the events' or a hash not in StateHashes.
func (w *Writes) Get(h, id string) (string, bool) {
	f, ok := w.state[h][id]
	if !ok || !f.read && !f.set {
		panic(fmt.Sprintf("readmodels: %s of %q was not read: only StateHashes' fields of the batch's aggregates are", h, id))
	}
	return f.value, f.present
}

// Set sets field id of hash h, written with the step's end (h need not be
// one of StateHashes when Plan never reads it).
func (w *Writes) Set(h, id, value string) {
	fields := w.state[h]
	if fields == nil {
		fields = make(map[string]field)
		w.state[h] = fields
	}
	was, existed := fields[id]
	w.undo = append(w.undo, undoField{h, id, was, existed})
	if !was.set {
		if _, ok := w.order[h]; !ok {
			w.hashes = append(w.hashes, h)
		}
		w.order[h] = append(w.order[h], id)
	}
	fields[id] = field{value: value, present: true, read: was.read, set: true}
}

// event starts an event: what it plans can be taken back.
func (w *Writes) event() (cmds int) {
	w.undo = w.undo[:0]
	return len(w.cmds)
}

// takeBack drops what the current event planned.
func (w *Writes) takeBack(cmds int) {
	w.cmds = w.cmds[:cmds]
	for i := len(w.undo) - 1; i >= 0; i-- {
		u := w.undo[i]
		if !u.existed {
			delete(w.state[u.hash], u.id)
		} else {
			w.state[u.hash][u.id] = u.was
		}
		if !u.was.set {
			ids := w.order[u.hash]
			w.order[u.hash] = ids[:len(ids)-1]
		}
	}
	w.undo = w.undo[:0]
}

// flush appends the state hashes' writes: one HSET per hash.
func (w *Writes) flush() {
	for _, h := range w.hashes {
		ids := w.order[h]
		args := make([]any, 0, 2+2*len(ids))
		args = append(args, "HSET", w.prefix+h)
		for _, id := range ids {
			args = append(args, id, w.state[h][id].value)
			if len(args) >= 2+2*stepChunk {
				w.cmds = append(w.cmds, args)
				args = append(make([]any, 0, 2+2*len(ids)), "HSET", w.prefix+h)
			}
		}
		if len(args) > 2 {
			w.cmds = append(w.cmds, args)
		}
	}
}

// plannedCall is one step of lanes of one partition whose projections are
// all Planned: one MULTI/EXEC.
type plannedCall struct {
	rdb   redis.UniversalClient
	lanes []Lane
}

// laneRead is what a lane's step reads before planning.
type laneRead struct {
	streams []string
	ids     []string
	epoch   *redis.StringCmd
	vers    *redis.SliceCmd
	state   []*redis.SliceCmd // per StateHashes
}

// stepChunk is the most fields a planned step writes in one HSET.
const stepChunk = 500

// maxTxAttempts bounds the reruns of a step whose WATCHed keys changed.
const maxTxAttempts = 20

// run runs the step, again from its reads while a WATCHed key changed.
func (c *plannedCall) run(ctx context.Context) ([]Result, []error) {
	for attempt := 1; ; attempt++ {
		results, errs, err := c.attempt(ctx)
		if errors.Is(err, redis.TxFailedErr) && attempt < maxTxAttempts && ctx.Err() == nil {
			continue
		}
		if err != nil {
			errs = make([]error, len(c.lanes))
			for k, l := range c.lanes {
				errs[k] = l.wrap(err)
			}
			return make([]Result, len(c.lanes)), errs
		}
		return results, errs
	}
}

// watched is every key whose change between the reads and the writes
// would change what the step writes.
func (c *plannedCall) watched() []string {
	var keys []string
	for _, l := range c.lanes {
		b, layout := l.Batch, l.Steps.layout
		if b.Epoch != "" {
			keys = append(keys, layout.Position(b.Generation, b.Partition))
		}
		keys = append(keys, layout.Versions(b.Generation, b.Partition))
		for _, h := range l.Steps.planned.StateHashes() {
			keys = append(keys, layout.Prefix(b.Generation, b.Partition)+h)
		}
	}
	return keys
}

// attempt reads, plans and writes once; err is redis.TxFailedErr when a
// WATCHed key changed (nothing was written).
func (c *plannedCall) attempt(ctx context.Context) (results []Result, errs []error, err error) {
	rdb, ok := c.rdb.(*redis.Client)
	if !ok {
		// A Cluster or Ring client: a transaction on the one node of the
		// lanes' keys (one slot: fused lanes are only on one server).
		err = c.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var err error
			results, errs, _, err = c.attemptOn(ctx, tx)
			return err
		}, c.watched()...)
		return results, errs, err
	}
	conn := rdb.Conn()
	defer conn.Close()
	results, errs, exec, err := c.attemptOn(ctx, conn)
	if !exec {
		// EXEC, run or refused, ends the WATCH; without it the connection
		// goes back to the pool unwatched.
		_ = conn.Do(context.WithoutCancel(ctx), "UNWATCH").Err()
	}
	return results, errs, err
}

// txConn is what a step's reads and MULTI/EXEC run on: one connection,
// whose WATCH holds until EXEC.
type txConn interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
	TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// attemptOn reads with the keys WATCHed, plans, and writes in MULTI/EXEC
// on conn; exec says that EXEC ran.
func (c *plannedCall) attemptOn(ctx context.Context, conn txConn) (results []Result, errs []error, exec bool, err error) {
	reads := make([]laneRead, len(c.lanes))
	_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		watch := []any{"WATCH"}
		for _, k := range c.watched() {
			watch = append(watch, k)
		}
		p.Do(ctx, watch...)
		for k, l := range c.lanes {
			reads[k] = l.read(ctx, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, false, err
	}
	if hook := c.lanes[0].Steps.beforeWrite; hook != nil {
		hook()
	}
	results = make([]Result, len(c.lanes))
	errs = make([]error, len(c.lanes))
	var cmds [][]any
	for k, l := range c.lanes {
		var laneCmds [][]any
		results[k], laneCmds, errs[k] = l.plan(reads[k])
		cmds = append(cmds, laneCmds...)
	}
	if len(cmds) == 0 {
		return results, errs, false, nil
	}
	_, err = conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, cmd := range cmds {
			p.Do(ctx, cmd...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, errors.Is(err, redis.TxFailedErr), err
	}
	return results, errs, true, nil
}

// read queues the lane's reads.
func (l Lane) read(ctx context.Context, p redis.Pipeliner) laneRead {
	b, layout := l.Batch, l.Steps.layout
	var r laneRead
	streams, ids := map[string]bool{}, map[string]bool{}
	for _, it := range b.Items {
		if it.Stream == "" {
			continue
		}
		if !streams[it.Stream] {
			streams[it.Stream] = true
			r.streams = append(r.streams, it.Stream)
		}
		if len(it.Args) > 0 && !ids[it.ID] {
			ids[it.ID] = true
			r.ids = append(r.ids, it.ID)
		}
	}
	if b.Epoch != "" {
		r.epoch = p.HGet(ctx, layout.Position(b.Generation, b.Partition), "epoch:"+b.Topic)
	}
	if len(r.streams) > 0 {
		r.vers = p.HMGet(ctx, layout.Versions(b.Generation, b.Partition), r.streams...)
	}
	if len(r.ids) > 0 {
		for _, h := range l.Steps.planned.StateHashes() {
			r.state = append(r.state, p.HMGet(ctx, layout.Prefix(b.Generation, b.Partition)+h, r.ids...))
		}
	}
	return r
}

// plan is the lane's step over what it read: its result and commands, or
// its error — as the Lua step's lane (see stepScript) would end.
func (l Lane) plan(r laneRead) (Result, [][]any, error) {
	b, layout, p := l.Batch, l.Steps.layout, l.Steps.planned
	if r.epoch != nil && r.epoch.Val() != b.Epoch {
		return Result{}, nil, ErrFenced
	}
	cur := make(map[string]int64, len(r.streams))
	if r.vers != nil {
		for k, s := range r.streams {
			if v, ok := r.vers.Val()[k].(string); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return Result{}, nil, l.wrap(fmt.Errorf("version of %s: %w", s, err))
				}
				cur[s] = n
			}
		}
	}
	prefix := layout.Prefix(b.Generation, b.Partition)
	w := newWrites(prefix)
	for h, cmd := range r.state {
		name := p.StateHashes()[h]
		fields := make(map[string]field, len(r.ids))
		for k, id := range r.ids {
			v, ok := cmd.Val()[k].(string)
			fields[id] = field{value: v, present: ok, read: true}
		}
		w.state[name] = fields
	}
	var res Result
	var changed []string
	isChanged := make(map[string]bool)
	var next int64 = -1
	var failed error
	for idx, it := range b.Items {
		if it.Stream == "" {
			res.Outcomes = append(res.Outcomes, Skipped)
			next = it.Offset + 1
			continue
		}
		have := cur[it.Stream]
		switch {
		case it.Version <= have:
			res.Outcomes = append(res.Outcomes, Duplicate)
		case it.Version > have+1:
			res.Gap = &Gap{Index: idx, Applied: have}
		default:
			if len(it.Args) > 0 {
				mark := w.event()
				if err := planEvent(p, w, it); err != nil {
					w.takeBack(mark)
					failed = err
					break
				}
			}
			if !isChanged[it.Stream] {
				isChanged[it.Stream] = true
				changed = append(changed, it.Stream)
			}
			cur[it.Stream] = it.Version
			res.Outcomes = append(res.Outcomes, Applied)
		}
		if res.Gap != nil || failed != nil {
			break
		}
		next = it.Offset + 1
	}
	w.flush()
	if len(changed) > 0 {
		args := []any{"HSET", layout.Versions(b.Generation, b.Partition)}
		for _, s := range changed {
			args = append(args, s, cur[s])
		}
		w.cmds = append(w.cmds, args)
	}
	if failed != nil {
		return Result{}, w.cmds, l.wrap(failed)
	}
	if b.Epoch != "" {
		pos := []any{"HSET", layout.Position(b.Generation, b.Partition)}
		if next >= 0 {
			pos = append(pos, "next:"+b.Topic, next)
		}
		if b.CaughtUp && res.Gap == nil {
			pos = append(pos, "caughtup:"+b.Topic, "1")
		}
		if len(pos) > 2 {
			w.cmds = append(w.cmds, pos)
		}
	}
	return res, w.cmds, nil
}

// planEvent runs Plan on one event; a panic in it fails the event.
func planEvent(p Planned, w *Writes, it Item) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plan %s of %s: %v", it.Stream, it.ID, r)
		}
	}()
	return p.Plan(w, it.ID, it.Version, it.Args)
}
