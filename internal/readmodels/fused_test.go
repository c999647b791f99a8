package readmodels

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/testenv"
)

// laneLog is a projection of its own name that logs "name:version=arg#n"
// per aggregate, n counting its events in the partition's hash "n" (so a
// lane applying another lane's function shows, and so does a count read
// stale), and fails on the argument "boom".
type laneLog struct{ name string }

func (l laneLog) Name() string           { return l.name }
func (laneLog) AggregateTypes() []string { return []string{"thing"} }
func (l laneLog) Lua() string {
	return `if a[i] == 'boom' then error('boom at ' .. id) end
local n = redis.call('HINCRBY', p .. 'n', id, 1)
redis.call('RPUSH', p .. 'log:' .. id, '` + l.name + `:' .. ver .. '=' .. a[i] .. '#' .. n)`
}
func (laneLog) Args(log.Event) ([]string, error) { return nil, nil }

// plannedLog is laneLog planned in Go.
type plannedLog struct{ laneLog }

func (plannedLog) Reads(id string) []Field { return []Field{{Key: "n", Field: id}} }
func (l plannedLog) Plan(w *Writes, id string, version int64, args []string) error {
	n := int64(0)
	if v, ok := w.Get("n", id); ok {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return err
		}
	}
	// What it plans before failing is not written.
	w.Set("n", id, strconv.FormatInt(n+1, 10))
	if args[0] == "boom" {
		return fmt.Errorf("boom at %s", id)
	}
	w.Command("RPUSH", w.Prefix()+"log:"+id, fmt.Sprintf("%s:%d=%s#%d", l.name, version, args[0], n+1))
	return nil
}

// fusedWorld is a set of projections over one root: once run through
// Fused, once each lane's step alone, in turn.
type fusedWorld struct {
	rdb   *redis.Client
	root  string
	steps []*Steps
}

func newFusedWorld(t *testing.T, names []string) *fusedWorld {
	return newWorld(t, names, func(name string) Projection { return laneLog{name} })
}

func newWorld(t *testing.T, names []string, projection func(name string) Projection) *fusedWorld {
	t.Helper()
	rdb, root := testenv.Redis(t)
	w := &fusedWorld{rdb: rdb, root: root}
	for _, n := range names {
		w.steps = append(w.steps, NewSteps(rdb, NewLayout(root, n), projection(n)))
	}
	return w
}

