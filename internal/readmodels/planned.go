package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Planned is a Projection whose writes are planned in Go, event by event,
// and sent as plain Redis commands, with the step's bookkeeping, in one
// MULTI/EXEC: the same step as the Lua one (owner check, versions, gaps,
// position; see stepScript) at about half of Redis's time an event — Redis
// spends most of a Lua step on the calls a script makes and on the
// script's own strings, not on what the commands do (docs/BENCHMARKS.md,
// "Issue 16: writes planned in Go").
//
// A planned step runs in three round trips on one connection:
//  1. WATCH the owner's epoch, the versions and every field Reads names,
//     and read them;
//  2. plan the events; TYPE the keys the commands write that no read
//     showed the type of: an event that would write a key of another type
//     (something else wrote there) fails before anything of it is written,
//     as a failing Lua apply does, and is retried, then dead-lettered;
//  3. MULTI, the commands, the versions and position, EXEC. If a WATCHed
//     key changed since 1 (another owner claimed the partition, a replay
//     wrote), nothing is written and the step runs again from 1.
//
// Its Lua stays: the reference a test holds Plan to.
type Planned interface {
	Projection
	// Reads names the hash fields Plan reads, through Writes.Get, for an
	// event of aggregate id.
	Reads(id string) []Field
	// Plan appends to w what one event writes: id and version are its
	// aggregate's, args what Args returned (never empty). An error fails
	// the event: nothing it planned is written.
	Plan(w *Writes, id string, version int64, args []string) error
}

// Field is a field of a hash of the partition: its key is Prefix + Key.
type Field struct {
	Key, Field string
}

// ErrWrongType: a key the step writes holds another type than its commands
// write (something else wrote it). The event fails as a failing apply does.
var ErrWrongType = errors.New("key holds another type")

// Writes is what a Planned projection's events write in one step of a
// partition: commands, and hash fields, read before the step and written
// at its end with one HSET per key.
type Writes struct {
	prefix string
	cmds   [][]any
	fields map[string]map[string]fieldValue // key (with prefix) → field → value
	order  map[string][]string              // key → fields set, in the order first set
	keys   []string                         // the keys set, in the order first set
	undo   []undoField                      // the current event's sets, to take back if it fails
	// types are the keys' types as the reads or TYPE showed them ("none"
	// for missing); bad the keys of another type than the step writes.
	types map[string]string
	bad   map[string]string
}

// fieldValue is a hash field as the step sees it.
type fieldValue struct {
	value              string
	present, read, set bool
}

type undoField struct {
	key, field string
	was        fieldValue
	existed    bool
}

func newWrites(prefix string) *Writes {
	return &Writes{prefix: prefix, fields: make(map[string]map[string]fieldValue), order: make(map[string][]string),
		types: make(map[string]string), bad: make(map[string]string)}
}

// Prefix is the partition's key prefix: the projection's keys are Prefix + name.
func (w *Writes) Prefix() string { return w.prefix }

// Command appends a Redis command whose key is its first argument, e.g.
// w.Command("ZADD", w.Prefix()+"history:"+id, version, entry). A key that
// Plan reads or Sets must be written only through Set.
func (w *Writes) Command(args ...any) {
	if len(args) > 1 {
		if key, ok := args[1].(string); ok {
			w.check(key, writes(args[0]))
		}
	}
	w.cmds = append(w.cmds, args)
}

// Get returns field f of hash Prefix + key as the step left it, and
// whether it is there. It panics for a field Reads did not name.
func (w *Writes) Get(key, f string) (string, bool) {
	key = w.prefix + key
	w.check(key, "hash")
	v, ok := w.fields[key][f]
	if !ok || !v.read && !v.set {
		panic(fmt.Sprintf("readmodels: field %q of %s was not read: Reads names what a plan may Get", f, key))
	}
	return v.value, v.present
}

