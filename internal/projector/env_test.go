package projector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/schemas"
)

const partitions = 8

// env is one test's Kafka cluster, Redis prefix and projector settings.
type env struct {
	t       testing.TB
	addrs   []string
	rdb     *redis.Client
	prefix  string
	cfg     projector.Config
	schemas *log.Schemas
	client  *kgo.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := testenv.Kafka(t)
	rdb, prefix := testenv.Redis(t)
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	cfg := projector.DefaultConfig()
	cfg.Client = []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cfg.Topics = kafka.Topics{Prefix: prefix, Partitions: partitions, ReplicationFactor: -1}
	cfg.GroupPrefix = prefix
	cfg.RedisPrefix = prefix
	cfg.Poll = 100 * time.Millisecond
	cfg.RetryBackoff = 10 * time.Millisecond
	cfg.DropGrace = 200 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	e := &env{t: t, addrs: c.ListenAddrs(), rdb: rdb, prefix: prefix, cfg: cfg, schemas: sch}
	e.client = testenv.KafkaClient(t, e.addrs)
	ctx := context.Background()
	if err := cfg.Topics.Ensure(ctx, e.client, cfg.Topics.For(account.AggregateType)); err != nil {
		t.Fatal(err)
	}
	return e
}

// projector returns a projector of p with its own metrics registry.
func (e *env) projector(p readmodels.Projection, reg *prometheus.Registry) *projector.Projector {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return projector.New(p, e.cfg, projector.Deps{
		Redis: e.rdb, Schemas: e.schemas, Upcasters: registered.Upcasters(), Metrics: projector.NewMetrics(reg),
	})
}

// consumer returns a consumer of the projections, as one process runs
// them: one metrics registry and one set of dependencies.
func (e *env) consumer(reg *prometheus.Registry, projections ...readmodels.Projection) *projector.Consumer {
	e.t.Helper()
	return e.hookedConsumer(reg, nil, projections...)
}

