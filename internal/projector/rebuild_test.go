package projector_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Acceptance (G5): a rebuild runs while queries keep returning the old
// complete model; after the switch they return the new one; no reader ever
// sees a half-built model.
func TestRebuildServesTheOldModelUntilAnAtomicSwitch(t *testing.T) {
	e := newEnv(t)
	e.cfg.BatchSize = 20
	e.cfg.DropGrace = 2 * time.Second
	const initial = 2000
	before := generate(200, 3000, 51)
	opened := generate(60, 1500, 52) // accounts opened while the rebuild runs
	all := append(slices.Clone(before.events[:initial]), interleave(before.events[initial:], opened.events)...)
	h, h0 := historyOf(all), historyOf(all[:initial])

	// Generation 2 waits at the gate, then goes slowly: readers and
	// producers run beside it.
	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	var gen2Batches atomic.Int64
	hooks := projector.Hooks{BeforeApply: func(ctx context.Context, b readmodels.Batch) error {
		if b.Generation != 2 {
			return nil
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		gen2Batches.Add(1)
		time.Sleep(5 * time.Millisecond) // a slow step, not a wait for a condition
		return nil
	}}
	e.produce(h0.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil).WithHooks(hooks))
	t.Cleanup(openGate) // before the projector stops
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "generation 1 built", e.caughtUp(q, h0))
	layout := readmodels.NewLayout(e.prefix, accounts.SummaryName)
	gens := readmodels.NewGenerations(e.rdb, layout)
	if m := readMeta(t, gens); m.Active != 1 || m.Target != 1 {
		t.Fatalf("after the first build: active %d target %d, want 1 1", m.Active, m.Target)
	}

	obs := e.observe(q, h, h0, false)
	ctx := context.Background()
	gen, started, err := gens.StartRebuild(ctx, false)
	if err != nil || !started || gen != 2 {
		t.Fatalf("StartRebuild = %d, %v, %v; want 2, true, nil", gen, started, err)
	}
	if gen, started, err := gens.StartRebuild(ctx, false); err != nil || started || gen != 2 {
		t.Fatalf("StartRebuild while one runs = %d, %v, %v; want 2, false, nil", gen, started, err)
	}

	// While generation 2 is held, generation 1 is served and kept up to date.
	mid := initial + 500
	e.produce(all[initial:mid])
	waitFor(t, 30*time.Second, "generation 1 applies the events produced during the rebuild", e.caughtUp(q, historyOf(all[:mid])))
	if m := readMeta(t, gens); m.Active != 1 || m.Target != 2 {
		t.Fatalf("during the rebuild: active %d target %d, want 1 2", m.Active, m.Target)
	}

	openGate()
	produced := e.produceSteadily(all[mid:], 20, 10*time.Millisecond)
	waitFor(t, 60*time.Second, "generation 2 switched in", func() (bool, error) {
		v, err := readmodels.ActiveView(ctx, e.rdb, layout)
		return err == nil && v.Generation == 2, err
	})
	m := readMeta(t, gens)
	retiredAt, ok := m.Retired[1]
	if !ok {
		t.Fatalf("generation 1 is not retired after the switch: %+v", m)
	}
	if n := countKeys(t, e.rdb, layout.GenerationPattern(1)); n == 0 && time.Since(retiredAt) < e.cfg.DropGrace {
		t.Fatalf("generation 1's keys were dropped %v after the switch, before the grace of %v", time.Since(retiredAt), e.cfg.DropGrace)
	}
	select {
	case <-produced:
	case <-time.After(60 * time.Second):
		t.Fatal("producing the events took over 60s")
	}
	waitFor(t, 60*time.Second, "generation 2 applied every event", e.caughtUp(q, h))
	waitFor(t, 30*time.Second, "generation 1's keys dropped after the grace", func() (bool, error) {
		m := readMeta(t, gens)
		_, retired := m.Retired[1]
		return !retired && countKeys(t, e.rdb, layout.GenerationPattern(1)) == 0, nil
	})
	seen := obs.finish()
	if !slices.Equal(seen.actives, []int64{1, 2}) {
		t.Errorf("active generations in the order readers saw them: %v, want [1 2]", seen.actives)
	}
	if seen.fromGen[1] == 0 || seen.fromGen[2] == 0 {
		t.Errorf("readers read %d snapshots from generation 1 and %d from generation 2: the test did not observe both", seen.fromGen[1], seen.fromGen[2])
	}
	if gen2Batches.Load() == 0 {
		t.Error("generation 2 applied no batch")
	}
	if m := readMeta(t, gens); m.Active != 2 || m.Target != 2 {
		t.Errorf("after the rebuild: active %d target %d, want 2 2", m.Active, m.Target)
	}
	e.checkSummaries(q, h)
	// Queries read generation 2's keys.
	for _, id := range slices.Sorted(maps.Keys(h.byID))[:20] {
		got, _, err := q.Summary(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		f, err := e.rdb.HGetAll(ctx, layout.Prefix(2, readmodels.PartitionOf(id, partitions))+"summary:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want, err := parseSummary(f); err != nil || want != got {
			t.Fatalf("summary of %s = %+v; generation 2 holds %+v (%v)", id, got, want, err)
		}
	}
}

