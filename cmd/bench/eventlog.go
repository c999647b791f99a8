package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
)

// benchTopicPrefix names the pre-filled topic: bench.account.events.
const benchTopicPrefix = "bench"

// eventLog is an in-process Kafka cluster (kfake) holding one pre-filled
// account topic.
type eventLog struct {
	cluster *kfake.Cluster
	topics  kafka.Topics
	topic   string
	// ends are the end offsets of the topic's partitions once filled.
	ends map[int32]int64
}

// startEventLog starts kfake and fills its account topic with events, keyed
// by account id as the relay produces them (murmur2 partitioning).
func startEventLog(ctx context.Context, partitions int32, events []log.Event) (_ *eventLog, err error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	l := &eventLog{
		cluster: cluster,
		topics:  kafka.Topics{Prefix: benchTopicPrefix, Partitions: partitions, ReplicationFactor: -1},
	}
	l.topic = l.topics.For(account.AggregateType)
	defer func() {
		if err != nil {
			cluster.Close()
		}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := l.topics.Ensure(ctx, cl, l.topic); err != nil {
		return nil, err
	}
	const chunk = 5000
	records := make([]*kgo.Record, 0, chunk)
	for start := 0; start < len(events); start += chunk {
		records = records[:0]
		for _, e := range events[start:min(start+chunk, len(events))] {
			records = append(records, kafka.NewRecord(e, l.topic, "bench"))
		}
		if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
			return nil, fmt.Errorf("fill %s: %w", l.topic, err)
		}
	}
	offsets, err := kadm.NewClient(cl).ListEndOffsets(ctx, l.topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", l.topic, err)
	}
	l.ends = make(map[int32]int64)
	var total int64
	offsets.Each(func(o kadm.ListedOffset) {
		l.ends[o.Partition] = o.Offset
		total += o.Offset
	})
	if total != int64(len(events)) || int32(len(l.ends)) != partitions {
		return nil, fmt.Errorf("%s holds %d events on %d partitions, want %d on %d", l.topic, total, len(l.ends), len(events), partitions)
	}
	return l, nil
}

// seeds are the options that reach the cluster.
func (l *eventLog) seeds() []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(l.cluster.ListenAddrs()...)}
}

func (l *eventLog) close() { l.cluster.Close() }
