package projector_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// counted is tributary_projection_events_total of one projection and outcome.
func counted(t testing.TB, reg prometheus.Gatherer, projection, outcome string) int {
	t.Helper()
	return int(counterSeries(t, reg, eventsMetric, "projection", "outcome")[projection+"|"+outcome])
}

// historiesCaughtUp tells whether the served history holds the last version
// of every account in h.
func historiesCaughtUp(q *accounts.Queries, h *history) func() (bool, error) {
	return func() (bool, error) {
		for id, evs := range h.byID {
			if v, err := q.HistoryVersion(context.Background(), id); err != nil || v < int64(len(evs)) {
				return false, nil
			}
		}
		return true, nil
	}
}

// position is the stored position of a projection's first generation.
func (e *env) position(p readmodels.Projection, partition int32) int64 {
	e.t.Helper()
	steps := readmodels.NewSteps(e.rdb, readmodels.NewLayout(e.prefix, p.Name()), p)
	next, _, _, err := steps.Position(context.Background(), 1, e.cfg.Topics.For(account.AggregateType), partition)
	if err != nil {
		e.t.Fatal(err)
	}
	return next
}

// One process's projections on one consumer: a single member of a single
// consumer group fetches the topic, and every projection reaches the fold
// of the events, each applied once per projection.
func TestOneConsumerFeedsEveryProjectionToTheFold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 64 // many steps, while records keep arriving
	h := generate(300, 6000, 71)
	e.produce(h.events[:3000])
	reg := prometheus.NewRegistry()
	projections := []readmodels.Projection{accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{}}
	c := e.consumer(reg, projections...)
	e.run(c)
	for part := range 30 { // while it consumes
		e.produce(h.events[3000+part*100 : 3000+(part+1)*100])
	}
	ctx := context.Background()
	for _, p := range projections {
		waitFor(t, 60*time.Second, p.Name()+" applied every event", func() (bool, error) {
			return counted(t, reg, p.Name(), "applied") >= len(h.events), nil
		})
		waitFor(t, 30*time.Second, p.Name()+" served", func() (bool, error) {
			_, err := readmodels.ActiveView(ctx, e.rdb, readmodels.NewLayout(e.prefix, p.Name()))
			return err == nil, nil
		})
	}
	q := accounts.NewQueries(e.rdb, e.prefix)
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	e.checkDirectoryIsTheFold(q, h)
	for _, p := range projections {
		if a, d := counted(t, reg, p.Name(), "applied"), counted(t, reg, p.Name(), "duplicate"); a != len(h.events) || d != 0 {
			t.Fatalf("%s applied %d events and met %d duplicates; %d were produced once each", p.Name(), a, d, len(h.events))
		}
	}

	// On one Redis server the three lanes of a partition go to Redis as
	// one step call: the lanes take the same batches (feed.cut) and none
	// finds its siblings without the records it has (feed.deliver), so a
	// lane step goes without its siblings only when a round was sent after
	// the rendezvous's bound (a machine too loaded to prepare a batch in
	// 100 ms), which leaves the three steps of that batch apart.
	calls, lanes, fused := stepLanes(t, reg)
	timeouts := int(counterSeries(t, reg, "tributary_projection_rendezvous_timeouts_total")[""])
	t.Logf("%d step calls of %d lane steps, %d of them in calls of all three lanes; %d rounds sent after the rendezvous's bound", calls, lanes, fused, timeouts)
	if lanes-fused > 3*timeouts {
		t.Fatalf("%d of %d lane steps went in calls of fewer than three lanes, %d rounds timed out; want every other step fused", lanes-fused, lanes, timeouts)
	}

	adm := kadm.NewClient(e.client)
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := listed.Groups(); !slices.Equal(got, []string{c.Group()}) {
		t.Fatalf("consumer groups %v, want only the shared consumer's %s", got, c.Group())
	}
	described, err := adm.DescribeGroups(ctx, c.Group())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(described[c.Group()].Members); n != 1 {
		t.Fatalf("group %s has %d members, want 1", c.Group(), n)
	}
}

