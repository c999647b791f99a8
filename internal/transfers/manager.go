package transfers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// Config tunes the manager's consumer.
type Config struct {
	// Client holds the connection options (brokers, TLS, SASL).
	Client []kgo.Opt
	// Topics names the event topics.
	Topics kafka.Topics
	// Group is the consumer group; the managers of one cluster share it,
	// and Kafka's partitions spread the transfers over them.
	Group string
	// RetryBackoff is the first pause before an event is handled again
	// after a failure (doubled each time, up to MaxBackoff).
	RetryBackoff, MaxBackoff time.Duration
	// SessionTimeout is how soon the partitions of a manager that died move
	// to the others: the transfers on them wait that long.
	SessionTimeout time.Duration
	// Concurrency bounds the transfers whose events are handled at once
	// (each transfer's in order). 0 means 64.
	Concurrency int
	// TracerProvider makes a "process <topic>" span of every record the
	// manager handles, continuing the record's trace (nil: no spans; the
	// record's trace context still reaches the steps' events).
	TracerProvider trace.TracerProvider
}

// DefaultConfig is a sensible Config.
func DefaultConfig() Config {
	return Config{
		Topics:         kafka.Topics{Prefix: "tributary", Partitions: 12, ReplicationFactor: -1},
		Group:          "tributary.transfers",
		RetryBackoff:   50 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		SessionTimeout: 10 * time.Second,
		Concurrency:    64,
	}
}

// Manager runs the steps of transfers from the account and transfer topics.
type Manager struct {
	cfg       Config
	steps     *Steps
	upcasters *log.Upcasters
	logger    *slog.Logger
	tracer    trace.Tracer
}

// NewManager returns a manager of steps; events are upcast with upcasters
// before they are handled.
func NewManager(cfg Config, steps *Steps, upcasters *log.Upcasters, logger *slog.Logger) *Manager {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Manager{cfg: cfg, steps: steps, upcasters: upcasters, logger: logger,
		tracer: tp.Tracer("github.com/tributary-es/tributary/internal/transfers")}
}

// Run consumes until ctx ends. Offsets are committed to Kafka after every
// event of a poll was handled, so a crash redoes events, never skips them;
// the steps make a redone event a no-op.
func (m *Manager) Run(ctx context.Context) error {
	opts := append(slices.Clone(m.cfg.Client),
		kgo.ConsumerGroup(m.cfg.Group),
		kgo.ConsumeTopics(m.cfg.Topics.For(transfer.AggregateType), m.cfg.Topics.For(account.AggregateType)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.SessionTimeout(m.cfg.SessionTimeout),
		// A member that does not rejoin within this is left out of the new
		// generation: a killed manager must not hold the others' join.
		kgo.RebalanceTimeout(m.cfg.SessionTimeout),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// A poll blocks rebalances until allowed: allow them before leaving, or
	// Close would wait for itself.
	defer cl.AllowRebalance()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				m.logger.Warn("fetch", "topic", topic, "partition", partition, "err", err)
			}
		})
		// One transfer's events in order, different transfers' at once: a
		// transfer's events are on one partition of each topic, and its
		// steps are keyed, so only the order within a transfer matters. The
		// steps of many transfers then share group commit's batches.
		var g errgroup.Group
		g.SetLimit(m.cfg.Concurrency)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, records := range byTransfer(p.Records, m.cfg.Topics.For(transfer.AggregateType)) {
				g.Go(func() error {
					for _, r := range records {
						if err := m.handle(ctx, r); err != nil {
							return err
						}
					}
					return nil
				})
			}
		})
		if err := g.Wait(); err != nil {
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			m.logger.Warn("commit offsets; the events will be handled again", "err", err)
		}
		cl.AllowRebalance()
	}
}

// byTransfer groups one partition's records by the transfer they belong to,
// each group in offset order: a transfer's own events by their key (the
// transfer id), an account's by the transfer its payload names. An account
// event that names no transfer — most of them — is left out: there is
// nothing to do for it. transferTopic names the topic of the transfers' own
// events.
func byTransfer(records []*kgo.Record, transferTopic string) [][]*kgo.Record {
	var groups [][]*kgo.Record
	index := make(map[string]int)
	for _, r := range records {
		id := string(r.Key)
		if r.Topic != transferTopic {
			if id = transferNamedIn(r.Value); id == "" {
				continue
			}
		}
		i, ok := index[id]
		if !ok {
			i = len(groups)
			index[id] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// transferNamedIn returns the transfer an account event's payload names in
// its reason or source ("transfer:<id>"), or "" for none. A payload without
// the text "transfer:" is not decoded.
func transferNamedIn(payload []byte) string {
	var p struct{ Reason, Source string }
	if !bytes.Contains(payload, []byte("transfer:")) || json.Unmarshal(payload, &p) != nil {
		return ""
	}
	for _, s := range []string{p.Reason, p.Source} {
		if id, ok := strings.CutPrefix(s, "transfer:"); ok {
			return id
		}
	}
	return ""
}

// handle handles one record until it succeeds or ctx ends, in a CONSUMER
// span "process <topic>" that continues the record's trace (the relay's
// send span of the command's event): the steps' appends are its children
// and their events carry its trace context on, so a transfer is one trace
// from the request to the last read-model write.
func (m *Manager) handle(ctx context.Context, r *kgo.Record) (err error) {
	ctx, span := m.startProcessSpan(ctx, r)
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	e, err := kafka.DecodeRecord(r)
	if err == nil {
		e, err = m.upcasters.Upcast(e)
	}
	if err != nil {
		// Not an event the manager could act on: projections dead-letter
		// such records; the manager has nothing to do with it.
		m.logger.Warn("undecodable record ignored", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	pause := m.cfg.RetryBackoff
	for {
		err := m.steps.Handle(ctx, e)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.logger.Warn("transfer step failed; retrying", "event", e.ID, "type", e.Type, "aggregate", e.AggregateID, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, m.cfg.MaxBackoff)
	}
}

// startProcessSpan starts the span of handling r, a child of the trace
// context r carries, following OpenTelemetry's messaging conventions.
func (m *Manager) startProcessSpan(ctx context.Context, r *kgo.Record) (context.Context, trace.Span) {
	parent := propagation.TraceContext{}.Extract(ctx, kafka.HeaderCarrier{Record: r})
	attrs := append(telemetry.KafkaRecordAttributes(semconv.MessagingOperationTypeProcess, r.Topic, r.Partition, string(r.Key), r.Offset),
		semconv.MessagingOperationName("process"),
		semconv.MessagingConsumerGroupName(m.cfg.Group),
	)
	for _, h := range r.Headers {
		switch h.Key {
		case kafka.HeaderID:
			attrs = append(attrs, semconv.MessagingMessageID(string(h.Value)))
		case kafka.HeaderCorrelationID:
			attrs = append(attrs, telemetry.CorrelationIDKey.String(string(h.Value)))
		case kafka.HeaderCausationID:
			attrs = append(attrs, telemetry.CausationIDKey.String(string(h.Value)))
		}
	}
	return m.tracer.Start(parent, "process "+r.Topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}
