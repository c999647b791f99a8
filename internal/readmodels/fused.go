package readmodels

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Lane is one projection's batch in a step call.
type Lane struct {
	Steps *Steps
	Batch Batch
}

// Fusable tells whether rdb can run the steps of several projections over a
// partition in one script call: a single Redis server (also one a Sentinel
// fails over), where a script may touch keys of any hash slot. A Redis
// Cluster (or a client-sharded Ring) cannot: each projection's partition is
// a hash tag of its own, and a script touches one slot.
func Fusable(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.Client)
	return ok
}

// Fused runs the steps of several projections over the same partition of a
// topic — lanes — as one script call: one round trip's share, one owner
// check and position per lane as before, but the script call, the events'
// shared fields (offset, stream, id, version) and the reply once for all
// lanes. Each lane stays its own step (see stepScript): fenced, stopped at
// a gap or failing on its own. Lanes fuse only on one Fusable client; on
// any other each goes as a call of its own.
type Fused struct {
	// OnCall, if set, is told how many lanes each call it sends holds.
	OnCall func(lanes int)

	mu      sync.Mutex
	scripts map[string]*redis.Script // by the lanes' projections' own steps, in order
}

// NewFused returns a runner of fused steps.
func NewFused() *Fused {
	return &Fused{scripts: make(map[string]*redis.Script)}
}