// Two projections on one consumer, the summary failing on one partition
// (a key of the wrong type under an account it opens there): the history
// keeps going on every partition — on the failing one it gets a queue
// (QueueLimit) ahead of the summary, and there it waits, fetching paused
// until the summary's queue drains. Once the key is fixed both apply
// everything, each event once per projection.
func TestAFailingProjectionHoldsBackAnotherOnlyOnItsPartitionAndByTheQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 20
	e.cfg.QueueLimit = 60
	e.cfg.FetchMaxBytes = 64 << 10
	e.cfg.FetchMaxPartitionBytes = 16 << 10
	h := generate(80, 3600, 73)
	const stuckID = "acc-late"
	late := []log.Event{
		newEvent(stuckID, 1, 9001, account.AccountOpened{Owner: "late", Currency: "EUR"}),
		newEvent(stuckID, 2, 9002, account.AccountActivated{}),
		newEvent(stuckID, 3, 9003, account.FundsDeposited{Amount: 70, Currency: "EUR", Source: "salary"}),
	}
	stuck := readmodels.PartitionOf(stuckID, partitions)
	summary, hist := accounts.SummaryProjection{}, accounts.HistoryProjection{}
	reg := prometheus.NewRegistry()
	e.run(e.consumer(reg, summary, hist))
	q := accounts.NewQueries(e.rdb, e.prefix)
	e.produce(h.events[:600])
	first := firstEvents(h, 600)
	waitFor(t, 60*time.Second, "the first events applied", e.caughtUp(q, first))
	waitFor(t, 60*time.Second, "the first events in the history", historiesCaughtUp(q, first))

	ctx := context.Background()
	bad := readmodels.NewLayout(e.prefix, accounts.SummaryName).Prefix(1, stuck) + "summary:" + stuckID
	if err := e.rdb.Set(ctx, bad, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The late account first, so that the summary is stuck at the start of
	// the rest on its partition; the rest in small produce batches, as
	// fetches return whole batches.
	rest := append(slices.Clone(late), h.events[600:]...)
	var onStuck int
	for _, ev := range rest {
		if readmodels.PartitionOf(ev.AggregateID, partitions) == stuck {
			onStuck++
		}
	}
	if onStuck < 4*e.cfg.QueueLimit {
		t.Fatalf("%d events on partition %d after the stuck one: too weak a test", onStuck, stuck)
	}
	produced := e.produceSteadily(rest, 16, time.Millisecond)
	h.events = append(h.events, late...)
	h.byID[stuckID] = late
	select {
	case <-produced:
	case <-time.After(60 * time.Second):
		t.Fatal("producing took over 60s")
	}

	others := &history{byID: make(map[string][]log.Event)}
	for id, evs := range h.byID {
		if readmodels.PartitionOf(id, partitions) != stuck {
			others.byID[id] = evs
		}
	}
	waitFor(t, 60*time.Second, "the summary applied everything on the other partitions", e.caughtUp(q, others))
	waitFor(t, 60*time.Second, "the history applied everything on the other partitions", historiesCaughtUp(q, others))
	held := e.position(summary, stuck)
	waitFor(t, 60*time.Second, "the history a queue ahead of the failing summary on its partition", func() (bool, error) {
		return e.position(hist, stuck) >= held+int64(e.cfg.QueueLimit), nil
	})
	if v, _ := q.SummaryVersion(ctx, stuckID); v != 0 {
		t.Fatalf("the account whose summary key is broken has version %d applied", v)
	}
	ends, err := kadm.NewClient(e.client).ListEndOffsets(ctx, e.cfg.Topics.For(account.AggregateType))
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(e.cfg.Topics.For(account.AggregateType), stuck)
	// The history stands still on the partition for a second while the
	// summary retries its step: were fetching not paused, it would run to
	// the end.
	var last int64 = -1
	var since time.Time
	waitFor(t, 30*time.Second, "the history standing still on the stuck partition", func() (bool, error) {
		if pos := e.position(hist, stuck); pos != last {
			last, since = pos, time.Now()
		}
		return time.Since(since) >= time.Second, nil
	})
	if e.position(summary, stuck) != held {
		t.Fatalf("the summary moved on partition %d with its key broken", stuck)
	}
	if ahead := e.position(hist, stuck); ahead >= end.Offset {
		t.Fatalf("the history reached the end (%d) of partition %d while the summary is stuck at %d: fetching did not pause for the summary's full queue",
			end.Offset, stuck, held)
	} else {
		t.Logf("partition %d: summary stuck at %d, history at %d (queue limit %d), end %d", stuck, held, ahead, e.cfg.QueueLimit, end.Offset)
	}

	if err := e.rdb.Del(ctx, bad).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the summary applied everything", e.caughtUp(q, h))
	waitFor(t, 60*time.Second, "the history applied everything", historiesCaughtUp(q, h))
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	waitFor(t, 10*time.Second, "every event counted", func() (bool, error) {
		return counted(t, reg, accounts.HistoryName, "applied") >= len(h.events), nil
	})
	if a, d := counted(t, reg, accounts.SummaryName, "applied"), counted(t, reg, accounts.SummaryName, "duplicate"); a+d != len(h.events) {
		t.Fatalf("the summary counted %d applied and %d duplicates, %d events on the topic", a, d, len(h.events))
	}
	if a, d := counted(t, reg, accounts.HistoryName, "applied"), counted(t, reg, accounts.HistoryName, "duplicate"); a != len(h.events) || d != 0 {
		t.Fatalf("the history applied %d events and met %d duplicates; %d were produced once each", a, d, len(h.events))
	}
}

