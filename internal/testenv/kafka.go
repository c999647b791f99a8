package testenv

import (
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka starts an in-process Kafka cluster (kfake, which speaks the real
// Kafka protocol) for this test and closes it when the test ends.
func Kafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: start kfake: %v", err)
	}
	t.Cleanup(func() { closeOnce(c) })
	return c
}

// CloseKafka stops a cluster from Kafka before the test ends (an outage);
// the cleanup then leaves it alone.
func CloseKafka(c *kfake.Cluster) { closeOnce(c) }

var closed sync.Map // *kfake.Cluster → struct{}; kfake's Close must run once

func closeOnce(c *kfake.Cluster) {
	if _, done := closed.LoadOrStore(c, struct{}{}); !done {
		c.Close()
	}
}

// KafkaClient returns a client of the cluster at addrs with opts, closed
// when the test ends.
func KafkaClient(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}
