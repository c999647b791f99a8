// Package relay forwards every committed event from the Postgres event store
// to Kafka (G3): in commit order, keyed by aggregate id, as CloudEvents, at
// least once. One relay per database leads at a time; the others stand by
// and take over when the leader's connection goes.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// Config tunes a relay.
type Config struct {
	// Name identifies the relay's checkpoint and leadership; relays with one
	// name form one failover group.
	Name string
	// Topics names and sizes the event topics.
	Topics kafka.Topics
	// AggregateTypes are the types whose topics are checked (and created) at
	// start, so a partition mismatch stops the relay before it publishes.
	// Topics of other types are created when their first event comes.
	AggregateTypes []string
	// Source is the CloudEvents source of every event, e.g. "/tributary/writer".
	Source string
	// BatchSize is how many events one read from Postgres and one produce hold.
	BatchSize int
	// PollInterval is how long a caught-up leader waits at most before it
	// reads again. Appends announced on Appended wake it sooner; those of
	// other processes wait for the poll.
	PollInterval time.Duration
	// Appended, when not nil, receives a value after appends of this
	// process (postgres.Store.Appended): a caught-up leader reads at once
	// instead of waiting for its poll.
	Appended <-chan struct{}
	// MinReadInterval is how long the leader lets pass between the starts
	// of two reads unless the first filled a batch: while commands keep
	// coming, what commits meanwhile goes in one batch — one produce, one
	// fetch for each consumer, one Redis round trip for each projection —
	// instead of a batch for every commit. Under load an event waits up to
	// this long for the read that publishes it (half of it on average).
	MinReadInterval time.Duration
	// CheckpointInterval is how often, at most, the leader stores how far
	// Kafka acknowledged (and once more when it stops leading): one small
	// transaction for many batches. A leader that dies re-publishes
	// what it published since; consumers drop the duplicates by version.
	CheckpointInterval time.Duration
	// StandbyInterval is how often a standby tries to take the lead.
	StandbyInterval time.Duration
	// MaxBackoff caps the wait between retries after a failure.
	MaxBackoff time.Duration
	// AckTimeout is how long a batch may wait for Kafka's acknowledgement
	// before it counts as failed (it keeps waiting, and is retried if Kafka
	// answers with an error).
	AckTimeout time.Duration
	// TracerProvider makes a "send <topic>" span of every record produced,
	// a child of the command's stored trace context; its context goes in
	// the record's traceparent header. Nil makes none, and the header
	// carries the stored context unchanged.
	TracerProvider trace.TracerProvider
}

// DefaultConfig is a sensible Config.
func DefaultConfig() Config {
	return Config{
		Name:               "kafka",
		Topics:             kafka.Topics{Prefix: "tributary", Partitions: 12, ReplicationFactor: -1},
		Source:             "/tributary/writer",
		BatchSize:          2000,
		PollInterval:       20 * time.Millisecond,
		MinReadInterval:    5 * time.Millisecond,
		CheckpointInterval: 250 * time.Millisecond,
		StandbyInterval:    time.Second,
		MaxBackoff:         5 * time.Second,
		AckTimeout:         10 * time.Second,
	}
}

// Hooks inject failures at the points a relay must survive, for tests and
// fault drills. A hook that returns an error makes the relay stop leading
// as a crash there would.
type Hooks struct {
	// BeforeProduce runs after a batch was read, before it is produced.
	BeforeProduce func(batch []postgres.FeedEvent) error
	// BeforeCheckpoint runs before the checkpoint moves, with the last batch
	// Kafka acknowledged since it last moved.
	BeforeCheckpoint func(batch []postgres.FeedEvent) error
}

// ErrInjected is what a test's hook returns to stand for a crash.
var ErrInjected = errors.New("injected failure")

// Relay publishes the event store to Kafka.
type Relay struct {
	cfg         Config
	databaseURL string
	pool        *pgxpool.Pool
	upcasters   *log.Upcasters
	client      *kgo.Client
	logger      *slog.Logger
	metrics     *Metrics
	hooks       Hooks
	tracer      trace.Tracer // nil: no spans

	topicsMu sync.Mutex
	ensured  map[string]bool // topic → checked or created
}

