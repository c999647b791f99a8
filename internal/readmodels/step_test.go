package readmodels

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/testenv"
)

// logProjection appends "version=arg" to a list per aggregate, so every
// application of an event is visible: applied twice, it shows twice.
type logProjection struct{}

func (logProjection) Name() string             { return "steptest" }
func (logProjection) AggregateTypes() []string { return []string{"thing"} }
func (logProjection) Lua() string {
	return `redis.call('RPUSH', p .. 'log:' .. id, ver .. '=' .. a[i])`
}
func (logProjection) Args(log.Event) ([]string, error) { return nil, nil }

// notedLog is logProjection with a note in its Lua: a script of its own,
// which Redis has not seen.
type notedLog struct {
	logProjection
	note string
}

func (n notedLog) Lua() string { return logProjection{}.Lua() + "\n-- " + n.note }

const stepTopic = "things"

type stepEnv struct {
	t      *testing.T
	rdb    *redis.Client
	layout Layout
	steps  *Steps
}

func newStepEnv(t *testing.T) *stepEnv {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	layout := NewLayout(prefix, logProjection{}.Name())
	return &stepEnv{t: t, rdb: rdb, layout: layout, steps: NewSteps(rdb, layout, logProjection{})}
}

// item is an event of aggregate id at version ver, at offset off.
func item(off int64, id string, ver int64) Item {
	return Item{Offset: off, Stream: StreamKey("thing", id), ID: id, Version: ver, Args: []string{"o" + strconv.FormatInt(off, 10)}}
}

func (e *stepEnv) claim(gen int64, partition int32, token string) int64 {
	e.t.Helper()
	next, err := e.steps.Claim(context.Background(), gen, stepTopic, partition, token, false)
	if err != nil {
		e.t.Fatalf("claim with %s: %v", token, err)
	}
	return next
}

func (e *stepEnv) apply(b Batch) Result {
	e.t.Helper()
	res, err := e.steps.Apply(context.Background(), b)
	if err != nil {
		e.t.Fatalf("apply %+v: %v", b, err)
	}
	return res
}

// log is what the projection wrote for aggregate id of gen's partition.
func (e *stepEnv) log(gen int64, partition int32, id string) []string {
	e.t.Helper()
	got, err := e.rdb.LRange(context.Background(), e.layout.Prefix(gen, partition)+"log:"+id, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *stepEnv) wantLog(gen int64, partition int32, id string, want ...string) {
	e.t.Helper()
	got := e.log(gen, partition, id)
	if len(got) != len(want) {
		e.t.Fatalf("log of %s = %q, want %q", id, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			e.t.Fatalf("log of %s = %q, want %q", id, got, want)
		}
	}
}

func (e *stepEnv) wantPosition(gen int64, partition int32, next int64, caughtUp bool) {
	e.t.Helper()
	got, caught, ok, err := e.steps.Position(context.Background(), gen, stepTopic, partition)
	if err != nil || !ok {
		e.t.Fatalf("position of partition %d: ok=%v err=%v", partition, ok, err)
	}
	if got != next || caught != caughtUp {
		e.t.Fatalf("position of partition %d = next %d caught up %v, want %d %v", partition, got, caught, next, caughtUp)
	}
}

func wantOutcomes(t *testing.T, res Result, want string) {
	t.Helper()
	if got := string(res.Outcomes); got != want {
		t.Fatalf("outcomes = %q, want %q", got, want)
	}
}

func TestStepFencesTheEarlierOwner(t *testing.T) {
	e := newStepEnv(t)
	ctx := context.Background()
	if next := e.claim(1, 0, "owner-a"); next != 0 {
		t.Fatalf("a fresh partition starts at %d, want 0", next)
	}
	wantOutcomes(t, e.apply(Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "owner-a",
		Items: []Item{item(0, "x", 1), item(1, "x", 2)}}), "aa")

	if next := e.claim(1, 0, "owner-b"); next != 2 {
		t.Fatalf("the second owner starts at %d, want 2 (after the first owner's batch)", next)
	}
	_, err := e.steps.Apply(ctx, Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "owner-a",
		Items: []Item{item(2, "x", 3)}})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("the first owner's batch after a second claim: err = %v, want ErrFenced", err)
	}
	if err := e.steps.MarkCaughtUp(ctx, 1, stepTopic, 0, "owner-a"); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first owner marks caught up: err = %v, want ErrFenced", err)
	}
	e.wantLog(1, 0, "x", "1=o0", "2=o1")
	e.wantPosition(1, 0, 2, false)

	wantOutcomes(t, e.apply(Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "owner-b",
		Items: []Item{item(2, "x", 3)}}), "a")
	if err := e.steps.MarkCaughtUp(ctx, 1, stepTopic, 0, "owner-b"); err != nil {
		t.Fatal(err)
	}
	e.wantLog(1, 0, "x", "1=o0", "2=o1", "3=o2")
	e.wantPosition(1, 0, 3, true)

	// Redis lost the position: the owner is fenced, nothing is written.
	if err := e.rdb.Del(ctx, e.layout.Position(1, 0)).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = e.steps.Apply(ctx, Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "owner-b",
		Items: []Item{item(3, "x", 4)}})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("apply without a position: err = %v, want ErrFenced", err)
	}
	e.wantLog(1, 0, "x", "1=o0", "2=o1", "3=o2")
}

