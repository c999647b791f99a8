package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// runner is one consumer-group member feeding one or more lanes — a lane is
// one generation of one projection. It claims the partitions the group
// assigns, starts a worker per partition and lane, hands every lane the
// fetched records (each decoded once for all of them) and measures their
// lag. The shared consumer of a process is a runner with a lane per
// projection; a rebuild's generation beside the served one runs in a runner
// of its own.
type runner struct {
	lanes  []*lane
	group  string
	topics []string // every lane's topics
	cfg    Config   // the Kafka settings: the first lane's
	log    *slog.Logger
	kprom  prometheus.Registerer // nil: no client metrics

	cl *kgo.Client
	// clSet is closed once cl is set: the group may assign partitions (and
	// call assigned) before kgo.NewClient has returned.
	clSet chan struct{}

	// applier sends every lane's steps to Redis, those of several
	// partitions in one round trip; fuse says that the lanes of a partition
	// hand their steps over together, to go as one call (a single Redis
	// server: readmodels.Fusable).
	applier            *applier
	fuse               bool
	rendezvousTimeouts prometheus.Counter

	mu    sync.Mutex
	feeds map[topicPartition]*feed

	failOnce sync.Once
	failErr  error
	fail     context.CancelFunc // stops polling when a worker fails the runner
}

// lane is one generation of one projection that a runner feeds.
type lane struct {
	p      *Projector
	gen    int64
	served atomic.Bool // readers use this generation: a missing position is a loss
}

func (l *lane) consumes(topic string) bool { return slices.Contains(l.p.topics, topic) }

// laneError is why a lane stopped its runner: the supervisor of the lane's
// projection decides what it means.
type laneError struct {
	p   *Projector
	gen int64
	err error
}

func (e *laneError) Error() string {
	return fmt.Sprintf("%s generation %d: %v", e.p.Name(), e.gen, e.err)
}

func (e *laneError) Unwrap() error { return e.err }

type topicPartition struct {
	topic     string
	partition int32
}

// feed is an assigned partition's workers, one per lane that consumes its
// topic. Fetching the partition pauses while any of their queues is full.
type feed struct {
	r       *runner
	tp      topicPartition
	workers []*worker

	mu     sync.Mutex
	full   int  // workers whose queue is above the limit
	closed bool // the workers are stopped: no more pauses

	// The rendezvous of the workers' steps (see submit).
	rmu  sync.Mutex
	open *applyRound // steps handed over, waiting for the other busy workers'
	busy int         // workers with records to apply, not sleeping

	// The last batch taken (see cut), guarded by cmu.
	cmu            sync.Mutex
	cutFrom, cutTo int64
}

// deliver queues fetched records for every worker of the partition. They
// are all marked as having work before any is woken: a worker that took
// its batch while a sibling had not been handed the same records yet
// would find no one to wait for and go to Redis alone.
func (f *feed) deliver(recs []*fetched, highWatermark int64) {
	queued := make([]*worker, 0, len(f.workers))
	full := 0
	f.rmu.Lock()
	for _, w := range f.workers {
		q, fl := w.enqueue(recs, highWatermark)
		if fl {
			full++
		}
		if q {
			queued = append(queued, w)
			if f.r.fuse {
				w.hasWork = true
				f.recount(w)
			}
		}
	}
	f.rmu.Unlock()
	for range full {
		f.pause()
	}
	for _, w := range queued {
		w.wakeUp()
	}
}

// cut returns how many records at the head of a worker's queue make its
// next batch: at most limit, and where the partition's lanes are at the
// same offset, the same records as the sibling that cut there first took,
// though more arrived since. Lanes whose batches end together hand their
// steps over together; a lane that took less would go to Redis alone
// for the rest.
func (f *feed) cut(queue []*fetched, limit int) int {
	n := min(len(queue), limit)
	if !f.r.fuse {
		return n
	}
	f.cmu.Lock()
	defer f.cmu.Unlock()
	from := queue[0].rec.Offset
	if from == f.cutFrom && f.cutTo > from {
		k, _ := slices.BinarySearchFunc(queue[:n], f.cutTo, func(r *fetched, to int64) int {
			return cmp.Compare(r.rec.Offset, to)
		})
		if k > 0 {
			return k
		}
	}
	f.cutFrom, f.cutTo = from, queue[n-1].rec.Offset+1
	return n
}

// pause counts a worker whose queue filled up; the first pauses fetching.
func (f *feed) pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.full++; f.full == 1 {
		f.r.cl.PauseFetchPartitions(map[string][]int32{f.tp.topic: {f.tp.partition}})
	}
}

// resume counts a worker whose queue drained; the last resumes fetching.
func (f *feed) resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.full == 0 {
		return
	}
	if f.full--; f.full == 0 {
		f.r.cl.ResumeFetchPartitions(map[string][]int32{f.tp.topic: {f.tp.partition}})
	}
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

// exited tells whether the runner has ended by itself.
func (h *runnerHandle) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// gens maps each lane's projection to its generation.
func (h *runnerHandle) gens() map[*Projector]int64 {
	m := make(map[*Projector]int64, len(h.r.lanes))
	for _, l := range h.r.lanes {
		m[l.p] = l.gen
	}
	return m
}

// applyAlone is the size of a step that goes to Redis on its own round
// trip: a script call's cost is spread thin over this many events.
const applyAlone = 64