// New returns a relay over the event store at databaseURL (pool serves the
// backlog gauge) that produces with client. It does not start it.
func New(cfg Config, databaseURL string, pool *pgxpool.Pool, upcasters *log.Upcasters, client *kgo.Client,
	metrics *Metrics, logger *slog.Logger, hooks Hooks) *Relay {
	r := &Relay{
		cfg: cfg, databaseURL: databaseURL, pool: pool, upcasters: upcasters,
		client: client, logger: logger, metrics: metrics, hooks: hooks,
		ensured: make(map[string]bool),
	}
	if cfg.TracerProvider != nil {
		r.tracer = cfg.TracerProvider.Tracer("github.com/tributary-es/tributary/internal/log/relay")
	}
	return r
}

// ProducerOptions are the franz-go options a relay's client needs beside the
// connection settings: every record acknowledged by all in-sync replicas,
// idempotent writes (so per-partition order survives retries), Kafka's
// murmur2 placement of keyed records, and deliveryTimeout: how long a record
// may stay unacknowledged before the relay counts a failure and retries its
// batch.
func ProducerOptions(deliveryTimeout time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
		kgo.ProducerBatchMaxBytes(4 << 20),
		kgo.MaxBufferedRecords(100_000),
	}
}

// EnsureTopics checks the configured aggregate types' topics, creating the
// missing ones; it fails on a partition count mismatch.
func (r *Relay) EnsureTopics(ctx context.Context) error {
	for _, t := range r.cfg.AggregateTypes {
		if err := r.ensureTopic(ctx, r.cfg.Topics.For(t)); err != nil {
			return err
		}
	}
	return nil
}

func (r *Relay) ensureTopic(ctx context.Context, topic string) error {
	r.topicsMu.Lock()
	defer r.topicsMu.Unlock()
	if r.ensured[topic] {
		return nil
	}
	if err := r.cfg.Topics.Ensure(ctx, r.client, topic); err != nil {
		return err
	}
	r.ensured[topic] = true
	return nil
}

// Run relays until ctx is done: it leads when it can take the lead, and
// stands by otherwise. It returns an error only for what retrying cannot
// mend (a topic whose partition count differs).
func (r *Relay) Run(ctx context.Context) error {
	if err := r.EnsureTopics(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { r.reportBacklog(ctx) })

	failures := 0
	for ctx.Err() == nil {
		feed, err := postgres.AcquireFeed(ctx, r.databaseURL, r.cfg.Name, r.upcasters)
		switch {
		case errors.Is(err, postgres.ErrNotLeader):
			failures = 0
			sleep(ctx, r.cfg.StandbyInterval)
			continue
		case err != nil:
			r.logger.WarnContext(ctx, "relay: cannot reach the event store", "err", err)
		default:
			r.logger.InfoContext(ctx, "relay: leading", "name", r.cfg.Name)
			r.metrics.leader.Set(1)
			err = r.lead(ctx, feed)
			r.metrics.leader.Set(0)
			if cerr := feed.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
				err = cerr
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, kafka.ErrPartitionMismatch) {
				return err
			}
			r.logger.WarnContext(ctx, "relay: stopped leading", "err", err)
		}
		failures++
		sleep(ctx, backoff(failures, r.cfg.MaxBackoff))
	}
	return nil
}

// queryGrace is how long a leader's query in flight may run on after the
// relay is told to stop.
const queryGrace = 5 * time.Second

