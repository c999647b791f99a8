package transfers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/schemas"
)

// env is an event store with its relay to an in-process Kafka, and the two
// command handlers, for one test.
type env struct {
	t         *testing.T
	store     *postgres.Store
	accounts  *Accounts
	transfers *Transfers
	brokers   []string
	topics    kafka.Topics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	pool := testenv.PostgresPool(t, dbURL)
	cluster := testenv.Kafka(t)
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, testUpcasters())
	e := &env{
		t: t, store: store, brokers: cluster.ListenAddrs(),
		accounts:  aggregate.NewHandler(account.Aggregate(), store, sch, aggregate.Options{}),
		transfers: aggregate.NewHandler(transfer.Aggregate(), store, sch, aggregate.Options{}),
		topics:    kafka.Topics{Prefix: "tributary", Partitions: 8, ReplicationFactor: -1},
	}
	rcfg := relay.DefaultConfig()
	rcfg.Topics = e.topics
	rcfg.AggregateTypes = []string{account.AggregateType, transfer.AggregateType}
	rcfg.PollInterval = 2 * time.Millisecond
	client := testenv.KafkaClient(t, e.brokers, relay.ProducerOptions(5*time.Second)...)
	rl := relay.New(rcfg, dbURL, pool, testUpcasters(), client, relay.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler), relay.Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// project runs the account summary and the transfers projections into a
