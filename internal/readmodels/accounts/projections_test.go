package accounts_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// withPrincipals records every account's first event as appended by its
// own principal, and the later ones as appended by others: a process
// manager on the owner's behalf, an operator, another principal. The owner
// is the principal of the first event, whoever appended the rest.
func withPrincipals(events []log.Event) []log.Event {
	for i := range events {
		e := &events[i]
		owner := "p-" + e.AggregateID
		switch {
		case e.Version == 1:
			e.Principal = owner
		case e.Version%3 == 0:
			e.Principal, e.OnBehalfOf = "process-manager", owner
		case e.Version%3 == 1:
			e.Principal = "ops-" + e.AggregateID
		default:
			e.Principal = owner
		}
	}
	return events
}

// The summary projection and its query give the fold of every account, and
// the principal of its first event as its owner.
func TestSummaryIsTheFold(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	events, states, byID := history(t, 50, 800)
	withPrincipals(events)
	project(t, rdb, root, accounts.SummaryProjection{}, events)
	q := accounts.NewQueries(rdb, root)
	for id, want := range states {
		evs := byID[id]
		got, found, err := q.Summary(ctx, id)
		if err != nil || !found {
			t.Fatalf("summary of %s: found=%v err=%v", id, found, err)
		}
		if got.ID != id || got.Balance != want.Balance || got.Status != string(want.Status) || got.Owner != want.Owner ||
			got.Currency != want.Currency || got.Version != int64(len(evs)) || got.Principal != "p-"+id ||
			!got.OpenedAt.Equal(evs[0].RecordedAt) || !got.UpdatedAt.Equal(evs[len(evs)-1].RecordedAt) {
			t.Fatalf("summary of %s = %+v, the fold of its %d events gives %+v, owned by p-%s", id, got, len(evs), want, id)
		}
	}
	if _, found, err := q.Summary(ctx, "acc-nobody"); err != nil || found {
		t.Fatalf("summary of an unknown account: found=%v err=%v", found, err)
	}
}

