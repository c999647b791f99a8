package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// errStopping: the worker was stopped while waiting to retry; what it had
// not applied is applied by the partition's next owner.
var errStopping = errors.New("worker stopping")

// worker applies one partition's records to one lane in order, a batch per
// atomic step.
type worker struct {
	r         *runner
	l         *lane
	f         *feed
	topic     string
	partition int32
	labels    []string

	next   atomic.Int64 // the next offset to apply (= the stored position)
	caught atomic.Bool  // marked caught up in Redis

	mu       sync.Mutex
	token    string    // the epoch that fences earlier owners out
	fencedAt time.Time // fenced out by another owner: not pausing the partition until it claims again
	queue    []*fetched
	inflight time.Time // timestamp of the oldest record of the batch being applied
	end      int64     // the highest end offset seen
	paused   bool
	stopping bool
	lagSince time.Time // first seen behind with nothing fetched
	wake     chan struct{}
	done     chan struct{}

	// parked holds the streams with an event on the dead-letter topic:
	// their later events are parked behind it, in order.
	parked map[string]bool

	// The rendezvous's view of the worker (see feed.setAway), guarded by f.rmu.
	hasWork, away, busy bool
}

func newWorker(r *runner, l *lane, f *feed, topic string, partition int32, token string, next int64) *worker {
	w := &worker{
		r: r, l: l, f: f, topic: topic, partition: partition, token: token,
		labels: r.lagLabels(l.p, topic, partition),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		parked: make(map[string]bool),
	}
	w.next.Store(next)
	return w
}

// enqueue queues fetched records and says whether any were queued and
// whether the queue just went over the limit (fetching the partition then
// pauses, for every lane, until the worker catches up: see feed.deliver).
func (w *worker) enqueue(recs []*fetched, highWatermark int64) (queued, full bool) {
	// Records below the position were applied already: fetched for a
	// projection further behind on the partition, or fetched again.
	for next := w.next.Load(); len(recs) > 0 && recs[0].rec.Offset < next; {
		recs = recs[1:]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return false, false
	}
	w.end = max(w.end, highWatermark)
	if len(recs) == 0 {
		return false, false
	}
	w.queue = append(w.queue, recs...)
	full = !w.paused && w.fencedAt.IsZero() && len(w.queue) >= w.l.p.cfg.QueueLimit
	if full {
		w.paused = true
	}
	return true, full
}

// wakeUp tells a worker waiting for records that some were queued.
func (w *worker) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take waits for records and returns up to a batch of them; stop is true
// once the worker is told to stop.
func (w *worker) take() (batch []*fetched, stop bool) {
	for {
		w.mu.Lock()
		if w.stopping {
			w.mu.Unlock()
			return nil, true
		}
		if len(w.queue) > 0 {
			n := w.f.cut(w.queue, w.l.p.cfg.BatchSize)
			batch = w.queue[:n:n]
			w.queue = w.queue[n:]
			w.inflight = batch[0].rec.Timestamp
			resume := w.paused && len(w.queue) < w.l.p.cfg.QueueLimit/2
			if resume {
				w.paused = false
			}
			w.mu.Unlock()
			if resume {
				w.f.resume()
			}
			return batch, false
		}
		w.mu.Unlock()
		w.f.setIdle(w)
		<-w.wake
	}
}

// stop lets the batch in flight finish with its position, and returns when
// the worker has ended.
func (w *worker) stop() {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	w.wakeUp()
	<-w.done
	m := w.l.p.deps.Metrics
	m.lagEvents.DeleteLabelValues(w.labels...)
	m.lagSeconds.DeleteLabelValues(w.labels...)
}

// retire drops what the ended worker had queued and takes it out of the
// partition's pausing: a worker fenced out by another owner must not hold
// back the other projections of the partition until the rebalance comes.
func (w *worker) retire() {
	w.f.setWork(w, false)
	w.mu.Lock()
	w.stopping = true
	w.queue = nil
	resume := w.paused
	w.paused = false
	w.mu.Unlock()
	if resume {
		w.f.resume()
	}
}

