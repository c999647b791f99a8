package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/testenv"
)

const partitions = 8

// env is an event store and a Kafka cluster for one test.
type env struct {
	t       testing.TB
	dbURL   string
	pool    *pgxpool.Pool
	store   *postgres.Store
	cluster *kfake.Cluster
	addrs   []string
}

func newEnv(t testing.TB, kafkaOpts ...kfake.Opt) *env {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	c := testenv.Kafka(t, kafkaOpts...)
	return &env{t: t, dbURL: dbURL, pool: pool, store: postgres.NewStore(pool, nil), cluster: c, addrs: c.ListenAddrs()}
}

func testConfig() relay.Config {
	cfg := relay.DefaultConfig()
	cfg.Topics.Partitions = partitions
	cfg.AggregateTypes = []string{"account"}
	cfg.PollInterval = 5 * time.Millisecond
	cfg.StandbyInterval = 100 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	cfg.AckTimeout = 500 * time.Millisecond
	return cfg
}

// running is a relay running in the background.
type running struct {
	relay   *relay.Relay
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan error
}

func (e *env) startRelay(cfg relay.Config, hooks relay.Hooks) *running {
	e.t.Helper()
	client := testenv.KafkaClient(e.t, e.addrs, relay.ProducerOptions(time.Second)...)
	reg := prometheus.NewRegistry()
	r := relay.New(cfg, e.dbURL, e.pool, nil, client, relay.NewMetrics(reg), slog.New(slog.DiscardHandler), hooks)
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{relay: r, reg: reg, cancel: cancel, stopped: make(chan error, 1)}
	go func() { run.stopped <- r.Run(ctx) }()
	e.t.Cleanup(run.stop)
	return run
}

func (r *running) stop() {
	r.cancel()
	<-r.stopped
	r.stopped <- nil // let a second stop return too
}

func (r *running) gauge(name string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// counter is the sum of the counter name's series, 0 when it has none.
func (r *running) counter(name string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

var traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// appendEvents writes perAggregate events to each of aggregates accounts,
// from concurrent writers, a few events per append. The events of every
// other account are appended on behalf of someone (onBehalfOf).
func (e *env) appendEvents(prefix string, aggregates, perAggregate int) {
	e.t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for a := range work {
				id := fmt.Sprintf("%s-%d", prefix, a)
				meta := log.Metadata{CorrelationID: "corr-" + id, CausationID: "cmd", Principal: "test", TraceParent: traceparent}
				if a%2 == 1 {
					meta.Principal, meta.OnBehalfOf = "process-manager", onBehalfOf(id)
				}
				for v := 0; v < perAggregate; {
					n := min(5, perAggregate-v)
					events := make([]log.NewEvent, n)
					for i := range events {
						events[i] = log.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "FundsDeposited", SchemaVersion: 2,
							Payload: json.RawMessage(fmt.Sprintf(`{"amount":%d,"currency":"EUR","source":"test"}`, v+i+1))}
					}
					_, err := e.store.Append(context.Background(), postgres.AppendRequest{AggregateType: "account", AggregateID: id,
						Expected: postgres.ExpectedVersion(v), Events: events, Metadata: meta})
					if err != nil {
						e.t.Error(err)
						return
					}
					v += n
				}
			}
		})
	}
	for a := range aggregates {
		work <- a
	}
	close(work)
	wg.Wait()
}

// onBehalfOf is whom appendEvents appends account id's events for, when it
// appends them for someone.
func onBehalfOf(id string) string { return "user:owner-of-" + id }

// consumed is what a consumer read from the account topic.
type consumed struct {
	records []*kgo.Record
	unique  map[uuid.UUID]*kgo.Record
}