// The switch to a rebuilt generation must not serve less than readers saw
// before it: here generation 2 has caught up once on every partition, but
// one partition's newest event (an account readers already see in
// generation 1) is still on its way into generation 2 when the switch is
// decided.
func TestRebuildSwitchHidesNothingReadersSaw(t *testing.T) {
	e := newEnv(t)
	h := generate(100, 1000, 71)
	late := openEvent("late-71", int64(len(h.events)+1))
	latePart := readmodels.PartitionOf(late.AggregateID, partitions)
	otherPart := int32(-1)
	for id := range h.byID {
		if p := readmodels.PartitionOf(id, partitions); p != latePart {
			otherPart = p
			break
		}
	}
	// Generation 2 holds otherPart until told, and the late account's event
	// until the switch was checked (or 3s, for a projector that rightly
	// waits for it before switching).
	holdOther, checked := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	releaseOther := func() { once1.Do(func() { close(holdOther) }) }
	releaseLate := func() { once2.Do(func() { close(checked) }) }
	hooks := projector.Hooks{BeforeApply: func(ctx context.Context, b readmodels.Batch) error {
		if b.Generation != 2 {
			return nil
		}
		if b.Partition == otherPart {
			<-holdOther
		}
		if b.Partition == latePart && slices.ContainsFunc(b.Items, func(it readmodels.Item) bool { return it.ID == late.AggregateID }) {
			select {
			case <-checked:
			case <-time.After(3 * time.Second):
			}
		}
		return nil
	}}
	e.produce(h.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil).WithHooks(hooks))
	t.Cleanup(func() { releaseOther(); releaseLate() })
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "generation 1 built", e.caughtUp(q, h))

	ctx := context.Background()
	layout := readmodels.NewLayout(e.prefix, accounts.SummaryName)
	if _, _, err := readmodels.NewGenerations(e.rdb, layout).StartRebuild(ctx, false); err != nil {
		t.Fatal(err)
	}
	steps := readmodels.NewSteps(e.rdb, layout, accounts.SummaryProjection{})
	topic := e.cfg.Topics.For(account.AggregateType)
	waitFor(t, 30*time.Second, "generation 2 caught up on the late account's partition", func() (bool, error) {
		_, caught, _, err := steps.Position(ctx, 2, topic, latePart)
		return caught, err
	})
	e.produce([]log.Event{late})
	waitFor(t, 10*time.Second, "readers see the late account in generation 1", func() (bool, error) {
		_, found, err := q.Summary(ctx, late.AggregateID)
		return found, err
	})
	if v, err := readmodels.ActiveView(ctx, e.rdb, layout); err != nil || v.Generation != 1 {
		t.Fatalf("before generation 2 caught up on partition %d: active view %+v, %v", otherPart, v, err)
	}
	releaseOther()
	waitFor(t, 30*time.Second, "generation 2 switched in", func() (bool, error) {
		v, err := readmodels.ActiveView(ctx, e.rdb, layout)
		return err == nil && v.Generation == 2, nil
	})
	_, found, err := q.Summary(ctx, late.AggregateID)
	releaseLate()
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("readers saw account %s in generation 1; right after the switch generation 2 does not have it: "+
			"the switch served a generation that is behind the one it replaced", late.AggregateID)
	}
	all := historyOf(append(slices.Clone(h.events), late))
	waitFor(t, 30*time.Second, "generation 2 applied every event", e.caughtUp(q, all))
	e.checkSummaries(q, all)
}