func (w *worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

func (w *worker) run() {
	defer close(w.done)
	defer w.retire()
	// The batch in flight finishes even when the process is shutting down:
	// its Redis calls do not take the runner's context.
	ctx := context.Background()
	for {
		batch, stop := w.take()
		if stop {
			return
		}
		err := w.process(ctx, batch)
		w.mu.Lock()
		w.inflight = time.Time{}
		w.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, errStopping):
			return
		case errors.Is(err, readmodels.ErrFenced):
			w.requeue(batch)
			if !w.fenced(ctx) {
				return
			}
		default:
			w.l.p.log.Error("partition worker stopped", "topic", w.topic, "partition", w.partition, "err", err)
			w.r.failWith(&laneError{p: w.l.p, gen: w.l.gen, err: err})
			return
		}
	}
}

// requeue puts back the records of a batch that were not applied.
func (w *worker) requeue(batch []*fetched) {
	next := w.next.Load()
	for len(batch) > 0 && batch[0].rec.Offset < next {
		batch = batch[1:]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(slices.Clip(batch), w.queue...)
}

// fenced: another owner claimed the partition, or the position is gone
// with Redis' data. Another owner is a member of this group that a
// rebalance this one has not seen yet handed the partition to (its
// revocation stops this worker soon), or, while a generation moves between
// consumer groups (a served rebuild joining the shared consumer), a member
// of the other group. The worker steps aside for a third of the session
// timeout — not holding the partition back for the other projections
// meanwhile — and then claims the partition again unless it was revoked:
// a partition this member's group still assigns to it is never left
// without an owner. It returns false when the worker is to end.
func (w *worker) fenced(ctx context.Context) bool {
	p := w.l.p
	_, _, ok, err := p.steps.Position(ctx, w.l.gen, w.topic, w.partition)
	if err == nil && !ok {
		w.r.failWith(&laneError{p: p, gen: w.l.gen, err: fmt.Errorf("%s partition %d: %w", w.topic, w.partition, readmodels.ErrPositionLost)})
		return false
	}
	wait := max(p.cfg.SessionTimeout/3, p.cfg.Poll)
	p.log.Info("partition claimed by another owner; claiming it again unless it is revoked meanwhile",
		"topic", w.topic, "partition", w.partition, "generation", w.l.gen, "after", wait)
	w.mu.Lock()
	w.fencedAt = time.Now()
	resume := w.paused
	w.paused = false
	w.mu.Unlock()
	if resume {
		w.f.resume()
	}
	if err := w.sleep(wait); err != nil {
		return false
	}
	for attempt := 1; ; attempt++ {
		token := uuid.NewString()
		next, err := p.steps.Claim(ctx, w.l.gen, w.topic, w.partition, token, w.l.served.Load())
		if err == nil {
			w.next.Store(next)
			w.caught.Store(false)
			w.mu.Lock()
			w.token, w.fencedAt = token, time.Time{}
			w.mu.Unlock()
			p.log.Info("partition claimed again", "topic", w.topic, "partition", w.partition, "generation", w.l.gen, "next", next)
			return true
		}
		if errors.Is(err, readmodels.ErrPositionLost) {
			w.r.failWith(&laneError{p: p, gen: w.l.gen, err: err})
			return false
		}
		p.log.Warn("claim the partition again; retrying", "topic", w.topic, "partition", w.partition, "attempt", attempt, "err", err)
		if err := w.pause(min(attempt, 6)); err != nil {
			return false
		}
	}
}

// process applies a batch: prepares every event (parking what cannot be
// applied), then runs the atomic step, parking events that arrive after a
// version gap.
func (w *worker) process(ctx context.Context, batch []*fetched) (err error) {
	p := w.l.p
	next := w.next.Load()
	w.mu.Lock()
	token := w.token
	w.mu.Unlock()
	var spans processSpans
	defer func() { spans.end(err) }()
	items := make([]readmodels.Item, 0, len(batch))
	recs := make([]*kgo.Record, 0, len(batch))
	types := make([]string, 0, len(batch))
	for _, f := range batch {
		rec := f.rec
		if rec.Offset < next {
			continue // applied already: fetched again, or fetched from another lane's position
		}
		w.startProcessSpan(ctx, &spans, rec)
		item, typ, err := p.itemOf(rec, f.decoded(p))
		for attempt := 1; err != nil && attempt <= p.cfg.Retries; attempt++ {
			if err := w.pause(attempt); err != nil {
				return err
			}
			item, typ, err = p.prepare(rec)
		}
		if err != nil {
			if err := w.park(ctx, rec, err.Error(), p.cfg.Retries+1); err != nil {
				return err
			}
			spans.parked(len(items), err.Error())
			item = readmodels.Item{Offset: rec.Offset}
		}
		items = append(items, item)
		recs = append(recs, rec)
		types = append(types, typ)
	}
	if len(items) == 0 {
		return nil
	}
	gapTries := 0
	for start := 0; start < len(items); {
		b := readmodels.Batch{
			Generation: w.l.gen, Topic: w.topic, Partition: w.partition, Epoch: token,
			Items: items[start:],
		}
		b.CaughtUp = !w.caught.Load() && w.atEnd(items[len(items)-1].Offset+1)
		wctx, write := w.startWriteSpan(&spans, start, b)
		res, err := w.apply(wctx, b)
		if err != nil {
			write.RecordError(err)
			write.SetStatus(codes.Error, err.Error())
			write.End()
			return err
		}
		write.End()
		w.count(types[start:start+len(res.Outcomes)], res.Outcomes)
		for i, o := range res.Outcomes {
			spans.outcome(start+i, o)
			if o == readmodels.Applied && len(w.parked) > 0 {
				delete(w.parked, items[start+i].Stream) // replayed meanwhile: no gap any more
			}
		}
		if res.Gap == nil {
			w.next.Store(items[len(items)-1].Offset + 1)
			if b.CaughtUp {
				w.caught.Store(true)
			}
			return nil
		}
		at := start + res.Gap.Index
		w.next.Store(items[at].Offset)
		// A stream with a parked event gaps until that event is replayed:
		// its later events are parked behind it at once, in order.
		behind := w.parked[items[at].Stream]
		if gapTries < p.cfg.Retries && !behind {
			gapTries++
			if err := w.pause(gapTries); err != nil {
				return err
			}
			start = at
			continue
		}
		gapTries = 0
		reason := fmt.Sprintf("version gap: the projection holds version %d of %s, the event is version %d",
			res.Gap.Applied, items[at].Stream, items[at].Version)
		attempts := p.cfg.Retries + 1
		if behind {
			reason += "; an earlier event of it is parked, replay that first"
			attempts = 1
		}
		if err := w.park(ctx, recs[at], reason, attempts); err != nil {
			return err
		}
		spans.parked(at, reason)
		w.parked[items[at].Stream] = true
		items[at] = readmodels.Item{Offset: items[at].Offset}
		start = at
	}
	return nil
}

// apply runs one atomic step, retrying Redis errors until it is stopped.
func (w *worker) apply(ctx context.Context, b readmodels.Batch) (readmodels.Result, error) {
	p := w.l.p
	for attempt := 1; ; attempt++ {
		if h := p.hooks.BeforeApply; h != nil {
			// A test holding one lane here must not hold its siblings.
			w.f.setAway(w, true)
			err := h(ctx, b)
			w.f.setAway(w, false)
			if err != nil {
				return readmodels.Result{}, err
			}
		}
		began := time.Now()
		res, err := w.f.submit(ctx, w, b)
		if err == nil || errors.Is(err, readmodels.ErrFenced) {
			p.deps.Metrics.apply.WithLabelValues(p.proj.Name()).Observe(time.Since(began).Seconds())
			return res, err
		}
		p.log.Warn("apply batch; retrying", "topic", w.topic, "partition", w.partition, "attempt", attempt, "err", err)
		if err := w.pause(min(attempt, 6)); err != nil {
			return readmodels.Result{}, err
		}
	}
}

// pause waits the backoff of an attempt, or returns errStopping.
func (w *worker) pause(attempt int) error {
	return w.sleep(w.l.p.cfg.RetryBackoff << (attempt - 1))
}

// sleep waits d, or returns errStopping.
func (w *worker) sleep(d time.Duration) error {
	// Siblings handing their steps over do not wait for a sleeping worker.
	w.f.setAway(w, true)
	defer w.f.setAway(w, false)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if w.isStopping() {
			return errStopping
		}
		time.Sleep(min(time.Until(deadline), 20*time.Millisecond))
	}
	return nil
}

