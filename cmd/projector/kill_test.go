package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/testenv"
)

// childEnv makes the test binary run the projector (as main does, on the
// fixture domain) instead of the tests: a real process that can be killed
// without a chance to clean up.
const childEnv = "TRIBUTARY_PROJECTOR_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// main, on the fixture domain.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, fixture, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "projector:", err)
			os.Exit(config.ExitCode(err))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a projector process.
type child struct {
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	done   chan struct{}
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	c := &child{cmd: cmd, stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("projector output:\n%s", c.stderr.String())
		}
	})
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

func (c *child) terminate(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("projector did not stop within 30s of SIGTERM")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("projector exited %d after SIGTERM:\n%s", code, c.stderr.String())
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// Acceptance 2: a projector killed mid-stream (SIGKILL) and restarted, and a
// second member joining and leaving during consumption: the read models
// still equal the fold — nothing lost, nothing applied twice.
func TestKilledAndRebalancedProjectorsLoseNothingAndApplyNothingTwice(t *testing.T) {
	cluster := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	args := []string{"run", "--kafka-brokers", brokers, "--kafka-topic-prefix", prefix, "--kafka-partitions", "8",
		"--redis-prefix", prefix, "--group-prefix", prefix, "--projections", "counter-summary,counter-log",
		"--session-timeout", "6s", "--poll", "100ms", "--batch-size", "40", "--http-addr", "127.0.0.1:0", "--log-level", "warn"}
	topics := kafka.Topics{Prefix: prefix, Partitions: 8, ReplicationFactor: -1}
	cl := testenv.KafkaClient(t, cluster.ListenAddrs())
	if err := topics.Ensure(context.Background(), cl, topics.For(domaintest.AggregateType)); err != nil {
		t.Fatal(err)
	}
	h := domaintest.Generate(1000, 20_000, 7, "test")
	produce := func(events []log.Event) {
		recs := make([]*kgo.Record, len(events))
		for i, e := range events {
			recs[i] = kafka.NewRecord(e, topics.For(domaintest.AggregateType), "test")
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	q := domaintest.NewQueries(rdb, prefix, nil)
	applied := func() int64 {
		var n int64
		for id := range h.ByID {
			if s, found, err := q.Summary(context.Background(), id); err == nil && found {
				n += s.Version
			}
		}
		return n
	}

	// positions sums the stored offsets of the summary's first generation:
	// one cheap round trip, so the kill lands mid-stream.
	layout := readmodels.NewLayout(prefix, domaintest.SummaryName)
	positions := func() int64 {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, 8)
		for p := range int32(8) {
			cmds[p] = pipe.HGet(context.Background(), layout.Position(1, p), "next:"+topics.For(domaintest.AggregateType))
		}
		_, _ = pipe.Exec(context.Background())
		var n int64
		for _, c := range cmds {
			v, _ := c.Int64()
			n += v
		}
		return n
	}

	produce(h.Events[:8000])
	a := startChild(t, args...)
	waitUntil(t, 60*time.Second, "first member applies some events", func() bool { return positions() > 200 })
	a.kill(t)
	killedAt := positions()
	if killedAt >= 8000 {
		t.Fatalf("the projector finished (%d events) before it was killed: the test proves nothing", killedAt)
	}
	t.Logf("killed with %d of 8000 events applied", killedAt)

	produce(h.Events[8000:14000])
	b := startChild(t, args...)
	waitUntil(t, 60*time.Second, "restarted member makes progress", func() bool { return applied() > killedAt+500 })
	c := startChild(t, args...) // a second member joins mid-stream
	adm := kadm.NewClient(cl)
	group := projector.ConsumerGroup(prefix, []string{domaintest.SummaryName, domaintest.LogName})
	waitUntil(t, 60*time.Second, "the second member joins the group", func() bool {
		described, err := adm.DescribeGroups(context.Background(), group)
		return err == nil && len(described[group].Members) == 2 && described[group].State == "Stable"
	})
	produce(h.Events[14000:])
	waitUntil(t, 60*time.Second, "two members make progress", func() bool { return applied() > 15000 })
	c.terminate(t) // and leaves mid-stream
	// The summary and the log are separate workers of one consumer: wait
	// for both before comparing.
	logApplied := func() int64 {
		var n int64
		for id := range h.ByID {
			if _, _, v, err := q.Log(context.Background(), id); err == nil {
				n += v
			}
		}
		return n
	}
	waitUntil(t, 90*time.Second, "all events applied", func() bool {
		return applied() == int64(len(h.Events)) && logApplied() == int64(len(h.Events))
	})
	b.terminate(t)

	for id, evs := range h.ByID {
		want, err := domaintest.Fold(evs)
		if err != nil {
			t.Fatal(err)
		}
		got, found, err := q.Summary(context.Background(), id)
		if err != nil || !found {
			t.Fatalf("summary of %s: found=%v err=%v", id, found, err)
		}
		if got.Value != want.Value || got.Status != string(want.Status) || got.Version != int64(len(evs)) {
			t.Fatalf("summary of %s = value %d status %s v%d; the fold of its %d events gives value %d status %s",
				id, got.Value, got.Status, got.Version, len(evs), want.Value, want.Status)
		}
		ids, value, version, err := q.Log(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(evs) || version != int64(len(evs)) {
			t.Fatalf("log of %s has %d entries at version %d, want %d", id, len(ids), version, len(evs))
		}
		for i, e := range evs {
			if ids[i] != e.ID.String() {
				t.Fatalf("log of %s entry %d is %s, want %s", id, i, ids[i], e.ID)
			}
		}
		if value != want.Value {
			t.Fatalf("log of %s ends at value %d, want %d", id, value, want.Value)
		}
	}
}

// The projector's tests run it on the platform's fixture domain (package
// domaintest): counters.
var fixture = domaintest.Registry()
