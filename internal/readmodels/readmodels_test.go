package readmodels

import (
	"strconv"
	"sync"
	"testing"

	"github.com/tributary-es/tributary/internal/testenv"
)

// PartitionOf shares one partitioner between goroutines (the projector's
// workers call it for every event): it must agree with an independent
// murmur2 from every goroutine at once, and race with nothing.
func TestPartitionOfMatchesKafkaConcurrently(t *testing.T) {
	ids := []string{"", "a", "ab", "abc", "abcd", "0195d6a4-8f3c-7b1e-9a2d-3c4b5a6d7e8f"}
	for i := range 2000 {
		ids = append(ids, "acct-"+strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	for _, n := range []int32{1, 3, 12, 16} {
		wg.Go(func() {
			for _, id := range ids {
				if got, want := PartitionOf(id, n), testenv.KafkaPartition([]byte(id), n); got != want {
					t.Errorf("PartitionOf(%q, %d) = %d, Kafka's murmur2 gives %d", id, n, got, want)
				}
			}
		})
	}
	wg.Wait()
}
