// Package modeltest builds read models straight from events, without Kafka,
// the way a projector would, for tests and benchmarks of what reads them.
package modeltest

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Project applies events to generation 1 of p under root the way a
// projector does — per Kafka partition of the aggregate (of partitions), in
// batches, each in the one atomic step with its position — and serves the
// generation. Every event must apply.
func Project(t testing.TB, rdb redis.UniversalClient, root string, p readmodels.Projection, partitions int32, events []log.Event) {
	t.Helper()
	ctx := context.Background()
	layout := readmodels.NewLayout(root, p.Name())
	gens := readmodels.NewGenerations(rdb, layout)
	if _, err := gens.Ensure(ctx, partitions); err != nil {
		t.Fatal(err)
	}
	steps := readmodels.NewSteps(rdb, layout, p)
	type topicPartition struct {
		topic     string
		partition int32
	}
	queues := make(map[topicPartition][]log.Event)
	for _, e := range events {
		tp := topicPartition{root + "." + e.AggregateType + ".events", readmodels.PartitionOf(e.AggregateID, partitions)}
		queues[tp] = append(queues[tp], e)
	}
	for tp, evs := range queues {
		if _, err := steps.Claim(ctx, 1, tp.topic, tp.partition, "owner", false); err != nil {
			t.Fatal(err)
		}
		for start := 0; start < len(evs); start += 17 {
			b := readmodels.Batch{Generation: 1, Topic: tp.topic, Partition: tp.partition, Epoch: "owner"}
			for i, e := range evs[start:min(start+17, len(evs))] {
				args, err := p.Args(e)
				if err != nil {
					t.Fatalf("%s args of %s v%d %s: %v", p.Name(), e.AggregateID, e.Version, e.Type, err)
				}
				b.Items = append(b.Items, readmodels.Item{
					Offset: int64(start + i), Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID),
					ID: e.AggregateID, Version: e.Version, Args: args,
				})
			}
			res, err := steps.Apply(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if res.Gap != nil || string(res.Outcomes) != strings.Repeat("a", len(b.Items)) {
				t.Fatalf("%s: batch at %s/%d@%d: outcomes %q gap %+v, want every event applied",
					p.Name(), tp.topic, tp.partition, start, string(res.Outcomes), res.Gap)
			}
		}
	}
	if ok, err := gens.Promote(ctx, 1); err != nil || !ok {
		t.Fatalf("promote %s: %v %v", p.Name(), ok, err)
	}
}