// lead publishes from the checkpoint on, while the feed's connection (and
// with it the leadership) lasts. The checkpoint moves to what Kafka
// acknowledged every CheckpointInterval at most (busy or caught up), and
// when leading ends.
func (r *Relay) lead(ctx context.Context, feed *postgres.Feed) (err error) {
	pos, err := feed.Checkpoint(ctx)
	if err != nil {
		return err
	}
	// The feed's queries outlive ctx by up to queryGrace: pgx closes a
	// connection whose query a context interrupts, and a shutdown landing
	// during one would leave no connection for the checkpoint that leading
	// stores as it ends.
	queries, cancelQueries := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelQueries()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(queryGrace, cancelQueries) })()
	var acked []postgres.FeedEvent // the last acknowledged batch, not checkpointed yet
	lastStored := time.Now()
	checkpoint := func(ctx context.Context) error {
		if acked == nil {
			return nil
		}
		if r.hooks.BeforeCheckpoint != nil {
			if err := r.hooks.BeforeCheckpoint(acked); err != nil {
				return err
			}
		}
		if !checkpointBeforeAck {
			if err := feed.Commit(ctx, pos); err != nil {
				return err
			}
		}
		acked, lastStored = nil, time.Now()
		return nil
	}
	defer func() {
		// Leaving (shutdown, a Kafka or Postgres failure): keep what Kafka
		// acknowledged, if the feed still can, so the next leader re-publishes
		// less. Not after a hook's injected crash, which stands for a
		// process that is gone.
		if !errors.Is(err, ErrInjected) {
			if cerr := checkpoint(context.WithoutCancel(ctx)); cerr != nil && err == nil && ctx.Err() == nil {
				err = cerr
			}
		}
	}()
	for ctx.Err() == nil {
		select { // what was announced until now, this read sees
		case <-r.cfg.Appended:
		default:
		}
		read := time.Now()
		batch, err := feed.Next(queries, pos, r.cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			if time.Since(lastStored) >= r.cfg.CheckpointInterval {
				if err := checkpoint(queries); err != nil {
					return err
				}
			}
			sleep(ctx, time.Until(read.Add(r.cfg.MinReadInterval)))
			r.awaitAppend(ctx)
			continue
		}
		if r.hooks.BeforeProduce != nil {
			if err := r.hooks.BeforeProduce(batch); err != nil {
				return err
			}
		}
		last := batch[len(batch)-1].Position
		if checkpointBeforeAck { // only in the deliberately broken build
			if err := feed.Commit(queries, last); err != nil {
				return err
			}
		}
		if err := r.publishUntilAcked(ctx, batch); err != nil {
			return err
		}
		pos, acked = last, batch
		if time.Since(lastStored) >= r.cfg.CheckpointInterval {
			if err := checkpoint(queries); err != nil {
				return err
			}
		}
		if len(batch) < r.cfg.BatchSize {
			sleep(ctx, time.Until(read.Add(r.cfg.MinReadInterval)))
		}
	}
	return nil
}

// publishUntilAcked produces a batch and retries it, with backoff, until
// Kafka acknowledged every record. Records a failed attempt did deliver are
// delivered again: consumers drop duplicates by aggregate version. While
// Kafka does not answer, the batch counts as failed every AckTimeout.
func (r *Relay) publishUntilAcked(ctx context.Context, batch []postgres.FeedEvent) error {
	records := make([]*kgo.Record, len(batch))
	for i, e := range batch {
		topic := r.cfg.Topics.For(e.AggregateType)
		if err := r.ensureTopic(ctx, topic); err != nil {
			return fmt.Errorf("topic for %s: %w", e.AggregateType, err)
		}
		records[i] = kafka.NewRecord(e.Event, topic, r.cfg.Source)
	}
	stalled := time.NewTicker(r.cfg.AckTimeout)
	defer stalled.Stop()
	for attempt := 1; ; attempt++ {
		// ProduceSync does not give up on records already sent to a broker
		// that stopped answering (idempotent writes must not be abandoned
		// mid-flight), so it runs aside; it ends at the latest when the
		// caller closes the client after Run returns.
		r.startSendSpans(ctx, batch, records)
		done := make(chan kgo.ProduceResults, 1)
		go func() {
			results := r.client.ProduceSync(ctx, records...)
			endSendSpans(results)
			done <- results
		}()
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-stalled.C:
				r.metrics.failed.Add(float64(len(batch)))
				r.logger.WarnContext(ctx, "relay: Kafka has not acknowledged a batch yet", "events", len(batch), "waiting", r.cfg.AckTimeout)
			case results := <-done:
				err := results.FirstErr()
				if err == nil {
					r.acknowledged(results, batch)
					return nil
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.metrics.failed.Add(float64(len(batch)))
				r.logger.WarnContext(ctx, "relay: publish failed, retrying", "events", len(batch), "attempt", attempt, "err", err)
				break wait
			}
		}
		sleep(ctx, backoff(attempt, r.cfg.MaxBackoff))
	}
}

func (r *Relay) acknowledged(results kgo.ProduceResults, batch []postgres.FeedEvent) {
	acked := time.Now()
	for _, res := range results {
		r.metrics.published.WithLabelValues(res.Record.Topic).Inc()
	}
	for _, e := range batch {
		r.metrics.commitToAck.Observe(acked.Sub(e.RecordedAt).Seconds())
	}
}

