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