// Set sets field f of hash Prefix + key: written with the step's end, one
// HSET per key.
func (w *Writes) Set(key, f, value string) {
	key = w.prefix + key
	w.check(key, "hash")
	fields := w.fields[key]
	if fields == nil {
		fields = make(map[string]fieldValue)
		w.fields[key] = fields
	}
	was, existed := fields[f]
	w.undo = append(w.undo, undoField{key, f, was, existed})
	if !was.set {
		if _, ok := w.order[key]; !ok {
			w.keys = append(w.keys, key)
		}
		w.order[key] = append(w.order[key], f)
	}
	fields[f] = fieldValue{value: value, present: true, read: was.read, set: true}
}

// planFailure is a failure Writes raises inside Plan.
type planFailure struct{ err error }

// check fails the event if key holds another type than typ.
func (w *Writes) check(key, typ string) {
	if msg, ok := w.bad[key]; ok {
		panic(planFailure{fmt.Errorf("%s: %w: %s", key, ErrWrongType, msg)})
	}
	if typ == "" {
		return
	}
	if have := w.types[key]; have != "" && have != "none" && have != typ {
		panic(planFailure{fmt.Errorf("%s: %w: %s, written as a %s", key, ErrWrongType, have, typ)})
	}
	if _, ok := w.types[key]; !ok {
		w.types[key] = "" // to be TYPEd before the writes
	}
}

// writes is the type of key a command writes; "" for any (DEL, EXPIRE…).
func writes(cmd any) string {
	name, _ := cmd.(string)
	switch strings.ToUpper(name) {
	case "HSET", "HINCRBY", "HDEL", "HSETNX", "HINCRBYFLOAT":
		return "hash"
	case "ZADD", "ZINCRBY", "ZREM", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK":
		return "zset"
	case "RPUSH", "LPUSH", "LTRIM", "LREM", "LSET":
		return "list"
	case "SADD", "SREM":
		return "set"
	case "SET", "INCRBY", "DECRBY", "INCR", "DECR", "APPEND":
		return "string"
	}
	return ""
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
			delete(w.fields[u.key], u.field)
		} else {
			w.fields[u.key][u.field] = u.was
		}
		if !u.was.set {
			fs := w.order[u.key]
			w.order[u.key] = fs[:len(fs)-1]
		}
	}
	w.undo = w.undo[:0]
}

// flush appends the fields set: one HSET per key.
func (w *Writes) flush() {
	for _, key := range w.keys {
		fs := w.order[key]
		for start := 0; start < len(fs); start += stepChunk {
			part := fs[start:min(start+stepChunk, len(fs))]
			args := make([]any, 0, 2+2*len(part))
			args = append(args, "HSET", key)
			for _, f := range part {
				args = append(args, f, w.fields[key][f].value)
			}
			w.cmds = append(w.cmds, args)
		}
	}
}

// stepChunk is the most fields a planned step writes in one HSET.
const stepChunk = 500

// maxTxAttempts bounds the reruns of a step whose WATCHed keys changed.
const maxTxAttempts = 20

// plannedCall is one step of lanes of one partition whose projections are
// all Planned: one MULTI/EXEC.
type plannedCall struct {
	rdb   redis.UniversalClient
	lanes []Lane
}

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

// attempt reads, plans and writes once; err is redis.TxFailedErr when a
// WATCHed key changed (nothing was written).
func (c *plannedCall) attempt(ctx context.Context) (results []Result, errs []error, err error) {
	rdb, ok := c.rdb.(*redis.Client)
	if !ok {
		// A Cluster or Ring client: a transaction on the node of the lanes'
		// keys (one slot: fused lanes are only on one server).
		err = c.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var err error
			results, errs, _, err = c.attemptOn(ctx, tx)
			return err
		}, c.lanes[0].Steps.layout.Versions(c.lanes[0].Batch.Generation, c.lanes[0].Batch.Partition))
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

// laneRead is what a lane's step reads before planning.
type laneRead struct {
	streams []string
	epoch   *redis.StringCmd
	vers    *redis.SliceCmd
	keys    []string            // the hashes Reads names, with prefix, in order
	fields  map[string][]string // key → fields
	values  map[string]*redis.SliceCmd
}