// Two processes each running every projection on one consumer: members
// join and leave while steps are in flight, and each event is applied
// exactly once per projection across the two.
func TestRebalancesOfSharedConsumersApplyEachEventOncePerProjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 20
	h := generate(120, 4000, 79)
	first, second := h.events[:2000], h.events[2000:]
	projections := []readmodels.Projection{accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{}}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	stopA := e.run(e.consumer(regA, projections...))
	producedFirst := e.produceSteadily(first, 100, 25*time.Millisecond)
	waitFor(t, 30*time.Second, "the first process applied some events", func() (bool, error) {
		return counted(t, regA, accounts.HistoryName, "applied") >= 300, nil
	})
	e.run(e.consumer(regB, projections...))
	waitFor(t, 60*time.Second, "the second process owns partitions", func() (bool, error) {
		return len(lagGauges(t, regB)) > 0, nil
	})
	select {
	case <-producedFirst:
	case <-time.After(60 * time.Second):
		t.Fatal("producing the first wave took over 60s")
	}
	producedSecond := e.produceSteadily(second, 100, 25*time.Millisecond)
	var logged time.Time
	waitFor(t, 60*time.Second, "the second process applied events of every projection", func() (bool, error) {
		for _, p := range projections {
			if counted(t, regB, p.Name(), "applied") == 0 {
				if time.Since(logged) > 5*time.Second {
					logged = time.Now()
					t.Logf("%s: nothing applied by the second process yet; its lag gauges: %v", p.Name(), lagGauges(t, regB))
				}
				return false, nil
			}
		}
		return true, nil
	})
	if err := stopA(); err != nil {
		t.Fatalf("stop the first process: %v", err)
	}
	select {
	case <-producedSecond:
	case <-time.After(60 * time.Second):
		t.Fatal("producing the second wave took over 60s")
	}
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "the summaries caught up", e.caughtUp(q, h))
	waitFor(t, 60*time.Second, "the histories caught up", historiesCaughtUp(q, h))
	for _, p := range projections {
		waitFor(t, 60*time.Second, p.Name()+": every event counted", func() (bool, error) {
			return counted(t, regA, p.Name(), "applied")+counted(t, regB, p.Name(), "applied") >= len(h.events), nil
		})
	}
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	e.checkDirectoryIsTheFold(q, h)
	for _, p := range projections {
		a := counted(t, regA, p.Name(), "applied")
		if a >= len(h.events) {
			t.Fatalf("%s: the first process applied all %d events before it left: too weak a test", p.Name(), a)
		}
		applied := a + counted(t, regB, p.Name(), "applied")
		duplicates := counted(t, regA, p.Name(), "duplicate") + counted(t, regB, p.Name(), "duplicate")
		if applied != len(h.events) || duplicates != 0 {
			t.Fatalf("%s: the processes applied %d events and met %d duplicates; %d events were produced once each", p.Name(), applied, duplicates, len(h.events))
		}
	}
}

