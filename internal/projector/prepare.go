package projector

import (
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// decoded is a record as every projection sees it: its event decoded from
// the CloudEvents envelope, checked, validated and upcast — or why it
// cannot be; typ is the event type when known.
type decoded struct {
	e   log.Event
	typ string
	err error
}

// fetched is a fetched record that the lanes of a runner share: the first
// worker that needs its event decodes it for all of them.
type fetched struct {
	rec  *kgo.Record
	once sync.Once
	d    decoded
}

// decoded returns the record's event, decoding it with p's schemas and
// upcasters on first use. The projections of one consumer share these
// (NewConsumer checks), so which lane decodes does not matter.
func (f *fetched) decoded(p *Projector) decoded {
	f.once.Do(func() { f.d = p.decode(f.rec) })
	return f.d
}

// prepare turns a record into the projection's step item (decode, then
// itemOf). The error says why the event cannot be applied; the type is the
// event type when known.
func (p *Projector) prepare(rec *kgo.Record) (readmodels.Item, string, error) {
	return p.itemOf(rec, p.decode(rec))
}

// decode decodes the CloudEvents envelope, checks that the record sits
// where its aggregate belongs, validates the payload against its schema and
// upcasts it: the part of preparing an event that is the same for every
// projection.
func (p *Projector) decode(rec *kgo.Record) decoded {
	e, err := kafka.DecodeRecord(rec)
	if err != nil {
		return decoded{typ: typeOf(rec), err: err}
	}
	if want := p.cfg.Topics.For(e.AggregateType); want != rec.Topic {
		return decoded{typ: e.Type, err: fmt.Errorf("a %s event on topic %s: it belongs on %s", e.AggregateType, rec.Topic, want)}
	}
	if want := readmodels.PartitionOf(e.AggregateID, p.cfg.Topics.Partitions); want != rec.Partition {
		return decoded{typ: e.Type, err: fmt.Errorf("aggregate %s is on partition %d but murmur2 puts it on %d: its producer does not partition like Kafka's default (librdkafka needs partitioner=murmur2_random)",
			e.AggregateID, rec.Partition, want)}
	}
	if err := p.deps.Schemas.Validate(e.AggregateType, e.Type, e.SchemaVersion, e.Payload); err != nil {
		if errors.Is(err, log.ErrUnknownSchema) {
			return decoded{typ: e.Type, err: fmt.Errorf("unknown event type or schema version: %w", err)}
		}
		return decoded{typ: e.Type, err: err}
	}
	if e, err = p.deps.Upcasters.Upcast(e); err != nil {
		return decoded{typ: e.Type, err: err}
	}
	return decoded{e: e, typ: e.Type}
}

// itemOf asks the projection for the arguments of a decoded event.
func (p *Projector) itemOf(rec *kgo.Record, d decoded) (readmodels.Item, string, error) {
	if d.err != nil {
		return readmodels.Item{}, d.typ, d.err
	}
	e := d.e
	args, err := p.proj.Args(e)
	if err != nil {
		return readmodels.Item{}, e.Type, fmt.Errorf("%s cannot apply %s v%d of %s: %w", p.proj.Name(), e.Type, e.Version, e.AggregateID, err)
	}
	return readmodels.Item{
		Offset: rec.Offset, Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID),
		ID: e.AggregateID, Version: e.Version, Args: args,
	}, e.Type, nil
}