func TestStepDuplicatesAreNoOps(t *testing.T) {
	e := newStepEnv(t)
	e.claim(1, 3, "owner")
	b := Batch{Generation: 1, Topic: stepTopic, Partition: 3, Epoch: "owner"}

	b.Items = []Item{item(0, "x", 1), item(1, "y", 1), item(2, "x", 2)}
	wantOutcomes(t, e.apply(b), "aaa")
	// A relay retry re-sends x v1, y v1 and x v2 after them, then x v3; the
	// batch also holds x v3 twice.
	b.Items = []Item{item(3, "x", 1), item(4, "y", 1), item(5, "x", 2), item(6, "x", 3), item(7, "x", 3), item(8, "y", 2)}
	wantOutcomes(t, e.apply(b), "dddada")
	e.wantLog(1, 3, "x", "1=o0", "2=o2", "3=o6")
	e.wantLog(1, 3, "y", "1=o1", "2=o8")
	e.wantPosition(1, 3, 9, false)

	// A batch of duplicates only moves the position.
	b.Items = []Item{item(9, "y", 2), item(10, "x", 1)}
	wantOutcomes(t, e.apply(b), "dd")
	e.wantLog(1, 3, "x", "1=o0", "2=o2", "3=o6")
	e.wantLog(1, 3, "y", "1=o1", "2=o8")
	e.wantPosition(1, 3, 11, false)

	// Skipped (dead-lettered) events move the position and write nothing;
	// CaughtUp marks the partition.
	b.Items = []Item{{Offset: 11}, item(12, "y", 3)}
	b.CaughtUp = true
	wantOutcomes(t, e.apply(b), "sa")
	e.wantLog(1, 3, "y", "1=o1", "2=o8", "3=o12")
	e.wantPosition(1, 3, 13, true)
}

func TestStepStopsAtAVersionGap(t *testing.T) {
	e := newStepEnv(t)
	e.claim(1, 2, "owner")
	b := Batch{Generation: 1, Topic: stepTopic, Partition: 2, Epoch: "owner", CaughtUp: true}

	// x v3 comes before x v2: the step applies what precedes it and stops.
	b.Items = []Item{item(10, "x", 1), item(11, "y", 1), item(12, "x", 3), item(13, "y", 2)}
	res := e.apply(b)
	wantOutcomes(t, res, "aa")
	if res.Gap == nil || res.Gap.Index != 2 || res.Gap.Applied != 1 {
		t.Fatalf("gap = %+v, want index 2 with version 1 applied", res.Gap)
	}
	e.wantPosition(1, 2, 12, false) // at the gap event, not caught up
	e.wantLog(1, 2, "x", "1=o10")
	e.wantLog(1, 2, "y", "1=o11")

	// Still a gap when the batch starts with it: nothing moves.
	b.Items = []Item{item(12, "x", 3), item(13, "y", 2)}
	res = e.apply(b)
	wantOutcomes(t, res, "")
	if res.Gap == nil || res.Gap.Index != 0 || res.Gap.Applied != 1 {
		t.Fatalf("gap = %+v, want index 0 with version 1 applied", res.Gap)
	}
	e.wantPosition(1, 2, 12, false)

	// A duplicate before the gap moves the position past itself only.
	b.Items = []Item{item(12, "y", 1), item(13, "x", 4)}
	res = e.apply(b)
	wantOutcomes(t, res, "d")
	if res.Gap == nil || res.Gap.Index != 1 || res.Gap.Applied != 1 {
		t.Fatalf("gap = %+v, want index 1 with version 1 applied", res.Gap)
	}
	e.wantPosition(1, 2, 13, false)
	e.wantLog(1, 2, "x", "1=o10")
	e.wantLog(1, 2, "y", "1=o11")
}

