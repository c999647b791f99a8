package reader

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// MinVersionHeader names the header that carries the version a query must
// see: the writer's ETag ("7") as it came, or a bare number.
const MinVersionHeader = "Min-Version"

// minVersion reads the version the request must see, from the min_version
// query parameter or the Min-Version header; 0 when it names none.
func minVersion(r *http.Request) (int64, *problem.Problem) {
	v, p := httpapi.QueryInt(r, "min_version", 0, 1, math.MaxInt64)
	if p != nil || v > 0 {
		return v, p
	}
	h := r.Header.Get(MinVersionHeader)
	if h == "" {
		return 0, nil
	}
	h = strings.TrimPrefix(strings.TrimSpace(h), "W/")
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n < 1 || h[0] == '+' {
		return 0, problem.New(http.StatusBadRequest, "invalid-min-version", "Invalid Min-Version",
			MinVersionHeader+` must be a version of at least 1, bare or as the writer's ETag ("7")`)
	}
	return n, nil
}

// waitBound is how long this request may wait for a version: the server's
// bound, or less if the client prefers (RFC 7240 "Prefer: wait=<seconds>").
func (s *Server) waitBound(r *http.Request) time.Duration {
	bound := s.cfg.MaxWait
	for _, pref := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(pref, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "wait") {
				continue
			}
			// Compared as seconds before converting: a huge or infinite wait
			// must not overflow into a negative duration.
			if secs, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && secs >= 0 && secs < bound.Seconds() {
				bound = time.Duration(secs * float64(time.Second))
			}
		}
	}
	return bound
}

// waitTracker keeps a moving average of how long queries waited for the
// version they named, so that the next one first checks again about when
// the projection usually gets there instead of polling from the start.
type waitTracker struct {
	// typical is the average wait in nanoseconds (exponentially weighted,
	// 1/8 to the newest); 0 before the first.
	typical atomic.Int64
}

// firstPause is how long a query waits before it checks the read model
// again: seven eighths of the typical wait, between 1 and 16 ms.
func (w *waitTracker) firstPause() time.Duration {
	return min(max(time.Duration(w.typical.Load())*7/8, time.Millisecond), 16*time.Millisecond)
}

// observe adds how long a query's version took to arrive.
func (w *waitTracker) observe(waited time.Duration) {
	for {
		old := w.typical.Load()
		next := int64(waited)
		if old != 0 {
			next = old + (int64(waited)-old)/8
		}
		if w.typical.CompareAndSwap(old, next) {
			return
		}
	}
}

// await calls current until it returns at least want or the wait bound
// passes. It checks again first after about the time queries have lately
// waited (waitTracker), then backs off from 2 ms to 16 ms between calls: a
// projection that keeps a steady lag is read about twice per query, not
// five or six times. Beyond MaxWaiting queries waiting at once, it does
// not wait. It returns the last value seen; less than want means
// the projection is stale. A read model that is still being built is
// waited for like one that is behind.
//
// What the tracker learns is when the version arrived — halfway between
// the last check that missed it and the one that found it — not when this
// query found it: a query finds it only at its first pause or later, so
// learning that would keep the first pause as long as it ever got, however
// soon the projection is there (a pause of 7/8 of the last waits, plus the
// timer's lateness, settled at eight times that lateness: ~16 ms under
// load for a projection ~5 ms behind).
func (s *Server) await(r *http.Request, want int64, current func(context.Context) (int64, error)) (int64, error) {
	ctx := r.Context()
	have, err := current(ctx)
	if want == 0 || (err != nil && !errors.Is(err, readmodels.ErrNotReady)) || (err == nil && have >= want) {
		return have, err
	}
	if n := s.waiting.Add(1); s.cfg.MaxWaiting > 0 && n > int64(s.cfg.MaxWaiting) {
		s.waiting.Add(-1)
		s.metrics.waitsShed.Inc()
		return have, err
	}
	defer s.waiting.Add(-1)
	started := time.Now()
	missed := started // the last check that found less than want
	deadline := started.Add(s.waitBound(r))
	pause := s.waits.firstPause()
	next := 2 * time.Millisecond // the pause after the first
	timer := time.NewTimer(pause)
	defer timer.Stop()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			s.metrics.waitSeconds.WithLabelValues("stale").Observe(time.Since(started).Seconds())
			return have, err
		}
		timer.Reset(min(pause, left))
		select {
		case <-ctx.Done():
			return have, ctx.Err()
		case <-timer.C:
		}
		checked := time.Now()
		have, err = current(ctx)
		if err != nil && !errors.Is(err, readmodels.ErrNotReady) {
			return have, err
		}
		if err == nil && have >= want {
			s.waits.observe(missed.Sub(started) + checked.Sub(missed)/2)
			s.metrics.waitSeconds.WithLabelValues("fresh").Observe(time.Since(started).Seconds())
			return have, nil
		}
		missed = checked
		pause, next = next, min(2*next, 16*time.Millisecond)
	}
}

// stale is the answer to a query whose projection did not reach the
// version it named within the wait bound.
func stale(requested, current int64) *problem.Problem {
	return problem.New(http.StatusServiceUnavailable, "stale", "Read model is behind",
		"the read model has not reached the requested version yet; retry, or read without it to get what it has").
		With("requestedVersion", requested).With("currentVersion", current)
}

// writeStale answers with p and a hint to retry in a second.
func writeStale(w http.ResponseWriter, r *http.Request, p *problem.Problem) {
	w.Header().Set("Retry-After", "1")
	problem.Write(w, r, p)
}
