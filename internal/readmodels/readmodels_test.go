package readmodels

import (
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/testenv"
)

// PartitionOf must put every id where the producers do: franz-go's default
// partitioner (the relay's) and an independent murmur2 written from Kafka's
// algorithm (testenv, checked against Kafka's and librdkafka's vectors).
func TestPartitionOfMatchesKafka(t *testing.T) {
	ids := []string{"", "a", "ab", "abc", "abcd", "abcde", "0195d6a4-8f3c-7b1e-9a2d-3c4b5a6d7e8f", "ünïcödé"}
	for i := range 5000 {
		ids = append(ids, "acct-"+strconv.Itoa(i))
	}
	franz := kgo.StickyKeyPartitioner(nil).ForTopic("")
	for _, n := range []int32{1, 3, 12, 16, 1000} {
		for _, id := range ids {
			got := PartitionOf(id, n)
			if want := testenv.KafkaPartition([]byte(id), n); got != want {
				t.Errorf("PartitionOf(%q, %d) = %d, Kafka's murmur2 gives %d", id, n, got, want)
			}
			if want := int32(franz.Partition(&kgo.Record{Key: []byte(id)}, int(n))); got != want {
				t.Errorf("PartitionOf(%q, %d) = %d, franz-go gives %d", id, n, got, want)
			}
		}
	}
}

func BenchmarkPartitionOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		PartitionOf("0195d6a4-8f3c-7b1e-9a2d-3c4b5a6d7e8f", 16)
	}
}