func TestStepReplayDoesNotMoveThePosition(t *testing.T) {
	e := newStepEnv(t)
	e.claim(1, 5, "owner")
	owner := Batch{Generation: 1, Topic: stepTopic, Partition: 5, Epoch: "owner"}
	// x v2 was parked: the owner skipped it and x v3.
	owner.Items = []Item{item(0, "x", 1), {Offset: 1}, {Offset: 2}, item(3, "y", 1)}
	wantOutcomes(t, e.apply(owner), "assa")
	e.wantPosition(1, 5, 4, false)

	replay := Batch{Generation: 1, Topic: stepTopic, Partition: 5, CaughtUp: true}
	// Out of order: x v3 waits for x v2.
	replay.Items = []Item{item(2, "x", 3)}
	res := e.apply(replay)
	if res.Gap == nil || res.Gap.Applied != 1 {
		t.Fatalf("replay of x v3 before x v2: gap = %+v, want one with version 1 applied", res.Gap)
	}
	replay.Items = []Item{item(1, "x", 2)}
	wantOutcomes(t, e.apply(replay), "a")
	replay.Items = []Item{item(2, "x", 3)}
	wantOutcomes(t, e.apply(replay), "a")
	// Replayed again: a no-op.
	replay.Items = []Item{item(1, "x", 2), item(2, "x", 3)}
	wantOutcomes(t, e.apply(replay), "dd")
	e.wantLog(1, 5, "x", "1=o0", "2=o1", "3=o2")
	// Neither the position nor the caught-up mark moved, and the owner was
	// not fenced.
	e.wantPosition(1, 5, 4, false)
	owner.Items = []Item{item(4, "x", 4)}
	wantOutcomes(t, e.apply(owner), "a")
	e.wantPosition(1, 5, 5, false)
}

// A Redis error inside the projection's Lua (here WRONGTYPE: y's log key
// holds a string) fails the step, but what it applied before keeps its
// versions: the retry finds those events applied and applies each of them
// once, never twice.
func TestStepFailingMidwayKeepsTheVersionsOfWhatItApplied(t *testing.T) {
	e := newStepEnv(t)
	ctx := context.Background()
	e.claim(1, 4, "owner")
	bad := e.layout.Prefix(1, 4) + "log:y"
	if err := e.rdb.Set(ctx, bad, "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := Batch{Generation: 1, Topic: stepTopic, Partition: 4, Epoch: "owner",
		Items: []Item{item(0, "x", 1), item(1, "x", 2), item(2, "y", 1), item(3, "x", 3)}}
	if _, err := e.steps.Apply(ctx, b); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("apply over a key of the wrong type: err = %v, want WRONGTYPE", err)
	}
	e.wantLog(1, 4, "x", "1=o0", "2=o1")
	if v, err := e.rdb.HGet(ctx, e.layout.Versions(1, 4), StreamKey("thing", "x")).Result(); err != nil || v != "2" {
		t.Fatalf("version of x after the failed step = %q (%v), want 2", v, err)
	}
	if _, _, ok, err := e.steps.Position(ctx, 1, stepTopic, 4); err != nil || !ok {
		t.Fatalf("position: ok=%v err=%v", ok, err)
	}
	e.wantPosition(1, 4, 0, false) // the position stays before the batch

	if err := e.rdb.Del(ctx, bad).Err(); err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, e.apply(b), "ddaa")
	e.wantLog(1, 4, "x", "1=o0", "2=o1", "3=o3")
	e.wantLog(1, 4, "y", "1=o2")
	e.wantPosition(1, 4, 4, false)
}