// park puts a record on the dead-letter topic, retrying until Kafka takes
// it: an event is never skipped before it is parked.
func (w *worker) park(ctx context.Context, rec *kgo.Record, reason string, attempts int) error {
	p := w.l.p
	dl := deadLetter(rec, p.dlq, p.proj.Name(), w.r.group, reason, attempts)
	// Siblings handing their steps over do not wait for Kafka's answer.
	w.f.setAway(w, true)
	defer w.f.setAway(w, false)
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.r.cl.ProduceSync(pctx, dl).FirstErr()
		cancel()
		if err == nil {
			break
		}
		p.log.Warn("park event on the dead-letter topic; retrying", "topic", p.dlq, "err", err)
		if err := w.pause(min(attempt, 6)); err != nil {
			return err
		}
	}
	typ := typeOf(rec)
	p.log.Warn("event parked on the dead-letter topic", "topic", rec.Topic, "partition", rec.Partition,
		"offset", rec.Offset, "type", typ, "reason", reason)
	p.deps.Metrics.deadLetters.WithLabelValues(p.proj.Name(), rec.Topic).Inc()
	return nil
}

func (w *worker) count(types []string, outcomes []readmodels.Outcome) {
	m := w.l.p.deps.Metrics
	name := w.l.p.proj.Name()
	for i, o := range outcomes {
		switch o {
		case readmodels.Applied:
			m.events.WithLabelValues(name, types[i], outcomeApplied).Inc()
		case readmodels.Duplicate:
			m.events.WithLabelValues(name, types[i], outcomeDuplicate).Inc()
		case readmodels.Skipped:
			m.events.WithLabelValues(name, types[i], outcomeDeadLettered).Inc()
		}
	}
}

