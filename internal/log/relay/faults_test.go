package relay_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/testenv"
)

// A transaction that takes its global position first and commits last (held
// open by the test while others commit) is still relayed: nothing is
// skipped, and per-aggregate order holds.
func TestTransactionCommittingLastIsNotSkipped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.appendEvents("before", 5, 2)
	r := e.startRelay(testConfig(), relay.Hooks{})
	e.consume(10, 30*time.Second)

	// A transaction that already holds a transaction id (it started writing
	// before the held one) but appends only after it, and commits while the
	// held one is still open: its event has a larger position than the held
	// one's, and is relayed at once.
	early, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	if _, err := early.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}

	held, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	var heldPosition int64
	if err := held.QueryRow(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal, traceparent)
        VALUES ($1, 'account', 'held', 1, 'FundsDeposited', 2, '{"amount":1,"currency":"EUR","source":"held"}', 'corr-held', 'cmd', 'test', $2)
        RETURNING global_position`, uuid.Must(uuid.NewV7()), traceparent).Scan(&heldPosition); err != nil {
		t.Fatal(err)
	}
	var earlyPosition int64
	if err := early.QueryRow(ctx, `INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, payload, correlation_id, causation_id, principal, traceparent)
        VALUES ($1, 'account', 'early', 1, 'FundsDeposited', 2, '{"amount":1,"currency":"EUR","source":"early"}', 'corr-early', 'cmd', 'test', $2)
        RETURNING global_position`, uuid.Must(uuid.NewV7()), traceparent).Scan(&earlyPosition); err != nil {
		t.Fatal(err)
	}
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if earlyPosition <= heldPosition {
		t.Fatalf("test setup: the early transaction's position %d must come after the held one's %d", earlyPosition, heldPosition)
	}
	// Relayed while the held transaction is still open.
	e.consume(10+1, 30*time.Second)

	// Others take larger positions and ids, and commit while the held one is open.
	e.appendEvents("after", 20, 3)
	var maxOther int64
	if err := e.pool.QueryRow(ctx, `SELECT max(global_position) FROM events WHERE aggregate_id LIKE 'after-%'`).Scan(&maxOther); err != nil {
		t.Fatal(err)
	}
	if maxOther <= heldPosition {
		t.Fatalf("test setup: others' positions (max %d) must come after the held one (%d)", maxOther, heldPosition)
	}
	// The relay must not move its checkpoint past the held position: a
	// reader that trusted visible positions would have.
	feed, err := postgres.AcquireFeed(ctx, e.dbURL, "probe", nil)
	if err != nil {
		t.Fatal(err)
	}
	visible, err := feed.Next(ctx, postgres.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	feed.Close(ctx)
	for _, ev := range visible {
		if strings.HasPrefix(ev.AggregateID, "after-") {
			t.Fatalf("the feed returned %s (position %d) while the held transaction, with an older id and position %d, is open",
				ev.AggregateID, ev.GlobalPosition, heldPosition)
		}
	}

	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.consume(10+1+1+60, 30*time.Second)
	e.checkComplete(got)
	waitFor(t, 10*time.Second, func() bool { return r.gauge("tributary_relay_backlog_events") == 0 })
}

// The relay killed between produce and checkpoint, and between commit and
// produce, then restarted: every event is on Kafka, none missing.
func TestCrashAtEveryPointLosesNothing(t *testing.T) {
	for _, point := range []string{"before produce", "before checkpoint"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			e.appendEvents("acc", 50, 10)
			var crashes atomic.Int32
			crash := func([]postgres.FeedEvent) error {
				if crashes.Add(1) <= 3 {
					return relay.ErrInjected
				}
				return nil
			}
			hooks := relay.Hooks{BeforeProduce: crash}
			if point == "before checkpoint" {
				hooks = relay.Hooks{BeforeCheckpoint: crash}
			}
			cfg := testConfig()
			cfg.BatchSize = 64
			// The first relay crashes (stops leading) three times, then is
			// killed outright; a fresh one takes over.
			first := e.startRelay(cfg, hooks)
			waitFor(t, 20*time.Second, func() bool { return crashes.Load() >= 4 })
			first.stop()
			e.appendEvents("more", 20, 5)
			e.startRelay(cfg, relay.Hooks{})
			got := e.consume(500+100, time.Minute)
			e.checkComplete(got)
			if point == "before checkpoint" && len(got.records) == len(got.unique) {
				t.Error("a crash after produce and before checkpoint must redeliver; no duplicate seen")
			}
		})
	}
}

// Two relays against one database: only one publishes; stop it and the
// other takes over within seconds, without loss.
func TestOnlyOneRelayLeadsAndTheOtherTakesOver(t *testing.T) {
	e := newEnv(t)
	a := e.startRelay(testConfig(), relay.Hooks{})
	b := e.startRelay(testConfig(), relay.Hooks{})
	e.appendEvents("acc", 50, 4)
	e.consume(200, 30*time.Second)
	// A consumer can see records before the producer's acknowledgement has
	// reached the relay's counter.
	waitFor(t, 10*time.Second, func() bool { return published(a)+published(b) >= 200 })
	waitFor(t, 5*time.Second, func() bool { return a.gauge("tributary_relay_leader")+b.gauge("tributary_relay_leader") == 1 })
	leader, standby := a, b
	if b.gauge("tributary_relay_leader") == 1 {
		leader, standby = b, a
	}
	if published(standby) != 0 {
		t.Fatalf("the standby published %v events", published(standby))
	}
	if published(leader) < 200 {
		t.Fatalf("the leader published %v events, want 200", published(leader))
	}

	leader.stop()
	stopped := time.Now()
	waitFor(t, 15*time.Second, func() bool { return standby.gauge("tributary_relay_leader") == 1 })
	// The standby tries every StandbyInterval (100ms here): within 10 s is
	// a hundred tries, allowing a loaded server's slow connects, and still
	// far from waiting out a dead leader's session.
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("takeover took %s", took)
	} else {
		t.Logf("takeover after %s", took.Round(time.Millisecond))
	}
	e.appendEvents("more", 50, 4)
	e.checkComplete(e.consume(400, 30*time.Second))
}

func published(r *running) float64 {
	mfs, _ := r.reg.Gather()
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "tributary_relay_events_published_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// Kafka unreachable for a while: appends still succeed, the backlog gauge
// rises, and everything is published once Kafka is back.
func TestKafkaOutageGrowsBacklogThenDrains(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, kfakeDataDir(dir)...)
	r := e.startRelay(testConfig(), relay.Hooks{})
	e.appendEvents("acc", 10, 5)
	e.consume(50, 30*time.Second)

	addr := e.addrs[0]
	testenv.CloseKafka(e.cluster)
	e.appendEvents("during", 30, 5)
	waitFor(t, 20*time.Second, func() bool { return r.gauge("tributary_relay_backlog_events") >= 150 })
	waitFor(t, 20*time.Second, func() bool { return r.counter("tributary_relay_publish_failures_total") > 0 })

	// Kafka comes back on the same address with its data.
	restarted := testenv.Kafka(t, append(kfakeDataDir(dir), kfakePort(t, addr))...)
	e.cluster, e.addrs = restarted, restarted.ListenAddrs()
	e.checkComplete(e.consume(200, time.Minute))
	waitFor(t, 20*time.Second, func() bool { return r.gauge("tributary_relay_backlog_events") == 0 })
}

// A relay refuses to start when a topic exists with another partition count.
func TestPartitionCountMismatchStopsTheRelay(t *testing.T) {
	e := newEnv(t)
	first := e.startRelay(testConfig(), relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return first.gauge("tributary_relay_leader") == 1 })
	first.stop()
	cfg := testConfig()
	cfg.Topics.Partitions = partitions * 2
	r := e.startRelay(cfg, relay.Hooks{})
	select {
	case err := <-r.stopped:
		r.stopped <- err
		if err == nil || !errors.Is(err, kafkaErrPartitionMismatch) {
			t.Fatalf("got %v, want a partition mismatch", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the relay started despite the partition count mismatch")
	}
}

var kafkaErrPartitionMismatch = kafka.ErrPartitionMismatch

func kfakeDataDir(dir string) []kfake.Opt { return []kfake.Opt{kfake.DataDir(dir), kfake.SyncWrites()} }

func kfakePort(t testing.TB, addr string) kfake.Opt {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return kfake.Ports(n)
}