// An event no projection can apply (an unknown schema version) is decoded
// once but parked by each projection of the consumer on its own
// dead-letter topic, counted by each, while both move on.
func TestSharedConsumerParksOnEachProjectionsDeadLetterTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Retries = 1
	h := generate(30, 400, 83)
	reg := prometheus.NewRegistry()
	c := e.consumer(reg, accounts.SummaryProjection{}, accounts.HistoryProjection{})
	e.run(c)
	ev := newEvent("acc-poison", 1, 5000, account.AccountOpened{Owner: "o", Currency: "EUR"})
	ev.SchemaVersion = 7
	e.produce(h.events[:200])
	poison := e.produceRecords(e.client, kafka.NewRecord(ev, e.cfg.Topics.For(account.AggregateType), "test"))[0]
	e.produce(h.events[200:])
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "the summaries caught up", e.caughtUp(q, h))
	waitFor(t, 60*time.Second, "the histories caught up", historiesCaughtUp(q, h))
	for _, name := range []string{accounts.SummaryName, accounts.HistoryName} {
		waitFor(t, 30*time.Second, name+" parked the event", func() (bool, error) {
			return counterSeries(t, reg, deadLetteredMetric, "projection")[name] == 1, nil
		})
		dls := e.deadLetterRecords(name)
		if len(dls) != 1 {
			t.Fatalf("%s's dead-letter topic holds %d records, want 1", name, len(dls))
		}
		wantDeadLetter(t, dls[0], poison, e.cfg.Retries+1, "unknown event type or schema version")
		if got := header(dls[0], projector.HeaderDLQProjector); got != name {
			t.Fatalf("%s's dead letter names projection %q", name, got)
		}
		if got := header(dls[0], projector.HeaderDLQGroup); got != c.Group() {
			t.Fatalf("%s's dead letter names consumer group %q, want %q", name, got, c.Group())
		}
	}
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
}