// hookedConsumer is consumer with test hooks by projection name.
func (e *env) hookedConsumer(reg *prometheus.Registry, hooks map[string]projector.Hooks, projections ...readmodels.Projection) *projector.Consumer {
	e.t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	// The consumer's log goes to the test's output: shown when it fails.
	logger := slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	deps := projector.Deps{Redis: e.rdb, Schemas: e.schemas, Upcasters: registered.Upcasters(), Metrics: projector.NewMetrics(reg), Logger: logger}
	ps := make([]*projector.Projector, len(projections))
	for i, p := range projections {
		ps[i] = projector.New(p, e.cfg, deps).WithHooks(hooks[p.Name()])
	}
	c, err := projector.NewConsumer(ps...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// runner is a projector or a consumer.
type runner interface {
	Run(ctx context.Context) error
}

// run runs pr until the returned stop is called (or the test ends).
func (e *env) run(pr runner) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = pr.Run(ctx)
	}()
	stop = func() error {
		once.Do(func() { cancel(); <-done })
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	return stop
}

// produce puts events on their topic, keyed by aggregate id.
func (e *env) produce(events []log.Event) {
	e.t.Helper()
	recs := make([]*kgo.Record, len(events))
	for i, ev := range events {
		recs[i] = kafka.NewRecord(ev, e.cfg.Topics.For(ev.AggregateType), "test")
	}
	for start := 0; start < len(recs); start += 5000 {
		if err := e.client.ProduceSync(context.Background(), recs[start:min(start+5000, len(recs))]...).FirstErr(); err != nil {
			e.t.Fatalf("produce: %v", err)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// history generates a valid event history over n accounts, count events in
// all, interleaved across accounts, with global positions in order.
type history struct {
	events []log.Event
	byID   map[string][]log.Event
}

func generate(n, count int, seed uint64) *history {
	rng := rand.New(rand.NewPCG(seed, 1))
	h := &history{byID: make(map[string][]log.Event)}
	states := make([]account.State, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("acc-%d-%05d", seed, i)
		states[i] = account.Initial(ids[i])
	}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	emit := func(i int, ev account.Event) {
		id := ids[i]
		payload, _ := json.Marshal(ev)
		e := log.Event{
			ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: id,
			Version: int64(len(h.byID[id]) + 1), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(),
			Payload: payload, RecordedAt: base.Add(time.Duration(len(h.events)) * time.Millisecond),
			GlobalPosition: int64(len(h.events) + 1),
			Metadata:       log.Metadata{CorrelationID: "corr-" + id + "-" + fmt.Sprint(len(h.byID[id])/3), CausationID: uuid.NewString(), Principal: "test"},
		}
		h.events = append(h.events, e)
		h.byID[id] = append(h.byID[id], e)
		states[i] = account.Evolve(states[i], ev)
	}
	for len(h.events) < count {
		i := rng.IntN(n)
		s := states[i]
		switch {
		case s.Status == account.StatusNone:
			emit(i, account.AccountOpened{Owner: "owner " + ids[i], Currency: "EUR"})
		case s.Status == account.StatusPending:
			emit(i, account.AccountActivated{})
		case s.Status == account.StatusClosed:
			continue
		case s.Balance > 0 && rng.IntN(3) == 0:
			emit(i, account.FundsWithdrawn{Amount: 1 + rng.Int64N(s.Balance), Currency: "EUR", Reason: "rent"})
		case s.Balance == 0 && rng.IntN(40) == 0:
			emit(i, account.AccountClosed{Reason: "moving"})
		default:
			emit(i, account.FundsDeposited{Amount: 1 + rng.Int64N(100_000), Currency: "EUR", Source: "salary"})
		}
	}
	return h
}

// fold is the summary an account's events should give.
func fold(t testing.TB, events []log.Event) account.State {
	t.Helper()
	var domain []account.Event
	for _, e := range events {
		ev, err := account.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		domain = append(domain, ev)
	}
	return account.Fold(events[0].AggregateID, domain)
}

// caughtUp tells whether proj's active generation holds the last version of
// every account in h.
func (e *env) caughtUp(q *accounts.Queries, h *history) func() (bool, error) {
	return func() (bool, error) {
		for id, evs := range h.byID {
			s, found, err := q.Summary(context.Background(), id)
			if err != nil || !found || s.Version < int64(len(evs)) {
				return false, nil
			}
		}
		return true, nil
	}
}

// checkSummaries compares every account's summary with the fold of its events.
func (e *env) checkSummaries(q *accounts.Queries, h *history) {
	e.t.Helper()
	ctx := context.Background()
	for id, evs := range h.byID {
		want := fold(e.t, evs)
		got, found, err := q.Summary(ctx, id)
		if err != nil || !found {
			e.t.Fatalf("summary of %s: found=%v err=%v", id, found, err)
		}
		if got.Balance != want.Balance || got.Status != string(want.Status) || got.Owner != want.Owner ||
			got.Currency != want.Currency || got.Version != int64(len(evs)) {
			e.t.Fatalf("summary of %s = %+v, the fold of its %d events gives %+v", id, got, len(evs), want)
		}
		if !got.OpenedAt.Equal(evs[0].RecordedAt) || !got.UpdatedAt.Equal(evs[len(evs)-1].RecordedAt) {
			e.t.Fatalf("summary of %s: opened %v updated %v, want %v %v", id, got.OpenedAt, got.UpdatedAt, evs[0].RecordedAt, evs[len(evs)-1].RecordedAt)
		}
	}
}

// checkHistories checks that every account's history holds each of its
// events once, newest first, with the running balance.
func (e *env) checkHistories(q *accounts.Queries, h *history) {
	e.t.Helper()
	ctx := context.Background()
	for id, evs := range h.byID {
		var got []accounts.Entry
		for cursor := int64(0); ; {
			page, err := q.History(ctx, id, cursor, 7)
			if err != nil {
				e.t.Fatal(err)
			}
			got = append(got, page.Entries...)
			if page.Next == 0 {
				break
			}
			cursor = page.Next
		}
		if len(got) != len(evs) {
			e.t.Fatalf("history of %s has %d entries, want %d", id, len(got), len(evs))
		}
		for i, entry := range got {
			want := evs[len(evs)-1-i]
			if entry.Version != want.Version || entry.EventID != want.ID.String() || entry.Type != want.Type {
				e.t.Fatalf("history of %s entry %d = v%d %s %s, want v%d %s %s", id, i, entry.Version, entry.Type, entry.EventID, want.Version, want.Type, want.ID)
			}
			if wantBal := fold(e.t, evs[:want.Version]).Balance; entry.BalanceAfter != wantBal {
				e.t.Fatalf("history of %s v%d: balanceAfter %d, want %d", id, entry.Version, entry.BalanceAfter, wantBal)
			}
		}
	}
}