// ApplyAll sends the steps of several partitions in one round trip; each
// stays its own atomic step: one partition's failure or fencing leaves the
// others applied with their positions, and its own position where it was.
func TestApplyAllKeepsEachPartitionsStepApart(t *testing.T) {
	e := newStepEnv(t)
	ctx := context.Background()
	for p := range int32(4) {
		e.claim(1, p, "owner")
	}
	e.claim(1, 2, "another owner") // partition 2 was taken over
	bad := e.layout.Prefix(1, 1) + "log:y"
	if err := e.rdb.Set(ctx, bad, "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	batch := func(p int32, items ...Item) Batch {
		return Batch{Generation: 1, Topic: stepTopic, Partition: p, Epoch: "owner", Items: items}
	}
	batches := []Batch{
		batch(0, item(0, "x", 1), item(1, "y", 1)),
		batch(1, item(0, "x", 1), item(1, "y", 1), item(2, "z", 1)),
		batch(2, item(0, "x", 1)),
		batch(3, item(0, "x", 1), item(1, "x", 3)), // a gap
	}
	res, errs := e.steps.ApplyAll(ctx, batches)
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("errors of the sound partitions: %v, %v", errs[0], errs[3])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "WRONGTYPE") {
		t.Fatalf("partition 1: err = %v, want WRONGTYPE", errs[1])
	}
	if !errors.Is(errs[2], ErrFenced) {
		t.Fatalf("partition 2: err = %v, want ErrFenced", errs[2])
	}
	wantOutcomes(t, res[0], "aa")
	wantOutcomes(t, res[3], "a")
	if res[3].Gap == nil || res[3].Gap.Index != 1 {
		t.Fatalf("partition 3: gap = %+v, want one at index 1", res[3].Gap)
	}
	e.wantPosition(1, 0, 2, false)
	e.wantPosition(1, 1, 0, false)
	e.wantPosition(1, 2, 0, false)
	e.wantPosition(1, 3, 1, false)
	e.wantLog(1, 1, "x", "1=o0")
	e.wantLog(1, 2, "x")

	// Once the key is fixed, the retry applies the rest of partition 1 and
	// x v1 (already applied) is a duplicate.
	if err := e.rdb.Del(ctx, bad).Err(); err != nil {
		t.Fatal(err)
	}
	res, errs = e.steps.ApplyAll(ctx, batches[:2])
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("retry: %v, %v", errs[0], errs[1])
	}
	wantOutcomes(t, res[0], "dd")
	wantOutcomes(t, res[1], "daa")
	e.wantLog(1, 1, "x", "1=o0")
	e.wantLog(1, 1, "y", "1=o1")
	e.wantLog(1, 1, "z", "1=o2")
	e.wantPosition(1, 1, 3, false)

	// A script Redis does not hold (never loaded, or lost in a restart):
	// the pipeline's EVALSHAs fail with NOSCRIPT and the steps are run again
	// with the script.
	unloaded := NewSteps(e.rdb, e.layout, notedLog{note: e.layout.Meta()})
	res, errs = unloaded.ApplyAll(ctx, []Batch{batch(0, item(2, "x", 2)), batch(3, item(1, "x", 2))})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("after SCRIPT FLUSH: %v, %v", errs[0], errs[1])
	}
	wantOutcomes(t, res[0], "a")
	wantOutcomes(t, res[1], "a")
	e.wantPosition(1, 0, 3, false)
	e.wantPosition(1, 3, 2, false)
}

func TestClaim(t *testing.T) {
	e := newStepEnv(t)
	ctx := context.Background()

	if _, err := e.steps.Claim(ctx, 1, stepTopic, 0, "t1", true); !errors.Is(err, ErrPositionLost) {
		t.Fatalf("claim on a served generation without a position: err = %v, want ErrPositionLost", err)
	}
	if next := e.claim(1, 0, "t1"); next != 0 {
		t.Fatalf("fresh claim starts at %d, want 0", next)
	}
	wantOutcomes(t, e.apply(Batch{Generation: 1, Topic: stepTopic, Partition: 0, Epoch: "t1",
		Items: []Item{item(0, "x", 1), item(6, "x", 2)}}), "aa")
	if next, err := e.steps.Claim(ctx, 1, stepTopic, 0, "t2", true); err != nil || next != 7 {
		t.Fatalf("claim on a served generation with a position = %d, %v; want 7", next, err)
	}
	// Another topic on the same partition starts at its own beginning.
	if next, err := e.steps.Claim(ctx, 1, "other", 0, "t3", true); err != nil || next != 0 {
		t.Fatalf("claim of a new topic = %d, %v; want 0", next, err)
	}
	e.wantPosition(1, 0, 7, false)

	// The position is gone but the data is there: lost, served or not.
	if err := e.rdb.Del(ctx, e.layout.Position(1, 0)).Err(); err != nil {
		t.Fatal(err)
	}
	for _, served := range []bool{false, true} {
		if _, err := e.steps.Claim(ctx, 1, stepTopic, 0, "t4", served); !errors.Is(err, ErrPositionLost) {
			t.Fatalf("claim (served %v) with versions but no position: err = %v, want ErrPositionLost", served, err)
		}
	}
	if _, _, ok, err := e.steps.Position(ctx, 1, stepTopic, 0); err != nil || ok {
		t.Fatalf("a refused claim left a position: ok=%v err=%v", ok, err)
	}
}