// A rebuild of one projection of a consumer (a generation after the
// first: also what follows lost positions) builds from offset 0 on a
// client of its own, in its generation's group, so that it does not hold
// the served projections back: here its build is held, and the summary and
// the served history keep applying new events meanwhile. Once built and
// served, the new generation joins the shared consumer; every event is
// applied once by each generation.
func TestARebuildBesideServedProjectionsRunsOnItsOwnClientThenJoinsTheSharedOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(100, 3000, 89)
	summary, hist := accounts.SummaryProjection{}, accounts.HistoryProjection{}
	q := accounts.NewQueries(e.rdb, e.prefix)
	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	var gen2Applied atomic.Int64
	held := projector.Hooks{BeforeApply: func(ctx context.Context, b readmodels.Batch) error {
		if b.Generation != 2 {
			return nil
		}
		select {
		case <-gate:
			gen2Applied.Add(int64(len(b.Items)))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	reg := prometheus.NewRegistry()
	c := e.hookedConsumer(reg, map[string]projector.Hooks{accounts.HistoryName: held}, summary, hist)
	e.run(c)
	t.Cleanup(openGate) // before the consumer stops
	e.produce(h.events[:1000])
	first := firstEvents(h, 1000)
	waitFor(t, 60*time.Second, "the summary served", e.caughtUp(q, first))
	waitFor(t, 60*time.Second, "the history served", historiesCaughtUp(q, first))

	ctx := context.Background()
	gens := readmodels.NewGenerations(e.rdb, readmodels.NewLayout(e.prefix, accounts.HistoryName))
	if gen, started, err := gens.StartRebuild(ctx, false); err != nil || !started || gen != 2 {
		t.Fatalf("StartRebuild = %d, %v, %v; want 2, true, nil", gen, started, err)
	}
	adm := kadm.NewClient(e.client)
	building := projector.New(hist, e.cfg, projector.Deps{Metrics: projector.NewMetrics(prometheus.NewRegistry())}).Group(2)
	waitFor(t, 30*time.Second, "the rebuild in a group of its own", func() (bool, error) {
		listed, err := adm.ListGroups(ctx)
		return err == nil && slices.Contains(listed.Groups(), building), err
	})
	e.produce(h.events[1000:2000])
	second := firstEvents(h, 2000)
	waitFor(t, 60*time.Second, "the summary applies new events while the rebuild is held", e.caughtUp(q, second))
	waitFor(t, 60*time.Second, "the served history applies new events while the rebuild is held", historiesCaughtUp(q, second))
	if n := gen2Applied.Load(); n != 0 {
		t.Fatalf("the held rebuild applied %d events", n)
	}

	openGate()
	e.produce(h.events[2000:])
	waitFor(t, 60*time.Second, "the rebuilt generation served", func() (bool, error) {
		m, _, err := gens.Read(ctx)
		return err == nil && m.Active == 2, err
	})
	waitFor(t, 60*time.Second, "the summary caught up", e.caughtUp(q, h))
	waitFor(t, 60*time.Second, "the rebuilt history caught up", historiesCaughtUp(q, h))
	waitFor(t, 30*time.Second, "the rebuilt history fed by the shared consumer", func() (bool, error) {
		for _, l := range lagGauges(t, reg) {
			if l.labels["projection"] == accounts.HistoryName && l.labels["consumergroup"] == c.Group() {
				return true, nil
			}
		}
		return false, nil
	})
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	waitFor(t, 10*time.Second, "every event counted", func() (bool, error) {
		return counted(t, reg, accounts.SummaryName, "applied") >= len(h.events) && gen2Applied.Load() >= int64(len(h.events)), nil
	})
	if a, d := counted(t, reg, accounts.SummaryName, "applied"), counted(t, reg, accounts.SummaryName, "duplicate"); a != len(h.events) || d != 0 {
		t.Fatalf("the summary applied %d events and met %d duplicates; %d were produced once each", a, d, len(h.events))
	}
	// Generation 1 applied the first 2000 and maybe some of the rest before
	// the switch, generation 2 every event: none twice.
	if d := counted(t, reg, accounts.HistoryName, "duplicate"); d != 0 {
		t.Fatalf("the history met %d duplicates", d)
	}
}

// A projection fenced out of a partition by another owner (a member of
// another group while a generation moves between groups, or one that this
// member's rebalance has not told about yet) steps aside for a third of
// the session timeout without holding the partition back for the other
// projections of the consumer, which apply everything meanwhile; then,
// its group still assigning it the partition, it claims the partition
// again and applies the rest, each event once.
func TestAFencedOutProjectionStepsAsideWithoutHoldingBackTheOthersThenClaimsAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 20
	e.cfg.QueueLimit = 50
	e.cfg.FetchMaxBytes = 64 << 10
	e.cfg.FetchMaxPartitionBytes = 16 << 10
	e.cfg.SessionTimeout = 45 * time.Second // steps aside for 15s
	h := generate(80, 2400, 97)
	summary, hist := accounts.SummaryProjection{}, accounts.HistoryProjection{}
	reg := prometheus.NewRegistry()
	e.run(e.consumer(reg, summary, hist))
	q := accounts.NewQueries(e.rdb, e.prefix)
	e.produce(h.events[:400])
	first := firstEvents(h, 400)
	waitFor(t, 60*time.Second, "the first events applied", e.caughtUp(q, first))
	waitFor(t, 60*time.Second, "the first events in the history", historiesCaughtUp(q, first))

	const fenced = int32(0)
	var onFenced int
	for _, ev := range h.events[400:] {
		if readmodels.PartitionOf(ev.AggregateID, partitions) == fenced {
			onFenced++
		}
	}
	if onFenced < 4*e.cfg.QueueLimit {
		t.Fatalf("%d events on partition %d: too weak a test", onFenced, fenced)
	}
	ctx := context.Background()
	topic := e.cfg.Topics.For(account.AggregateType)
	steps := readmodels.NewSteps(e.rdb, readmodels.NewLayout(e.prefix, accounts.SummaryName), summary)
	at, err := steps.Claim(ctx, 1, topic, fenced, "another-owner", true)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	select {
	case <-e.produceSteadily(h.events[400:], 16, time.Millisecond):
	case <-time.After(60 * time.Second):
		t.Fatal("producing took over 60s")
	}
	waitFor(t, 60*time.Second, "the history applied everything, also on the partition the summary is fenced out of", historiesCaughtUp(q, h))
	if next := e.position(summary, fenced); next != at {
		if time.Since(began) < 15*time.Second {
			t.Fatalf("the summary moved from %d to %d on partition %d before stepping aside for 15s", at, next, fenced)
		}
		t.Logf("the history caught up only %v after the fence: the summary had claimed its partition again", time.Since(began))
	}
	waitFor(t, 60*time.Second, "the summary claimed its partition again and applied everything", e.caughtUp(q, h))
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	for _, name := range []string{accounts.SummaryName, accounts.HistoryName} {
		waitFor(t, 10*time.Second, name+": every event counted", func() (bool, error) {
			return counted(t, reg, name, "applied") >= len(h.events), nil
		})
		if a, d := counted(t, reg, name, "applied"), counted(t, reg, name, "duplicate"); a != len(h.events) || d != 0 {
			t.Fatalf("%s applied %d events and met %d duplicates; %d were produced once each", name, a, d, len(h.events))
		}
	}
}

// stepLanes reads tributary_projection_step_lanes: how many step calls went
// to Redis, how many lane steps they held, and how many of those were in
// calls of 3 lanes or more.
func stepLanes(t testing.TB, reg prometheus.Gatherer) (calls, lanes, inCallsOf3 int) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tributary_projection_step_lanes" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		calls, lanes = int(h.GetSampleCount()), int(h.GetSampleSum())
		below3 := 0 // lane steps in calls of 1 or 2 lanes
		var prev uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() <= 2 {
				below3 += int(b.GetCumulativeCount()-prev) * int(b.GetUpperBound())
				prev = b.GetCumulativeCount()
			}
		}
		return calls, lanes, lanes - below3
	}
	t.Fatal("no tributary_projection_step_lanes")
	return 0, 0, 0
}