// storedTraceContext returns ctx carrying the command's stored span context,
// so instrumentation that produces continues the command's trace.
func storedTraceContext(ctx context.Context, e log.Event) context.Context {
	if e.TraceParent == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{"traceparent": e.TraceParent, "tracestate": e.TraceState}
	return propagation.TraceContext{}.Extract(ctx, carrier)
}

// startSendSpans starts a PRODUCER span "send <topic>" of every record (one
// per attempt), continuing the command's stored trace context, keeps it in
// the record's context and puts its context in the traceparent header, so
// the projector's process span follows it.
func (r *Relay) startSendSpans(ctx context.Context, batch []postgres.FeedEvent, records []*kgo.Record) {
	if r.tracer == nil {
		for i, rec := range records {
			rec.Context = storedTraceContext(ctx, batch[i].Event)
		}
		return
	}
	for i, rec := range records {
		e := batch[i].Event
		sctx, _ := r.tracer.Start(storedTraceContext(ctx, e), "send "+rec.Topic,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				semconv.MessagingSystemKafka,
				semconv.MessagingOperationTypeSend,
				semconv.MessagingOperationName("send"),
				semconv.MessagingDestinationName(rec.Topic),
				semconv.MessagingKafkaMessageKey(e.AggregateID),
				semconv.MessagingMessageID(e.ID.String()),
			),
			trace.WithAttributes(telemetry.EventAttributes(e.CorrelationID, e.CausationID)...))
		rec.Context = sctx
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(sctx, carrier)
		kafka.SetTraceContext(rec, carrier.Get(kafka.HeaderTraceParent), carrier.Get(kafka.HeaderTraceState))
	}
}

// endSendSpans ends the send spans of a produce with what Kafka answered.
func endSendSpans(results kgo.ProduceResults) {
	for _, res := range results {
		span := trace.SpanFromContext(res.Record.Context)
		if res.Err != nil {
			span.RecordError(res.Err)
			span.SetStatus(codes.Error, res.Err.Error())
		} else {
			span.SetAttributes(semconv.MessagingDestinationPartitionID(strconv.Itoa(int(res.Record.Partition))),
				semconv.MessagingKafkaOffset(int(res.Record.Offset)))
		}
		span.End()
	}
}

// reportBacklog keeps the backlog gauge, and the gauges of the transaction
// holding the watermark back, current until ctx is done.
func (r *Relay) reportBacklog(ctx context.Context) {
	var held heldWatermark
	for ctx.Err() == nil {
		n, err := postgres.Backlog(ctx, r.pool, r.cfg.Name, 10_000_000)
		if err == nil {
			r.metrics.backlog.Set(float64(n))
		} else if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "relay: measure backlog", "err", err)
		}
		h, err := postgres.FindWatermarkHolder(ctx, r.pool)
		if err == nil {
			held.report(r.metrics, h, time.Now())
		} else if ctx.Err() == nil {
			r.logger.WarnContext(ctx, "relay: find the oldest transaction", "err", err)
		}
		sleep(ctx, time.Second)
	}
}

// heldWatermark remembers since when the watermark has stood at one xmin,
// for a holder whose start the relay's role may not read.
type heldWatermark struct {
	xmin  uint64
	since time.Time
}

// report sets the gauges of the transaction holding the watermark back:
// its age from its start where readable, else how long the watermark has
// stood at its xmin as this relay saw it.
func (w *heldWatermark) report(m *Metrics, h postgres.WatermarkHolder, now time.Time) {
	m.holder.Reset()
	if !h.Held() {
		w.xmin, w.since = 0, time.Time{}
		m.heldSeconds.Set(0)
		return
	}
	if h.Xmin != w.xmin {
		w.xmin, w.since = h.Xmin, now
	}
	started := h.Started
	if started.IsZero() {
		started = w.since
	}
	m.heldSeconds.Set(max(0, now.Sub(started).Seconds()))
	m.holder.WithLabelValues(strconv.Itoa(h.PID), h.ApplicationName).Set(1)
}

func backoff(attempt int, limit time.Duration) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 10)
	return min(d, limit)
}

// awaitAppend returns when an append of this process was announced, after
// PollInterval, or when ctx is done.
func (r *Relay) awaitAppend(ctx context.Context) {
	t := time.NewTimer(r.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-r.cfg.Appended:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