// Issue: Redis emptied or restarted without persistence: the projector
// notices that its positions are gone and rebuilds instead of serving a
// partial model.
func TestRedisEmptiedRebuildsInsteadOfServingAPartialModel(t *testing.T) {
	e := newEnv(t)
	const initial = 2000
	h := generate(200, 3000, 61)
	h0 := historyOf(h.events[:initial])
	e.produce(h0.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil))
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "projection built", e.caughtUp(q, h0))

	obs := e.observe(q, h, h0, true)
	if n := obs.wipe(e.prefix + ":*"); n == 0 {
		t.Fatal("nothing to delete under the prefix")
	}
	e.produce(h.events[initial:])
	waitFor(t, 60*time.Second, "projection rebuilt with every event", e.caughtUp(q, h))
	seen := obs.finish()
	if len(seen.actives) != 3 || seen.actives[0] != 1 || seen.actives[1] != 0 || seen.actives[2] == 0 {
		t.Errorf("active generations in the order readers saw them (0: not ready): %v, want [1 0 g]", seen.actives)
	}
	if seen.notReady == 0 {
		t.Error("no query got ErrNotReady while the projection was rebuilt")
	}
	m := readMeta(t, readmodels.NewGenerations(e.rdb, readmodels.NewLayout(e.prefix, accounts.SummaryName)))
	if m.Active == 0 || m.Active != m.Target {
		t.Errorf("after the rebuild: active %d target %d", m.Active, m.Target)
	}
	e.checkSummaries(q, h)
}

// Only the served generation's positions are lost: the data is still there
// but nothing says how far it goes. The projector takes the generation out
// of service and builds a new one.
func TestLostPositionsRebuildIntoANewGeneration(t *testing.T) {
	e := newEnv(t)
	// The observer's reads of a generation it just resolved may lag by a
	// loaded machine's stall: the retired generation's keys stay that long.
	e.cfg.DropGrace = 2 * time.Second
	const initial = 2000
	h := generate(200, 3000, 62)
	h0 := historyOf(h.events[:initial])
	e.produce(h0.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil))
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "projection built", e.caughtUp(q, h0))
	layout := readmodels.NewLayout(e.prefix, accounts.SummaryName)

	obs := e.observe(q, h, h0, true)
	if n := deleteKeys(t, e.rdb, e.prefix+":{"+accounts.SummaryName+":g1:p*}:pos"); n != partitions {
		t.Fatalf("deleted %d position hashes, want %d", n, partitions)
	}
	e.produce(h.events[initial:])
	ctx := context.Background()
	waitFor(t, 60*time.Second, "a new generation serves every event", func() (bool, error) {
		v, err := readmodels.ActiveView(ctx, e.rdb, layout)
		if errors.Is(err, readmodels.ErrNotReady) || (err == nil && v.Generation == 1) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return e.caughtUp(q, h)()
	})
	waitFor(t, 30*time.Second, "the lost generation's keys dropped", func() (bool, error) {
		return countKeys(t, e.rdb, layout.GenerationPattern(1)) == 0, nil
	})
	seen := obs.finish()
	if !slices.Equal(seen.actives, []int64{1, 0, 2}) {
		t.Errorf("active generations in the order readers saw them (0: not ready): %v, want [1 0 2]", seen.actives)
	}
	e.checkSummaries(q, h)
}

// historyOf indexes events, each account's in order, by account.
func historyOf(events []log.Event) *history {
	h := &history{events: events, byID: make(map[string][]log.Event)}
	for _, ev := range events {
		h.byID[ev.AggregateID] = append(h.byID[ev.AggregateID], ev)
	}
	return h
}