// atEnd tells whether next reaches the end of the partition as last seen.
func (w *worker) atEnd(next int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) == 0 && next >= w.end
}

// observeEnd sets the lag gauges from the partition's end offset.
func (w *worker) observeEnd(ctx context.Context, end int64) {
	next := w.next.Load()
	lag := max(end-next, 0)
	var age time.Duration
	w.mu.Lock()
	w.end = max(w.end, end)
	if lag > 0 {
		oldest := w.inflight
		if oldest.IsZero() && len(w.queue) > 0 {
			oldest = w.queue[0].rec.Timestamp
		}
		if oldest.IsZero() {
			// Not fetched yet: its age is at least the time we know of it.
			if w.lagSince.IsZero() {
				w.lagSince = time.Now()
			}
			oldest = w.lagSince
		}
		age = time.Since(oldest)
	} else {
		w.lagSince = time.Time{}
	}
	token := w.token
	w.mu.Unlock()
	m := w.l.p.deps.Metrics
	m.lagEvents.WithLabelValues(w.labels...).Set(float64(lag))
	m.lagSeconds.WithLabelValues(w.labels...).Set(age.Seconds())
	if lag == 0 && !w.caught.Load() {
		if err := w.l.p.steps.MarkCaughtUp(ctx, w.l.gen, w.topic, w.partition, token); err == nil {
			w.caught.Store(true)
		}
	}
}

// typeOf is a record's CloudEvents type, for labels and logs.
func typeOf(rec *kgo.Record) string {
	for _, h := range rec.Headers {
		if h.Key == kafka.HeaderType {
			return string(h.Value)
		}
	}
	return "unknown"
}
