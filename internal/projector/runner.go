package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// runner is one consumer-group member of one generation: it claims the
// partitions the group assigns, starts a worker per partition, feeds them
// the fetched records and measures their lag.
type runner struct {
	p      *Projector
	gen    int64
	group  string
	served atomic.Bool // readers use this generation: a missing position is a loss

	cl *kgo.Client
	// applier sends the workers' steps to Redis, those of several
	// partitions in one round trip.
	applier *applier
	// clSet is closed once cl is set: the group may assign partitions (and
	// call assigned) before kgo.NewClient has returned.
	clSet chan struct{}

	mu      sync.Mutex
	workers map[topicPartition]*worker

	failOnce sync.Once
	failErr  error
	fail     context.CancelFunc // stops polling when a worker fails the runner
}

type topicPartition struct {
	topic     string
	partition int32
}

// runnerHandle is the supervisor's grip on a running runner.
type runnerHandle struct {
	r      *runner
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (h *runnerHandle) stop() {
	h.cancel()
	<-h.done
}

// applyAlone is the size of a step that goes to Redis on its own round
// trip: a script call's cost is spread thin over this many events.
const applyAlone = 64

// start runs a member of gen's consumer group until the handle is stopped.
func (p *Projector) start(ctx context.Context, gen int64, served bool) *runnerHandle {
	ctx, cancel := context.WithCancel(ctx)
	r := &runner{p: p, gen: gen, group: p.Group(gen), workers: make(map[topicPartition]*worker), clSet: make(chan struct{}),
		applier: newApplier(p.steps, applyAlone, p.cfg.BatchSize)}
	r.served.Store(served)
	h := &runnerHandle{r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = r.run(ctx)
	}()
	return h
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.p.cfg
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	r.fail = stopPolling
	opts := append(slices.Clone(cfg.Client),
		kgo.ConsumerGroup(r.group),
		kgo.ConsumeTopics(r.p.topics...),
		// A partition without a stored position starts at the beginning,
		// never "one minute ago".
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(cfg.FetchMaxPartitionBytes),
		// Positions live in Redis, written with the read model.
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.AdjustFetchOffsetsFn(r.assigned),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.revoked),
	)
	if reg := r.p.deps.KafkaMetrics; reg != nil {
		opts = append(opts, kafka.ClientMetrics(reg, prometheus.Labels{"consumergroup": r.group}))
	}
	defer r.applier.close() // after every worker stopped: below, or by the revocations of cl.Close
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	r.cl = cl
	close(r.clSet)
	var lag sync.WaitGroup
	lag.Go(func() { r.measureLag(pollCtx) })
	for {
		fetches := cl.PollRecords(pollCtx, 0)
		if pollCtx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.p.log.Warn("fetch", "topic", topic, "partition", partition, "err", err)
			}
		})
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if w := r.worker(ftp.Topic, ftp.Partition); w != nil && len(ftp.Records) > 0 {
				w.push(ftp.Records, ftp.HighWatermark)
			}
		})
	}
	lag.Wait()
	// Finish the batches in flight and write their positions, then leave
	// the group.
	r.stopWorkers(nil)
	cl.Close()
	r.stopWorkers(nil) // any assigned while the group was being left
	return r.failErr
}

// failWith stops the runner with err (the first one wins).
func (r *runner) failWith(err error) {
	r.failOnce.Do(func() {
		r.failErr = err
		r.fail()
	})
}

func (r *runner) worker(topic string, partition int32) *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workers[topicPartition{topic, partition}]
}

// assigned claims the newly assigned partitions in Redis — fencing out their
// previous owners — and starts each at its stored position.
func (r *runner) assigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-r.clSet:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for topic, parts := range offsets {
		// A stored position beyond the end of its partition means the topic
		// is not the log the read model was built from (recreated, or
		// another cluster): the model no longer matches, and is rebuilt.
		ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		for partition := range parts {
			token := uuid.NewString()
			next, err := r.p.steps.Claim(ctx, r.gen, topic, partition, token, r.served.Load())
			if err == nil {
				if end, ok := ends.Lookup(topic, partition); ok && end.Err == nil && next > end.Offset {
					err = fmt.Errorf("%s partition %d: the stored position %d is beyond the end of the partition (%d): the topic is not the one the read model was built from: %w",
						topic, partition, next, end.Offset, readmodels.ErrPositionLost)
				}
			}
			if err != nil {
				if errors.Is(err, readmodels.ErrPositionLost) {
					r.failWith(err)
				}
				return nil, err
			}
			parts[partition] = kgo.NewOffset().At(next).WithEpoch(-1)
			w := newWorker(r, topic, partition, token, next)
			r.mu.Lock()
			if old := r.workers[topicPartition{topic, partition}]; old != nil {
				r.mu.Unlock()
				old.stop()
				r.mu.Lock()
			}
			r.workers[topicPartition{topic, partition}] = w
			r.mu.Unlock()
			go w.run()
		}
	}
	return offsets, nil
}

// revoked stops the workers of partitions leaving this member; it returns
// once their batches in flight are written, so the next owner starts after
// them (the rebalance waits for this callback).
func (r *runner) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.stopWorkers(lost)
}

// stopWorkers stops the workers of the given partitions, or all when nil.
func (r *runner) stopWorkers(which map[string][]int32) {
	r.mu.Lock()
	var stopping []*worker
	for tp, w := range r.workers {
		if which == nil || slices.Contains(which[tp.topic], tp.partition) {
			stopping = append(stopping, w)
			delete(r.workers, tp)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range stopping {
		wg.Go(w.stop)
	}
	wg.Wait()
	if r.cl != nil && which != nil {
		r.cl.ResumeFetchPartitions(which)
	}
}

// measureLag sets the lag gauges of the owned partitions every poll
// interval, and marks idle partitions that reached the end as caught up.
func (r *runner) measureLag(ctx context.Context) {
	adm := kadm.NewClient(r.cl)
	tick := time.NewTicker(r.p.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ends, err := adm.ListEndOffsets(ctx, r.p.topics...)
		if err != nil {
			continue
		}
		r.mu.Lock()
		workers := make([]*worker, 0, len(r.workers))
		for _, w := range r.workers {
			workers = append(workers, w)
		}
		r.mu.Unlock()
		for _, w := range workers {
			end, ok := ends.Lookup(w.topic, w.partition)
			if !ok || end.Err != nil {
				continue
			}
			w.observeEnd(ctx, end.Offset)
		}
	}
}

func (r *runner) lagLabels(topic string, partition int32) []string {
	return []string{r.p.proj.Name(), r.group, topic, strconv.Itoa(int(partition))}
}
