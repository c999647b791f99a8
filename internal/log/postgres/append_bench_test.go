package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// BenchmarkAppendConcurrent measures the store alone under the writer
// benchmark's shape: 16 goroutines, each appending one deposit-sized event
// at a time to one of its own 64 streams, through group commit. It reports
// appends/s, with one batch in flight (the default) and with two; compare
// with cmd/bench writer's raw INSERT ceiling.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, inFlight := range []int{1, 2} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			store := postgres.NewStore(testenv.Postgres(b), nil, postgres.WithGroupCommit(inFlight, 128))
			appendConcurrently(b, store)
		})
	}
}

func appendConcurrently(b *testing.B, store *postgres.Store) {
	const clients, streamsEach = 16, 64
	ctx := context.Background()
	payload := json.RawMessage(`{"amount":12345,"currency":"EUR","source":"bench"}`)
	meta := log.Metadata{CorrelationID: uuid.NewString(), CausationID: uuid.NewString(), Principal: "bench",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	versions := make([][]int64, clients)
	for c := range versions {
		versions[c] = make([]int64, streamsEach)
	}
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				s := i % streamsEach
				_, err := store.Append(ctx, postgres.AppendRequest{
					AggregateType: "thing", AggregateID: fmt.Sprintf("c%d-s%d", c, s),
					Expected: postgres.ExpectedVersion(versions[c][s]),
					Events:   []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: "Deposited", SchemaVersion: 1, Payload: payload}},
					Metadata: meta,
				})
				if err != nil {
					b.Error(err)
					return
				}
				versions[c][s]++
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