// interleave merges event lists taking one from each in turn; each list
// keeps its order.
func interleave(lists ...[]log.Event) []log.Event {
	var out []log.Event
	for i := 0; ; i++ {
		more := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// openEvent is the first event of a new account, at a global position.
func openEvent(id string, position int64) log.Event {
	return log.Event{
		ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: id, Version: 1,
		Type: account.AccountOpened{}.EventType(), SchemaVersion: account.AccountOpened{}.SchemaVersion(),
		Payload:    []byte(`{"owner":"owner ` + id + `","currency":"EUR"}`),
		RecordedAt: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), GlobalPosition: position,
		Metadata: log.Metadata{CorrelationID: "corr-" + id, CausationID: uuid.NewString(), Principal: "test"},
	}
}

// produceSteadily produces events beside the test, a chunk per tick; the
// channel closes once all are produced.
func (e *env) produceSteadily(events []log.Event, chunk int, every time.Duration) <-chan struct{} {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for start := 0; start < len(events); start += chunk {
			select {
			case <-tick.C:
			case <-quit:
				return
			}
			recs := make([]*kgo.Record, 0, chunk)
			for _, ev := range events[start:min(start+chunk, len(events))] {
				recs = append(recs, kafka.NewRecord(ev, e.cfg.Topics.For(ev.AggregateType), "test"))
			}
			if err := e.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				e.t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	e.t.Cleanup(func() { close(quit); <-done })
	return done
}

func readMeta(t testing.TB, gens *readmodels.Generations) readmodels.Meta {
	t.Helper()
	m, ok, err := gens.Read(context.Background())
	if err != nil || !ok {
		t.Fatalf("read generations: ok=%v err=%v", ok, err)
	}
	return m
}

// countKeys counts the keys matching pattern.
func countKeys(t testing.TB, rdb *redis.Client, pattern string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// deleteKeysScript deletes every key matching ARGV[1] in one atomic step,
// as a Redis restart without persistence would lose them: nothing runs
// while it runs.
var deleteKeysScript = redis.NewScript(`
local keys = redis.call('KEYS', ARGV[1])
for i = 1, #keys, 500 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
end
return #keys
`)

func deleteKeys(t testing.TB, rdb *redis.Client, pattern string) int {
	t.Helper()
	n, err := deleteKeysScript.Run(context.Background(), rdb, nil, pattern).Int()
	if err != nil {
		t.Fatalf("delete %s: %v", pattern, err)
	}
	return n
}

// foldIndex holds every account's state after each of its first v events
// (index v).
type foldIndex map[string][]account.State

func newFoldIndex(t testing.TB, h *history) foldIndex {
	t.Helper()
	f := make(foldIndex, len(h.byID))
	for id, evs := range h.byID {
		states := make([]account.State, len(evs)+1)
		states[0] = account.Initial(id)
		for i, ev := range evs {
			d, err := account.DecodeEvent(ev.Type, ev.Payload)
			if err != nil {
				t.Fatal(err)
			}
			states[i+1] = account.Evolve(states[i], d)
		}
		f[id] = states
	}
	return f
}

// check says how s differs from the fold of its account's first s.Version
// events, which a complete model gives.
func (f foldIndex) check(h *history, id string, s accounts.Summary) error {
	states := f[id]
	if s.Version < 1 || s.Version >= int64(len(states)) {
		return fmt.Errorf("summary of %s has version %d; the account has %d events", id, s.Version, len(states)-1)
	}
	want, evs := states[s.Version], h.byID[id]
	if s.ID != id || s.Balance != want.Balance || s.Status != string(want.Status) || s.Owner != want.Owner ||
		s.Currency != want.Currency || !s.OpenedAt.Equal(evs[0].RecordedAt) || !s.UpdatedAt.Equal(evs[s.Version-1].RecordedAt) {
		return fmt.Errorf("summary of %s = %+v, not the fold of its first %d events %+v: a partial model", id, s, s.Version, want)
	}
	return nil
}

// parseSummary reads a summary hash.
func parseSummary(f map[string]string) (accounts.Summary, error) {
	s := accounts.Summary{ID: f["id"], Owner: f["owner"], Principal: f["principal"], Currency: f["currency"], Status: f["status"]}
	var errs [4]error
	s.Balance, errs[0] = strconv.ParseInt(f["balance"], 10, 64)
	s.Version, errs[1] = strconv.ParseInt(f["version"], 10, 64)
	s.OpenedAt, errs[2] = time.Parse(time.RFC3339Nano, f["openedAt"])
	s.UpdatedAt, errs[3] = time.Parse(time.RFC3339Nano, f["updatedAt"])
	return s, errors.Join(errs[:]...)
}

// observers query the summaries of every account continuously while a test
// changes the projection under them, and check every answer: each summary
// is the fold of its account's first `version` events; a generation never
// loses an account or goes back a version; once ready, the model holds
// every account of mustFind.
type observers struct {
	e          *env
	q          *accounts.Queries
	layout     readmodels.Layout
	h          *history
	folds      foldIndex
	ids        []string
	mustFind   map[string][]log.Event
	notReadyOK bool

	// wipes is odd while the test deletes keys; answers that straddle a
	// deletion prove nothing about missing accounts.
	wipes atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
	warm sync.WaitGroup // done once every goroutine has looked once

	finished sync.Once

	mu       sync.Mutex
	failures []string
	seen     observed
}

// readerPace is the pause between two passes of a reader.
const readerPace = 5 * time.Millisecond

// observed is what the observers saw.
type observed struct {
	actives  []int64       // active generations in the order seen; 0: not ready
	fromGen  map[int64]int // snapshots read from each generation
	notReady int           // queries answered ErrNotReady
}

// observe starts a query reader, two snapshot readers and a watcher of
// the active generation, and returns once each has looked once. mustFind
// holds the accounts every ready answer has.
func (e *env) observe(q *accounts.Queries, h, mustFind *history, notReadyOK bool) *observers {
	o := &observers{
		e: e, q: q, layout: readmodels.NewLayout(e.prefix, accounts.SummaryName), h: h,
		folds: newFoldIndex(e.t, h), mustFind: mustFind.byID, notReadyOK: notReadyOK,
		stop: make(chan struct{}), seen: observed{fromGen: make(map[int64]int)},
	}
	for id := range h.byID {
		o.ids = append(o.ids, id)
	}
	slices.Sort(o.ids)
	for _, f := range []func(looked func()){o.watchActive, o.queryReader, o.snapshotReader, o.snapshotReader} {
		o.warm.Add(1)
		o.wg.Go(func() {
			looked := sync.OnceFunc(o.warm.Done)
			defer looked()
			f(looked)
		})
	}
	e.t.Cleanup(func() { o.finish() }) // reports what they found also when the test stops early
	o.warm.Wait()
	return o
}

// finish stops the observers, reports what they found wrong and returns
// what they saw.
func (o *observers) finish() observed {
	o.e.t.Helper()
	o.finished.Do(func() {
		close(o.stop)
		o.wg.Wait()
		for _, f := range o.failures {
			o.e.t.Error(f)
		}
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen
}

func (o *observers) stopped() bool {
	select {
	case <-o.stop:
		return true
	default:
		return false
	}
}

func (o *observers) fail(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.failures) < 20 {
		o.failures = append(o.failures, fmt.Sprintf(format, args...))
	}
}

// wipe deletes every key matching pattern at once, telling the readers.
func (o *observers) wipe(pattern string) int {
	o.wipes.Add(1)
	defer o.wipes.Add(1)
	return deleteKeys(o.e.t, o.e.rdb, pattern)
}

// notReady handles an ErrNotReady answer.
func (o *observers) notReady(who string) {
	o.mu.Lock()
	o.seen.notReady++
	o.mu.Unlock()
	if !o.notReadyOK {
		o.fail("%s: ErrNotReady while a complete generation should be served", who)
	}
}

func (o *observers) watchActive(looked func()) {
	ctx := context.Background()
	for !o.stopped() {
		gen := int64(0)
		v, err := readmodels.ActiveView(ctx, o.e.rdb, o.layout)
		switch {
		case errors.Is(err, readmodels.ErrNotReady):
			o.notReady("active view")
		case err != nil:
			o.fail("active view: %v", err)
			return
		default:
			gen = v.Generation
		}
		o.mu.Lock()
		if n := len(o.seen.actives); n == 0 || o.seen.actives[n-1] != gen {
			o.seen.actives = append(o.seen.actives, gen)
		}
		o.mu.Unlock()
		looked()
		time.Sleep(2 * time.Millisecond) // sampling pace
	}
}

// queryReader asks accounts.Queries for every account, over and over.
func (o *observers) queryReader(looked func()) {
	ctx := context.Background()
	for !o.stopped() {
		wipes := o.wipes.Load()
		var missing []string
		for _, id := range o.ids {
			s, found, err := o.q.Summary(ctx, id)
			switch {
			case errors.Is(err, readmodels.ErrNotReady):
				o.notReady("query")
				continue
			case err != nil:
				o.fail("summary of %s: %v", id, err)
				return
			case found:
				if err := o.folds.check(o.h, id, s); err != nil {
					o.fail("query: %v", err)
				}
			case o.mustFind[id] != nil:
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 && wipes%2 == 0 && o.wipes.Load() == wipes {
			o.fail("query: the served model lacks %d accounts it had before, e.g. %s", len(missing), missing[0])
		}
		looked()
		time.Sleep(readerPace) // leaves the projector CPU on small machines
	}
}

// snapshotReader reads every account from one resolved active generation
// in one pipeline, as a consistent-looking snapshot.
func (o *observers) snapshotReader(looked func()) {
	ctx := context.Background()
	last := make(map[int64]map[string]int64) // generation → account → version seen
	lastGen := int64(0)
	for !o.stopped() {
		wipes := o.wipes.Load()
		v, err := readmodels.ActiveView(ctx, o.e.rdb, o.layout)
		if errors.Is(err, readmodels.ErrNotReady) {
			o.notReady("snapshot")
			time.Sleep(time.Millisecond) // polling pace while not ready
			continue
		}
		if err != nil {
			o.fail("snapshot: %v", err)
			return
		}
		pipe := o.e.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(o.ids))
		for i, id := range o.ids {
			cmds[i] = pipe.HGetAll(ctx, v.Prefix(id)+"summary:"+id)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			o.fail("snapshot of generation %d: %v", v.Generation, err)
			return
		}
		valid := wipes%2 == 0 && o.wipes.Load() == wipes
		if v.Generation < lastGen {
			o.fail("snapshot: generation %d served after generation %d", v.Generation, lastGen)
		}
		lastGen = v.Generation
		seen := last[v.Generation]
		if seen == nil {
			seen = make(map[string]int64)
			last[v.Generation] = seen
		}
		var gone, lacking []string
		for i, id := range o.ids {
			f := cmds[i].Val()
			if len(f) == 0 {
				switch {
				case !valid:
				case seen[id] > 0:
					gone = append(gone, id)
				case o.mustFind[id] != nil:
					lacking = append(lacking, id)
				}
				continue
			}
			s, err := parseSummary(f)
			if err != nil {
				o.fail("snapshot: summary of %s in generation %d is malformed (%v): %v", id, v.Generation, err, f)
				continue
			}
			if err := o.folds.check(o.h, id, s); err != nil {
				o.fail("snapshot of generation %d: %v", v.Generation, err)
			}
			if valid {
				if s.Version < seen[id] {
					o.fail("snapshot: account %s went back from version %d to %d in generation %d", id, seen[id], s.Version, v.Generation)
				}
				seen[id] = max(seen[id], s.Version)
			}
		}
		if len(gone) > 0 {
			o.fail("snapshot: %d accounts went missing from generation %d, e.g. %s after version %d", len(gone), v.Generation, gone[0], seen[gone[0]])
		}
		if len(lacking) > 0 {
			o.fail("snapshot: generation %d lacks %d accounts the served model had before, e.g. %s", v.Generation, len(lacking), lacking[0])
		}
		o.mu.Lock()
		o.seen.fromGen[v.Generation]++
		o.mu.Unlock()
		looked()
		time.Sleep(readerPace)
	}
}

// A read model built from one log, met by a projector on another (the topic
// recreated, or another Kafka cluster, with the same Redis): its stored
// positions lie beyond the new partitions' ends. It is rebuilt from the new
// log instead of waiting for offsets that will hold other events.
func TestPositionsBeyondTheEndRebuildFromTheNewLog(t *testing.T) {
	e := newEnv(t)
	old := generate(100, 2000, 71)
	e.produce(old.events)
	stop := e.run(e.projector(accounts.SummaryProjection{}, nil))
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "built from the first log", e.caughtUp(q, old))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A new, shorter log under the same topic names.
	cluster := testenv.Kafka(t)
	e.client = testenv.KafkaClient(t, cluster.ListenAddrs())
	e.cfg.Client = []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	if err := e.cfg.Topics.Ensure(context.Background(), e.client, e.cfg.Topics.For(account.AggregateType)); err != nil {
		t.Fatal(err)
	}
	fresh := generate(40, 300, 72)
	e.produce(fresh.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil))
	layout := readmodels.NewLayout(e.prefix, accounts.SummaryName)
	waitFor(t, 60*time.Second, "a new generation built from the new log", func() (bool, error) {
		v, err := readmodels.ActiveView(context.Background(), e.rdb, layout)
		if errors.Is(err, readmodels.ErrNotReady) || (err == nil && v.Generation == 1) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return e.caughtUp(q, fresh)()
	})
	e.checkSummaries(q, fresh)
	for id := range old.byID {
		if _, found, err := q.Summary(context.Background(), id); err != nil || found {
			t.Fatalf("%s of the old log is still served (%v)", id, err)
		}
	}
}
