package projector

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// applier sends the atomic steps of one runner's workers to Redis together:
// a worker hands its step over and waits, and the steps handed over while a
// round trip is in flight go out together in the next one, as one pipeline.
// Under a steady load, where each partition's batch holds a few events,
// this spares Redis a round trip (its system calls and its share of the
// script call) per partition: steps of 2 events cost Redis ~25 µs an event
// one round trip each, ~12 µs sixteen to a pipeline.
//
// On a single Redis server the steps of one partition's lanes (the
// projections fed from its topic) are handed over together, as a round
// (see feed.submit), and go as one script call: the call, the events'
// shared fields and the reply once for all lanes (readmodels.Fused). Every
// lane's step stays its own: atomic with its own position, fenced by its
// own epoch, failing on its own. On a Redis Cluster each lane's step is a
// call of its own (each projection's partition is a hash slot of its own).
//
// Up to senders round trips are in flight at a time (one per lane, as when
// each lane had its own), each of up to maxEvents events, so that Redis has
// the next pipeline while the last one's replies are read. A round of alone
// events or more (catching up on a backlog) gains nothing from company and
// goes on its own round trip at once, so that Redis always has the next
// full batch queued while the workers prepare more.
type applier struct {
	fused     *readmodels.Fused
	alone     int
	maxEvents int
	reqs      chan *applyRound
	done      sync.WaitGroup
}

// applyRequest is one lane's step, and then its outcome.
type applyRequest struct {
	ctx   context.Context
	lane  readmodels.Lane
	order int // the lane's place in the runner: a round's calls list lanes in it, for one script per set
	res   readmodels.Result
	err   error
}

// applyRound is the steps of one partition's lanes handed over together,
// sent as one call.
type applyRound struct {
	reqs []*applyRequest
	// closed is closed when no more steps join the round.
	closed chan struct{}
	// ready is closed once every request's res and err are set.
	ready chan struct{}
}

func newApplyRound() *applyRound {
	return &applyRound{closed: make(chan struct{}), ready: make(chan struct{})}
}

// events is the size of the round's largest step.
func (r *applyRound) events() int {
	n := 0
	for _, req := range r.reqs {
		n = max(n, len(req.lane.Batch.Items))
	}
	return n
}

// newApplier starts an applier of steps with senders round trips in
// flight at most; close stops it.
func newApplier(fused *readmodels.Fused, senders, alone, maxEvents int) *applier {
	a := &applier{fused: fused, alone: alone, maxEvents: maxEvents, reqs: make(chan *applyRound, 64)}
	for range max(senders, 1) {
		a.done.Go(a.send)
	}
	return a
}

// apply runs a round's steps, in a round trip shared with other partitions'
// rounds unless it is large, and returns once each request has its outcome.
func (a *applier) apply(round *applyRound) {
	if round.events() >= a.alone {
		a.run([]*applyRound{round})
		return
	}
	a.reqs <- round
	<-round.ready
}

// close stops the applier. No worker may apply any more.
func (a *applier) close() {
	close(a.reqs)
	a.done.Wait()
}

// send runs round trips until the applier is closed.
func (a *applier) send() {
	var pending []*applyRound
	for round := range a.reqs {
		pending = append(pending[:0], round)
		events := round.events()
	collect:
		for events < a.maxEvents {
			select {
			case round, ok := <-a.reqs:
				if !ok {
					break collect
				}
				pending = append(pending, round)
				events += round.events()
			default:
				break collect
			}
		}
		a.run(pending)
		clear(pending)
	}
}

// run sends the rounds in one round trip and hands out the outcomes.
func (a *applier) run(rounds []*applyRound) {
	groups := make([][]readmodels.Lane, len(rounds))
	for i, round := range rounds {
		slices.SortFunc(round.reqs, func(a, b *applyRequest) int { return a.order - b.order })
		groups[i] = make([]readmodels.Lane, len(round.reqs))
		for k, req := range round.reqs {
			groups[i][k] = req.lane
		}
	}
	// The first step's context carries its write span: the pipeline's
	// Redis span (when Redis is traced) is its child.
	results, errs := a.fused.ApplyAll(rounds[0].reqs[0].ctx, groups)
	for i, round := range rounds {
		for k, req := range round.reqs {
			req.res, req.err = results[i][k], errs[i][k]
		}
		close(round.ready)
	}
}

