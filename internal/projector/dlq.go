package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Dead-letter headers, added to the original record's headers.
const (
	HeaderDLQReason    = "dlq_reason"
	HeaderDLQTopic     = "dlq_topic"
	HeaderDLQPartition = "dlq_partition"
	HeaderDLQOffset    = "dlq_offset"
	HeaderDLQTimestamp = "dlq_timestamp"
	HeaderDLQProjector = "dlq_projection"
	HeaderDLQGroup     = "dlq_consumergroup"
	HeaderDLQAttempts  = "dlq_attempts"
	HeaderDLQParkedAt  = "dlq_parked_at"
)

// deadLetter wraps rec for the dead-letter topic: the same key, value and
// headers, plus the reason and the original coordinates.
func deadLetter(rec *kgo.Record, topic, projection, group, reason string, attempts int) *kgo.Record {
	h := slices.Clone(rec.Headers)
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQTimestamp, Value: []byte(rec.Timestamp.UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderDLQProjector, Value: []byte(projection)},
		kgo.RecordHeader{Key: HeaderDLQGroup, Value: []byte(group)},
		kgo.RecordHeader{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
		kgo.RecordHeader{Key: HeaderDLQParkedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: h}
}

// Parked is an event on a dead-letter topic.
type Parked struct {
	// DLQOffset is its offset on the dead-letter topic.
	DLQOffset int64
	Reason    string
	Attempts  int
	ParkedAt  time.Time
	// Original is the record as it was on its event topic, with its
	// coordinates and without the dead-letter headers.
	Original *kgo.Record
}

// Type is the parked event's CloudEvents type.
func (p Parked) Type() string { return typeOf(p.Original) }

// Header returns a header of the original record.
func (p Parked) Header(key string) string {
	for _, h := range p.Original.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func parseParked(r *kgo.Record) (Parked, error) {
	orig := &kgo.Record{Key: r.Key, Value: r.Value}
	p := Parked{DLQOffset: r.Offset, Original: orig}
	var errs []error
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQReason:
			p.Reason = v
		case HeaderDLQTopic:
			orig.Topic = v
		case HeaderDLQPartition:
			n, err := strconv.ParseInt(v, 10, 32)
			errs = append(errs, err)
			orig.Partition = int32(n)
		case HeaderDLQOffset:
			n, err := strconv.ParseInt(v, 10, 64)
			errs = append(errs, err)
			orig.Offset = n
		case HeaderDLQTimestamp:
			orig.Timestamp, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderDLQAttempts:
			p.Attempts, _ = strconv.Atoi(v)
		case HeaderDLQParkedAt:
			p.ParkedAt, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderDLQProjector, HeaderDLQGroup:
		default:
			orig.Headers = append(orig.Headers, h)
		}
	}
	if orig.Topic == "" {
		errs = append(errs, fmt.Errorf("no %s header", HeaderDLQTopic))
	}
	if err := errors.Join(errs...); err != nil {
		return Parked{}, fmt.Errorf("dead-letter record at offset %d is malformed: %w", r.Offset, err)
	}
	return p, nil
}

// DeadLetters reads every event parked on the projection's dead-letter
// topic, oldest first.
func (p *Projector) DeadLetters(ctx context.Context) ([]Parked, error) {
	cl, err := kgo.NewClient(append(slices.Clone(p.cfg.Client),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.dlq: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, p.dlq)
	if err != nil {
		return nil, fmt.Errorf("dead-letter topic %s: %w", p.dlq, err)
	}
	end, ok := ends.Lookup(p.dlq, 0)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("dead-letter topic %s does not exist (the projector creates it at start)", p.dlq)
	}
	var parked []Parked
	for next := int64(0); next < end.Offset; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("read %s: %w", p.dlq, ferr)
		}
		for _, r := range fetches.Records() {
			next = r.Offset + 1
			pk, err := parseParked(r)
			if err != nil {
				return nil, err
			}
			parked = append(parked, pk)
		}
	}
	return parked, nil
}

// ReplayOutcome says what replaying a parked event did.
type ReplayOutcome string

// Outcomes of a replay.
const (
	ReplayApplied   ReplayOutcome = "applied"
	ReplayDuplicate ReplayOutcome = "already applied"
	ReplayFailed    ReplayOutcome = "failed"
	ReplayWaiting   ReplayOutcome = "waits for an earlier event"
)

// Replayed is the result of replaying one parked event.
type Replayed struct {
	Parked  Parked
	Outcome ReplayOutcome
	Detail  string
}

// Replay applies parked events, in the order given, to the served
// generation (and to the one being built, if any). An event applies once:
// a replayed event whose version is already there is a no-op. It does not
// move any position.
func (p *Projector) Replay(ctx context.Context, parked []Parked) ([]Replayed, error) {
	meta, ok, err := p.gens.Read(ctx)
	if err != nil {
		return nil, err
	}
	if !ok || meta.Active == 0 {
		return nil, fmt.Errorf("%s: %w", p.proj.Name(), readmodels.ErrNotReady)
	}
	out := make([]Replayed, 0, len(parked))
	for _, pk := range parked {
		item, typ, err := p.prepare(pk.Original)
		if err != nil {
			out = append(out, Replayed{Parked: pk, Outcome: ReplayFailed, Detail: err.Error()})
			continue
		}
		b := readmodels.Batch{Generation: meta.Active, Topic: pk.Original.Topic, Partition: pk.Original.Partition, Items: []readmodels.Item{item}}
		res, err := p.steps.Apply(ctx, b)
		if err != nil {
			return out, err
		}
		r := Replayed{Parked: pk}
		switch {
		case res.Gap != nil:
			r.Outcome, r.Detail = ReplayWaiting, fmt.Sprintf("the projection holds version %d of %s; replay the earlier events first", res.Gap.Applied, item.Stream)
		case res.Outcomes[0] == readmodels.Duplicate:
			r.Outcome = ReplayDuplicate
		default:
			r.Outcome = ReplayApplied
			p.deps.Metrics.events.WithLabelValues(p.proj.Name(), typ, outcomeReplayed).Inc()
		}
		if meta.Rebuilding() {
			// The build reaches the event itself; a gap there only means it
			// has not yet.
			b.Generation = meta.Target
			if _, err := p.steps.Apply(ctx, b); err != nil {
				return out, err
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// AppliedVersion is the version of an aggregate the served generation
// holds, 0 for none: a parked event at or below it is applied.
func (p *Projector) AppliedVersion(ctx context.Context, aggregateType, id string) (int64, error) {
	v, err := readmodels.ActiveView(ctx, p.deps.Redis, p.steps.Layout())
	if err != nil {
		return 0, err
	}
	n, err := p.deps.Redis.HGet(ctx, v.Prefix(id)+"ver", readmodels.StreamKey(aggregateType, id)).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	return n, nil
}

// StreamOf reads the aggregate type, id and version of a parked event from
// its headers.
func StreamOf(pk Parked) (aggregateType, id string, version int64) {
	version, _ = strconv.ParseInt(pk.Header(kafka.HeaderStreamVersion), 10, 64)
	return pk.Header(kafka.HeaderAggregateType), string(pk.Original.Key), version
}