// startRunner runs a member of group feeding the given generations until
// the handle is stopped. served tells which of them readers use.
func startRunner(ctx context.Context, group string, gens map[*Projector]int64, served map[*Projector]bool, order []*Projector) *runnerHandle {
	ctx, cancel := context.WithCancel(ctx)
	r := &runner{group: group, feeds: make(map[topicPartition]*feed), clSet: make(chan struct{})}
	for _, p := range order {
		gen, ok := gens[p]
		if !ok {
			continue
		}
		l := &lane{p: p, gen: gen}
		l.served.Store(served[p])
		r.lanes = append(r.lanes, l)
		for _, t := range p.topics {
			if !slices.Contains(r.topics, t) {
				r.topics = append(r.topics, t)
			}
		}
	}
	first := r.lanes[0].p
	r.cfg, r.kprom = first.cfg, first.deps.KafkaMetrics
	r.fuse = len(r.lanes) > 1 && readmodels.Fusable(first.deps.Redis)
	for _, l := range r.lanes {
		r.fuse = r.fuse && l.p.deps.Redis == first.deps.Redis
	}
	r.rendezvousTimeouts = first.deps.Metrics.rendezvousTimeouts
	fused := readmodels.NewFused()
	fused.OnCall = func(lanes int) { first.deps.Metrics.stepLanes.Observe(float64(lanes)) }
	r.applier = newApplier(fused, len(r.lanes), applyAlone, first.cfg.BatchSize*len(r.lanes))
	r.log = first.deps.Logger.With("consumergroup", group)
	h := &runnerHandle{r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = r.run(ctx)
	}()
	return h
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.cfg
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	r.fail = stopPolling
	opts := append(slices.Clone(cfg.Client),
		kgo.ConsumerGroup(r.group),
		kgo.ConsumeTopics(r.topics...),
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
	if r.kprom != nil {
		opts = append(opts, kafka.ClientMetrics(r.kprom, prometheus.Labels{"consumergroup": r.group}))
	}
	// After every worker stopped: below, or by the revocations of cl.Close.
	defer r.applier.close()
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
				r.log.Warn("fetch", "topic", topic, "partition", partition, "err", err)
			}
		})
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if f := r.feed(ftp.Topic, ftp.Partition); f != nil && len(ftp.Records) > 0 {
				// One shared record for every lane: the first worker to
				// need it decodes it for all.
				shared := make([]fetched, len(ftp.Records))
				recs := make([]*fetched, len(ftp.Records))
				for i, rec := range ftp.Records {
					shared[i].rec = rec
					recs[i] = &shared[i]
				}
				f.deliver(recs, ftp.HighWatermark)
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

func (r *runner) feed(topic string, partition int32) *feed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.feeds[topicPartition{topic, partition}]
}

// assigned claims the newly assigned partitions in Redis for every lane —
// fencing out their previous owners — and starts fetching each at the
// lowest of its lanes' stored positions; a lane further on skips what it
// applied already.
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
			tp := topicPartition{topic, partition}
			f := &feed{r: r, tp: tp}
			from := int64(-1)
			for _, l := range r.lanes {
				if !l.consumes(topic) {
					continue
				}
				token := uuid.NewString()
				next, err := l.p.steps.Claim(ctx, l.gen, topic, partition, token, l.served.Load())
				if err == nil {
					if end, ok := ends.Lookup(topic, partition); ok && end.Err == nil && next > end.Offset {
						err = fmt.Errorf("%s partition %d: the stored position %d is beyond the end of the partition (%d): the topic is not the one the read model was built from: %w",
							topic, partition, next, end.Offset, readmodels.ErrPositionLost)
					}
				}
				if err != nil {
					if errors.Is(err, readmodels.ErrPositionLost) {
						r.failWith(&laneError{p: l.p, gen: l.gen, err: err})
					}
					return nil, err
				}
				f.workers = append(f.workers, newWorker(r, l, f, topic, partition, token, next))
				if from < 0 || next < from {
					from = next
				}
			}
			parts[partition] = kgo.NewOffset().At(max(from, 0)).WithEpoch(-1)
			r.mu.Lock()
			old := r.feeds[tp]
			delete(r.feeds, tp)
			r.mu.Unlock()
			if old != nil {
				old.stop()
			}
			r.mu.Lock()
			r.feeds[tp] = f
			r.mu.Unlock()
			for _, w := range f.workers {
				go w.run()
			}
		}
	}
	return offsets, nil
}

// stop stops the feed's workers after their batches in flight.
func (f *feed) stop() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Go(w.stop)
	}
	wg.Wait()
}

// revoked stops the workers of partitions leaving this member — every
// lane's; it returns once their batches in flight are written, so the next
// owner starts after them (the rebalance waits for this callback).
func (r *runner) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.stopWorkers(lost)
}

// stopWorkers stops the workers of the given partitions, or all when nil.
func (r *runner) stopWorkers(which map[string][]int32) {
	r.mu.Lock()
	var stopping []*feed
	for tp, f := range r.feeds {
		if which == nil || slices.Contains(which[tp.topic], tp.partition) {
			stopping = append(stopping, f)
			delete(r.feeds, tp)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range stopping {
		wg.Go(f.stop)
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
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ends, err := adm.ListEndOffsets(ctx, r.topics...)
		if err != nil {
			continue
		}
		r.mu.Lock()
		var workers []*worker
		for _, f := range r.feeds {
			workers = append(workers, f.workers...)
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

func (r *runner) lagLabels(p *Projector, topic string, partition int32) []string {
	return []string{p.Name(), r.group, topic, strconv.Itoa(int(partition))}
}
