package projector_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// partitionLag is what the lag gauges of one partition read.
type partitionLag struct {
	events, seconds float64
	labels          map[string]string
}

// lagGauges reads tributary_projection_lag_events and _seconds by partition.
func lagGauges(t testing.TB, reg *prometheus.Registry) map[string]*partitionLag {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lags := make(map[string]*partitionLag)
	for _, mf := range families {
		name := mf.GetName()
		if name != "tributary_projection_lag_events" && name != "tributary_projection_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			pl := lags[labels["partition"]]
			if pl == nil {
				pl = &partitionLag{labels: labels}
				lags[labels["partition"]] = pl
			}
			if name == "tributary_projection_lag_events" {
				pl.events = m.GetGauge().GetValue()
			} else {
				pl.seconds = m.GetGauge().GetValue()
			}
		}
	}
	return lags
}

// eventsCounted sums tributary_projection_events_total of one outcome.
func eventsCounted(t testing.TB, reg *prometheus.Registry, outcome string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range families {
		if mf.GetName() != "tributary_projection_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

// pauseHook holds every batch before its atomic step while paused.
type pauseHook struct {
	mu   sync.Mutex
	hold chan struct{} // nil: not paused
}

func (h *pauseHook) pause() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold == nil {
		h.hold = make(chan struct{})
	}
}

func (h *pauseHook) resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold != nil {
		close(h.hold)
		h.hold = nil
	}
}

func (h *pauseHook) hooks() projector.Hooks {
	return projector.Hooks{BeforeApply: func(ctx context.Context, _ readmodels.Batch) error {
		h.mu.Lock()
		hold := h.hold
		h.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
}

// Acceptance: the lag metrics read 0 when caught up and grow correctly when
// the projector is paused; seconds is the age of the oldest event not yet
// applied, not the time since the last one.
func TestLagMetricsReadZeroWhenCaughtUpAndGrowWhilePaused(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	var hook pauseHook
	h := generate(100, 1500, 31)
	const first = 1000
	e.produce(h.events[:first])
	e.run(e.projector(accounts.SummaryProjection{}, reg).WithHooks(hook.hooks()))
	t.Cleanup(hook.resume) // before the projector stops: a held batch would block its stop
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "first events projected", e.caughtUp(q, historyOf(h.events[:first])))

	topic := e.cfg.Topics.For(account.AggregateType)
	group := projector.ConsumerGroup(e.prefix, []string{accounts.SummaryName})
	allZero := func() (bool, error) {
		lags := lagGauges(t, reg)
		if len(lags) != partitions {
			return false, nil
		}
		for _, l := range lags {
			if l.events != 0 || l.seconds != 0 {
				return false, nil
			}
		}
		return true, nil
	}
	waitFor(t, 10*time.Second, "lag gauges at 0 on every partition once caught up", allZero)
	for p := range int32(partitions) {
		l := lagGauges(t, reg)[strconv.Itoa(int(p))]
		if l == nil {
			t.Fatalf("no lag gauges for partition %d", p)
		}
		want := map[string]string{"projection": accounts.SummaryName, "consumergroup": group, "topic": topic, "partition": strconv.Itoa(int(p))}
		for k, v := range want {
			if l.labels[k] != v {
				t.Fatalf("partition %d: label %s=%q, want %q (labels %v)", p, k, l.labels[k], v, l.labels)
			}
		}
	}

	// Pause, then produce M more events in two waves a second apart: each
	// partition lags by exactly the events it received, and its
	// lag_seconds is the age of its oldest one, from the first wave where
	// it has one.
	hook.pause()
	rest := h.events[first:]
	waves := [][]log.Event{rest[:len(rest)/2], rest[len(rest)/2:]}
	wantLag := make(map[string]float64)
	// Wall-clock readings (Round(0)), as the gauge compares wall-clock
	// record timestamps; the oldest event of a partition was produced
	// between from and to.
	from, to := make(map[string]time.Time), make(map[string]time.Time)
	sumLag := func(want int) func() (bool, error) {
		return func() (bool, error) {
			var sum float64
			for _, l := range lagGauges(t, reg) {
				sum += l.events
			}
			return sum == float64(want), nil
		}
	}
	for i, wave := range waves {
		began := time.Now().Round(0)
		e.produce(wave)
		ended := time.Now().Round(0)
		for _, ev := range wave {
			p := strconv.Itoa(int(readmodels.PartitionOf(ev.AggregateID, partitions)))
			if wantLag[p] == 0 {
				from[p], to[p] = began, ended
			}
			wantLag[p]++
		}
		waitFor(t, 10*time.Second, "lag_events sums to the events produced while paused", sumLag(len(waves[0])+i*len(waves[1])))
		if i == 0 {
			waitFor(t, 10*time.Second, "the first wave's lag_seconds reaches 1s", func() (bool, error) {
				for _, l := range lagGauges(t, reg) {
					if l.seconds >= 1 {
						return true, nil
					}
				}
				return false, nil
			})
		}
	}
	// check reads a measurement made after it was called — every lagging
	// partition's lag_seconds changed since (the gauges are set every
	// Poll, later on a loaded machine) — and compares it with the ages the
	// oldest events had over the time it waited. The slack covers a
	// measurement taking its clock reading just before check began; the
	// waves are a second apart, so the age of a partition's newest events
	// is still out of bounds.
	const slack = 500 * time.Millisecond
	check := func() map[string]*partitionLag {
		t.Helper()
		since := time.Now().Round(0)
		prev := lagGauges(t, reg)
		var lags map[string]*partitionLag
		waitFor(t, 10*time.Second, "a fresh lag measurement", func() (bool, error) {
			lags = lagGauges(t, reg)
			for p, l := range lags {
				if wantLag[p] > 0 && prev[p] != nil && l.seconds == prev[p].seconds {
					return false, nil
				}
			}
			return true, nil
		})
		until := time.Now().Round(0)
		for p, l := range lags {
			if l.events != wantLag[p] {
				t.Fatalf("partition %s: lag_events %v, want %v (the events produced there while paused)", p, l.events, wantLag[p])
			}
			if wantLag[p] == 0 {
				if l.seconds != 0 {
					t.Fatalf("partition %s has no lag but lag_seconds %v", p, l.seconds)
				}
				continue
			}
			low := since.Sub(to[p]) - slack
			high := until.Sub(from[p]) + 5*time.Millisecond // record timestamps are in whole ms
			if got := time.Duration(l.seconds * float64(time.Second)); got < low || got > high {
				t.Fatalf("partition %s: lag_seconds %v, want the age of its oldest unapplied event, between %v and %v", p, got, low, high)
			}
		}
		return lags
	}
	before := check()
	var oldest float64
	for _, l := range before {
		oldest = max(oldest, l.seconds)
	}
	waitFor(t, 10*time.Second, "lag_seconds grows while paused", func() (bool, error) {
		for _, l := range lagGauges(t, reg) {
			if l.seconds >= oldest+0.5 {
				return true, nil
			}
		}
		return false, nil
	})
	after := check()
	for p, l := range after {
		if wantLag[p] > 0 && l.seconds <= before[p].seconds {
			t.Fatalf("partition %s: lag_seconds went from %v to %v while paused", p, before[p].seconds, l.seconds)
		}
	}

	hook.resume()
	waitFor(t, 30*time.Second, "lag gauges back at 0 after resuming", allZero)
	waitFor(t, 30*time.Second, "every event projected", e.caughtUp(q, h))
	e.checkSummaries(q, h)

	// testutil.GatherAndLint, without testutil's diff dependency that
	// go.mod does not require.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}