// attemptOn runs the step's three round trips on conn; exec says that
// EXEC ran.
func (c *plannedCall) attemptOn(ctx context.Context, conn txConn) (results []Result, errs []error, exec bool, err error) {
	reads := make([]laneRead, len(c.lanes))
	for k, l := range c.lanes {
		reads[k] = l.reads()
	}
	_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		watch := []any{"WATCH"}
		for k, l := range c.lanes {
			watch = append(watch, l.watched(reads[k])...)
		}
		p.Do(ctx, watch...)
		for k, l := range c.lanes {
			l.queueReads(ctx, p, &reads[k])
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, nil, false, err
	}
	// Plan; TYPE what the plans write that no read showed; plan again
	// with what TYPE found.
	plans := make([]*lanePlan, len(c.lanes))
	for k, l := range c.lanes {
		plans[k] = l.plan(reads[k], nil)
	}
	unknown := map[string]*redis.StatusCmd{}
	for _, p := range plans {
		for key, typ := range p.w.types {
			if typ == "" {
				unknown[key] = nil
			}
		}
	}
	if len(unknown) > 0 {
		_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for key := range unknown {
				unknown[key] = p.Type(ctx, key)
			}
			return nil
		})
		if err != nil {
			return nil, nil, false, err
		}
		types := make(map[string]string, len(unknown))
		for key, cmd := range unknown {
			types[key] = cmd.Val()
		}
		for k, l := range c.lanes {
			if plans[k].conflicts(types) {
				plans[k] = l.plan(reads[k], types)
			}
		}
	}
	if hook := c.lanes[0].Steps.beforeWrite; hook != nil {
		hook()
	}
	results = make([]Result, len(c.lanes))
	errs = make([]error, len(c.lanes))
	var cmds [][]any
	for k, p := range plans {
		results[k], errs[k] = p.res, p.err
		cmds = append(cmds, p.cmds...)
	}
	if len(cmds) == 0 {
		return results, errs, false, nil
	}
	replies, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, cmd := range cmds {
			p.Do(ctx, cmd...)
		}
		return nil
	})
	if errors.Is(err, redis.TxFailedErr) {
		return nil, nil, true, err
	}
	if err != nil {
		// A command failed inside EXEC, the others and the bookkeeping
		// committed: only a key changed by something else between the
		// TYPE and the EXEC does that. Say which.
		for _, r := range replies {
			if r.Err() != nil && !errors.Is(r.Err(), redis.Nil) {
				err = fmt.Errorf("written, but %v failed: %w", r.Args(), r.Err())
				break
			}
		}
		return nil, nil, true, err
	}
	return results, errs, true, nil
}

// reads lists the streams and fields the lane's step reads.
func (l Lane) reads() laneRead {
	b, p := l.Batch, l.Steps.planned
	prefix := l.Steps.layout.Prefix(b.Generation, b.Partition)
	r := laneRead{fields: make(map[string][]string), values: make(map[string]*redis.SliceCmd)}
	streams := map[string]bool{}
	named := map[Field]bool{}
	for _, it := range b.Items {
		if it.Stream == "" {
			continue
		}
		if !streams[it.Stream] {
			streams[it.Stream] = true
			r.streams = append(r.streams, it.Stream)
		}
		if len(it.Args) == 0 {
			continue
		}
		for _, f := range p.Reads(it.ID) {
			if named[f] {
				continue
			}
			named[f] = true
			key := prefix + f.Key
			if _, ok := r.fields[key]; !ok {
				r.keys = append(r.keys, key)
			}
			r.fields[key] = append(r.fields[key], f.Field)
		}
	}
	return r
}

// watched is every key of the lane whose change between the reads and the
// writes would change what the step writes.
func (l Lane) watched(r laneRead) []any {
	b, layout := l.Batch, l.Steps.layout
	var keys []any
	if b.Epoch != "" {
		keys = append(keys, layout.Position(b.Generation, b.Partition))
	}
	keys = append(keys, layout.Versions(b.Generation, b.Partition))
	for _, k := range r.keys {
		keys = append(keys, k)
	}
	return keys
}

// queueReads queues the lane's reads.
func (l Lane) queueReads(ctx context.Context, p redis.Pipeliner, r *laneRead) {
	b, layout := l.Batch, l.Steps.layout
	if b.Epoch != "" {
		r.epoch = p.HGet(ctx, layout.Position(b.Generation, b.Partition), "epoch:"+b.Topic)
	}
	if len(r.streams) > 0 {
		r.vers = p.HMGet(ctx, layout.Versions(b.Generation, b.Partition), r.streams...)
	}
	for _, key := range r.keys {
		r.values[key] = p.HMGet(ctx, key, r.fields[key]...)
	}
}