// ApplyAll runs each group of lanes — batches of one topic's partition,
// each of another projection or generation — as one step call, all of them
// in one round trip. It returns a result and an error per lane, in the
// shape of groups. A lane whose events cannot share the call's event table
// (another topic or partition, not a run of the same records) runs as a
// call of its own, in the same round trip.
func (f *Fused) ApplyAll(ctx context.Context, groups [][]Lane) ([][]Result, [][]error) {
	var calls []*stepCall
	var where [][]int // per call, the group of its lanes
	var which [][]int // per call, each lane's index in its group
	for g, lanes := range groups {
		together, alone := fusable(lanes)
		if len(together) > 1 {
			members := make([]Lane, len(together))
			for k, l := range together {
				members[k] = lanes[l]
			}
			calls = append(calls, f.call(members))
			where = append(where, repeat(g, len(together)))
			which = append(which, together)
		} else {
			alone = append(together, alone...)
		}
		for _, l := range alone {
			calls = append(calls, lanes[l].Steps.call(lanes[l].Batch))
			where = append(where, []int{g})
			which = append(which, []int{l})
		}
	}
	if f.OnCall != nil {
		for _, c := range calls {
			f.OnCall(len(c.lanes))
		}
	}
	callResults, callErrs := runCalls(ctx, calls)
	results := make([][]Result, len(groups))
	errs := make([][]error, len(groups))
	for g, lanes := range groups {
		results[g] = make([]Result, len(lanes))
		errs[g] = make([]error, len(lanes))
	}
	for c := range calls {
		for k, l := range which[c] {
			g := where[c][k]
			results[g][l], errs[g][l] = callResults[c][k], callErrs[c][k]
		}
	}
	return results, errs
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// fusable splits lanes into those that share one event table (indexes into
// lanes) and those that must go alone.
func fusable(lanes []Lane) (together, alone []int) {
	if len(lanes) < 2 {
		for l := range lanes {
			together = append(together, l)
		}
		return together, nil
	}
	first := lanes[0]
	var candidates []int
	for l, lane := range lanes {
		if lane.Batch.Topic != first.Batch.Topic || lane.Batch.Partition != first.Batch.Partition ||
			lane.Steps.rdb != first.Steps.rdb || !Fusable(lane.Steps.rdb) {
			alone = append(alone, l)
		} else {
			candidates = append(candidates, l)
		}
	}
	members := make([]Lane, len(candidates))
	for k, l := range candidates {
		members[k] = lanes[l]
	}
	_, _, fits := eventTable(members)
	for k, l := range candidates {
		if fits[k] {
			together = append(together, l)
		} else {
			alone = append(alone, l)
		}
	}
	return together, alone
}

// span is a lane's run of the event table, [from, to).
type span struct{ from, to int }

// eventTable merges the lanes' events into one table in offset order, and
// says where each lane's run is in it. A lane fits when its events are a
// run of the table and agree with the other lanes' on every shared field
// (a lane that skips an event, Stream "", agrees with any). The table and
// spans are only valid when every lane fits.
func eventTable(lanes []Lane) (events []Item, spans []span, fits []bool) {
	var offsets []int64
	for _, l := range lanes {
		for _, it := range l.Batch.Items {
			offsets = append(offsets, it.Offset)
		}
	}
	slices.Sort(offsets)
	offsets = slices.Compact(offsets)
	events = make([]Item, len(offsets))
	for i, o := range offsets {
		events[i].Offset = o
	}
	spans = make([]span, len(lanes))
	fits = make([]bool, len(lanes))
	for k, l := range lanes {
		items := l.Batch.Items
		if len(items) == 0 {
			fits[k] = true
			continue
		}
		from, _ := slices.BinarySearch(offsets, items[0].Offset)
		fits[k] = from+len(items) <= len(offsets)
		for i := 0; fits[k] && i < len(items); i++ {
			it, ev := items[i], &events[from+i]
			switch {
			case it.Offset != ev.Offset:
				fits[k] = false
			case it.Stream == "":
			case ev.Stream == "":
				ev.Stream, ev.ID, ev.Version = it.Stream, it.ID, it.Version
			case ev.Stream != it.Stream || ev.ID != it.ID || ev.Version != it.Version:
				fits[k] = false
			}
		}
		spans[k] = span{from, from + len(items)}
	}
	return events, spans, fits
}

// call is the one step call of lanes that all fit one event table.
func (f *Fused) call(lanes []Lane) *stepCall {
	events, spans, _ := eventTable(lanes)
	var distinct []*Steps
	fn := make([]int, len(lanes))
	for k, l := range lanes {
		i := slices.Index(distinct, l.Steps)
		if i < 0 {
			i = len(distinct)
			distinct = append(distinct, l.Steps)
		}
		fn[k] = i
	}
	return newStepCall(f.script(distinct), lanes, fn, spans, events)
}

// script is the step over lanes of the given projections' steps.
func (f *Fused) script(steps []*Steps) *redis.Script {
	hashes := make([]string, len(steps))
	for i, s := range steps {
		hashes[i] = s.step.Hash()
	}
	key := strings.Join(hashes, ",")
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.scripts[key]; ok {
		return s
	}
	luas := make([]string, len(steps))
	for i, s := range steps {
		luas[i] = s.lua
	}
	s := redis.NewScript(stepSource(luas))
	f.scripts[key] = s
	return s
}

// stepCall is one call of the step script: its lanes, keys and arguments.
type stepCall struct {
	rdb    redis.UniversalClient // the lanes' Redis
	script *redis.Script
	lanes  []Lane
	keys   []string
	args   []any
}

// newStepCall lays out the call of script over lanes (see stepScript): fn
// is each lane's apply function (0-based), spans its run of events.
func newStepCall(script *redis.Script, lanes []Lane, fn []int, spans []span, events []Item) *stepCall {
	argc := 3 + 6*len(lanes) + 4*len(events)
	for _, l := range lanes {
		for _, it := range l.Batch.Items {
			argc += 1 + len(it.Args)
		}
	}
	c := &stepCall{rdb: lanes[0].Steps.rdb, script: script, lanes: lanes, keys: make([]string, len(lanes)), args: make([]any, 0, argc)}
	c.args = append(c.args, lanes[0].Batch.Topic, len(lanes), len(events))
	for k, l := range lanes {
		b := l.Batch
		c.keys[k] = l.Steps.layout.Position(b.Generation, b.Partition)
		caught := ""
		if b.CaughtUp {
			caught = "1"
		}
		c.args = append(c.args, fn[k]+1, l.Steps.layout.Prefix(b.Generation, b.Partition), b.Epoch, caught, spans[k].from+1, spans[k].to)
	}
	for _, ev := range events {
		c.args = append(c.args, ev.Offset, ev.Stream, ev.ID, ev.Version)
	}
	for _, l := range lanes {
		for _, it := range l.Batch.Items {
			if it.Stream == "" {
				c.args = append(c.args, -1)
				continue
			}
			c.args = append(c.args, len(it.Args))
			for _, a := range it.Args {
				c.args = append(c.args, a)
			}
		}
	}
	return c
}

// runCalls runs the calls in one round trip (a pipeline when there are
// several on one client; each alone when they are not) and returns each
// lane's result and error, per call.
func runCalls(ctx context.Context, calls []*stepCall) ([][]Result, [][]error) {
	results := make([][]Result, len(calls))
	errs := make([][]error, len(calls))
	oneClient := true
	for _, c := range calls {
		oneClient = oneClient && c.rdb == calls[0].rdb
	}
	if len(calls) == 1 || !oneClient {
		for i, c := range calls {
			reply, err := c.script.Run(ctx, c.rdb, c.keys, c.args...).Slice()
			results[i], errs[i] = c.read(reply, err)
		}
		return results, errs
	}
	rdb := calls[0].rdb
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // every command carries its own error
	for i, c := range calls {
		reply, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its scripts (a restart, SCRIPT FLUSH): this call
			// ran nothing; Run loads the script and runs it.
			reply, err = c.script.Run(ctx, rdb, c.keys, c.args...).Slice()
		}
		results[i], errs[i] = c.read(reply, err)
	}
	return results, errs
}

// read turns the call's reply into each lane's result.
func (c *stepCall) read(reply []any, err error) ([]Result, []error) {
	results := make([]Result, len(c.lanes))
	errs := make([]error, len(c.lanes))
	if err == nil && len(reply) != len(c.lanes) {
		err = fmt.Errorf("unexpected step reply %v", reply)
	}
	for k, l := range c.lanes {
		if err != nil {
			errs[k] = l.wrap(err)
			continue
		}
		laneReply, ok := reply[k].([]any)
		if !ok || len(laneReply) == 0 {
			errs[k] = l.wrap(fmt.Errorf("unexpected step reply %v", reply[k]))
			continue
		}
		res, err := parseStepReply(laneReply)
		if err != nil {
			errs[k] = l.wrap(err)
			continue
		}
		results[k] = res
	}
	return results, errs
}

// wrap says which lane's step err is of; ErrFenced stays recognisable.
func (l Lane) wrap(err error) error {
	if err == ErrFenced {
		return err
	}
	return fmt.Errorf("apply %d events to %s partition %d: %w", len(l.Batch.Items), l.Steps.layout.Name(), l.Batch.Partition, err)
}
