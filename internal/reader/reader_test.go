package reader_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// openActive opens and activates an account through the writer.
func (p *pipeline) openActive(id string, deposit int64) written {
	p.t.Helper()
	p.command(http.StatusCreated, "/v1/accounts", fmt.Sprintf(`{"id":%q,"owner":"Ada","currency":"EUR","initialDeposit":%d}`, id, deposit))
	c := p.command(http.StatusOK, "/v1/accounts/"+id+"/activate", "")
	return written{version: c.StreamVersion, position: c.GlobalPosition}
}

type written struct{ version, position int64 }

// G6: after every command, a read naming the writer's version returns that
// version or a newer one — 1,000 times, over eight accounts written and
// read concurrently, alternating the query parameter and the header (with
// the writer's ETag as it came), the summary and the history.
func TestReadYourWritesEveryTime(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	const workers, runs = 8, 125
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		id := fmt.Sprintf("ryw-%d", w)
		p.openActive(id, 0)
		wg.Go(func() {
			balance := int64(0)
			for i := range runs {
				amount := int64(100 + i)
				r := p.do(p.writer, http.MethodPost, "/v1/accounts/"+id+"/deposits",
					fmt.Sprintf(`{"amount":%d,"currency":"EUR","source":"salary"}`, amount))
				if r.status != http.StatusOK {
					t.Errorf("deposit: %d %s", r.status, r.body)
					return
				}
				balance += amount
				var c struct{ StreamVersion int64 }
				r.json(t, &c)
				etag := r.header.Get("ETag")
				switch i % 3 {
				case 0, 1:
					var got accounts.Summary
					var q response
					if i%3 == 0 {
						q = p.read("/v1/accounts/" + id + "?min_version=" + strconv.FormatInt(c.StreamVersion, 10))
					} else {
						q = p.read("/v1/accounts/"+id, reader.MinVersionHeader, etag)
					}
					if q.status != http.StatusOK {
						t.Errorf("read %s at least v%d: %d %s", id, c.StreamVersion, q.status, q.body)
						return
					}
					q.json(t, &got)
					// Only this worker writes to id, so the version is exact.
					if got.Version != c.StreamVersion || got.Balance != balance || q.header.Get("ETag") != etag {
						t.Errorf("read %s at least v%d: version %d balance %d ETag %s; want v%d balance %d ETag %s",
							id, c.StreamVersion, got.Version, got.Balance, q.header.Get("ETag"), c.StreamVersion, balance, etag)
						return
					}
				case 2:
					q := p.read("/v1/accounts/" + id + "/transactions?limit=1&min_version=" + strconv.FormatInt(c.StreamVersion, 10))
					var page accountdomain.Transactions
					q.json(t, &page)
					if q.status != http.StatusOK || len(page.Items) != 1 || page.Items[0].Version != c.StreamVersion ||
						page.Items[0].BalanceAfter != balance {
						t.Errorf("history of %s at least v%d: %d %s", id, c.StreamVersion, q.status, q.body)
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
	p := newPipeline(t, cfg)
	v := p.openActive("stale-1", 500)
	r := p.read(fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.version))
	if r.status != http.StatusOK {
		t.Fatalf("read at the written version: %d %s", r.status, r.body)
	}
	for _, req := range []struct {
		path    string
		headers []string
	}{
		{fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.version+1), nil},
		{"/v1/accounts/stale-1", []string{reader.MinVersionHeader, fmt.Sprintf(`"%d"`, v.version+5)}},
		{fmt.Sprintf("/v1/accounts/stale-1/transactions?min_version=%d", v.version+1), []string{"Prefer", "wait=0.05"}},
		{"/v1/accounts/never-opened?min_version=1", []string{"Prefer", "wait=0"}},
		// A wait too large to be a duration is the server's bound, not none.
		{fmt.Sprintf("/v1/accounts/stale-1?min_version=%d", v.version+1), []string{"Prefer", "wait=1e300"}},
	} {
		r := p.read(req.path, req.headers...)
		var prob struct {
			Type                             string
			RequestedVersion, CurrentVersion int64
		}
		r.json(t, &prob)
		wantCurrent := v.version
		if req.path == "/v1/accounts/never-opened?min_version=1" {
			wantCurrent = 0
		}
		if r.status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" ||
			prob.CurrentVersion != wantCurrent || prob.RequestedVersion <= wantCurrent || r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s %v: %d %s; want 503 stale with currentVersion %d", req.path, req.headers, r.status, r.body, wantCurrent)
		}
	}
	// An event of the correlation that is not there is said to be missing.
	r = p.read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", "open-"+"stale-1", v.position+1000), "Prefer", "wait=0.05")
	var prob struct {
		Type              string
		RequestedPosition int64
	}
	r.json(t, &prob)
	if r.status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.RequestedPosition != v.position+1000 {
		t.Errorf("a correlation missing the named event: %d %s", r.status, r.body)
	}
}

// A correlation spanning several aggregates comes back as one causation
// tree: each event under the event that caused it, across accounts, and
// the events of one command side by side. The chain is appended as a
// process manager would (each step caused by the previous event), and read
// as an operator, who sees every event whoever it was appended for.
func TestCausationTreeAcrossAggregates(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	p.openActive("tree-a", 10_000)
	p.openActive("tree-b", 0)
	ctx := context.Background()
	corr := "transfer-" + uuid.NewString()
	appendOne := func(id string, causation string, ev account.Event) log.Event {
		payload, _ := json.Marshal(ev)
		out, err := p.store.Append(ctx, postgres.AppendRequest{
			AggregateType: account.AggregateType, AggregateID: id, Expected: postgres.AnyVersion,
			Events:   []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload}},
			Metadata: log.Metadata{CorrelationID: corr, CausationID: causation, Principal: "process-manager", OnBehalfOf: owner},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	command := uuid.NewString()
	withdrawn := appendOne("tree-a", command, account.FundsWithdrawn{Amount: 700, Currency: "EUR", Reason: corr})
	deposited := appendOne("tree-b", withdrawn.ID.String(), account.FundsDeposited{Amount: 700, Currency: "EUR", Source: corr})
	// A second effect of the deposit, and an unrelated command in the same
	// correlation: siblings and a second root.
	fee := appendOne("tree-a", deposited.ID.String(), account.FundsWithdrawn{Amount: 1, Currency: "EUR", Reason: "fee"})
	audit := appendOne("tree-b", "audit-command", account.FundsDeposited{Amount: 5, Currency: "EUR", Source: "audit"})

	// The four events lie on two partitions projected independently: wait
	// for each of them, as read-your-writes is per event.
	var tree reader.CausationTree
	var r response
	for _, e := range []log.Event{withdrawn, deposited, fee, audit} {
		r = p.readAs(asOperator, fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr, e.GlobalPosition))
		if r.status != http.StatusOK {
			t.Fatalf("correlation at position %d: %d %s", e.GlobalPosition, r.status, r.body)
		}
	}
	r.json(t, &tree)
	type edge struct{ parent, child string }
	var edges []edge
	var walk func(parent string, ns []*reader.Node)
	seen := map[string]int{}
	walk = func(parent string, ns []*reader.Node) {
		for _, n := range ns {
			seen[n.EventID]++
			if n.CorrelationID != corr {
				t.Errorf("event %s has correlation %s", n.EventID, n.CorrelationID)
			}
			if parent != "" && n.CausationID != parent {
				t.Errorf("event %s under %s says it was caused by %s", n.EventID, parent, n.CausationID)
			}
			edges = append(edges, edge{parent, n.EventID})
			walk(n.EventID, n.Children)
		}
	}
	walk("", tree.Roots)
	want := []edge{
		{"", withdrawn.ID.String()}, {withdrawn.ID.String(), deposited.ID.String()},
		{deposited.ID.String(), fee.ID.String()}, {"", audit.ID.String()},
	}
	if !slices.Equal(edges, want) || tree.Events != 4 || tree.TotalEvents != 4 || tree.Truncated || len(seen) != 4 {
		t.Fatalf("tree edges %v (events %d), want %v", edges, tree.Events, want)
	}
	if tree.Roots[0].CausationID != command || tree.Roots[0].AggregateID != "tree-a" || tree.Roots[0].Children[0].AggregateID != "tree-b" {
		t.Fatalf("roots %+v", tree.Roots)
	}

	// A command's own correlation: its events are siblings under nothing.
	c := p.command(http.StatusCreated, "/v1/accounts", `{"id":"tree-c","owner":"Bo","currency":"EUR","initialDeposit":5}`,
		"X-Correlation-ID", "open-tree-c")
	r = p.read(fmt.Sprintf("/v1/correlations/open-tree-c?min_position=%d", c.GlobalPosition))
	r.json(t, &tree)
	if r.status != http.StatusOK || tree.Events != 2 || len(tree.Roots) != 2 || tree.Roots[0].Type != "AccountOpened" ||
		tree.Roots[1].Type != "FundsDeposited" || tree.Roots[0].CausationID != c.CausationID {
		t.Fatalf("correlation of one command: %d %s", r.status, r.body)
	}
	if r := p.read("/v1/correlations/nobody-" + uuid.NewString()); r.status != http.StatusNotFound {
		t.Fatalf("unknown correlation: %d %s", r.status, r.body)
	}
	// A stranger sees none of it: as unknown.
	for _, corr := range []string{corr, "open-tree-c"} {
		if r := p.readAs(asStranger, "/v1/correlations/"+corr); r.status != http.StatusNotFound {
			t.Fatalf("a stranger reads correlation %s: %d %s", corr, r.status, r.body)
		}
	}
}

// A correlation larger than the reader's bound is answered with its
// earliest events, marked truncated, with the count of all; a stale answer
// counts them without reading them.
func TestLargeCorrelationIsTruncated(t *testing.T) {
	cfg := reader.DefaultConfig()
	cfg.MaxCorrelationEvents = 3
	p := newPipeline(t, cfg)
	corr := []string{"X-Correlation-ID", "big-" + uuid.NewString()}
	var positions []int64
	for _, c := range []struct{ path, body string }{
		{"/v1/accounts", `{"id":"big-1","owner":"Ada","currency":"EUR","initialDeposit":5}`},
		{"/v1/accounts/big-1/activate", ""},
		{"/v1/accounts/big-1/deposits", `{"amount":1,"currency":"EUR","source":"a"}`},
		{"/v1/accounts/big-1/deposits", `{"amount":2,"currency":"EUR","source":"b"}`},
		{"/v1/accounts/big-1/deposits", `{"amount":3,"currency":"EUR","source":"c"}`},
	} {
		want := http.StatusOK
		if c.path == "/v1/accounts" {
			want = http.StatusCreated
		}
		for _, e := range p.command(want, c.path, c.body, corr...).Events {
			positions = append(positions, e.GlobalPosition)
		}
	}
	if len(positions) != 6 {
		t.Fatalf("%d events written, want 6", len(positions))
	}
	r := p.read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr[1], positions[5]))
	var tree reader.CausationTree
	r.json(t, &tree)
	if r.status != http.StatusOK || tree.Events != 3 || tree.TotalEvents != 6 || !tree.Truncated || len(tree.Roots) != 3 {
		t.Fatalf("a correlation of 6 events with a bound of 3: %d %s", r.status, r.body)
	}
	for i, root := range tree.Roots {
		if root.GlobalPosition != positions[i] {
			t.Errorf("root %d is at position %d, want the earliest events %v", i, root.GlobalPosition, positions[:3])
		}
	}
	r = p.read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr[1], positions[5]+1000), "Prefer", "wait=0.05")
	var prob struct {
		Type          string
		EventsPresent int64
	}
	r.json(t, &prob)
	if r.status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.EventsPresent != 6 {
		t.Errorf("a position the correlation does not hold: %d %s; want 503 stale with eventsPresent 6", r.status, r.body)
	}
}