// lanePlan is a lane's step, planned: its result or error, and commands.
type lanePlan struct {
	res  Result
	err  error
	cmds [][]any
	w    *Writes
}

// conflicts tells whether a key the plan writes holds another type.
func (p *lanePlan) conflicts(types map[string]string) bool {
	for key, want := range p.w.written() {
		if have, ok := types[key]; ok && have != "none" && want != "" && have != want {
			return true
		}
	}
	return false
}

// written is every key the plan's commands write, with the type they write.
func (w *Writes) written() map[string]string {
	out := make(map[string]string)
	for _, cmd := range w.cmds {
		if key, ok := cmd[1].(string); ok {
			out[key] = writes(cmd[0])
		}
	}
	return out
}

// plan is the lane's step over what it read — as the Lua step's lane (see
// stepScript) would end — with types, when known, of keys it writes.
func (l Lane) plan(r laneRead, types map[string]string) *lanePlan {
	b, layout, p := l.Batch, l.Steps.layout, l.Steps.planned
	out := &lanePlan{w: newWrites(layout.Prefix(b.Generation, b.Partition))}
	w := out.w
	if r.epoch != nil && r.epoch.Val() != b.Epoch {
		out.err = ErrFenced
		return out
	}
	cur := make(map[string]int64, len(r.streams))
	if r.vers != nil {
		if err := r.vers.Err(); err != nil {
			out.err = l.wrap(fmt.Errorf("read versions: %w", err))
			return out
		}
		for k, s := range r.streams {
			if v, ok := r.vers.Val()[k].(string); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					out.err = l.wrap(fmt.Errorf("version of %s: %w", s, err))
					return out
				}
				cur[s] = n
			}
		}
	}
	for _, key := range r.keys {
		cmd := r.values[key]
		if err := cmd.Err(); err != nil {
			w.bad[key] = err.Error()
			continue
		}
		w.types[key] = "hash" // or none: HMGET read it
		fields := make(map[string]fieldValue, len(r.fields[key]))
		for k, f := range r.fields[key] {
			v, ok := cmd.Val()[k].(string)
			fields[f] = fieldValue{value: v, present: ok, read: true}
		}
		w.fields[key] = fields
	}
	for key, typ := range types {
		w.types[key] = typ
	}
	var changed []string
	isChanged := make(map[string]bool)
	var next int64 = -1
	var failed error
	for idx, it := range b.Items {
		if it.Stream == "" {
			out.res.Outcomes = append(out.res.Outcomes, Skipped)
			next = it.Offset + 1
			continue
		}
		have := cur[it.Stream]
		switch {
		case it.Version <= have:
			out.res.Outcomes = append(out.res.Outcomes, Duplicate)
		case it.Version > have+1:
			out.res.Gap = &Gap{Index: idx, Applied: have}
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
			out.res.Outcomes = append(out.res.Outcomes, Applied)
		}
		if out.res.Gap != nil || failed != nil {
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
	out.cmds = w.cmds
	if failed != nil {
		out.res, out.err = Result{}, l.wrap(failed)
		return out
	}
	if b.Epoch != "" {
		pos := []any{"HSET", layout.Position(b.Generation, b.Partition)}
		if next >= 0 {
			pos = append(pos, "next:"+b.Topic, next)
		}
		if b.CaughtUp && out.res.Gap == nil {
			pos = append(pos, "caughtup:"+b.Topic, "1")
		}
		if len(pos) > 2 {
			out.cmds = append(out.cmds, pos)
		}
	}
	return out
}

// planEvent runs Plan on one event; a panic in it fails the event.
func planEvent(p Planned, w *Writes, it Item) (err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case planFailure:
			err = r.err
		default:
			err = fmt.Errorf("plan %s version %d: %v", it.Stream, it.Version, r)
		}
	}()
	return p.Plan(w, it.ID, it.Version, it.Args)
}
