package projector

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// prepare turns a record into the projection's step item: decode the
// CloudEvents envelope, check that the record sits where its aggregate
// belongs, validate the payload against its schema, upcast it, and ask the
// projection for its arguments. The error says why the event cannot be
// applied; the type is the event type when known.
func (p *Projector) prepare(rec *kgo.Record) (readmodels.Item, string, error) {
	e, err := kafka.DecodeRecord(rec)
	if err != nil {
		return readmodels.Item{}, typeOf(rec), err
	}
	if want := p.cfg.Topics.For(e.AggregateType); want != rec.Topic {
		return readmodels.Item{}, e.Type, fmt.Errorf("a %s event on topic %s: it belongs on %s", e.AggregateType, rec.Topic, want)
	}
	if want := readmodels.PartitionOf(e.AggregateID, p.cfg.Topics.Partitions); want != rec.Partition {
		return readmodels.Item{}, e.Type, fmt.Errorf("aggregate %s is on partition %d but murmur2 puts it on %d: its producer does not partition like Kafka's default (librdkafka needs partitioner=murmur2_random)",
			e.AggregateID, rec.Partition, want)
	}
	if err := p.deps.Schemas.Validate(e.AggregateType, e.Type, e.SchemaVersion, e.Payload); err != nil {
		if errors.Is(err, log.ErrUnknownSchema) {
			return readmodels.Item{}, e.Type, fmt.Errorf("unknown event type or schema version: %w", err)
		}
		return readmodels.Item{}, e.Type, err
	}
	if e, err = p.deps.Upcasters.Upcast(e); err != nil {
		return readmodels.Item{}, e.Type, err
	}
	args, err := p.proj.Args(e)
	if err != nil {
		return readmodels.Item{}, e.Type, fmt.Errorf("%s cannot apply %s v%d of %s: %w", p.proj.Name(), e.Type, e.Version, e.AggregateID, err)
	}
	return readmodels.Item{
		Offset: rec.Offset, Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID),
		ID: e.AggregateID, Version: e.Version, Args: args,
	}, e.Type, nil
}
