package relay_test

// Benchmarks of the relay, against the machine's Postgres and an in-process
// kfake cluster. Every iteration gets a fresh database and cluster, and one
// iteration takes seconds, so run each once and take medians over -count:
//
//	go test -run '^$' -bench . -count 5 -benchtime 1x ./internal/log/relay/
//
// BenchmarkKfakeProduceCeiling and BenchmarkFeedReadCeiling measure the two
// halves of the relay's loop on their own, for context: the relay reads a
// batch, then produces it, one after the other.
//
// others-open-s/op is how long write transactions of other databases were
// open on the Postgres server during the measurement. The feed's watermark
// is server-wide, so they hold the relay back: a figure that has it above
// zero is not the relay's own; measure again on a quiet server.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	pg "github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/testenv"
)

const (
	benchAggregates = 2_000
	benchVersions   = 100
	benchEvents     = benchAggregates * benchVersions
)

// benchBatchSizes are the relay batch sizes measured; 2000 is the default.
var benchBatchSizes = []int{2000, 5000, 10000}

// prefill writes benchEvents account events as concurrent writers would
// leave them: version v of every aggregate in one transaction, committed
// after version v-1, so commit order keeps per-aggregate order. Each event
// has a random id, a JSON payload of about 60 bytes, and correlation,
// causation, principal and traceparent. ANALYZE then gives the planner the
// statistics autovacuum would soon have gathered.
func (e *env) prefill() {
	e.t.Helper()
	ctx := context.Background()
	for v := 1; v <= benchVersions; v++ {
		_, err := e.pool.Exec(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                payload, correlation_id, causation_id, principal, traceparent)
            SELECT gen_random_uuid(), 'account', 'acc-' || a, $1::bigint, 'FundsDeposited', 2,
                   jsonb_build_object('amount', $1::bigint * 1000 + a, 'currency', 'EUR', 'source', 'bench-prefill'),
                   'corr-acc-' || a, 'cmd-' || $1::bigint || '-' || a, 'bench', $2::text
            FROM generate_series(1, $3::int) AS a
            ORDER BY a`, v, traceparent, benchAggregates)
		if err != nil {
			e.t.Fatalf("prefill version %d: %v", v, err)
		}
	}
	if _, err := e.pool.Exec(ctx, `ANALYZE events`); err != nil {
		e.t.Fatalf("prefill: %v", err)
	}
	if n := e.count(); n != benchEvents {
		e.t.Fatalf("prefill wrote %d events, want %d", n, benchEvents)
	}
}

func (e *env) count() int64 {
	e.t.Helper()
	var n int64
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// lastPosition is the global position of the event last in commit order.
func (e *env) lastPosition() int64 {
	e.t.Helper()
	var p int64
	err := e.pool.QueryRow(context.Background(),
		`SELECT global_position FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&p)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitCheckpoint waits until the named relay's checkpoint is at position.
func (e *env) waitCheckpoint(name string, position int64, within time.Duration) {
	e.t.Helper()
	waitFor(e.t, within, func() bool {
		var p int64
		err := e.pool.QueryRow(context.Background(), `SELECT global_position FROM relay_checkpoints WHERE name = $1`, name).Scan(&p)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			e.t.Fatal(err)
		}
		return p == position
	})
}

// readFeed reads want events through a feed of its own, batch events at a
// time, moving the feed's checkpoint after each batch as a relay does, and
// polling as a relay does while the feed returns nothing: its watermark is
// the oldest transaction running anywhere on the Postgres server.
func (e *env) readFeed(name string, batch, want int) []pg.FeedEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	feed, err := pg.AcquireFeed(ctx, e.dbURL, name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer feed.Close(context.Background())
	all := make([]pg.FeedEvent, 0, want)
	var pos pg.Position
	for len(all) < want {
		events, err := feed.Next(ctx, pos, batch)
		if err != nil {
			e.t.Fatalf("feed read %d of %d events: %v", len(all), want, err)
		}
		if len(events) == 0 {
			time.Sleep(testConfig().PollInterval)
			continue
		}
		pos = events[len(events)-1].Position
		if err := feed.Commit(ctx, pos); err != nil {
			e.t.Fatal(err)
		}
		all = append(all, events...)
	}
	if len(all) != want {
		e.t.Fatalf("feed read %d events, want %d", len(all), want)
	}
	return all
}

// othersOpen measures, while a figure is taken, for how long write
// transactions of other databases were open on the same Postgres server
// (sampled every 50ms; it needs a role that may see other sessions). The
// feed's watermark is server-wide: such a transaction holds every relay on
// the server back until it ends, so a figure taken meanwhile is not the
// relay's own. Stop it to get the time.
type othersOpen struct {
	cancel context.CancelFunc
	open   chan time.Duration
}

