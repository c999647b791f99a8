package reader_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// G5 through the reader: while the summary is rebuilt from offset 0 beside
// the served generation — held half-built until the readers have read 200
// times — every answer is the complete model (each counter equal to the
// fold of its events); after the switch the reader serves the new
// generation, still complete. The reader looks the generation up on every
// query here (no view cache), so it would show a half-built one at once.
func TestRebuildNeverShowsAHalfBuiltModel(t *testing.T) {
	cfg := reader.DefaultConfig()
	cfg.ViewCache = 0
	// The first reads wait for the first build of 6,000 events, which
	// takes longer than the default bound on a machine busy with the rest
	// of the suite.
	cfg.MaxWait = time.Minute
	release := make(chan struct{})
	var releaseOnce sync.Once
	var halfBuilt atomic.Bool
	hooks := projector.Hooks{BeforeApply: func(ctx context.Context, b readmodels.Batch) error {
		if b.Generation < 2 {
			return nil
		}
		if halfBuilt.Swap(true) {
			select { // hold every later batch until the readers have read
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	p := newHookedPipeline(t, cfg, map[string]projector.Hooks{domaintest.SummaryName: hooks})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	ctx := context.Background()
	h := domaintest.Generate(300, 6000, 21, readertest.Owner)
	ids := make([]string, 0, len(h.ByID))
	for id, evs := range h.ByID {
		ids = append(ids, id)
		news := make([]log.NewEvent, len(evs))
		for i, e := range evs {
			news[i] = log.NewEvent{ID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload}
		}
		if _, err := p.Store.Append(ctx, postgres.AppendRequest{AggregateType: evs[0].AggregateType, AggregateID: id,
			Expected: postgres.NoStream, Events: news, Metadata: log.Metadata{CorrelationID: "gen", CausationID: "gen", Principal: readertest.Owner}}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ids)
	want := make(map[string]domaintest.Summary, len(ids))
	for _, id := range ids {
		s, err := domaintest.Fold(h.ByID[id])
		if err != nil {
			t.Fatal(err)
		}
		want[id] = domaintest.Summary{ID: id, Value: s.Value, Status: string(s.Status), Version: int64(len(h.ByID[id])), Unit: s.Unit}
	}
	check := func(id string, r readertest.Response) error {
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s: %d %s", id, r.Status, r.Body)
		}
		var got domaintest.Summary
		r.JSON(t, &got)
		w := want[id]
		if got.Value != w.Value || got.Status != w.Status || got.Version != w.Version || got.Unit != w.Unit {
			return fmt.Errorf("%s: got %+v, want the fold %+v", id, got, w)
		}
		return nil
	}
	for _, id := range ids {
		if err := check(id, p.Read(fmt.Sprintf("/v1/counters/%s?min_version=%d", id, want[id].Version))); err != nil {
			t.Fatal(err)
		}
	}
	layout := readmodels.NewLayout(p.Prefix, domaintest.SummaryName)
	before, err := readmodels.ActiveView(ctx, p.Redis, layout)
	if err != nil {
		t.Fatal(err)
	}

	rebuilt := make(chan error, 1)
	go func() {
		_, err := p.NewProjector(domaintest.SummaryProjection{}).Rebuild(ctx, false, nil)
		rebuilt <- err
	}()
	readertest.WaitFor(t, time.Minute, "the new generation to be half built", halfBuilt.Load)
	var wg sync.WaitGroup
	done := make(chan struct{})
	var reads int
	var mu sync.Mutex
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for {
				select {
				case <-done:
					return
				default:
				}
				id := ids[rng.IntN(len(ids))]
				if err := check(id, p.Read("/v1/counters/"+id)); err != nil {
					t.Error("during the rebuild:", err)
					releaseOnce.Do(func() { close(release) })
					return
				}
				mu.Lock()
				if reads++; reads == 200 {
					releaseOnce.Do(func() { close(release) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case err := <-rebuilt:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the rebuild did not finish")
	}
	close(done)
	wg.Wait()
	after, err := readmodels.ActiveView(ctx, p.Redis, layout)
	if err != nil || after.Generation <= before.Generation {
		t.Fatalf("served generation %d before, %d after (%v)", before.Generation, after.Generation, err)
	}
	// After the switch every counter is still complete.
	for _, id := range ids {
		if err := check(id, p.Read("/v1/counters/"+id)); err != nil {
			t.Fatal("after the switch:", err)
		}
	}
	t.Logf("%d reads during the rebuild, generation %d → %d", reads, before.Generation, after.Generation)
	if reads < 200 {
		t.Fatalf("only %d reads during the rebuild: too weak a test", reads)
	}
}
