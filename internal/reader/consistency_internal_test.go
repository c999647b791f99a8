package reader

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The first pause follows the waits seen lately, between 1 and 16 ms.
func TestTheFirstPauseFollowsTheTypicalWait(t *testing.T) {
	var w waitTracker
	if got := w.firstPause(); got != time.Millisecond {
		t.Fatalf("first pause with no history: %s, want 1ms", got)
	}
	for range 50 {
		w.observe(8 * time.Millisecond)
	}
	if got := w.firstPause(); got < 6*time.Millisecond || got > 7*time.Millisecond {
		t.Fatalf("first pause after waits of 8ms: %s, want 7/8 of it", got)
	}
	for range 50 {
		w.observe(time.Second)
	}
	if got := w.firstPause(); got != 16*time.Millisecond {
		t.Fatalf("first pause after waits of 1s: %s, want at most 16ms", got)
	}
}

// A projection that keeps a steady lag is read at most three times by a
// query that waits for it, once the server has seen that lag: not polled
// from 1 ms on every time. (In a synctest bubble: the clock is the
// test's, so a loaded machine's late timers do not change what it shows.)
func TestAWaitingQueryReadsAboutWhenTheProjectionArrives(t *testing.T) {
	synctest.Test(t, aWaitingQueryReadsAboutWhenTheProjectionArrives)
}

func aWaitingQueryReadsAboutWhenTheProjectionArrives(t *testing.T) {
	s := &Server{cfg: DefaultConfig(), metrics: newMetrics(prometheus.NewRegistry())}
	const lag = 12 * time.Millisecond
	query := func() int {
		var reads atomic.Int32
		started := time.Now()
		have, err := s.await(httptest.NewRequest("GET", "/v1/counters/a", nil), 2, func(context.Context) (int64, error) {
			reads.Add(1)
			if time.Since(started) >= lag {
				return 2, nil
			}
			return 1, nil
		})
		if err != nil || have != 2 {
			t.Fatalf("await: %d, %v; want version 2", have, err)
		}
		return int(reads.Load())
	}
	for range 10 {
		query()
	}
	if reads := query(); reads > 3 {
		t.Fatalf("a query read the projection %d times for a lag of %s the server has seen ten times, want at most 3", reads, lag)
	}
}

// A server that has seen long waits learns that a projection is now soon
// there: what it learns is when the version arrived, not when a query
// found it after its first pause. (It used to learn the latter, and a
// first pause as long as the waits it had seen kept the waits that long.)
// In a synctest bubble, like the test above.
func TestTheFirstPauseShrinksWhenTheProjectionGetsFaster(t *testing.T) {
	synctest.Test(t, theFirstPauseShrinksWhenTheProjectionGetsFaster)
}

func theFirstPauseShrinksWhenTheProjectionGetsFaster(t *testing.T) {
	s := &Server{cfg: DefaultConfig(), metrics: newMetrics(prometheus.NewRegistry())}
	for range 50 {
		s.waits.observe(20 * time.Millisecond) // the lag under an earlier load
	}
	const lag = 2 * time.Millisecond
	var waited time.Duration
	for range 40 {
		started := time.Now()
		have, err := s.await(httptest.NewRequest("GET", "/v1/counters/a", nil), 2, func(context.Context) (int64, error) {
			if time.Since(started) >= lag {
				return 2, nil
			}
			return 1, nil
		})
		if err != nil || have != 2 {
			t.Fatalf("await: %d, %v; want version 2", have, err)
		}
		waited = time.Since(started)
	}
	if pause := s.waits.firstPause(); pause > 4*time.Millisecond {
		t.Fatalf("first pause after 40 queries of a %s lag: %s, want it back near the lag", lag, pause)
	}
	if waited > lag+4*time.Millisecond {
		t.Fatalf("the 40th query waited %s for a %s lag", waited, lag)
	}
}

// Beyond MaxWaiting queries waiting at once, a query that names a version
// its projection lacks answers at once with what it has (the caller then
// says stale), and is counted; once the waiting ones are done, a query
// waits again. (In a synctest bubble: "at once" is no time passing.)
func TestQueriesBeyondMaxWaitingDoNotWait(t *testing.T) {
	synctest.Test(t, queriesBeyondMaxWaitingDoNotWait)
}

func queriesBeyondMaxWaitingDoNotWait(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxWaiting = 2
	reg := prometheus.NewRegistry()
	s := &Server{cfg: cfg, metrics: newMetrics(reg)}
	var there atomic.Bool
	current := func(context.Context) (int64, error) {
		if there.Load() {
			return 2, nil
		}
		return 1, nil
	}
	query := func() int64 {
		have, err := s.await(httptest.NewRequest("GET", "/v1/counters/a", nil), 2, current)
		if err != nil {
			t.Errorf("await: %v", err)
		}
		return have
	}
	waited := make(chan int64, cfg.MaxWaiting)
	for range cfg.MaxWaiting {
		go func() { waited <- query() }()
	}
	synctest.Wait() // both wait for version 2
	started := time.Now()
	if have := query(); have != 1 || time.Since(started) != 0 {
		t.Fatalf("a query beyond the %d waiting: version %d after %s, want 1 at once", cfg.MaxWaiting, have, time.Since(started))
	}
	if n := shedWaits(t, reg); n != 1 {
		t.Fatalf("%v waits shed counted, want 1", n)
	}
	time.Sleep(50 * time.Millisecond)
	there.Store(true)
	for range cfg.MaxWaiting {
		if have := <-waited; have != 2 {
			t.Fatalf("a waiting query got version %d, want 2", have)
		}
	}
	there.Store(false)
	go func() {
		time.Sleep(30 * time.Millisecond)
		there.Store(true)
	}()
	started = time.Now()
	if have := query(); have != 2 || time.Since(started) < 30*time.Millisecond {
		t.Fatalf("once the others were done: version %d after %s, want 2 after waiting", have, time.Since(started))
	}
	if n := shedWaits(t, reg); n != 1 {
		t.Fatalf("%v waits shed counted, want still 1", n)
	}
}

// shedWaits reads tributary_reader_consistency_waits_shed_total.
func shedWaits(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "tributary_reader_consistency_waits_shed_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no tributary_reader_consistency_waits_shed_total")
	return 0
}