func TestGenerations(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	layout := NewLayout(prefix, "gentest")
	g := NewGenerations(rdb, layout)

	read := func() Meta {
		t.Helper()
		m, ok, err := g.Read(ctx)
		if err != nil || !ok {
			t.Fatalf("read generations: ok=%v err=%v", ok, err)
		}
		return m
	}
	want := func(m Meta, active, target int64, retired ...int64) {
		t.Helper()
		if m.Partitions != 4 || m.Active != active || m.Target != target || len(m.Retired) != len(retired) {
			t.Fatalf("meta = %+v, want 4 partitions, active %d, target %d, retired %v", m, active, target, retired)
		}
		for _, gen := range retired {
			at, ok := m.Retired[gen]
			if !ok || time.Since(at) > time.Minute || time.Until(at) > time.Minute {
				t.Fatalf("meta = %+v: generation %d should be retired just now", m, gen)
			}
		}
	}

	if _, _, err := g.StartRebuild(ctx, false); err == nil {
		t.Fatal("a rebuild of a projection never built started")
	}
	if _, ok, err := g.Read(ctx); err != nil || ok {
		t.Fatalf("read before ensure: ok=%v err=%v", ok, err)
	}
	if created, err := g.Ensure(ctx, 4); err != nil || !created {
		t.Fatalf("first ensure: created=%v err=%v", created, err)
	}
	if created, err := g.Ensure(ctx, 4); err != nil || created {
		t.Fatalf("second ensure: created=%v err=%v", created, err)
	}
	if _, err := g.Ensure(ctx, 8); !errors.Is(err, ErrPartitionsChanged) {
		t.Fatalf("ensure with another partition count: err = %v, want ErrPartitionsChanged", err)
	}
	m := read()
	want(m, 0, 1)
	if !m.Rebuilding() {
		t.Fatal("the first build is not reported as running")
	}
	if _, err := ActiveView(ctx, rdb, layout); !errors.Is(err, ErrNotReady) {
		t.Fatalf("view before the first build is served: err = %v, want ErrNotReady", err)
	}
	// The first build is running: a rebuild joins it.
	if gen, started, err := g.StartRebuild(ctx, false); err != nil || started || gen != 1 {
		t.Fatalf("rebuild during the first build = %d started=%v err=%v, want 1 false", gen, started, err)
	}

	if ok, err := g.Promote(ctx, 1); err != nil || !ok {
		t.Fatalf("promote 1: %v %v", ok, err)
	}
	if ok, err := g.Promote(ctx, 1); err != nil || ok {
		t.Fatalf("promote 1 again: %v %v, want false", ok, err)
	}
	want(read(), 1, 1)
	if v, err := ActiveView(ctx, rdb, layout); err != nil || v.Generation != 1 || v.Partitions != 4 {
		t.Fatalf("view = %+v, %v; want generation 1 of 4 partitions", v, err)
	}

	if gen, started, err := g.StartRebuild(ctx, false); err != nil || !started || gen != 2 {
		t.Fatalf("rebuild = %d started=%v err=%v, want 2 true", gen, started, err)
	}
	m = read()
	want(m, 1, 2)
	if !m.Rebuilding() {
		t.Fatal("rebuild not reported as running")
	}
	if gen, started, err := g.StartRebuild(ctx, false); err != nil || started || gen != 2 {
		t.Fatalf("second rebuild = %d started=%v err=%v, want the running 2", gen, started, err)
	}
	if gen, started, err := g.StartRebuild(ctx, true); err != nil || !started || gen != 3 {
		t.Fatalf("forced rebuild = %d started=%v err=%v, want 3 true", gen, started, err)
	}
	want(read(), 1, 3, 2)
	if ok, err := g.Promote(ctx, 2); err != nil || ok {
		t.Fatalf("promote the replaced generation 2: %v %v, want false", ok, err)
	}
	if ok, err := g.Promote(ctx, 3); err != nil || !ok {
		t.Fatalf("promote 3: %v %v", ok, err)
	}
	want(read(), 3, 3, 1, 2)
	if v, err := ActiveView(ctx, rdb, layout); err != nil || v.Generation != 3 {
		t.Fatalf("view = %+v, %v; want generation 3", v, err)
	}

	// The served generation lost its positions: readers stop using it and
	// a new one is built.
	if err := g.Lost(ctx, 3); err != nil {
		t.Fatal(err)
	}
	m = read()
	want(m, 0, 4, 1, 2, 3)
	if _, err := ActiveView(ctx, rdb, layout); !errors.Is(err, ErrNotReady) {
		t.Fatalf("view after the served generation was lost: err = %v, want ErrNotReady", err)
	}
	if ok, err := g.Promote(ctx, 4); err != nil || !ok {
		t.Fatalf("promote 4: %v %v", ok, err)
	}
	// A generation being built lost its positions: the served one stays,
	// the build starts over.
	if gen, started, err := g.StartRebuild(ctx, false); err != nil || !started || gen != 5 {
		t.Fatalf("rebuild = %d started=%v err=%v, want 5 true", gen, started, err)
	}
	if err := g.Lost(ctx, 5); err != nil {
		t.Fatal(err)
	}
	want(read(), 4, 6, 1, 2, 3, 5)

	// Drop removes a retired generation's keys and its record, and nothing
	// else (generation 1's pattern must not reach generation 11).
	keep := []string{layout.Prefix(11, 0) + "ver", layout.Prefix(4, 1) + "pos", layout.Meta()}
	drop := []string{layout.Prefix(1, 0) + "pos", layout.Prefix(1, 3) + "summary:x"}
	for _, k := range append(append([]string{}, keep...), drop...) {
		if k != layout.Meta() {
			if err := rdb.Set(ctx, k, "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Drop(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, k := range drop {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Fatalf("%s still exists after the drop of generation 1 (%v)", k, err)
		}
	}
	for _, k := range keep {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Fatalf("%s was removed by the drop of generation 1 (%v)", k, err)
		}
	}
	want(read(), 4, 6, 2, 3, 5)
}

