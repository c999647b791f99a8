package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// errRejected marks an operation the system refused on a business rule
// (HTTP 422 insufficient funds): counted apart, neither a success nor an error.
var errRejected = errors.New("rejected by a business rule")

// measurement is what one phase completed inside its measured window.
type measurement struct {
	clients int
	window  time.Duration
	// latencies of the successful operations that completed in the window, sorted.
	latencies []time.Duration
	// errors and rejected count the whole phase, warm-up included.
	errors, rejected int
	firstErr         error
	// summary, if set, replaces latencies: an external load generator (wrk)
	// reports only its rate and percentiles.
	summary *latencySummary
}

// latencySummary is a rate and percentiles measured elsewhere.
type latencySummary struct {
	rate           float64
	p50, p99, p999 time.Duration
}

// perSecond is the rate of successful operations in the window.
func (m measurement) perSecond() float64 {
	if m.summary != nil {
		return m.summary.rate
	}
	return float64(len(m.latencies)) / m.window.Seconds()
}

// quantile returns the nearest-rank q-quantile of the latencies, 0 if none.
func (m measurement) quantile(q float64) time.Duration {
	if m.summary != nil {
		switch q {
		case 0.5:
			return m.summary.p50
		case 0.99:
			return m.summary.p99
		case 0.999:
			return m.summary.p999
		}
		panic(fmt.Sprintf("quantile %v not measured by the external load generator", q))
	}
	if len(m.latencies) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(m.latencies))))
	return m.latencies[min(max(rank, 1), len(m.latencies))-1]
}

// problems is a note for the progress line when anything went wrong.
func (m measurement) problems() string {
	var s string
	if m.rejected > 0 {
		s += fmt.Sprintf("  %d REJECTED", m.rejected)
	}
	if m.errors > 0 {
		s += fmt.Sprintf("  %d ERRORS, first: %v", m.errors, m.firstErr)
	}
	return s
}

// drive runs op in clients concurrent loops for warmup+duration. Only the
// operations that complete in the last duration are measured; errors count
// from the start. op gets its loop's index so it can use that client's own
// connection. It returns the context's error if the context ends first.
func drive(ctx context.Context, clients int, warmup, duration time.Duration, op func(ctx context.Context, client int) error) (measurement, error) {
	type tally struct {
		latencies        []time.Duration
		errors, rejected int
		firstErr         error
	}
	tallies := make([]tally, clients)
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			t := &tallies[c]
			for {
				began := time.Now()
				if !began.Before(until) || ctx.Err() != nil {
					return
				}
				err := op(ctx, c)
				ended := time.Now()
				switch {
				case ctx.Err() != nil:
					return
				case errors.Is(err, errRejected):
					t.rejected++
				case err != nil:
					t.errors++
					if t.firstErr == nil {
						t.firstErr = err
					}
				case !ended.Before(from) && ended.Before(until):
					t.latencies = append(t.latencies, ended.Sub(began))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}
	m := measurement{clients: clients, window: duration}
	for _, t := range tallies {
		m.latencies = append(m.latencies, t.latencies...)
		m.errors += t.errors
		m.rejected += t.rejected
		if m.firstErr == nil {
			m.firstErr = t.firstErr
		}
	}
	slices.Sort(m.latencies)
	return m, nil
}
