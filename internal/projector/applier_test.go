package projector_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/testenv"
)

// The partitions' steps go to Redis together, several in one round trip.
// One partition whose step fails in Redis (a key of the wrong type under
// an account it opens) holds back that partition alone: the others apply
// everything meanwhile. Once the key is fixed, the partition resumes where
// its position stands, and no event is applied twice — also those its
// failed steps had applied before the failing event (deposits to accounts
// opened before, which a second application would count twice).
func TestAFailingStepHoldsBackItsPartitionAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 50 // small steps: they share round trips
	h := generate(40, 1200, 61)
	const stuckID = "acc-late"
	late := []log.Event{
		newEvent(stuckID, 1, 5001, account.AccountOpened{Owner: "late", Currency: "EUR"}),
		newEvent(stuckID, 2, 5002, account.AccountActivated{}),
		newEvent(stuckID, 3, 5003, account.FundsDeposited{Amount: 70, Currency: "EUR", Source: "salary"}),
	}
	stuck := readmodels.PartitionOf(stuckID, partitions)
	reg := prometheus.NewRegistry()
	e.run(e.projector(accounts.SummaryProjection{}, reg))
	q := accounts.NewQueries(e.rdb, e.prefix)
	e.produce(h.events[:600])
	waitFor(t, 60*time.Second, "the first half applied", e.caughtUp(q, firstEvents(h, 600)))

	ctx := context.Background()
	bad := readmodels.NewLayout(e.prefix, accounts.SummaryName).Prefix(1, stuck) + "summary:" + stuckID
	if err := e.rdb.Set(ctx, bad, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The second half in one go, the late account last: its partition's
	// step holds the partition's events of the second half, then its open.
	// The producer lingers, so that each partition's records go out as one
	// batch, and are fetched and taken together, whatever the machine's
	// pace: a step of the late open alone would apply nothing before it
	// fails.
	second := append(slices.Clone(h.events[600:]), late...)
	before := 0
	for _, ev := range h.events[600:] {
		if readmodels.PartitionOf(ev.AggregateID, partitions) == stuck {
			before++
		}
	}
	if before%e.cfg.BatchSize == 0 {
		t.Fatalf("%d events of the second half on the late account's partition: a whole number of steps, none before its open", before)
	}
	lingering := testenv.KafkaClient(t, e.addrs, kgo.ProducerLinger(500*time.Millisecond))
	recs := make([]*kgo.Record, len(second))
	for i, ev := range second {
		recs[i] = kafka.NewRecord(ev, e.cfg.Topics.For(ev.AggregateType), "test")
	}
	if err := lingering.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	h.events = append(h.events, late...)
	h.byID[stuckID] = late

	others := &history{byID: make(map[string][]log.Event)}
	for id, evs := range h.byID {
		if readmodels.PartitionOf(id, partitions) != stuck {
			others.byID[id] = evs
		}
	}
	waitFor(t, 60*time.Second, "the other partitions applied everything", e.caughtUp(q, others))
	if v, _ := e.rdb.HGet(ctx, readmodels.NewLayout(e.prefix, accounts.SummaryName).Versions(1, stuck), readmodels.StreamKey(account.AggregateType, stuckID)).Int64(); v != 0 {
		t.Fatalf("the account whose summary key is broken has version %d applied", v)
	}

	if err := e.rdb.Del(ctx, bad).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every partition applied everything", e.caughtUp(q, h))
	e.checkSummaries(q, h)
	applied, duplicates := eventsCounted(t, reg, "applied"), eventsCounted(t, reg, "duplicate")
	if applied+duplicates != len(h.events) {
		t.Fatalf("%d events applied and %d duplicates counted, %d events on the topic", applied, duplicates, len(h.events))
	}
	if duplicates == 0 {
		t.Fatal("no event was applied by a failed step and met again by its retry: too weak a test")
	}
}

// Members join and leave while the steps of their partitions are in flight
// together: partitions move between them (their workers stopped after the
// step in flight, the new owner starting at the stored position), and every
// event is applied exactly once across the members.
//
// The events come in two waves: the second starts only once the second
// member owns partitions, so that it has events to apply however long the
// group takes to rebalance on a loaded machine.
func TestRebalancesWhileStepsAreInFlightApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.BatchSize = 20
	h := generate(120, 4000, 67)
	first, second := h.events[:2000], h.events[2000:]
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	stopA := e.run(e.projector(accounts.SummaryProjection{}, regA))
	producedFirst := e.produceSteadily(first, 100, 25*time.Millisecond)

	waitFor(t, 30*time.Second, "the first member applied some events", func() (bool, error) {
		return eventsCounted(t, regA, "applied") >= 300, nil
	})
	e.run(e.projector(accounts.SummaryProjection{}, regB))
	waitFor(t, 60*time.Second, "the second member owns partitions", func() (bool, error) {
		return len(lagGauges(t, regB)) > 0, nil
	})
	select {
	case <-producedFirst:
	case <-time.After(60 * time.Second):
		t.Fatal("producing the first wave took over 60s")
	}
	producedSecond := e.produceSteadily(second, 100, 25*time.Millisecond)
	waitFor(t, 60*time.Second, "the second member applied events", func() (bool, error) {
		return eventsCounted(t, regB, "applied") > 0, nil
	})
	if err := stopA(); err != nil {
		t.Fatalf("stop the first member: %v", err)
	}
	select {
	case <-producedSecond:
	case <-time.After(60 * time.Second):
		t.Fatal("producing the second wave took over 60s")
	}
	if a := eventsCounted(t, regA, "applied"); a >= len(h.events) {
		t.Fatalf("the first member applied all %d events before it left: too weak a test", a)
	}
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "the second member applied the rest", e.caughtUp(q, h))
	e.checkSummaries(q, h)
	waitFor(t, 10*time.Second, "every event counted", func() (bool, error) {
		return eventsCounted(t, regA, "applied")+eventsCounted(t, regB, "applied") >= len(h.events), nil
	})
	applied := eventsCounted(t, regA, "applied") + eventsCounted(t, regB, "applied")
	duplicates := eventsCounted(t, regA, "duplicate") + eventsCounted(t, regB, "duplicate")
	if applied != len(h.events) || duplicates != 0 {
		t.Fatalf("the members applied %d events and met %d duplicates; %d events were produced once each", applied, duplicates, len(h.events))
	}
}