func TestReadyToServe(t *testing.T) {
	e := newStepEnv(t)
	ctx := context.Background()
	g := NewGenerations(e.rdb, e.layout)
	topics := []string{stepTopic, "other"}
	var active int64
	check := func(want bool) {
		t.Helper()
		got, err := g.ReadyToServe(ctx, 1, active, topics, 2)
		if err != nil || got != want {
			t.Fatalf("ready to serve beside generation %d = %v, %v; want %v", active, got, err, want)
		}
	}
	check(false)
	for p := range int32(2) {
		for _, topic := range topics {
			if _, err := e.steps.Claim(ctx, 1, topic, p, "owner", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(false)
	if err := e.steps.MarkCaughtUp(ctx, 1, stepTopic, 0, "owner"); err != nil {
		t.Fatal(err)
	}
	if err := e.steps.MarkCaughtUp(ctx, 1, "other", 0, "owner"); err != nil {
		t.Fatal(err)
	}
	if err := e.steps.MarkCaughtUp(ctx, 1, stepTopic, 1, "owner"); err != nil {
		t.Fatal(err)
	}
	check(false)
	wantOutcomes(t, e.apply(Batch{Generation: 1, Topic: "other", Partition: 1, Epoch: "owner", CaughtUp: true,
		Items: []Item{item(0, "z", 1)}}), "a")
	check(true)

	// A served generation that has gone further on one partition holds the
	// switch back until the target stands at least as far: readers never go
	// back in time.
	active = 2
	for p := range int32(2) {
		for _, topic := range topics {
			if _, err := e.steps.Claim(ctx, active, topic, p, "served", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantOutcomes(t, e.apply(Batch{Generation: active, Topic: stepTopic, Partition: 1, Epoch: "served",
		Items: []Item{item(0, "y", 1), item(1, "y", 2)}}), "aa")
	check(false)
	wantOutcomes(t, e.apply(Batch{Generation: 1, Topic: stepTopic, Partition: 1, Epoch: "owner",
		Items: []Item{item(0, "y", 1), item(1, "y", 2)}}), "aa")
	check(true)
}
