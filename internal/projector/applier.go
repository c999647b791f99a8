package projector

import (
	"context"
	"sync"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// applier sends the atomic steps of one runner's partitions to Redis
// together: a worker hands its batch over and waits, and the steps handed
// over while the round trips in flight run go out together in the next
// one, as one pipeline. Under a steady load, where each partition's batch
// holds a few events, this spares Redis and the projector a round trip (and
// its system calls) per partition. Every step stays its own script call:
// atomic with its own partition's position, fenced by its own epoch,
// failing on its own.
//
// Up to senders round trips are in flight at once, and one gathers steps
// until they hold maxEvents events, so that while catching up on a backlog
// (full batches) Redis always has the next step queued while the workers
// prepare more, as when each worker had its own round trip.
type applier struct {
	steps     *readmodels.Steps
	maxEvents int
	reqs      chan *applyRequest
	senders   sync.WaitGroup
}

// applyRequest is one worker's step, and then its outcome.
type applyRequest struct {
	ctx   context.Context
	batch readmodels.Batch
	res   readmodels.Result
	err   error
	ready chan struct{} // closed once res and err are set
}

// newApplier starts an applier of steps with senders round trips in flight
// at most, each of up to maxEvents events (more when a single step holds
// more); close stops it.
func newApplier(steps *readmodels.Steps, senders, maxEvents int) *applier {
	a := &applier{steps: steps, maxEvents: maxEvents, reqs: make(chan *applyRequest, 64)}
	for range senders {
		a.senders.Go(a.send)
	}
	return a
}

// apply runs b's step in a round trip shared with other partitions' steps,
// and returns what it did.
func (a *applier) apply(ctx context.Context, b readmodels.Batch) (readmodels.Result, error) {
	req := &applyRequest{ctx: ctx, batch: b, ready: make(chan struct{})}
	a.reqs <- req
	<-req.ready
	return req.res, req.err
}

// close stops the applier. No worker may apply any more.
func (a *applier) close() {
	close(a.reqs)
	a.senders.Wait()
}

// send runs round trips until the applier is closed.
func (a *applier) send() {
	var pending []*applyRequest
	var batches []readmodels.Batch
	for req := range a.reqs {
		pending = append(pending[:0], req)
		events := len(req.batch.Items)
	collect:
		for events < a.maxEvents {
			select {
			case req, ok := <-a.reqs:
				if !ok {
					break collect
				}
				pending = append(pending, req)
				events += len(req.batch.Items)
			default:
				break collect
			}
		}
		batches = batches[:0]
		for _, r := range pending {
			batches = append(batches, r.batch)
		}
		// The first step's context carries its write span: the pipeline's
		// Redis span (when Redis is traced) is its child.
		results, errs := a.steps.ApplyAll(pending[0].ctx, batches)
		for i, r := range pending {
			r.res, r.err = results[i], errs[i]
			close(r.ready)
		}
		clear(pending)
	}
}
