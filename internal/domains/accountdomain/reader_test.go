package accountdomain_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/writer"
)

// G6: after every command, a read naming the writer's version returns that
// version or a newer one — 1,000 times, over eight accounts written and
// read concurrently, alternating the query parameter and the header (with
// the writer's ETag as it came), the summary and the history.
func TestReadYourWritesEveryTime(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	const workers, runs = 8, 125
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		id := fmt.Sprintf("ryw-%d", w)
		banktest.OpenAccount(p, id, 0)
		wg.Go(func() {
			balance := int64(0)
			for i := range runs {
				amount := int64(100 + i)
				r := p.Do(p.Writer, http.MethodPost, "/v1/accounts/"+id+"/deposits",
					fmt.Sprintf(`{"amount":%d,"currency":"EUR","source":"salary"}`, amount))
				if r.Status != http.StatusOK {
					t.Errorf("deposit: %d %s", r.Status, r.Body)
					return
				}
				balance += amount
				var c struct{ StreamVersion int64 }
				r.JSON(t, &c)
				etag := r.Header.Get("ETag")
				switch i % 3 {
				case 0, 1:
					var got accounts.Summary
					var q readertest.Response
					if i%3 == 0 {
						q = p.Read("/v1/accounts/" + id + "?min_version=" + strconv.FormatInt(c.StreamVersion, 10))
					} else {
						q = p.Read("/v1/accounts/"+id, reader.MinVersionHeader, etag)
					}
					if q.Status != http.StatusOK {
						t.Errorf("read %s at least v%d: %d %s", id, c.StreamVersion, q.Status, q.Body)
						return
					}
					q.JSON(t, &got)
					// Only this worker writes to id, so the version is exact.
					if got.Version != c.StreamVersion || got.Balance != balance || q.Header.Get("ETag") != etag {
						t.Errorf("read %s at least v%d: version %d balance %d ETag %s; want v%d balance %d ETag %s",
							id, c.StreamVersion, got.Version, got.Balance, q.Header.Get("ETag"), c.StreamVersion, balance, etag)
						return
					}
				case 2:
					q := p.Read("/v1/accounts/" + id + "/transactions?limit=1&min_version=" + strconv.FormatInt(c.StreamVersion, 10))
					var page accountdomain.Transactions
					q.JSON(t, &page)
					if q.Status != http.StatusOK || len(page.Items) != 1 || page.Items[0].Version != c.StreamVersion ||
						page.Items[0].BalanceAfter != balance {
						t.Errorf("history of %s at least v%d: %d %s", id, c.StreamVersion, q.Status, q.Body)
						return
					}
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if done.Load() != workers*runs {
		t.Fatalf("%d of %d write-then-read runs saw their write", done.Load(), workers*runs)
	}
}

// A version the projection does not reach within the bound is said to be
// stale, with the version the reader has; it is never served silently old.
func TestStaleReadIsSaidNotServed(t *testing.T) {
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 300 * time.Millisecond
	cfg.AutoPipeline = false // the plain client's round trip per read, covered here
	p := banktest.NewPipeline(t, cfg)
	v := banktest.OpenAccount(p, "stale-1", 500)
	r := p.ReadWhenThere(fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.StreamVersion))
	if r.Status != http.StatusOK {
		t.Fatalf("read at the written version: %d %s", r.Status, r.Body)
	}
	readertest.CheckStaleReads(t, p, []readertest.StaleRead{
		{Path: fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.StreamVersion+1), Current: v.StreamVersion},
		{Path: "/v1/accounts/stale-1", Headers: []string{reader.MinVersionHeader, fmt.Sprintf(`"%d"`, v.StreamVersion+5)}, Current: v.StreamVersion},
		{Path: fmt.Sprintf("/v1/accounts/stale-1/transactions?min_version=%d", v.StreamVersion+1), Headers: []string{"Prefer", "wait=0.05"}, Current: v.StreamVersion},
		{Path: "/v1/accounts/never-opened?min_version=1", Headers: []string{"Prefer", "wait=0"}, Current: 0},
		// A wait too large to be a duration is the server's bound, not none.
		{Path: fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.StreamVersion+1), Headers: []string{"Prefer", "wait=1e300"}, Current: v.StreamVersion},
	})
	readertest.CheckStaleCorrelation(t, p, "open-stale-1", v.GlobalPosition+1000)
}

// Paging through 1,000 transactions with cursors returns each exactly once,
// newest first, also while new ones are appended between pages.
func TestPagingThroughTransactionsWhileAppending(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	banktest.OpenAccount(p, "pages", 0)
	ctx := context.Background()
	deposit := func(n int) int64 {
		evs := make([]log.NewEvent, n)
		for i := range evs {
			payload, _ := json.Marshal(account.FundsDeposited{Amount: int64(i + 1), Currency: "EUR", Source: "batch"})
			evs[i] = log.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "FundsDeposited", SchemaVersion: 2, Payload: payload}
		}
		out, err := p.Store.Append(ctx, postgres.AppendRequest{AggregateType: account.AggregateType, AggregateID: "pages",
			Expected: postgres.AnyVersion, Events: evs, Metadata: log.Metadata{CorrelationID: "load", CausationID: "load"}})
		if err != nil {
			t.Fatal(err)
		}
		return out[len(out)-1].Version
	}
	var top int64
	for range 10 {
		top = deposit(100)
	}
	if top < 1000 {
		t.Fatalf("only %d events", top)
	}
	first := p.Read(fmt.Sprintf("/v1/accounts/pages/transactions?limit=37&min_version=%d", top))
	var page accountdomain.Transactions
	first.JSON(t, &page)
	if first.Status != http.StatusOK || len(page.Items) == 0 || page.Items[0].Version != top {
		t.Fatalf("first page: %d %s, want version %d first", first.Status, first.Body, top)
	}
	var versions []int64
	for pages := 0; ; pages++ {
		for _, e := range page.Items {
			versions = append(versions, e.Version)
		}
		if page.Next == "" {
			break
		}
		if pages%5 == 0 {
			deposit(3) // newer events arrive while the client pages
		}
		r := p.Read("/v1/accounts/pages/transactions?limit=37&cursor=" + url.QueryEscape(page.Next))
		if r.Status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages+1, r.Status, r.Body)
		}
		page = accountdomain.Transactions{}
		r.JSON(t, &page)
	}
	want := make([]int64, 0, top)
	for v := top; v >= 1; v-- {
		want = append(want, v)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("paged %d versions, want %d..1 each once in order; first differences: %v", len(versions), top, firstDiff(versions, want))
	}
}