func (e *env) watchOthers() *othersOpen {
	ctx, cancel := context.WithCancel(context.Background())
	o := &othersOpen{cancel: cancel, open: make(chan time.Duration, 1)}
	go func() {
		const every = 50 * time.Millisecond
		tick := time.NewTicker(every)
		defer tick.Stop()
		var open time.Duration
		for {
			select {
			case <-ctx.Done():
				o.open <- open
				return
			case <-tick.C:
			}
			var n int
			err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
                WHERE backend_xid IS NOT NULL AND datname <> current_database()`).Scan(&n)
			switch {
			case err != nil && ctx.Err() == nil:
				e.t.Errorf("watch other databases: %v", err)
			case n > 0:
				open += every
			}
		}
	}()
	return o
}

func (o *othersOpen) stop() time.Duration {
	o.cancel()
	return <-o.open
}

// phases splits a leading relay's time by its hooks: from a batch read to
// Kafka's acknowledgement (building the records, producing, waiting for the
// acks), and from the acknowledgement to the next batch read (moving the
// checkpoint and reading the next batch from Postgres). The hooks run on the
// relay's goroutine; read the sums after the relay stopped.
type phases struct {
	read, acked     time.Time
	kafka, postgres time.Duration
}

func (p *phases) hooks() relay.Hooks {
	return relay.Hooks{
		BeforeProduce: func([]pg.FeedEvent) error {
			p.read = time.Now()
			if !p.acked.IsZero() {
				p.postgres += p.read.Sub(p.acked)
			}
			return nil
		},
		BeforeCheckpoint: func([]pg.FeedEvent) error {
			p.acked = time.Now()
			p.kafka += p.acked.Sub(p.read)
			return nil
		},
	}
}

// BenchmarkRelayThroughput measures how fast a relay empties a backlog of
// 200,000 events into kfake: from its start until its checkpoint holds the
// last event. kafka-s/op and postgres-s/op split the relay's loop (see
// phases). Afterwards, untimed, a consumer must find every event on Kafka,
// in order, on its murmur2 partition.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, size := range benchBatchSizes {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			var kafkaTime, postgresTime, othersTime time.Duration
			for b.Loop() {
				b.StopTimer()
				e := newEnv(b)
				e.prefill()
				last := e.lastPosition()
				cfg := testConfig()
				cfg.BatchSize = size
				var p phases
				others := e.watchOthers()
				b.StartTimer()

				r := e.startRelay(cfg, p.hooks())
				e.waitCheckpoint(cfg.Name, last, 5*time.Minute)

				b.StopTimer()
				othersTime += others.stop()
				r.stop()
				kafkaTime += p.kafka
				postgresTime += p.postgres
				e.checkComplete(e.consume(benchEvents, 5*time.Minute))
				testenv.CloseKafka(e.cluster)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(kafkaTime.Seconds()/float64(b.N), "kafka-s/op")
			b.ReportMetric(postgresTime.Seconds()/float64(b.N), "postgres-s/op")
			b.ReportMetric(othersTime.Seconds()/float64(b.N), "others-open-s/op")
		})
	}
}

// BenchmarkKfakeProduceCeiling measures how fast kfake takes the records of
// the same 200,000 events from a client with the relay's producer options,
// sent as the relay sends them: one ProduceSync per batch, one after the
// other. Building the records is not timed; batch=200000 sends everything
// in one call.
func BenchmarkKfakeProduceCeiling(b *testing.B) {
	e := newEnv(b)
	e.prefill()
	events := e.readFeed("ceiling", 10_000, benchEvents)
	cfg := testConfig()
	topic := cfg.Topics.For("account")
	ctx := context.Background()
	for _, size := range slices.Concat(benchBatchSizes, []int{benchEvents}) {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				cluster := testenv.Kafka(b, kfake.SeedTopics(partitions, topic))
				client := testenv.KafkaClient(b, cluster.ListenAddrs(), relay.ProducerOptions(30*time.Second)...)
				records := make([]*kgo.Record, len(events))
				for i, ev := range events {
					records[i] = kafka.NewRecord(ev.Event, topic, cfg.Source)
				}
				b.StartTimer()

				for i := 0; i < len(records); i += size {
					if err := client.ProduceSync(ctx, records[i:min(i+size, len(records))]...).FirstErr(); err != nil {
						b.Fatal(err)
					}
				}

				b.StopTimer()
				client.Close()
				testenv.CloseKafka(cluster)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkFeedReadCeiling measures how fast the relay's feed alone reads
// the 200,000 events from Postgres and moves its checkpoint, batch by
// batch, from a table just filled (as the relay sees it).
func BenchmarkFeedReadCeiling(b *testing.B) {
	for _, size := range benchBatchSizes {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			var othersTime time.Duration
			for b.Loop() {
				b.StopTimer()
				e := newEnv(b)
				e.prefill()
				others := e.watchOthers()
				b.StartTimer()

				e.readFeed("ceiling", size, benchEvents)

				b.StopTimer()
				othersTime += others.stop()
				testenv.CloseKafka(e.cluster)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(othersTime.Seconds()/float64(b.N), "others-open-s/op")
		})
	}
}

// BenchmarkRelayCommitToAck measures the relay's commit→ack latency
// (tributary_relay_commit_to_ack_seconds) under a steady command load: 8
// writers appending one event per command through the store (group
// commit), each to random aggregates of its own, as fast as they can or
// paced to a total rate. The timed part is the load; appends/s is its rate,
// append-p99-ms the 99th percentile of one append's own latency (exact).
//
// An event's recorded_at is now(), the start of the appending transaction,
// so commit→ack includes the insert and the commit itself, then waiting for
// older transactions (the feed's snapshot-xmin watermark), the relay's poll
// interval (5ms here, 20ms by default), the read, and the produce to kfake.
// The quantiles are interpolated within the histogram's buckets (powers of
// two from 1ms), as histogram_quantile would on a dashboard.
func BenchmarkRelayCommitToAck(b *testing.B) {
	const writers, appendsPerWriter = 8, 1000
	for _, rate := range []int{0, 1000} {
		name := "unpaced"
		if rate > 0 {
			name = fmt.Sprintf("rate=%d/s", rate)
		}
		b.Run(name, func(b *testing.B) {
			var loadTime, othersTime time.Duration
			var total []bucket
			var appendLatencies []time.Duration
			for b.Loop() {
				b.StopTimer()
				e := newEnv(b)
				cfg := testConfig()
				r := e.startRelay(cfg, relay.Hooks{})
				waitFor(b, 10*time.Second, func() bool { return r.gauge("tributary_relay_leader") == 1 })
				others := e.watchOthers()
				b.StartTimer()

				start := time.Now()
				appendLatencies = append(appendLatencies, e.steadyLoad(writers, appendsPerWriter, rate)...)
				loadTime += time.Since(start)

				b.StopTimer()
				e.waitCheckpoint(cfg.Name, e.lastPosition(), time.Minute)
				othersTime += others.stop()
				h := r.histogram("tributary_relay_commit_to_ack_seconds")
				if n := h[len(h)-1].count; n != writers*appendsPerWriter {
					b.Fatalf("commit→ack histogram holds %v events, want %d", n, writers*appendsPerWriter)
				}
				r.stop()
				e.checkComplete(e.consume(writers*appendsPerWriter, time.Minute))
				testenv.CloseKafka(e.cluster)
				if total == nil {
					total = make([]bucket, len(h))
				}
				for i := range h {
					total[i].upperBound = h[i].upperBound
					total[i].count += h[i].count
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(writers*appendsPerWriter*b.N)/loadTime.Seconds(), "appends/s")
			b.ReportMetric(1000*histogramQuantile(0.5, total), "p50-ms")
			b.ReportMetric(1000*histogramQuantile(0.99, total), "p99-ms")
			slices.Sort(appendLatencies)
			b.ReportMetric(appendLatencies[len(appendLatencies)*99/100].Seconds()*1000, "append-p99-ms")
			b.ReportMetric(othersTime.Seconds()/float64(b.N), "others-open-s/op")
		})
	}
}

// steadyLoad appends one event per command from writers goroutines, each
// to random ones of its own 250 aggregates at the exact expected version,
// perWriter commands each. With rate > 0 each writer follows a fixed
// schedule, together rate commands a second (open loop: a command that is
// due while the writer still waits for the previous one goes right after).
// It returns the latency of every append.
func (e *env) steadyLoad(writers, perWriter, rate int) []time.Duration {
	e.t.Helper()
	const aggregates = 250
	var wg sync.WaitGroup
	latencies := make([][]time.Duration, writers)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			versions := make([]int64, aggregates)
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(writers) * time.Second / time.Duration(rate)
			}
			next := time.Now()
			for i := range perWriter {
				if interval > 0 {
					next = next.Add(interval)
					time.Sleep(time.Until(next))
				}
				a := rng.IntN(aggregates)
				id := fmt.Sprintf("load-%d-%d", w, a)
				start := time.Now()
				_, err := e.store.Append(context.Background(), pg.AppendRequest{
					AggregateType: "account", AggregateID: id, Expected: pg.ExpectedVersion(versions[a]),
					Events: []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: "FundsDeposited", SchemaVersion: 2,
						Payload: json.RawMessage(fmt.Sprintf(`{"amount":%d,"currency":"EUR","source":"bench-load"}`, i+1))}},
					Metadata: log.Metadata{CorrelationID: "corr-" + id, CausationID: fmt.Sprintf("cmd-%d-%d", w, i),
						Principal: "bench", TraceParent: traceparent},
				})
				if err != nil {
					e.t.Errorf("writer %d, append %d to %s: %v", w, i, id, err)
					return
				}
				latencies[w] = append(latencies[w], time.Since(start))
				versions[a]++
			}
		})
	}
	wg.Wait()
	if e.t.Failed() {
		e.t.FailNow()
	}
	return slices.Concat(latencies...)
}

// bucket is one cumulative bucket of a Prometheus histogram: count
// observations were at most upperBound.
type bucket struct {
	upperBound float64
	count      float64
}

// histogram returns the named histogram's buckets, +Inf last.
func (r *running) histogram(name string) []bucket {
	mfs, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		var out []bucket
		for _, b := range h.GetBucket() {
			out = append(out, bucket{upperBound: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
		}
		return append(out, bucket{upperBound: math.Inf(1), count: float64(h.GetSampleCount())})
	}
	panic("no histogram " + name)
}

// histogramQuantile estimates the q-quantile of the observations counted
// in buckets (sorted by upper bound, +Inf last) as PromQL's
// histogram_quantile does: it finds the bucket the rank q·count falls in
// and interpolates linearly within it, from 0 in the first bucket if its
// upper bound is positive. A rank in the +Inf bucket gives the largest
// finite upper bound. Without observations, or without a +Inf bucket, the
// estimate is NaN; q outside [0, 1] gives -Inf or +Inf.
func histogramQuantile(q float64, buckets []bucket) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	n := len(buckets)
	if n < 2 || !math.IsInf(buckets[n-1].upperBound, 1) || buckets[n-1].count == 0 {
		return math.NaN()
	}
	rank := q * buckets[n-1].count
	i := 0
	for i < n-1 && buckets[i].count < rank {
		i++
	}
	if i == n-1 {
		return buckets[n-2].upperBound
	}
	if i == 0 && buckets[0].upperBound <= 0 {
		return buckets[0].upperBound
	}
	start, end, count := 0.0, buckets[i].upperBound, buckets[i].count
	if i > 0 {
		start = buckets[i-1].upperBound
		count -= buckets[i-1].count
		rank -= buckets[i-1].count
	}
	return start + (end-start)*(rank/count)
}

// The cases and expected values are Prometheus's own, from
// promql/promqltest/testdata/histograms.test (classic buckets at 50m/7m).
func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	positive := []bucket{{0.1, 50}, {0.2, 70}, {1, 110}, {inf, 120}}
	negative := []bucket{{-0.2, 10}, {-0.1, 20}, {0.3, 20}, {inf, 30}}
	middles := []bucket{{0, 0}, {2, 1}, {4, 2}, {6, 3}, {inf, 3}}
	noInfObservations := []bucket{{0, 0}, {0.1, 50}, {0.2, 70}, {1, 110}, {inf, 110}}
	tests := []struct {
		name    string
		buckets []bucket
		q, want float64
	}{
		{"lowest bucket", positive, 0, 0},
		{"lowest bucket at or below zero", negative, 0, -0.2},
		{"within the first bucket", positive, 0.2, 0.048},
		{"rank on a bucket's upper bound", negative, 0.2, -0.2},
		{"median", positive, 0.5, 0.15},
		{"median across zero", negative, 0.5, -0.15},
		{"rank in +Inf bucket", positive, 0.8, 0.72},
		{"rank in +Inf bucket gives the largest bound", negative, 0.8, 0.3},
		{"maximum", positive, 1, 1},
		{"maximum, +Inf bucket empty", noInfObservations, 1, 1},
		{"first quartile, +Inf bucket empty", noInfObservations, 0.25, 0.055},
		{"third quartile, +Inf bucket empty", noInfObservations, 0.75, 0.45},
		{"middle of a bucket 1/6", middles, 1. / 6., 1},
		{"middle of a bucket 1/2", middles, 0.5, 3},
		{"middle of a bucket 5/6", middles, 5. / 6., 5},
		{"quantile too low", positive, -0.1, math.Inf(-1)},
		{"quantile too high", positive, 1.01, inf},
		{"quantile invalid", positive, math.NaN(), math.NaN()},
		{"no observations", []bucket{{1, 0}, {inf, 0}}, 0.5, math.NaN()},
		{"no +Inf bucket", []bucket{{1, 5}, {2, 10}}, 0.5, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := histogramQuantile(tt.q, tt.buckets)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Errorf("histogramQuantile(%v) = %v, want NaN", tt.q, got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-9 && got != tt.want {
				t.Errorf("histogramQuantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}
