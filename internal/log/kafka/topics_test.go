package kafka

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newAdmin starts a one-broker kfake cluster for this test alone and returns
// an admin client for it and a context that ends with the test.
func newAdmin(t *testing.T, opts ...kfake.Opt) (context.Context, *kadm.Client, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Admin metadata is cached for MetadataMinAge (5s by default); the tests
	// read what Ensure did right away, so they ask for fresh metadata.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx, kadm.NewClient(cl), cl
}

// partitionCounts lists topics and returns each one's partition count; a
// topic that does not exist is absent from the map. Metadata lags a creation
// a little, so it looks again, for up to 5s, while a topic shows no partitions.
func partitionCounts(ctx context.Context, t *testing.T, adm *kadm.Client, topics ...string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		details, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		settled := true
		for _, topic := range topics {
			if d, ok := details[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				counts[topic] = len(d.Partitions)
			} else {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return counts
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var sixPartitions = Topics{Prefix: "tributary", Partitions: 6, ReplicationFactor: -1}

func TestTopicsFor(t *testing.T) {
	if got, want := sixPartitions.For("account"), "tributary.account.events"; got != want {
		t.Errorf("For(account) = %q, want %q", got, want)
	}
	if got, want := (Topics{Prefix: "staging"}).For("order"), "staging.order.events"; got != want {
		t.Errorf("For(order) = %q, want %q", got, want)
	}
}

func TestEnsureCreatesMissingTopics(t *testing.T) {
	ctx, adm, cl := newAdmin(t)
	topics := []string{sixPartitions.For("account"), sixPartitions.For("order")}

	if err := sixPartitions.Ensure(ctx, cl, topics...); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	counts := partitionCounts(ctx, t, adm, topics...)
	for _, topic := range topics {
		if counts[topic] != 6 {
			t.Errorf("topic %s has %d partitions, want 6", topic, counts[topic])
		}
	}
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		rc, err := configs.On(topic, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			t.Errorf("describe configs of %s: %v", topic, err)
			continue
		}
		var retention *string
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				retention = c.Value
			}
		}
		switch {
		case retention == nil:
			t.Errorf("topic %s: no retention.ms reported", topic)
		case *retention != "-1":
			t.Errorf("topic %s: retention.ms = %s, want -1 (unlimited)", topic, *retention)
		}
	}
}

func TestEnsureExistingTopicsIsNoop(t *testing.T) {
	ctx, adm, cl := newAdmin(t)
	topic := sixPartitions.For("account")
	if err := sixPartitions.Ensure(ctx, cl, topic); err != nil {
		t.Fatalf("first Ensure: %v", err)
	}
	partitionCounts(ctx, t, adm, topic) // until the metadata shows it
	before, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}

	if err := sixPartitions.Ensure(ctx, cl, topic); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}

	after, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if before[topic].ID != after[topic].ID {
		t.Errorf("topic %s was recreated: id %v, then %v", topic, before[topic].ID, after[topic].ID)
	}
	if n := len(after[topic].Partitions); n != 6 {
		t.Errorf("topic %s has %d partitions after the second Ensure, want 6", topic, n)
	}
}

// A topic someone else created with the right partition count is accepted.
func TestEnsureAcceptsTopicCreatedElsewhere(t *testing.T) {
	account, order := sixPartitions.For("account"), sixPartitions.For("order")
	ctx, adm, cl := newAdmin(t, kfake.SeedTopics(6, account))

	if err := sixPartitions.Ensure(ctx, cl, account, order); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	counts := partitionCounts(ctx, t, adm, account, order)
	if counts[account] != 6 || counts[order] != 6 {
		t.Errorf("partition counts %v, want 6 for both", counts)
	}
}

func TestEnsureRefusesPartitionMismatch(t *testing.T) {
	ctx, adm, cl := newAdmin(t)
	topic := sixPartitions.For("account")
	if err := sixPartitions.Ensure(ctx, cl, topic); err != nil {
		t.Fatalf("Ensure with 6 partitions: %v", err)
	}

	three := sixPartitions
	three.Partitions = 3
	err := three.Ensure(ctx, cl, topic)

	if !errors.Is(err, ErrPartitionMismatch) {
		t.Fatalf("Ensure with 3 partitions = %v, want ErrPartitionMismatch", err)
	}
	for _, want := range []string{topic, "has 6 partitions", "KAFKA_PARTITIONS is 3", "KAFKA_PARTITIONS=6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if n := partitionCounts(ctx, t, adm, topic)[topic]; n != 6 {
		t.Errorf("topic %s has %d partitions after the refused Ensure, want 6 untouched", topic, n)
	}
}

// Ensure asks the broker to create a missing topic once. Against a broker
// whose answer is immediate, more requests mean it re-reads metadata that
// still says "unknown topic" (kadm.ListTopics answers from the client's
// metadata cache, MetadataMinAge 5s by default), treats the topic as missing
// again and retries CreateTopics, ignoring TopicAlreadyExists, until the
// cache expires or ctx ends.
func TestEnsureCreatesEachTopicOnce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	asked := map[string]int{}
	c.ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range req.(*kmsg.CreateTopicsRequest).Topics {
			asked[rt.Topic]++
		}
		return nil, nil, false // let kfake handle it
	})
	// Admin metadata is cached for MetadataMinAge (5s by default); the tests
	// read what Ensure did right away, so they ask for fresh metadata.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := sixPartitions.For("account")

	start := time.Now()
	err = sixPartitions.Ensure(ctx, cl, topic)
	took := time.Since(start)

	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked[topic] != 1 {
		t.Errorf("Ensure sent %d CreateTopics requests for %s in %v, want 1", asked[topic], topic, took.Round(time.Millisecond))
	}
}