func firstDiff(got, want []int64) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d got %d want %d", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(got), len(want))
}

// Bad input gets a problem document and the status that says why.
func TestBadQueriesGetProblems(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	banktest.OpenAccount(p, "bad-0", 100)
	v := banktest.OpenAccount(p, "bad-1", 100)
	p.Read(fmt.Sprintf("/v1/accounts/bad-1/transactions?min_version=%d", v.StreamVersion)) // built
	p.Read(fmt.Sprintf("/v1/accounts/bad-1?min_version=%d", v.StreamVersion))
	readertest.WaitFor(t, 30*time.Second, "directory served", func() bool {
		return strings.Contains(string(p.ReadAs(readertest.AsOperator, "/v1/accounts?status=active").Body), "bad-1")
	})
	other := p.ReadAs(readertest.AsOperator, "/v1/accounts?status=active&limit=1")
	// The directory's queries are asked by an operator: it is for operators.
	tests := []readertest.BadQuery{
		{Path: "/v1/accounts/" + strings.Repeat("x", 65), Status: 400, Problem: "invalid-id"},
		{Path: "/v1/accounts/%C3%A9t%C3%A9", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/accounts/a%2F..%2Fb", Status: 400, Problem: "invalid-path"}, // decoded, a ".." segment
		{Path: "/v1/accounts/./bad-1", Status: 400, Problem: "invalid-path"},
		{Path: "/v1/accounts//transactions", Status: 400, Problem: "invalid-path"},
		{Path: "/.", Status: 400, Problem: "invalid-path"}, // found by FuzzQueries: the router redirected it
		{Path: "/v1/accounts/a%00b", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/accounts/-leading-dash", Status: 400, Problem: "invalid-id"},
		{Path: "/v1/accounts/nobody", Status: 404, Problem: "unknown-account"},
		{Path: "/v1/accounts/nobody/transactions", Status: 404, Problem: "unknown-account"},
		{Path: "/v1/accounts/bad-1?min_version=0", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1?min_version=x", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1?min_version=-3", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1", Headers: []string{reader.MinVersionHeader, "soon"}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/accounts/bad-1", Headers: []string{reader.MinVersionHeader, `"0"`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/accounts/bad-1/transactions?limit=0", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1/transactions?limit=501", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1/transactions?limit=ten", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1/transactions?cursor=%%%", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1/transactions?cursor=bm90LWEtY3Vyc29y", Status: 400, Problem: "invalid-cursor"},
		{Path: "/v1/accounts/bad-1/transactions?cursor=" + url.QueryEscape(strings.Repeat("A", 600)), Status: 400, Problem: "invalid-cursor"},
		{Path: "/v1/accounts/bad-1/transactions?cursor=" + cursor("h1:bad-1:1"), Status: 400, Problem: "invalid-cursor"}, // nothing is below version 1
		{Path: "/v1/accounts/bad-1/transactions?cursor=" + cursor("h1:bad-0:2"), Status: 400, Problem: "invalid-cursor"}, // another account's history
		{Path: "/v1/accounts/bad-1", Headers: []string{reader.MinVersionHeader, `"7`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/accounts/bad-1", Headers: []string{reader.MinVersionHeader, `+7`}, Status: 400, Problem: "invalid-min-version"},
		{Path: "/v1/accounts", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=frozen", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?sort=name&status=active", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?sort=balance", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?sort=balance&currency=eur", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?sort=balance&currency=EUR&status=active", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=active&currency=EUR", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=active&min_version=3", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=pending&cursor=" + url.QueryEscape(nextOf(t, other)), As: readertest.AsOperator, Status: 400, Problem: "invalid-cursor"},
		{Path: "/v1/accounts?sort=balance&currency=USD&cursor=" + url.QueryEscape(nextOf(t, other)), As: readertest.AsOperator, Status: 400, Problem: "invalid-cursor"},
		{Path: "/v1/correlations/" + strings.Repeat("c", 129), Status: 400, Problem: "invalid-id"},
		{Path: "/v1/correlations/x?min_position=0", Status: 400, Problem: "invalid-query"},
		// A parameter without a value is refused, not read as absent (an
		// empty cursor is the first page, as its documentation says).
		{Path: "/v1/accounts?status=active&sort=", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=active&currency", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts?status=active&limit=", As: readertest.AsOperator, Status: 400, Problem: "invalid-query"},
		{Path: "/v1/accounts/bad-1?min_version=", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/correlations/x?min_position", Status: 400, Problem: "invalid-query"},
		{Path: "/v1/nothing", Status: 404, Problem: "not-found"},
	}
	if r := p.Do(p.Reader, http.MethodDelete, "/v1/accounts/bad-1", ""); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE an account: %d Allow %q %s", r.Status, r.Header.Get("Allow"), r.Body)
	}
	// The next page of bad-1's history is a cursor for bad-1 only.
	var page accountdomain.Transactions
	p.Read("/v1/accounts/bad-1/transactions?limit=1").JSON(t, &page)
	if r := p.Read("/v1/accounts/bad-0/transactions?cursor=" + url.QueryEscape(page.Next)); r.Status != http.StatusBadRequest || page.Next == "" {
		t.Errorf("bad-1's cursor on bad-0's history: %d %s", r.Status, r.Body)
	}
	readertest.CheckBadQueries(t, p, tests)
}

func nextOf(t *testing.T, r readertest.Response) string {
	t.Helper()
	var d accountdomain.Directory
	r.JSON(t, &d)
	if d.Next == "" {
		t.Fatalf("a listing without a next page: %s", r.Body)
	}
	return d.Next
}

// The directory over HTTP: by status oldest first, by balance largest first,
// every account once across pages.
func TestDirectoryOverHTTP(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	var last writer.CommandResponse
	for i := range 23 {
		last = banktest.OpenAccount(p, fmt.Sprintf("dir-%02d", i), int64(100*(i%5)))
	}
	p.Command(http.StatusCreated, "/v1/accounts", `{"id":"dir-pending","owner":"Cy","currency":"USD"}`)
	p.Read(fmt.Sprintf("/v1/accounts/dir-22?min_version=%d", last.StreamVersion))
	list := func(query string) []accountdomain.DirectoryEntry {
		var all []accountdomain.DirectoryEntry
		cursor := ""
		for pages := 0; pages < 50; pages++ {
			r := p.ReadAs(readertest.AsOperator, "/v1/accounts?"+query+"&limit=4&cursor="+url.QueryEscape(cursor))
			if r.Status != http.StatusOK {
				t.Fatalf("%s: %d %s", query, r.Status, r.Body)
			}
			var d accountdomain.Directory
			r.JSON(t, &d)
			all = append(all, d.Items...)
			if cursor = d.Next; cursor == "" {
				return all
			}
		}
		t.Fatalf("%s: no end", query)
		return nil
	}
	var active []accountdomain.DirectoryEntry
	readertest.WaitFor(t, 30*time.Second, "23 active accounts in the directory", func() bool {
		active = list("status=active")
		return len(active) == 23
	})
	for i, e := range active { // every id once, in opening order
		if e.ID != fmt.Sprintf("dir-%02d", i) || e.OpenedAt == nil || e.Balance != nil {
			t.Fatalf("active[%d] = %+v", i, e)
		}
	}
	ranked := list("sort=balance&currency=EUR")
	if len(ranked) != 23 {
		t.Fatalf("%d ranked accounts, want 23", len(ranked))
	}
	for i, e := range ranked {
		// Strictly after the previous one in (balance desc, id desc): a
		// repeated account, or one out of order, fails here.
		if e.Balance == nil || e.Currency != "EUR" || (i > 0 && (*e.Balance > *ranked[i-1].Balance ||
			(*e.Balance == *ranked[i-1].Balance && e.ID >= ranked[i-1].ID))) {
			t.Fatalf("ranked[%d] = %+v after %+v", i, e, ranked[max(i-1, 0)])
		}
	}
	if *ranked[0].Balance != 400 {
		t.Fatalf("top balance %d, want 400", *ranked[0].Balance)
	}
	var pending []accountdomain.DirectoryEntry
	readertest.WaitFor(t, 30*time.Second, "the pending account in the directory", func() bool {
		pending = list("status=pending&sort=opened")
		return len(pending) > 0
	})
	if len(pending) != 1 || pending[0].ID != "dir-pending" {
		t.Fatalf("pending: %+v", pending)
	}
}

// cursor encodes a raw cursor position as the reader does.
func cursor(pos string) string { return base64.RawURLEncoding.EncodeToString([]byte(pos)) }
