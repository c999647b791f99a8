package accounts_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/modeltest"
	"github.com/tributary-es/tributary/internal/testenv"
)

const partitions = 8

// project builds generation 1 of p from events and serves it.
func project(t *testing.T, rdb redis.UniversalClient, root string, p readmodels.Projection, events []log.Event) {
	t.Helper()
	modeltest.Project(t, rdb, root, p, partitions, events)
}

// history is two generated histories, the second in USD, with states by id.
func history(t *testing.T, accountsPerCurrency, eventsPerCurrency int) ([]log.Event, map[string]account.State, map[string][]log.Event) {
	t.Helper()
	eur := testenv.GenerateAccounts(accountsPerCurrency, eventsPerCurrency, 11)
	usd := testenv.GenerateAccounts(accountsPerCurrency, eventsPerCurrency, 12)
	for i := range usd.Events {
		usd.Events[i].Payload = bytes.ReplaceAll(usd.Events[i].Payload, []byte(`"currency":"EUR"`), []byte(`"currency":"USD"`))
	}
	byID := make(map[string][]log.Event)
	for _, e := range append(slices.Clone(eur.Events), usd.Events...) {
		byID[e.AggregateID] = append(byID[e.AggregateID], e)
	}
	states := make(map[string]account.State, len(byID))
	for id, evs := range byID {
		states[id] = testenv.FoldAccount(t, evs)
	}
	return append(eur.Events, usd.Events...), states, byID
}

// openAccounts makes the events of n new accounts in currency, each opened;
// the first of them are activated and take the given deposits.
func openAccounts(prefix, currency string, n int, deposits ...int64) []log.Event {
	var events []log.Event
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	add := func(id string, version int64, ev account.Event) {
		payload, _ := json.Marshal(ev)
		events = append(events, log.Event{
			ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: id, Version: version,
			Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
			RecordedAt: at.Add(time.Duration(len(events)) * time.Millisecond), GlobalPosition: int64(len(events) + 1),
		})
	}
	for i := range n {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		add(id, 1, account.AccountOpened{Owner: "owner " + id, Currency: currency})
		if i < len(deposits) {
			add(id, 2, account.AccountActivated{})
			add(id, 3, account.FundsDeposited{Amount: deposits[i], Currency: currency, Source: "salary"})
		}
	}
	return events
}

// The directory ranks open accounts by balance as their folds do. The
// generated history has many accounts at zero balance, and the GBP accounts
// are nearly all at zero, so the top N cuts through ties, which rank by id.
func TestDirectoryTopByBalanceIsTheFold(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	events, states, byID := history(t, 120, 500)
	for _, e := range openAccounts("gbp", "GBP", 60, 500, 900, 700) {
		events = append(events, e)
		byID[e.AggregateID] = append(byID[e.AggregateID], e)
	}
	for id, evs := range byID {
		states[id] = testenv.FoldAccount(t, evs)
	}
	q := accounts.NewQueries(rdb, root)
	if _, err := q.TopByBalance(ctx, "EUR", 3); !errors.Is(err, readmodels.ErrNotReady) {
		t.Fatalf("top by balance before the directory is built: err = %v, want ErrNotReady", err)
	}
	project(t, rdb, root, accounts.DirectoryProjection{}, events)

	for _, currency := range []string{"EUR", "USD", "GBP"} {
		var want []accounts.Ranked
		closed := 0
		for id, s := range states {
			switch {
			case s.Currency != currency:
			case s.Status == account.StatusClosed:
				closed++
			default:
				want = append(want, accounts.Ranked{ID: id, Score: s.Balance})
			}
		}
		slices.SortFunc(want, func(a, b accounts.Ranked) int {
			return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(b.ID, a.ID)) // ties as Redis orders them
		})
		if (currency != "GBP" && closed == 0) || len(want) < 50 || want[len(want)-1].Score != 0 || want[0].Score == 0 {
			t.Fatalf("%s: the history has %d closed and %d open accounts, top %+v: too weak a test",
				currency, closed, len(want), want[0])
		}
		for n := 1; n <= len(want)+2; n++ {
			got, err := q.TopByBalance(ctx, currency, n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[:min(n, len(want))]) {
				t.Fatalf("top %d by balance in %s:\n got %v\nwant %v", n, currency, got, want[:min(n, len(want))])
			}
		}
		pageThrough(t, "by balance in "+currency, want, func(after *accounts.Ranked, limit int) (accounts.DirectoryPage, error) {
			return q.ByBalancePage(ctx, currency, after, limit)
		})
	}
	if got, err := q.TopByBalance(ctx, "JPY", 5); err != nil || len(got) != 0 {
		t.Fatalf("top by balance in a currency nobody holds = %v, %v", got, err)
	}
}