// dump is every key of the world, by name without the root, as text.
func (w *fusedWorld) dump(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	keys, err := w.rdb.Keys(ctx, w.root+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		typ, err := w.rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		switch typ {
		case "list":
			l, err := w.rdb.LRange(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			v = strings.Join(l, " ")
		case "hash":
			h, err := w.rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			fields := make([]string, 0, len(h))
			for f, x := range h {
				fields = append(fields, f+"="+x)
			}
			slices.Sort(fields)
			v = strings.Join(fields, " ")
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		out[strings.TrimPrefix(k, w.root)] = v
	}
	return out
}

// A fused call is its lanes' steps in turn: over random lanes at different
// offsets, with duplicates, skipped (dead-lettered) events, version gaps,
// fenced lanes and failing Lua, the replies and every key written are what
// the same lanes' steps make one call each.
func TestFusedCallEqualsEachLanesStepInTurn(t *testing.T) {
	names := []string{"alpha", "beta", "gamma"}
	sameSteps(t, newFusedWorld(t, names), newFusedWorld(t, names), names)
}

// A Planned projection's steps, one MULTI/EXEC for a partition's lanes,
// are its Lua's: the same replies and keys over the same random rounds.
func TestPlannedStepsEqualTheLuaSteps(t *testing.T) {
	names := []string{"alpha", "beta", "gamma"}
	planned := newWorld(t, names, func(name string) Projection { return plannedLog{laneLog{name}} })
	sameSteps(t, planned, newFusedWorld(t, names), names)
}

// sameSteps runs random rounds of lanes through Fused in fusedW and each
// lane's step alone in aloneW, and fails when a reply or a key differs.
func sameSteps(t *testing.T, fusedW, aloneW *fusedWorld, names []string) {
	t.Helper()
	ctx := context.Background()
	fused := NewFused()
	rng := rand.New(rand.NewPCG(16, 7))
	const partition = 3

	// The partition's records: aggregates x, y, z, each with its versions in order.
	type record struct {
		id  string
		ver int64
	}
	var records []record
	versions := map[string]int64{}
	for range 400 {
		id := string(rune('a' + rng.IntN(12)))
		versions[id]++
		records = append(records, record{id, versions[id]})
	}
	for _, w := range []*fusedWorld{fusedW, aloneW} {
		for _, s := range w.steps {
			if _, err := s.Claim(ctx, 1, stepTopic, partition, "owner", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := make([]int64, len(names))
	// parked holds each lane's aggregates with a skipped event: the worker
	// parks their later events too, so they skip.
	parked := make([]map[string]bool, len(names))
	for l := range parked {
		parked[l] = make(map[string]bool)
	}
	fusedCalls := 0
	seen := map[string]int{} // what the lanes met, so the test shows it tested it
	for round := 0; round < 300; round++ {
		var fusedLanes, aloneLanes []Lane
		var lanesOf []int
		for l := range names {
			if rng.IntN(4) == 0 {
				continue // this lane has nothing this round
			}
			from := max(next[l]-int64(rng.IntN(3)), 0) // at times from before its position: duplicates
			n := rng.IntN(7)
			b := Batch{Generation: 1, Topic: stepTopic, Partition: partition, Epoch: "owner", CaughtUp: rng.IntN(5) == 0}
			if rng.IntN(12) == 0 {
				b.Epoch = "someone-else"
			}
			for off := from; off < from+int64(n) && off < int64(len(records)); off++ {
				r := records[off]
				it := Item{Offset: off, Stream: StreamKey("thing", r.id), ID: r.id, Version: r.ver, Args: []string{fmt.Sprint("r", round)}}
				switch rng.IntN(30) {
				case 0:
					it = Item{Offset: off} // dead-lettered for this lane: a later event of its aggregate gaps, unless parked too
				case 1:
					it.Args = []string{"boom"}
				case 2:
					it.Args = nil // nothing to write, the version still recorded
				}
				if parked[l][r.id] && rng.IntN(4) > 0 {
					it = Item{Offset: off}
				}
				b.Items = append(b.Items, it)
			}
			lanesOf = append(lanesOf, l)
			fusedLanes = append(fusedLanes, Lane{Steps: fusedW.steps[l], Batch: b})
			aloneLanes = append(aloneLanes, Lane{Steps: aloneW.steps[l], Batch: b})
		}
		if len(fusedLanes) == 0 {
			continue
		}
		if together, _ := fusable(fusedLanes); len(together) > 1 {
			fusedCalls++
		}
		got, gotErrs := fused.ApplyAll(ctx, [][]Lane{fusedLanes})
		for k, lane := range aloneLanes {
			want, wantErr := lane.Steps.Apply(ctx, lane.Batch)
			if (wantErr == nil) != (gotErrs[0][k] == nil) || wantErr != nil && !strings.Contains(gotErrs[0][k].Error(), "boom") && gotErrs[0][k].Error() != wantErr.Error() {
				t.Fatalf("round %d lane %s: fused err %v, alone err %v", round, names[lanesOf[k]], gotErrs[0][k], wantErr)
			}
			g := got[0][k]
			if string(g.Outcomes) != string(want.Outcomes) || (g.Gap == nil) != (want.Gap == nil) || g.Gap != nil && *g.Gap != *want.Gap {
				t.Fatalf("round %d lane %s: fused %+v (gap %+v), alone %+v (gap %+v)", round, names[lanesOf[k]], g, g.Gap, want, want.Gap)
			}
			switch {
			case errors.Is(wantErr, ErrFenced):
				seen["fenced"]++
			case wantErr != nil:
				seen["failed"]++
			case g.Gap != nil:
				seen["gap"]++
			}
			for _, o := range g.Outcomes {
				seen[string(o)]++
			}
			items := lane.Batch.Items
			switch {
			case wantErr != nil:
			case g.Gap != nil:
				next[lanesOf[k]] = items[g.Gap.Index].Offset
				parked[lanesOf[k]][items[g.Gap.Index].ID] = true
			case len(items) > 0:
				next[lanesOf[k]] = max(next[lanesOf[k]], items[len(items)-1].Offset+1)
			}
		}
		if f, a := fusedW.dump(t), aloneW.dump(t); !mapsEqual(f, a) {
			t.Fatalf("round %d: the fused world differs from the one of steps alone:\nfused %v\nalone %v", round, f, a)
		}
		// Caught up once stays so: unmark it, so each round's marking shows.
		for _, w := range []*fusedWorld{fusedW, aloneW} {
			for _, s := range w.steps {
				if err := w.rdb.HDel(ctx, s.layout.Position(1, partition), "caughtup:"+stepTopic).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if fusedCalls < 100 {
		t.Fatalf("only %d rounds fused several lanes; the test did not test fusion", fusedCalls)
	}
	for _, what := range []string{"fenced", "failed", "gap", "a", "d", "s"} {
		if seen[what] < 5 {
			t.Fatalf("the lanes met %q %d times (%v); the test did not test it", what, seen[what], seen)
		}
	}
	if next[0] < 100 {
		t.Fatalf("lane alpha reached only offset %d; the test did not get far", next[0])
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Lanes that cannot share one event table — another partition, records
// that disagree, a run with a hole — each go as a call of their own in the
// same round trip, and still apply.
func TestLanesThatDoNotFitGoAlone(t *testing.T) {
	ctx := context.Background()
	w := newFusedWorld(t, []string{"alpha", "beta", "gamma", "delta"})
	for _, s := range w.steps {
		for _, part := range []int32{0, 1} {
			if _, err := s.Claim(ctx, 1, stepTopic, part, "owner", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch := func(part int32, items ...Item) Batch {
		return Batch{Generation: 1, Topic: stepTopic, Partition: part, Epoch: "owner", Items: items}
	}
	other := item(1, "y", 1) // offset 1 says aggregate y, where alpha's says x v2
	lanes := []Lane{
		{w.steps[0], batch(0, item(0, "x", 1), item(1, "x", 2))},
		{w.steps[1], batch(1, item(0, "x", 1))}, // another partition
		{w.steps[2], batch(0, item(0, "x", 1), other)},
		{w.steps[3], batch(0, item(0, "x", 1), item(1, "x", 2))},
	}
	together, alone := fusable(lanes)
	if !slices.Equal(together, []int{0, 3}) || !slices.Equal(alone, []int{1, 2}) {
		t.Fatalf("fusable = %v together, %v alone; want [0 3] and [1 2]", together, alone)
	}
	hole := []Lane{
		{w.steps[0], batch(0, item(2, "x", 3), item(3, "x", 4))},
		{w.steps[3], batch(0, item(2, "x", 3), item(4, "x", 5))}, // no offset 3: not a run of the table
	}
	if together, _ := fusable(hole); len(together) > 1 {
		t.Fatalf("lanes with a hole fused: %v", together)
	}
	results, errs := NewFused().ApplyAll(ctx, [][]Lane{lanes})
	for k, want := range []string{"aa", "a", "aa", "aa"} {
		if errs[0][k] != nil || string(results[0][k].Outcomes) != want {
			t.Fatalf("lane %d: %q %v, want %q", k, results[0][k].Outcomes, errs[0][k], want)
		}
	}
	got, err := w.rdb.LRange(ctx, NewLayout(w.root, "gamma").Prefix(1, 0)+"log:y", 0, -1).Result()
	if err != nil || !slices.Equal(got, []string{"gamma:1=o1#1"}) {
		t.Fatalf("gamma's log of y = %q (%v)", got, err)
	}
}

// Only a client of one Redis server fuses; a Cluster client does not.
func TestFusableOnlyOnOneServer(t *testing.T) {
	if !Fusable(redis.NewClient(&redis.Options{})) {
		t.Fatal("a single-server client is not fusable")
	}
	if Fusable(redis.NewClusterClient(&redis.ClusterOptions{})) {
		t.Fatal("a Cluster client is fusable")
	}
}

// A planned step whose partition another owner claims between its reads
// and its writes writes nothing and answers fenced; one whose versions a
// replay wrote in between reads again and counts the replayed event as a
// duplicate: nothing is applied twice (G4).
func TestPlannedStepRereadsWhatChangedBeforeItsWrites(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, []string{"alpha"}, func(name string) Projection { return plannedLog{laneLog{name}} })
	s := w.steps[0]
	if _, err := s.Claim(ctx, 1, stepTopic, 0, "owner-a", false); err != nil {
		t.Fatal(err)
	}
	batch := func(epoch string, items ...Item) Batch {
		return Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: epoch, Items: items}
	}
	logOf := func(id string) []string {
		t.Helper()
		got, err := w.rdb.LRange(ctx, s.layout.Prefix(1, 0)+"log:"+id, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// A replay applies x v1 while the owner's step of x v1, v2 is between
	// its reads and its writes: the owner's step reads again.
	hooked := 0
	s.beforeWrite = func() {
		hooked++
		if hooked == 1 {
			if _, err := s.Apply(ctx, batch("", item(0, "x", 1))); err != nil {
				t.Error(err)
			}
		}
	}
	res, err := s.Apply(ctx, batch("owner-a", item(0, "x", 1), item(1, "x", 2)))
	s.beforeWrite = nil
	if err != nil || string(res.Outcomes) != "da" || hooked != 3 {
		// 3: the owner's first try, the replay's own step, the owner's second try.
		t.Fatalf("owner's step after a replay in between: %q %v (hook ran %d times)", res.Outcomes, err, hooked)
	}
	if got := logOf("x"); !slices.Equal(got, []string{"alpha:1=o0#1", "alpha:2=o1#2"}) {
		t.Fatalf("log of x = %q", got)
	}

	// Owner b claims while owner a's step is between its reads and writes.
	hooked = 0
	s.beforeWrite = func() {
		hooked++
		if hooked == 1 {
			if _, err := s.Claim(ctx, 1, stepTopic, 0, "owner-b", false); err != nil {
				t.Error(err)
			}
		}
	}
	_, err = s.Apply(ctx, batch("owner-a", item(2, "x", 3)))
	s.beforeWrite = nil
	if !errors.Is(err, ErrFenced) || hooked != 2 {
		t.Fatalf("owner a's step across owner b's claim: %v (hook ran %d times), want ErrFenced after a second read", err, hooked)
	}
	if got := logOf("x"); len(got) != 2 {
		t.Fatalf("the fenced step wrote: log of x = %q", got)
	}
	next, _, _, err := s.Position(ctx, 1, stepTopic, 0)
	if err != nil || next != 2 {
		t.Fatalf("position after the fenced step: %d %v, want 2", next, err)
	}

	// A key changing on every try: the step gives up with an error.
	s.beforeWrite = func() {
		if err := w.rdb.HSet(ctx, s.layout.Versions(1, 0), "noise", "1").Err(); err != nil {
			t.Error(err)
		}
	}
	_, err = s.Apply(ctx, batch("owner-b", item(2, "x", 3)))
	s.beforeWrite = nil
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("a step whose keys change on every try: %v, want %v", err, redis.TxFailedErr)
	}
	if got := logOf("x"); len(got) != 2 {
		t.Fatalf("the step that gave up wrote: log of x = %q", got)
	}
}

// A key of another type than a planned step writes (something else wrote
// it) fails the first event that writes it, before anything of that event
// is written, as a failing Lua apply does: the events before it apply, the
// position stays, and once the key is gone the step applies the rest. The
// same for a hash the plan reads.
func TestPlannedStepFailsTheEventThatWritesAKeyOfAnotherType(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, []string{"alpha"}, func(name string) Projection { return plannedLog{laneLog{name}} })
	s := w.steps[0]
	if _, err := s.Claim(ctx, 1, stepTopic, 0, "owner", false); err != nil {
		t.Fatal(err)
	}
	prefix := s.layout.Prefix(1, 0)
	for _, bad := range []string{prefix + "log:y", prefix + "n"} {
		t.Run(strings.TrimPrefix(bad, prefix), func(t *testing.T) {
			if err := w.rdb.Del(ctx, prefix+"log:x", prefix+"log:y", prefix+"n", s.layout.Versions(1, 0), s.layout.Position(1, 0)).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, 1, stepTopic, 0, "owner", false); err != nil {
				t.Fatal(err)
			}
			if err := w.rdb.Set(ctx, bad, "not mine", 0).Err(); err != nil {
				t.Fatal(err)
			}
			b := Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "owner",
				Items: []Item{item(0, "x", 1), item(1, "y", 1), item(2, "x", 2)}}
			_, err := s.Apply(ctx, b)
			if !errors.Is(err, ErrWrongType) {
				t.Fatalf("a step writing %s, a string: %v, want ErrWrongType", bad, err)
			}
			if got := w.rdb.Get(ctx, bad).Val(); got != "not mine" {
				t.Fatalf("%s = %q after the step", bad, got)
			}
			wantX := []string{"alpha:1=o0#1"}
			if bad == prefix+"n" {
				wantX = nil // the first event reads n already
			}
			if got := w.rdb.LRange(ctx, prefix+"log:x", 0, -1).Val(); !slices.Equal(got, wantX) {
				t.Fatalf("log of x = %q, want %q", got, wantX)
			}
			if next, _, _, err := s.Position(ctx, 1, stepTopic, 0); err != nil || next != 0 {
				t.Fatalf("position after the failed step: %d %v, want 0", next, err)
			}
			if err := w.rdb.Del(ctx, bad).Err(); err != nil {
				t.Fatal(err)
			}
			res, err := s.Apply(ctx, b)
			want := "daa"
			if bad == prefix+"n" {
				want = "aaa"
			}
			if err != nil || string(res.Outcomes) != want {
				t.Fatalf("the step again once the key is gone: %q %v, want %q", res.Outcomes, err, want)
			}
			if got := w.rdb.LRange(ctx, prefix+"log:y", 0, -1).Val(); len(got) != 1 {
				t.Fatalf("log of y = %q", got)
			}
		})
	}
}