// Redis prefix of the test's own, and returns their queries.
func (e *env) project() (*accounts.Queries, *transferview.Queries) {
	e.t.Helper()
	rdb, prefix := testenv.Redis(e.t)
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := projector.DefaultConfig()
	cfg.Client = []kgo.Opt{kgo.SeedBrokers(e.brokers...)}
	cfg.Topics = e.topics
	cfg.GroupPrefix, cfg.RedisPrefix = prefix, prefix
	cfg.Poll = 50 * time.Millisecond
	deps := projector.Deps{Redis: rdb, Schemas: sch, Upcasters: testUpcasters(),
		Metrics: projector.NewMetrics(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range []readmodels.Projection{accounts.SummaryProjection{}, transferview.Projection{}} {
		pr := projector.New(p, cfg, deps)
		wg.Go(func() { _ = pr.Run(ctx) })
	}
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	views := readmodels.NewViews(rdb, 0)
	return accounts.NewQueriesWithViews(rdb, prefix, views), transferview.NewQueries(rdb, prefix, views)
}

// manager starts a process manager; stop ends it as a crash would, in the
// middle of whatever it is doing.
func (e *env) manager(afterStep func(id, step string) error) (stop func()) {
	steps := NewSteps(e.store, e.accounts, e.transfers, 2*time.Second, slog.New(slog.DiscardHandler))
	steps.afterStep = afterStep
	cfg := DefaultConfig()
	cfg.Client = []kgo.Opt{kgo.SeedBrokers(e.brokers...)}
	cfg.Topics = e.topics
	cfg.RetryBackoff, cfg.MaxBackoff = 5*time.Millisecond, 100*time.Millisecond
	m := NewManager(cfg, steps, testUpcasters(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

func (e *env) account(id string, c account.Command) {
	e.t.Helper()
	if _, err := e.accounts.Handle(context.Background(), aggregate.Request[account.Command]{AggregateID: id, Command: c,
		Metadata: log.Metadata{CorrelationID: "setup-" + id, CausationID: uuid.NewString(), Principal: "test"}}); err != nil {
		e.t.Fatalf("%s %T: %v", id, c, err)
	}
}

// request starts a transfer as the writer's API would; it returns its id.
func (e *env) request(from, to string, amount int64, currency string) (string, log.Event) {
	e.t.Helper()
	return e.requestAs("test", from, to, amount, currency)
}

// requestAs starts a transfer requested by principal.
func (e *env) requestAs(principal, from, to string, amount int64, currency string) (string, log.Event) {
	e.t.Helper()
	id := NewTransferID()
	res, err := e.transfers.Handle(context.Background(), aggregate.Request[transfer.Command]{AggregateID: id,
		Command:  transfer.RequestTransfer{From: from, To: to, Amount: amount, Currency: currency, Reference: "test"},
		Metadata: log.Metadata{CorrelationID: "corr-" + id, CausationID: "cmd-" + id, Principal: principal}})
	if err != nil {
		e.t.Fatal(err)
	}
	return id, res.Events[0]
}

func (e *env) stream(typ, id string) []log.Event {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), postgres.StreamQuery{AggregateType: typ, AggregateID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *env) waitEnded(ids []string, d time.Duration) map[string]transfer.State {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		states := make(map[string]transfer.State, len(ids))
		pending := 0
		for _, id := range ids {
			st, _, err := e.transfers.Load(context.Background(), id)
			if err != nil {
				e.t.Fatal(err)
			}
			states[id] = st
			if st.Status == transfer.StatusRequested {
				pending++
			}
		}
		if pending == 0 {
			return states
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d of %d transfers still running after %v", pending, len(ids), d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errCrash = errors.New("crash between steps")

// Acceptance 1: 1,000 random transfers among 50 accounts, some to closed,
// inactive or other-currency accounts and some beyond the source's funds,
// with the process manager stopped mid-work and restarted several times,
// and steps "crashing" right after their command: afterwards the sum of the
// balances is unchanged, every transfer completed or failed (refunded when
// its source was debited), no account is negative, and each transfer moved
// its money at most once.
func TestTransfersConserveMoneyThroughCrashes(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(8, 8))
	var ids []string
	var total int64
	for i := range 50 {
		id := fmt.Sprintf("acc-%02d", i)
		currency := "EUR"
		if i%17 == 16 {
			currency = "USD" // a deposit in EUR is refused: refund
		}
		deposit := int64(20_000 + rng.IntN(30_000))
		if i%10 == 9 {
			deposit = 0
		}
		e.account(id, account.OpenAccount{ID: id, Owner: "o", Currency: currency, InitialDeposit: deposit})
		total += deposit
		switch {
		case i%10 == 8: // stays pending: deposits to it are refused
		case i%10 == 9: // closed
			e.account(id, account.ActivateAccount{})
			e.account(id, account.CloseAccount{Reason: "gone"})
		default:
			e.account(id, account.ActivateAccount{})
		}
		ids = append(ids, id)
	}

	var crashes atomic.Int64
	crashy := func(string, string) error {
		if rand.IntN(40) == 0 {
			crashes.Add(1)
			return errCrash
		}
		return nil
	}
	summaries, views := e.project()
	stop := e.manager(crashy)
	var transfers []string
	requested := make(map[string]log.Event)
	for i := range 1000 {
		from, to := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
		for to == from {
			to = ids[rng.IntN(len(ids))]
		}
		id, ev := e.requestAs(fmt.Sprintf("user:%d", i%7), from, to, int64(1+rng.IntN(8000)), "EUR")
		transfers = append(transfers, id)
		requested[id] = ev
		if i%200 == 199 { // a crash of the whole manager, and a new one
			stop()
			stop = e.manager(crashy)
		}
	}
	states := e.waitEnded(transfers, 3*time.Minute)

	var sum int64
	folded := make(map[string]account.State)
	withdrawn := make(map[string]int)
	deposited := make(map[string]int)
	refunds := make(map[string]int)
	for _, id := range ids {
		var s account.State
		for _, ev := range e.stream(account.AggregateType, id) {
			a, err := account.DecodeEvent(ev.Type, ev.Payload)
			if err != nil {
				t.Fatal(err)
			}
			s = account.Evolve(s, a)
			if s.Balance < 0 {
				t.Fatalf("%s went negative: %d at v%d", id, s.Balance, ev.Version)
			}
			switch a := a.(type) {
			case account.FundsWithdrawn:
				if tid, ok := TransferOf(ev); ok {
					withdrawn[tid]++
					checkOnBehalf(t, ev, requested[tid].Principal)
				}
			case account.FundsDeposited:
				if tid, ok := TransferOf(ev); ok {
					deposited[tid]++
					checkOnBehalf(t, ev, requested[tid].Principal)
				} else if len(a.Source) > len("refund:transfer:") && a.Source[:len("refund:transfer:")] == "refund:transfer:" {
					tid := a.Source[len("refund:transfer:"):]
					refunds[tid]++
					checkOnBehalf(t, ev, requested[tid].Principal)
				}
			}
		}
		sum += s.Balance
		folded[id] = s
	}
	if sum != total {
		t.Fatalf("the balances sum to %d, %d went in: money was created or lost", sum, total)
	}
	var completed, failedRefunded, failedUntouched int
	for _, id := range transfers {
		// Who asked survives crashes and restarts: the steps redone or
		// replayed record the requester too.
		for _, ev := range e.stream(transfer.AggregateType, id)[1:] {
			checkOnBehalf(t, ev, requested[id].Principal)
		}
		st := states[id]
		w, d, r := withdrawn[id], deposited[id], refunds[id]
		switch {
		case st.Status == transfer.StatusCompleted && w == 1 && d == 1 && r == 0:
			completed++
		case st.Status == transfer.StatusFailed && w == 1 && d == 0 && r == 1:
			failedRefunded++
		case st.Status == transfer.StatusFailed && w == 0 && d == 0 && r == 0:
			failedUntouched++
		default:
			t.Errorf("transfer %s %s (%s): withdrawn %d, deposited %d, refunded %d times", id, st.Status, st.Reason, w, d, r)
		}
	}
	// The read models equal the fold of the event store.
	ctx := context.Background()
	waitFor(t, time.Minute, "the read models catch up", func() bool {
		for _, id := range ids {
			got, found, err := summaries.Summary(ctx, id)
			if err != nil || !found || got.Version != int64(len(e.stream(account.AggregateType, id))) {
				return false
			}
		}
		for _, id := range transfers {
			got, found, err := views.Get(ctx, id)
			if err != nil || !found || got.Status == string(transfer.StatusRequested) {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		got, _, _ := summaries.Summary(ctx, id)
		if w := folded[id]; got.Balance != w.Balance || got.Status != string(w.Status) || got.Currency != w.Currency {
			t.Errorf("summary of %s: %+v, the fold: %+v", id, got, w)
		}
	}
	for _, id := range transfers {
		got, _, _ := views.Get(ctx, id)
		w := states[id]
		if got.Status != string(w.Status) || got.Reason != w.Reason || got.Amount != w.Amount || got.From != w.From || got.To != w.To ||
			got.Refunded != (refunds[id] == 1) {
			t.Errorf("transfer %s read as %+v, the fold: %+v (refunded %d)", id, got, w, refunds[id])
		}
	}
	t.Logf("%d completed, %d failed and refunded, %d failed before any money moved; %d step crashes, 5 manager restarts",
		completed, failedRefunded, failedUntouched, crashes.Load())
	if completed < 100 || failedRefunded < 20 || failedUntouched < 20 || crashes.Load() < 5 {
		t.Fatalf("too weak a run: %d completed, %d refunded, %d untouched, %d crashes", completed, failedRefunded, failedUntouched, crashes.Load())
	}
}

// Acceptance 2: a transfer's events form one causation chain under one
// correlation id — TransferRequested → FundsWithdrawn → FundsDeposited →
// TransferCompleted — and a refused deposit the compensation branch
// TransferRequested → FundsWithdrawn → FundsDeposited (refund) →
// TransferFailed.
func TestCausationChains(t *testing.T) {
	e := newEnv(t)
	e.account("a", account.OpenAccount{ID: "a", Owner: "A", Currency: "EUR", InitialDeposit: 1000})
	e.account("a", account.ActivateAccount{})
	e.account("b", account.OpenAccount{ID: "b", Owner: "B", Currency: "EUR"})
	e.account("b", account.ActivateAccount{})
	e.account("c", account.OpenAccount{ID: "c", Owner: "C", Currency: "EUR"}) // pending: refuses deposits
	e.manager(nil)
	ok, okReq := e.request("a", "b", 300, "EUR")
	bad, badReq := e.request("a", "c", 200, "EUR")
	states := e.waitEnded([]string{ok, bad}, time.Minute)
	if states[ok].Status != transfer.StatusCompleted || states[bad].Status != transfer.StatusFailed {
		t.Fatalf("states: %+v", states)
	}

	byID := make(map[string]log.Event)
	for _, s := range [][2]string{{"account", "a"}, {"account", "b"}, {"account", "c"}, {"transfer", ok}, {"transfer", bad}} {
		for _, ev := range e.stream(s[0], s[1]) {
			byID[ev.ID.String()] = ev
		}
	}
	chain := func(last log.Event) []string {
		var types []string
		for ev, found := last, true; found; ev, found = byID[ev.CausationID] {
			types = append([]string{ev.Type + "@" + ev.AggregateID}, types...)
			if ev.CorrelationID != last.CorrelationID {
				t.Errorf("%s of %s has correlation %s, not %s", ev.Type, ev.AggregateID, ev.CorrelationID, last.CorrelationID)
			}
		}
		return types
	}
	lastOf := func(id string) log.Event { evs := e.stream("transfer", id); return evs[len(evs)-1] }
	if got, want := fmt.Sprint(chain(lastOf(ok))), fmt.Sprint([]string{"TransferRequested@" + ok, "FundsWithdrawn@a", "FundsDeposited@b", "TransferCompleted@" + ok}); got != want {
		t.Errorf("completed chain %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(chain(lastOf(bad))), fmt.Sprint([]string{"TransferRequested@" + bad, "FundsWithdrawn@a", "FundsDeposited@a", "TransferFailed@" + bad}); got != want {
		t.Errorf("refund chain %s, want %s", got, want)
	}
	if okReq.CausationID != "cmd-"+ok || badReq.CorrelationID != "corr-"+bad {
		t.Errorf("the requests' own metadata: %+v %+v", okReq, badReq)
	}
	if a := account.Fold("a", decodeAll(t, e.stream("account", "a"))); a.Balance != 700 {
		t.Errorf("a holds %d, want 700 (1000 - 300, the 200 refunded)", a.Balance)
	}
}

// checkOnBehalf checks that ev, appended by the process manager, records it
// as acting for requester.
func checkOnBehalf(t *testing.T, ev log.Event, requester string) {
	t.Helper()
	if ev.Principal != Principal || ev.OnBehalfOf != requester || requester == "" {
		t.Errorf("%s of %s v%d recorded as %q on behalf of %q, want %q on behalf of %q",
			ev.Type, ev.AggregateID, ev.Version, ev.Principal, ev.OnBehalfOf, Principal, requester)
	}
}

// G11: every event the process manager appends for a transfer records it
// acting on behalf of whoever requested the transfer, read back from
// Postgres: the withdrawal, the deposit and the completion; the withdrawal,
// the refund and the failure of a refused deposit; the failure of a refused
// withdrawal. Requests by other principals in between are not mixed up.
func TestStepsAreRecordedOnBehalfOfTheRequester(t *testing.T) {
	e := newEnv(t)
	e.account("a", account.OpenAccount{ID: "a", Owner: "A", Currency: "EUR", InitialDeposit: 1000})
	e.account("a", account.ActivateAccount{})
	e.account("b", account.OpenAccount{ID: "b", Owner: "B", Currency: "EUR"})
	e.account("b", account.ActivateAccount{})
	e.account("c", account.OpenAccount{ID: "c", Owner: "C", Currency: "EUR"}) // pending: refuses deposits
	e.manager(nil)
	ok, _ := e.requestAs("user:alice", "a", "b", 300, "EUR")
	refunded, _ := e.requestAs("user:bob", "a", "c", 200, "EUR")
	refused, _ := e.requestAs("user:carol", "b", "a", 5000, "EUR") // beyond b's funds
	states := e.waitEnded([]string{ok, refunded, refused}, time.Minute)
	if states[ok].Status != transfer.StatusCompleted || states[refunded].Status != transfer.StatusFailed || states[refused].Status != transfer.StatusFailed {
		t.Fatalf("states: %+v", states)
	}

	steps := map[string][]string{} // transfer id -> "type@aggregate on behalf of x" of the manager's events
	record := func(tid string, ev log.Event) {
		if ev.Principal != Principal {
			t.Errorf("%s of %s v%d for transfer %s recorded as %q, want %q", ev.Type, ev.AggregateID, ev.Version, tid, ev.Principal, Principal)
		}
		steps[tid] = append(steps[tid], ev.Type+"@"+ev.AggregateID+" for "+ev.OnBehalfOf)
	}
	for _, acc := range []string{"a", "b", "c"} {
		for _, ev := range e.stream(account.AggregateType, acc) {
			var p struct{ Source string }
			_ = json.Unmarshal(ev.Payload, &p)
			if tid, isStep := TransferOf(ev); isStep {
				record(tid, ev)
			} else if tid, isRefund := strings.CutPrefix(p.Source, "refund:transfer:"); isRefund {
				record(tid, ev)
			} else if ev.Principal != "test" || ev.OnBehalfOf != "" {
				t.Errorf("setup event %s of %s recorded as %q on behalf of %q", ev.Type, acc, ev.Principal, ev.OnBehalfOf)
			}
		}
	}
	for _, tid := range []string{ok, refunded, refused} {
		evs := e.stream(transfer.AggregateType, tid)
		if evs[0].Principal == Principal || evs[0].OnBehalfOf != "" {
			t.Errorf("the request of %s recorded as %q on behalf of %q, want the requester for itself", tid, evs[0].Principal, evs[0].OnBehalfOf)
		}
		for _, ev := range evs[1:] {
			record(tid, ev)
		}
	}
	want := map[string][]string{
		ok:       {"FundsWithdrawn@a for user:alice", "FundsDeposited@b for user:alice", "TransferCompleted@" + ok + " for user:alice"},
		refunded: {"FundsWithdrawn@a for user:bob", "FundsDeposited@a for user:bob", "TransferFailed@" + refunded + " for user:bob"},
		refused:  {"TransferFailed@" + refused + " for user:carol"},
	}
	for tid, w := range want {
		got := steps[tid]
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("the manager's events of transfer %s: %q, want %q", tid, got, w)
		}
	}
	if len(steps) != len(want) {
		t.Errorf("the manager's events name %d transfers, want %d: %v", len(steps), len(want), steps)
	}
}

func decodeAll(t *testing.T, evs []log.Event) []account.Event {
	t.Helper()
	out := make([]account.Event, len(evs))
	for i, ev := range evs {
		a, err := account.DecodeEvent(ev.Type, ev.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testUpcasters are the upcasters of the events the manager reads (the
// account domain's registration holds the same; this package's tests
// cannot import it without a cycle).
func testUpcasters() *log.Upcasters {
	return log.NewUpcasters().Register(account.AggregateType, "FundsDeposited", 1, account.UpcastFundsDepositedV1)
}