// consume reads the account topic from the start until it holds want
// distinct events, or fails the test after the deadline.
func (e *env) consume(want int, within time.Duration) consumed {
	e.t.Helper()
	cl := testenv.KafkaClient(e.t, e.addrs, kgo.ConsumeTopics(testConfig().Topics.For("account")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := consumed{unique: make(map[uuid.UUID]*kgo.Record)}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for len(got.unique) < want {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("consumed %d distinct events within %s, want %d", len(got.unique), within, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got.records = append(got.records, r)
			ev, err := kafka.DecodeRecord(r)
			if err != nil {
				e.t.Fatalf("record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			got.unique[ev.ID] = r
		})
	}
	return got
}

// checkComplete verifies that every stored event is on Kafka, on the
// partition Kafka's murmur2 partitioner gives its aggregate id, with the
// versions of each aggregate in order (a duplicate may only repeat an event
// that came before), and with the CloudEvents headers matching the store.
// It returns how many distinct events were on behalf of someone.
func (e *env) checkComplete(got consumed) (onBehalf int) {
	e.t.Helper()
	stored, err := e.pool.Query(context.Background(), `SELECT event_id, aggregate_id, version, global_position, principal, on_behalf_of FROM events`)
	if err != nil {
		e.t.Fatal(err)
	}
	type row struct {
		agg                   string
		version, pos          int64
		principal, onBehalfOf string
	}
	want := make(map[uuid.UUID]row)
	for stored.Next() {
		var id uuid.UUID
		var r row
		if err := stored.Scan(&id, &r.agg, &r.version, &r.pos, &r.principal, &r.onBehalfOf); err != nil {
			e.t.Fatal(err)
		}
		want[id] = r
	}
	stored.Close()
	for id, w := range want {
		rec, ok := got.unique[id]
		if !ok {
			e.t.Fatalf("event %s (%s v%d) is not on Kafka", id, w.agg, w.version)
		}
		ev, _ := kafka.DecodeRecord(rec)
		if ev.AggregateID != w.agg || ev.Version != w.version || ev.GlobalPosition != w.pos || ev.TraceParent != traceparent ||
			ev.CorrelationID != "corr-"+w.agg || ev.Principal != w.principal || ev.OnBehalfOf != w.onBehalfOf {
			e.t.Fatalf("event %s on Kafka as %+v, stored as %+v", id, ev, w)
		}
		if ev.OnBehalfOf != "" {
			onBehalf++
		}
		if p := testenv.KafkaPartition(rec.Key, partitions); rec.Partition != p {
			e.t.Fatalf("event %s of %s on partition %d, murmur2 says %d", id, w.agg, rec.Partition, p)
		}
	}
	if len(got.unique) != len(want) {
		e.t.Fatalf("%d distinct events on Kafka, %d stored", len(got.unique), len(want))
	}
	// Per aggregate, in partition (offset) order: each version is either the
	// next one or a repeat of one already seen.
	highest := make(map[string]int64)
	for _, r := range got.records {
		ev, _ := kafka.DecodeRecord(r)
		switch h := highest[ev.AggregateID]; {
		case ev.Version == h+1:
			highest[ev.AggregateID] = ev.Version
		case ev.Version <= h:
			// a duplicate of an earlier delivery: allowed (at least once)
		default:
			e.t.Fatalf("%s: version %d arrived after %d (offset %d)", ev.AggregateID, ev.Version, h, r.Offset)
		}
	}
	return onBehalf
}

// 10,000 events over 500 aggregates: every one on Kafka exactly where
// murmur2(aggregate id) % P puts it, versions in order, with the headers —
// among them whom an event was appended for, as ce_onbehalfof.
func TestEveryEventLandsInOrderWhereMurmur2PutsIt(t *testing.T) {
	e := newEnv(t)
	r := e.startRelay(testConfig(), relay.Hooks{})
	e.appendEvents("acc", 500, 20)
	got := e.consume(10_000, time.Minute)
	if n := e.checkComplete(got); n != 5_000 {
		t.Errorf("%d events on Kafka on behalf of someone, 5,000 were appended so", n)
	}
	for _, rec := range got.unique {
		ev, _ := kafka.DecodeRecord(rec)
		want := ""
		if ev.OnBehalfOf != "" {
			want = onBehalfOf(ev.AggregateID)
		}
		var header []string
		for _, h := range rec.Headers {
			if h.Key == kafka.HeaderOnBehalfOf {
				header = append(header, string(h.Value))
			}
		}
		if (want == "" && len(header) != 0) || (want != "" && (len(header) != 1 || header[0] != want)) {
			t.Fatalf("event of %s has %s headers %q, want %q (once, or none for an empty value)", ev.AggregateID, kafka.HeaderOnBehalfOf, header, want)
		}
	}
	if dups := len(got.records) - len(got.unique); dups != 0 {
		t.Errorf("%d duplicates without any fault", dups)
	}
	waitFor(t, 10*time.Second, func() bool { return r.gauge("tributary_relay_backlog_events") == 0 })
	if v := r.gauge("tributary_relay_leader"); v != 1 {
		t.Errorf("leader gauge %v, want 1", v)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The checkpoint is stored once for many batches — here, with an interval
// longer than the test, when the relay stops leading — not after every
// batch, and it holds the last event Kafka acknowledged; with a short
// interval, it follows a caught-up relay on its own.
func TestTheCheckpointMovesOnceForManyBatches(t *testing.T) {
	for _, interval := range []time.Duration{time.Hour, 200 * time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			e := newEnv(t)
			e.appendEvents("acct", 20, 10) // 200 events before the relay starts
			var mu sync.Mutex
			var checkpointed [][]postgres.FeedEvent
			batches := 0
			cfg := testConfig()
			cfg.BatchSize = 10
			cfg.CheckpointInterval = interval
			r := e.startRelay(cfg, relay.Hooks{BeforeProduce: func([]postgres.FeedEvent) error {
				mu.Lock()
				defer mu.Unlock()
				batches++
				return nil
			}, BeforeCheckpoint: func(batch []postgres.FeedEvent) error {
				mu.Lock()
				defer mu.Unlock()
				checkpointed = append(checkpointed, batch)
				return nil
			}})
			e.checkComplete(e.consume(200, 30*time.Second))
			// A consumer can read the last batch before its producer has the
			// acknowledgement: the relay checkpoints only what it knows Kafka
			// acknowledged, so the test waits for that, not for the consumer.
			waitFor(t, 10*time.Second, func() bool { return r.counter("tributary_relay_events_published_total") >= 200 })
			var last postgres.Position
			if err := e.pool.QueryRow(context.Background(), `SELECT transaction_id::text::bigint, global_position FROM events
                ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&last.TransactionID, &last.GlobalPosition); err != nil {
				t.Fatal(err)
			}
			readCheckpoint := func() (p postgres.Position) {
				if err := e.pool.QueryRow(context.Background(), `SELECT transaction_id::text::bigint, global_position FROM relay_checkpoints
                    WHERE name = $1`, cfg.Name).Scan(&p.TransactionID, &p.GlobalPosition); err != nil {
					t.Fatal(err)
				}
				return p
			}
			if interval == time.Hour {
				if cp := readCheckpoint(); cp == last {
					t.Fatalf("the checkpoint is at the last event before the hour passed or the relay stopped")
				}
				r.stop()
			}
			waitFor(t, 10*time.Second, func() bool { return readCheckpoint() == last })
			r.stop()
			mu.Lock()
			defer mu.Unlock()
			if len(checkpointed) == 0 || len(checkpointed) >= batches || batches < 20 {
				t.Fatalf("the checkpoint moved %d times for %d batches of at most 10 of the 200 events, want far fewer times", len(checkpointed), batches)
			}
			if interval == time.Hour && len(checkpointed) != 1 {
				t.Fatalf("the checkpoint moved %d times, want once (when the relay stopped)", len(checkpointed))
			}
			if got := checkpointed[len(checkpointed)-1][len(checkpointed[len(checkpointed)-1])-1].Position; got != last {
				t.Fatalf("the checkpoint moved to %+v, want the last event, %+v", got, last)
			}
		})
	}
}

// A relay told to stop while a read of its waits keeps that read's
// connection until the read ends (up to queryGrace), so it still stores the
// checkpoint of what Kafka acknowledged as leading ends. pgx closes a
// connection whose query a context interrupts: without the grace the
// stop-time checkpoint was lost whenever a stop landed mid-read.
func TestAStopDuringAReadStillStoresTheCheckpoint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.appendEvents("acct", 4, 5) // 20 events
	cfg := testConfig()
	cfg.CheckpointInterval = time.Hour // stored only when leading ends
	r := e.startRelay(cfg, relay.Hooks{})
	e.checkComplete(e.consume(20, 30*time.Second))
	waitFor(t, 10*time.Second, func() bool { return r.counter("tributary_relay_events_published_total") >= 20 })
	var last postgres.Position
	if err := e.pool.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM events
        ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&last.TransactionID, &last.GlobalPosition); err != nil {
		t.Fatal(err)
	}

	// Hold the relay's next read: a transaction keeps events locked.
	lock, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		var waiting int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%pg_snapshot_xmin%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting == 1
	})
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	time.Sleep(300 * time.Millisecond) // the stop reached the relay; its read still waits
	select {
	case <-stopped:
		t.Fatal("the relay stopped while its read was still waiting")
	default:
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not stop once its read ended")
	}
	var cp postgres.Position
	if err := e.pool.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM relay_checkpoints
        WHERE name = $1`, cfg.Name).Scan(&cp.TransactionID, &cp.GlobalPosition); err != nil {
		t.Fatal(err)
	}
	if cp != last {
		t.Fatalf("checkpoint after a stop during a read: %+v, want the last acknowledged event %+v", cp, last)
	}
}
