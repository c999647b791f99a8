package aggregate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

var zeroTime time.Time

// BenchmarkLoad loads an aggregate with a short and a long history. With
// snapshots every 100 events both cost about the same (G9); the
// "no-snapshots" case shows what the long one would cost without them.
//
//	go test -run '^$' -bench BenchmarkLoad -count 5 ./internal/aggregate/
func BenchmarkLoad(b *testing.B) {
	store := postgres.NewStore(testenv.Postgres(b), nil)
	schemas := counterSchemas(b)
	withSnapshots := aggregate.NewHandler(counterType(1), store, schemas, aggregate.Options{SnapshotEvery: 100})
	for _, n := range []int{100, 10_000} {
		id := fmt.Sprintf("c%d", n)
		prefill(b, store, id, n-1)
		do(b, withSnapshots, id, 1) // the n-th event, which leaves a snapshot
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			benchLoad(b, withSnapshots, id, int64(n))
		})
	}
	// Another state schema version finds no usable snapshot: a full fold.
	noSnapshots := aggregate.NewHandler(counterType(99), store, schemas, aggregate.Options{SnapshotEvery: 1 << 30})
	b.Run("events=10000/no-snapshots", func(b *testing.B) {
		benchLoad(b, noSnapshots, "c10000", 10_000)
	})
}

func benchLoad(b *testing.B, h *aggregate.Handler[counter, increment, incremented], id string, want int64) {
	ctx := context.Background()
	for b.Loop() {
		s, v, err := h.Load(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if v != want || s.Count != want {
			b.Fatalf("loaded count %d at version %d, want %d", s.Count, v, want)
		}
	}
}