// Paging through 1,000 transactions with cursors returns each exactly once,
// newest first, also while new ones are appended between pages.
func TestPagingThroughTransactionsWhileAppending(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	p.openActive("pages", 0)
	ctx := context.Background()
	deposit := func(n int) int64 {
		evs := make([]log.NewEvent, n)
		for i := range evs {
			payload, _ := json.Marshal(account.FundsDeposited{Amount: int64(i + 1), Currency: "EUR", Source: "batch"})
			evs[i] = log.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "FundsDeposited", SchemaVersion: 2, Payload: payload}
		}
		out, err := p.store.Append(ctx, postgres.AppendRequest{AggregateType: account.AggregateType, AggregateID: "pages",
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
	first := p.read(fmt.Sprintf("/v1/accounts/pages/transactions?limit=37&min_version=%d", top))
	var page accountdomain.Transactions
	first.json(t, &page)
	if first.status != http.StatusOK || len(page.Items) == 0 || page.Items[0].Version != top {
		t.Fatalf("first page: %d %s, want version %d first", first.status, first.body, top)
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
		r := p.read("/v1/accounts/pages/transactions?limit=37&cursor=" + url.QueryEscape(page.Next))
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages+1, r.status, r.body)
		}
		page = accountdomain.Transactions{}
		r.json(t, &page)
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
