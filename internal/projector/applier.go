package projector

import (
	"context"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// applier sends the atomic steps of one runner's partitions to Redis
// together: a worker hands its batch over and waits, and the steps handed
// over while a round trip is in flight go out together in the next one, as
// one pipeline. Under a steady load, where each partition's batch holds a
// few events, this spares Redis a round trip (its system calls and its
// share of the script call) per partition: steps of 2 events cost Redis
// ~25 µs an event one round trip each, ~12 µs sixteen to a pipeline. Every
// step stays its own script call: atomic with its own partition's position,
// fenced by its own epoch, failing on its own.
//
// One round trip is in flight at a time, of up to maxEvents events. A step
// of alone events or more (catching up on a backlog) gains nothing from
// company and goes on its own round trip at once, so that Redis always has
// the next full batch queued while the workers prepare more.
type applier struct {
	steps     *readmodels.Steps
	alone     int
	maxEvents int
	reqs      chan *applyRequest
	done      chan struct{}
}

// applyRequest is one worker's step, and then its outcome.
type applyRequest struct {
	ctx   context.Context
	batch readmodels.Batch
	res   readmodels.Result
	err   error
	ready chan struct{} // closed once res and err are set
}

// newApplier starts an applier of steps; close stops it.
func newApplier(steps *readmodels.Steps, alone, maxEvents int) *applier {
	a := &applier{steps: steps, alone: alone, maxEvents: maxEvents, reqs: make(chan *applyRequest, 64), done: make(chan struct{})}
	go a.send()
	return a
}

// apply runs b's step, in a round trip shared with other partitions' steps
// unless it is large, and returns what it did.
func (a *applier) apply(ctx context.Context, b readmodels.Batch) (readmodels.Result, error) {
	if len(b.Items) >= a.alone {
		return a.steps.Apply(ctx, b)
	}
	req := &applyRequest{ctx: ctx, batch: b, ready: make(chan struct{})}
	a.reqs <- req
	<-req.ready
	return req.res, req.err
}

// close stops the applier. No worker may apply any more.
func (a *applier) close() {
	close(a.reqs)
	<-a.done
}

// send runs round trips until the applier is closed.
func (a *applier) send() {
	defer close(a.done)
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
