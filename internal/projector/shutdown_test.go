package projector_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// A graceful stop in the middle of consumption finishes the batch in flight
// and writes every applied batch's position with it: a projector started
// afterwards resumes exactly there, applying each remaining event once and
// none twice.
func TestGracefulStopLeavesPositionsAtTheLastAppliedBatch(t *testing.T) {
	e := newEnv(t)
	e.cfg.BatchSize = 25
	h := generate(200, 4000, 41)
	e.produce(h.events)

	// Hold one batch mid-partition while the stop begins.
	var held atomic.Pointer[readmodels.Batch]
	entered, release := make(chan struct{}), make(chan struct{})
	hooks := projector.Hooks{BeforeApply: func(_ context.Context, b readmodels.Batch) error {
		if b.Items[0].Offset >= 100 && held.CompareAndSwap(nil, &b) {
			close(entered)
			<-release
		}
		return nil
	}}
	reg1 := prometheus.NewRegistry()
	stop := e.run(e.projector(accounts.SummaryProjection{}, reg1).WithHooks(hooks))
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the stop registered by e.run
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("no batch reached offset 100 within 60s")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("stop returned (%v) while a batch was still being applied", err)
	case <-time.After(300 * time.Millisecond):
	}
	unblock()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stop did not return within 30s of the batch in flight finishing")
	}

	applied := eventsCounted(t, reg1, "applied")
	if applied == 0 || applied >= len(h.events) {
		t.Fatalf("the stop came after %d of %d events: not in the middle of consumption", applied, len(h.events))
	}
	if d := eventsCounted(t, reg1, "duplicate"); d != 0 {
		t.Fatalf("the first run counted %d duplicates", d)
	}
	// Positions and data agree partition by partition: every event of a
	// partition below its position raised one stream's version by one.
	ctx := context.Background()
	layout := readmodels.NewLayout(e.prefix, accounts.SummaryName)
	steps := readmodels.NewSteps(e.rdb, layout, accounts.SummaryProjection{})
	topic := e.cfg.Topics.For(account.AggregateType)
	var positions int64
	for p := range int32(partitions) {
		next, _, ok, err := steps.Position(ctx, 1, topic, p)
		if err != nil || !ok {
			t.Fatalf("position of partition %d: ok=%v err=%v", p, ok, err)
		}
		vers, err := e.rdb.HGetAll(ctx, layout.Versions(1, p)).Result()
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, v := range vers {
			n, _ := strconv.ParseInt(v, 10, 64)
			sum += n
		}
		if sum != next {
			t.Fatalf("partition %d: position %d but its versions add up to %d events", p, next, sum)
		}
		positions += next
	}
	if positions != int64(applied) {
		t.Fatalf("positions add up to %d events, the projector applied %d", positions, applied)
	}
	b := held.Load()
	last := b.Items[len(b.Items)-1].Offset
	if next, _, _, _ := steps.Position(ctx, 1, topic, b.Partition); next <= last {
		t.Fatalf("the batch in flight at the stop (partition %d, offsets %d–%d) was not written: position %d",
			b.Partition, b.Items[0].Offset, last, next)
	}

	reg2 := prometheus.NewRegistry()
	e.run(e.projector(accounts.SummaryProjection{}, reg2))
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "restarted projector caught up", e.caughtUp(q, h))
	waitFor(t, 10*time.Second, "the restarted projector applied the rest", func() (bool, error) {
		return eventsCounted(t, reg2, "applied") == len(h.events)-applied, nil
	})
	if d := eventsCounted(t, reg2, "duplicate"); d != 0 {
		t.Fatalf("the restarted projector met %d events it had applied before the stop", d)
	}
	e.checkSummaries(q, h)
}