func TestDirectoryByStatusIsTheFold(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	events, states, byID := history(t, 200, 700)
	project(t, rdb, root, accounts.DirectoryProjection{}, events)
	q := accounts.NewQueries(rdb, root)

	for _, status := range []account.Status{account.StatusPending, account.StatusActive, account.StatusClosed} {
		var want []accounts.Ranked
		for id, s := range states {
			if s.Status == status {
				want = append(want, accounts.Ranked{ID: id, Score: byID[id][0].RecordedAt.UnixMilli()})
			}
		}
		slices.SortFunc(want, func(a, b accounts.Ranked) int {
			return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.ID, b.ID))
		})
		if len(want) < 3 {
			t.Fatalf("only %d %s accounts: too weak a test", len(want), status)
		}
		for _, limit := range []int{1, 2, len(want) / 2, len(want), len(want) + 10} {
			got, err := q.ByStatus(ctx, string(status), limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[:min(limit, len(want))]) {
				t.Fatalf("%d %s accounts:\n got %v\nwant %v", limit, status, got, want[:min(limit, len(want))])
			}
		}
		pageThrough(t, string(status), want, func(after *accounts.Ranked, limit int) (accounts.DirectoryPage, error) {
			return q.ByStatusPage(ctx, string(status), after, limit)
		})
	}
}

// pageThrough reads every page of a directory listing at several page sizes
// and wants exactly want, in order: every account once, across partitions
// and through runs of equal scores.
func pageThrough(t *testing.T, what string, want []accounts.Ranked, page func(after *accounts.Ranked, limit int) (accounts.DirectoryPage, error)) {
	t.Helper()
	for _, limit := range []int{1, 3, 7, 50, len(want), len(want) + 1} {
		var got []accounts.Ranked
		var after *accounts.Ranked
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("%s by pages of %d: no end after %d pages", what, limit, pages)
			}
			p, err := page(after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) > limit || (p.Next != nil && len(p.Items) != limit) {
				t.Fatalf("%s by pages of %d: a page of %d items, next %v", what, limit, len(p.Items), p.Next)
			}
			got = append(got, p.Items...)
			if p.Next == nil {
				break
			}
			after = p.Next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s by pages of %d:\n got %v\nwant %v", what, limit, got, want)
		}
	}
}

// The summary projection and its query give the fold of every account.
func TestSummaryIsTheFold(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	events, states, byID := history(t, 50, 800)
	project(t, rdb, root, accounts.SummaryProjection{}, events)
	q := accounts.NewQueries(rdb, root)
	for id, want := range states {
		evs := byID[id]
		got, found, err := q.Summary(ctx, id)
		if err != nil || !found {
			t.Fatalf("summary of %s: found=%v err=%v", id, found, err)
		}
		if got.ID != id || got.Balance != want.Balance || got.Status != string(want.Status) || got.Owner != want.Owner ||
			got.Currency != want.Currency || got.Version != int64(len(evs)) ||
			!got.OpenedAt.Equal(evs[0].RecordedAt) || !got.UpdatedAt.Equal(evs[len(evs)-1].RecordedAt) {
			t.Fatalf("summary of %s = %+v, the fold of its %d events gives %+v", id, got, len(evs), want)
		}
	}
	if _, found, err := q.Summary(ctx, "acc-nobody"); err != nil || found {
		t.Fatalf("summary of an unknown account: found=%v err=%v", found, err)
	}
}

// A limit below one asks for nothing: the queries answer no account
// instead of panicking.
func TestDirectoryQueriesWithoutALimit(t *testing.T) {
	rdb, root := testenv.Redis(t)
	project(t, rdb, root, accounts.DirectoryProjection{}, openAccounts("eur", "EUR", 20, 300, 100))
	q := accounts.NewQueries(rdb, root)
	queries := map[string]func(n int) ([]accounts.Ranked, error){
		"TopByBalance": func(n int) ([]accounts.Ranked, error) { return q.TopByBalance(context.Background(), "EUR", n) },
		"ByStatus":     func(n int) ([]accounts.Ranked, error) { return q.ByStatus(context.Background(), "pending", n) },
	}
	for name, query := range queries {
		for _, n := range []int{0, -1, -5} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s(%d) panicked: %v", name, n, r)
					}
				}()
				if got, err := query(n); err != nil || len(got) != 0 {
					t.Errorf("%s(%d) = %v, %v; want no account", name, n, got, err)
				}
			}()
		}
	}
}
