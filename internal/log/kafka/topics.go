package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics names the event topics: one per aggregate type.
type Topics struct {
	// Prefix starts every topic name; "tributary" gives tributary.account.events.
	Prefix string
	// Partitions is the partition count of every event topic. It is fixed for
	// a topic's life: changing it would move aggregates between partitions and
	// break per-aggregate order.
	Partitions int32
	// ReplicationFactor of new topics; -1 takes the broker's default.
	ReplicationFactor int16
}

// For returns the topic of an aggregate type.
func (t Topics) For(aggregateType string) string {
	return t.Prefix + "." + aggregateType + ".events"
}

// ErrPartitionMismatch: an existing topic's partition count differs from the
// configured one.
var ErrPartitionMismatch = errors.New("topic partition count differs from the configured one")

// Ensure creates the missing topics with the configured partition count and
// unlimited retention, and refuses, with ErrPartitionMismatch, a topic that
// exists with another partition count.
//
// It takes the franz-go client, not an admin client, because it must drop
// the client's cached metadata of a topic another process just created:
// franz-go caches admin metadata for MetadataMinAge (5s by default).
func (t Topics) Ensure(ctx context.Context, cl *kgo.Client, topics ...string) error {
	adm := kadm.NewClient(cl)
	missing, err := t.check(ctx, adm, topics)
	if err != nil || len(missing) == 0 {
		return err
	}
	retention := "-1"
	resp, err := adm.CreateTopics(ctx, t.Partitions, t.ReplicationFactor, map[string]*string{"retention.ms": &retention}, missing...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", missing, err)
	}
	var raced []string
	for _, r := range resp.Sorted() {
		switch {
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			raced = append(raced, r.Topic)
		case r.Err != nil:
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	// A topic someone else created in the meantime must match too. The
	// client's metadata may not show it yet: look again for a while, but
	// never create twice.
	for attempt := 0; len(raced) > 0; attempt++ {
		// Nothing was produced to these topics by this client yet (Ensure
		// comes first), so purging them only drops stale metadata.
		cl.PurgeTopicsFromClient(raced...)
		if raced, err = t.check(ctx, adm, raced); err != nil || len(raced) == 0 {
			return err
		}
		if attempt == 50 {
			return fmt.Errorf("topics %v exist but their metadata does not show", raced)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// check returns the topics that do not exist, and an error for one whose
// partition count differs.
func (t Topics) check(ctx context.Context, adm *kadm.Client, topics []string) ([]string, error) {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var missing []string
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, topic)
			continue
		}
		if d.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", topic, d.Err)
		}
		if got := int32(len(d.Partitions)); got != t.Partitions {
			return nil, fmt.Errorf("%w: topic %s has %d partitions but KAFKA_PARTITIONS is %d; changing the count would move aggregates between partitions and break per-aggregate order, so set KAFKA_PARTITIONS=%d or use a new topic prefix",
				ErrPartitionMismatch, topic, got, t.Partitions, got)
		}
	}
	return missing, nil
}