// The history keeps each account's owner, the principal of its first event,
// written with version 1 in the same step and in the same hash slot as the
// account's other keys; History and HistoryHead return it with the version
// in one read. A redelivered first event changes nothing (G4).
func TestHistoryKeepsItsOwner(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	events, _, byID := history(t, 40, 600)
	withPrincipals(events)
	project(t, rdb, root, accounts.HistoryProjection{}, events)
	q := accounts.NewQueries(rdb, root)
	for id, evs := range byID {
		page, err := q.History(ctx, id, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		top := int64(len(evs))
		if page.Owner != "p-"+id || page.Version != top || len(page.Entries) != min(2, len(evs)) || page.Entries[0].Version != top {
			t.Fatalf("history of %s: owner %q version %d, %d entries; want p-%s, version %d", id, page.Owner, page.Version, len(page.Entries), id, top)
		}
		v, owner, err := q.HistoryHead(ctx, id)
		if err != nil || v != top || owner != "p-"+id {
			t.Fatalf("head of %s: version %d owner %q (%v); want %d p-%s", id, v, owner, err, top, id)
		}
	}
	if v, owner, err := q.HistoryHead(ctx, "acc-nobody"); err != nil || v != 0 || owner != "" {
		t.Fatalf("head of an unknown account: %d %q %v", v, owner, err)
	}
	if page, err := q.History(ctx, "acc-nobody", 0, 10); err != nil || page.Version != 0 || page.Owner != "" || len(page.Entries) != 0 {
		t.Fatalf("history of an unknown account: %+v %v", page, err)
	}

	// One hash slot per partition: every key but the bookkeeping carries its
	// partition's hash tag, and an account's owner is in its partition.
	layout := readmodels.NewLayout(root, accounts.HistoryName)
	keys, err := rdb.Keys(ctx, root+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k != layout.Meta() && !strings.HasPrefix(k, root+":{"+accounts.HistoryName+":g1:p") {
			t.Fatalf("key %s is outside the partitions' hash tags", k)
		}
	}
	for id := range byID {
		owner, err := rdb.HGet(ctx, layout.Prefix(1, readmodels.PartitionOf(id, partitions))+"owner", id).Result()
		if err != nil || owner != "p-"+id {
			t.Fatalf("owner of %s in its partition: %q %v", id, owner, err)
		}
	}

	// The first event again, as a relay retry would deliver it but said to
	// be someone else's: a duplicate, the owner stays.
	first := events[0]
	if first.Version != 1 {
		t.Fatalf("the history starts with version %d", first.Version)
	}
	first.Principal = "mallory"
	args, err := accounts.HistoryProjection{}.Args(first)
	if err != nil {
		t.Fatal(err)
	}
	steps := readmodels.NewSteps(rdb, layout, accounts.HistoryProjection{})
	res, err := steps.Apply(ctx, readmodels.Batch{Generation: 1, Topic: root + ".account.events",
		Partition: readmodels.PartitionOf(first.AggregateID, partitions), Items: []readmodels.Item{{
			Offset: 0, Stream: readmodels.StreamKey(first.AggregateType, first.AggregateID), ID: first.AggregateID, Version: 1, Args: args,
		}}})
	if err != nil || string(res.Outcomes) != "d" {
		t.Fatalf("the first event again: %q %v, want a duplicate", string(res.Outcomes), err)
	}
	if _, owner, err := q.HistoryHead(ctx, first.AggregateID); err != nil || owner != "p-"+first.AggregateID {
		t.Fatalf("owner after a redelivery: %q %v", owner, err)
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

// The history's entry is written without encoding/json's reflection; it
// must still be the Entry json.Marshal writes, byte for byte, whatever the
// strings hold.
func TestHistoryEntryIsEntrysJSON(t *testing.T) {
	at := time.Date(2026, 12, 4, 5, 6, 7, 890123000, time.FixedZone("x", -7200))
	domain := []account.Event{
		account.AccountOpened{Owner: `Ø "q" <b>&` + "\u2028\xff", Currency: "EUR"},
		account.AccountActivated{},
		account.FundsDeposited{Amount: 120, Currency: "EUR", Source: "sa\\lary\n"},
		account.FundsWithdrawn{Amount: 20, Currency: "EUR", Reason: "rent"},
		account.AccountClosed{Reason: ""},
	}
	for i, ev := range domain {
		for _, corr := range []string{"", "corr-1", `<c"orr>` + "\t\u00e9"} {
			payload, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			e := log.Event{ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: "a1",
				Version: int64(i + 1), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
				RecordedAt: at, Metadata: log.Metadata{CorrelationID: corr, Principal: "p"}}
			args, err := accounts.HistoryProjection{}.Args(e)
			if err != nil {
				t.Fatal(err)
			}
			amount, _ := strconv.ParseInt(args[1], 10, 64)
			// The data is the decoded event marshaled again, as before.
			decoded, err := account.DecodeEvent(e.Type, payload)
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(decoded)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(accounts.Entry{Version: e.Version, Type: e.Type, EventID: e.ID.String(),
				RecordedAt: at.UTC(), CorrelationID: corr, Data: data, Amount: amount})
			if err != nil {
				t.Fatal(err)
			}
			if got := args[0] + `,"balanceAfter":0}`; got != string(want) {
				t.Fatalf("%s with correlation %q: entry\n%s\njson.Marshal writes\n%s", e.Type, corr, got, want)
			}
		}
	}
}

// Balances of 10^14 minor units and more (Lua writes such numbers as 1e+14)
// and beyond 2^53 (a double's exact integers) reach the history's entries
// and the summary exactly.
func TestHugeBalancesAreExact(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	var events []log.Event
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	add := func(ev account.Event) {
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, log.Event{
			ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: "rich", Version: int64(len(events) + 1),
			Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
			RecordedAt: at.Add(time.Duration(len(events)) * time.Second), GlobalPosition: int64(len(events) + 1),
		})
	}
	add(account.AccountOpened{Owner: "Croesus", Currency: "EUR"})
	add(account.AccountActivated{})
	want := []int64{0, 0}
	for _, amount := range []int64{99_999_999_999_999, 1, 8_907_199_254_740_993, 3} {
		add(account.FundsDeposited{Amount: amount, Currency: "EUR", Source: "mine"})
		want = append(want, want[len(want)-1]+amount)
	}
	add(account.FundsWithdrawn{Amount: 9_007_199_254_740_996 - 99_999_999_999_999, Currency: "EUR", Reason: "ships"})
	want = append(want, 99_999_999_999_999)
	if want[5] != 9_007_199_254_740_996 {
		t.Fatalf("the test's balances are %v", want)
	}
	withPrincipals(events)
	project(t, rdb, root, accounts.HistoryProjection{}, events)
	project(t, rdb, root, accounts.SummaryProjection{}, events)
	q := accounts.NewQueries(rdb, root)
	page, err := q.History(ctx, "rich", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(page.Entries), len(want))
	}
	for _, e := range page.Entries {
		if e.BalanceAfter != want[e.Version-1] {
			t.Errorf("version %d: balance after %d, want %d", e.Version, e.BalanceAfter, want[e.Version-1])
		}
	}
	s, found, err := q.Summary(ctx, "rich")
	if err != nil || !found || s.Balance != want[len(want)-1] {
		t.Fatalf("summary: %+v found=%v err=%v, want balance %d", s, found, err, want[len(want)-1])
	}
}