// A projection held before its step (here by a test hook; in production a
// backoff, a fencing or parking an event) is not waited for by the other
// projections of its partitions, also while new records keep arriving for
// it: their steps go without it at once, not after the rendezvous's bound.
func TestAHeldProjectionDoesNotHoldBackItsSiblingsSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 16 // many steps
	h := generate(100, 2000, 97)
	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	var heldMu sync.Mutex
	held := map[int32]bool{} // partitions where the history is held
	hook := projector.Hooks{BeforeApply: func(ctx context.Context, b readmodels.Batch) error {
		heldMu.Lock()
		held[b.Partition] = true
		heldMu.Unlock()
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	reg := prometheus.NewRegistry()
	c := e.hookedConsumer(reg, map[string]projector.Hooks{accounts.HistoryName: hook}, accounts.SummaryProjection{}, accounts.HistoryProjection{})
	e.run(c)
	t.Cleanup(openGate) // before the consumer stops
	q := accounts.NewQueries(e.rdb, e.prefix)

	// The first part reaches every partition. Until the history of a
	// partition is in the hook it is about to hand its step over, and the
	// summary may wait for it (on a loaded machine, up to the bound); from
	// then on nothing may wait for it.
	e.produce(h.events[:500])
	everywhere := map[int32]bool{}
	for _, ev := range h.events {
		everywhere[readmodels.PartitionOf(ev.AggregateID, partitions)] = true
	}
	for _, ev := range h.events[:500] {
		delete(everywhere, readmodels.PartitionOf(ev.AggregateID, partitions))
	}
	if len(everywhere) != 0 {
		t.Fatalf("the first part misses partitions %v: too weak a test", everywhere)
	}
	waitFor(t, 60*time.Second, "the history held on every partition", func() (bool, error) {
		heldMu.Lock()
		defer heldMu.Unlock()
		return len(held) == partitions, nil
	})
	calls0, _, _ := stepLanes(t, reg)
	timeouts0 := int(counterSeries(t, reg, "tributary_projection_rendezvous_timeouts_total")[""])
	// Three more parts, each applied by the summary before the next is
	// produced: records keep arriving for the held history, which must not
	// make it count as about to hand its step over.
	for part := 1; part < 4; part++ {
		e.produce(h.events[part*500 : (part+1)*500])
		waitFor(t, 60*time.Second, "the summary caught up while the history is held", func() (bool, error) {
			return counted(t, reg, accounts.SummaryName, "applied") >= (part+1)*500, nil
		})
	}
	waitFor(t, 60*time.Second, "the summary caught up while the history is held", e.caughtUp(q, h))
	calls, _, _ := stepLanes(t, reg)
	timeouts := int(counterSeries(t, reg, "tributary_projection_rendezvous_timeouts_total")[""])
	t.Logf("%d step calls, %d of them sent after the rendezvous's bound; once the history was held: %d calls, %d timeouts", calls, timeouts, calls-calls0, timeouts-timeouts0)
	if calls-calls0 < 50 || timeouts != timeouts0 {
		t.Fatalf("%d of %d step calls made while the history was held waited the rendezvous's full bound for it", timeouts-timeouts0, calls-calls0)
	}
	if n := counted(t, reg, accounts.HistoryName, "applied"); n != 0 {
		t.Fatalf("the held history applied %d events", n)
	}
	openGate()
	waitFor(t, 60*time.Second, "the history caught up once released", historiesCaughtUp(q, h))
}