// rendezvousWait bounds how long a step handed over waits for its
// partition's other busy lanes to hand theirs over: they have the same
// records and are preparing them (microseconds for a few events, tens of
// milliseconds for a batch of hundreds on a loaded machine); the bound
// only keeps one held up by something unforeseen from holding the others.
const rendezvousWait = 100 * time.Millisecond

// submit hands w's step over and returns its outcome. When the runner
// fuses, the step waits in the partition's open round until every lane of
// the partition that has records to apply and is not away (see setAway)
// has handed its step over too, or for rendezvousWait; the round's first
// step then sends it.
func (f *feed) submit(ctx context.Context, w *worker, b readmodels.Batch) (readmodels.Result, error) {
	req := &applyRequest{ctx: ctx, lane: readmodels.Lane{Steps: w.l.p.steps, Batch: b}, order: slices.Index(f.r.lanes, w.l)}
	if !f.r.fuse {
		round := newApplyRound()
		round.reqs = []*applyRequest{req}
		f.r.applier.apply(round)
		return req.res, req.err
	}
	f.rmu.Lock()
	w.hasWork, w.away = true, false
	f.recount(w)
	round := f.open
	leader := round == nil
	if leader {
		round = newApplyRound()
		f.open = round
	}
	round.reqs = append(round.reqs, req)
	f.closeRoundIfComplete()
	f.rmu.Unlock()
	if !leader {
		<-round.ready
		return req.res, req.err
	}
	select {
	case <-round.closed:
	default:
		timer := time.NewTimer(rendezvousWait)
		select {
		case <-round.closed:
		case <-timer.C:
			f.rmu.Lock()
			if f.open == round {
				f.open = nil
				close(round.closed)
				f.r.rendezvousTimeouts.Inc()
			}
			f.rmu.Unlock()
		}
		timer.Stop()
	}
	f.r.applier.apply(round)
	return req.res, req.err
}

// setWork says whether w has records to apply (queued or in hand).
func (f *feed) setWork(w *worker, has bool) {
	f.mark(w, func() { w.hasWork = has })
}

// setIdle marks w as having no records to apply unless some were queued
// since it found its queue empty (see feed.deliver).
func (f *feed) setIdle(w *worker) {
	f.mark(w, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.hasWork = len(w.queue) > 0
	})
}

// setAway says whether w is away from its records: sleeping (a backoff, a
// fencing), parking an event on the dead-letter topic, or held by a test
// hook. The partition's open round waits only for workers with work that
// are not away: new records queued for an away worker make it no busier.
func (f *feed) setAway(w *worker, away bool) {
	f.mark(w, func() { w.away = away })
}

// mark changes w's state and closes the open round if w was the last busy
// worker it waited for.
func (f *feed) mark(w *worker, change func()) {
	if !f.r.fuse {
		return
	}
	f.rmu.Lock()
	defer f.rmu.Unlock()
	change()
	f.recount(w)
	f.closeRoundIfComplete()
}

// recount counts w as busy when it has work and is not away; f.rmu is held.
func (f *feed) recount(w *worker) {
	busy := w.hasWork && !w.away
	if w.busy == busy {
		return
	}
	w.busy = busy
	if busy {
		f.busy++
	} else {
		f.busy--
	}
}

// closeRoundIfComplete closes the open round once every busy worker has
// handed its step over; f.rmu is held.
func (f *feed) closeRoundIfComplete() {
	if f.open != nil && len(f.open.reqs) >= f.busy {
		close(f.open.closed)
		f.open = nil
	}
}
