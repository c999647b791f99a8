package projector

import (
	"context"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// applier sends the atomic steps of one runner's partitions to Redis
// together: a worker hands its batch over and waits, and the steps handed
// over while a round trip is in flight go out together in the next one, as
// one pipeline. Under a steady load, where each partition's batch holds a
// few events, this spares Redis and the projector a round trip (and its
// system calls) per partition. Every step stays its own script call: atomic
// with its own partition's position, fenced by its own epoch, failing on
// its own.
//
// A round trip gathers steps until they hold maxEvents events: full
// batches (catching up on a backlog) go on their own, so that Redis applies
// one while the workers prepare the next ones, rather than all of them
// waiting for the slowest of a large pipeline.
type applier struct {
	steps     *readmodels.Steps
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

// newApplier starts an applier of steps that sends up to maxEvents events
// a round trip (more when a single step holds more); close stops it.
func newApplier(steps *readmodels.Steps, maxEvents int) *applier {
	a := &applier{steps: steps, maxEvents: maxEvents, reqs: make(chan *applyRequest, 64), done: make(chan struct{})}
	go a.run()
	return a
}

// apply runs b's step in a round trip shared with the other partitions'
// steps, and returns what it did.
func (a *applier) apply(ctx context.Context, b readmodels.Batch) (readmodels.Result, error) {
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

func (a *applier) run() {
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
