package readmodels

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/testenv"
)

// laneLog is a projection of its own name that logs "name:version=arg" per
// aggregate (so a lane applying another lane's function shows), and fails
// on the argument "boom".
type laneLog struct{ name string }

func (l laneLog) Name() string           { return l.name }
func (laneLog) AggregateTypes() []string { return []string{"thing"} }
func (l laneLog) Lua() string {
	return `if a[i] == 'boom' then error('boom at ' .. id) end
redis.call('RPUSH', p .. 'log:' .. id, '` + l.name + `:' .. ver .. '=' .. a[i])`
}
func (laneLog) Args(log.Event) ([]string, error) { return nil, nil }

// fusedWorld is a set of projections over one root: once run through
// Fused, once each lane's step alone, in turn.
type fusedWorld struct {
	rdb   *redis.Client
	root  string
	steps []*Steps
}

func newFusedWorld(t *testing.T, names []string) *fusedWorld {
	t.Helper()
	rdb, root := testenv.Redis(t)
	w := &fusedWorld{rdb: rdb, root: root}
	for _, n := range names {
		w.steps = append(w.steps, NewSteps(rdb, NewLayout(root, n), laneLog{n}))
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
	ctx := context.Background()
	names := []string{"alpha", "beta", "gamma"}
	fusedW, aloneW := newFusedWorld(t, names), newFusedWorld(t, names)
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
	if err != nil || !slices.Equal(got, []string{"gamma:1=o1"}) {
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
