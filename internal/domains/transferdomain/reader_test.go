package transferdomain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
)

// A transfer is served from its read model, at least as new as asked, and
// its events join the correlation's causation tree.
func TestTransferIsServed(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	ctx := context.Background()
	id := uuid.NewString()
	var last log.Event
	// Requested by the owner; failed by the process manager on its behalf.
	metadata := []log.Metadata{{CorrelationID: "corr-" + id, CausationID: "cause-0", Principal: readertest.Owner},
		{CorrelationID: "corr-" + id, CausationID: "cause-1", Principal: "process-manager", OnBehalfOf: readertest.Owner}}
	for i, ev := range []transfer.Event{
		transfer.TransferRequested{From: "a", To: "b", Amount: 300, Currency: "EUR", Reference: "rent"},
		transfer.TransferFailed{Reason: "deposit refused: the account is pending", Refunded: true},
	} {
		payload, _ := json.Marshal(ev)
		out, err := p.Store.Append(ctx, postgres.AppendRequest{AggregateType: transfer.AggregateType, AggregateID: id,
			Expected: postgres.ExpectedVersion(i), Events: []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: ev.EventType(),
				SchemaVersion: ev.SchemaVersion(), Payload: payload}},
			Metadata: metadata[i]})
		if err != nil {
			t.Fatal(err)
		}
		last = out[0]
	}
	r := p.Read(fmt.Sprintf("/v1/transfers/%s?min_version=2", id))
	var got transfers.Summary
	r.JSON(t, &got)
	if r.Status != http.StatusOK || got.Status != "failed" || !got.Refunded || got.Amount != 300 || got.From != "a" ||
		got.Version != 2 || got.EndedAt == nil || r.Header.Get("ETag") != `"2"` || got.Principal != readertest.Owner {
		t.Fatalf("transfer: %d %s", r.Status, r.Body)
	}
	if r := p.ReadAs(readertest.AsOperator, fmt.Sprintf("/v1/correlations/corr-%s?min_position=%d", id, last.GlobalPosition)); r.Status != http.StatusOK {
		t.Fatalf("the transfer's correlation: %d %s", r.Status, r.Body)
	}
	if r := p.ReadAs(readertest.AsStranger, "/v1/transfers/"+id); r.Status != http.StatusForbidden {
		t.Fatalf("a stranger reads the transfer: %d %s", r.Status, r.Body)
	}
	for path, status := range map[string]int{
		"/v1/transfers/" + uuid.NewString(): http.StatusNotFound,
		"/v1/transfers/..%2Fx":              http.StatusBadRequest,
	} {
		if r := p.Read(path); r.Status != status {
			t.Errorf("GET %s: %d %s, want %d", path, r.Status, r.Body, status)
		}
	}
}

// Issue 8, acceptance 2, end to end over HTTP: a transfer requested at the
// writer is carried out by the process manager, and the reader shows it
// completed and its correlation as one causation chain, TransferRequested →
// FundsWithdrawn → FundsDeposited → TransferCompleted.
func TestTransferThroughThePlatform(t *testing.T) {
	p := banktest.NewPipeline(t, readertest.Config())
	banktest.OpenAccount(p, "pay-a", 1000)
	banktest.OpenAccount(p, "pay-b", 0)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c := p.Command(http.StatusCreated, "/v1/transfers", `{"id":"pay-1","from":"pay-a","to":"pay-b","amount":400,"currency":"EUR","reference":"rent"}`,
		"X-Correlation-ID", "pay-1-corr", "traceparent", traceparent)
	if c.CorrelationID != "pay-1-corr" {
		t.Fatalf("correlation %s", c.CorrelationID)
	}
	var r readertest.Response
	readertest.WaitFor(t, 30*time.Second, "the transfer completes", func() bool {
		r = p.Read("/v1/transfers/pay-1?min_version=2")
		return r.Status == http.StatusOK
	})
	var got transfers.Summary
	r.JSON(t, &got)
	if got.Status != "completed" || got.CorrelationID != "pay-1-corr" {
		t.Fatalf("transfer %+v", got)
	}
	if got.Principal != readertest.Owner {
		t.Fatalf("transfer requested by %q, want %q", got.Principal, readertest.Owner)
	}
	var tree reader.CausationTree
	readertest.WaitFor(t, 30*time.Second, "the four events in the correlation", func() bool {
		r = p.ReadAs(readertest.AsOperator, "/v1/correlations/pay-1-corr")
		tree = reader.CausationTree{}
		if r.Status == http.StatusOK {
			r.JSON(t, &tree)
		}
		return tree.Events == 4
	})
	var chain []string
	for n := tree.Roots; len(n) > 0; n = n[0].Children {
		if len(n) != 1 {
			t.Fatalf("a branch in the chain: %s", r.Body)
		}
		chain = append(chain, n[0].Type+"@"+n[0].AggregateID)
	}
	if want := "[TransferRequested@pay-1 FundsWithdrawn@pay-a FundsDeposited@pay-b TransferCompleted@pay-1]"; fmt.Sprint(chain) != want {
		t.Fatalf("chain %v, want %s", chain, want)
	}
	if len(tree.Roots) != 1 || tree.Roots[0].CausationID != c.CausationID {
		t.Fatalf("the root is caused by %s, want the command %s", tree.Roots[0].CausationID, c.CausationID)
	}
	// One trace: every step of the transfer carries the trace of the request.
	for _, n := range []*reader.Node{tree.Roots[0], tree.Roots[0].Children[0], tree.Roots[0].Children[0].Children[0]} {
		stored, err := p.Store.ReadStream(context.Background(), postgres.StreamQuery{AggregateType: n.AggregateType, AggregateID: n.AggregateID,
			AfterVersion: n.Version - 1, UntilVersion: n.Version})
		if err != nil || len(stored) != 1 || stored[0].TraceParent[:35] != traceparent[:35] {
			t.Fatalf("%s of %s: trace context %+v (%v), want the request's trace %s", n.Type, n.AggregateID, stored, err, traceparent[3:35])
		}
	}
	// The owner sees exactly the events the policy lets it see, as the log
	// recorded them: its request, and the steps the process manager took on
	// its behalf (once the log carries onBehalfOf end to end).
	var visible []string
	for n := tree.Roots; len(n) > 0; n = n[0].Children {
		stored, err := p.Store.ReadStream(context.Background(), postgres.StreamQuery{AggregateType: n[0].AggregateType, AggregateID: n[0].AggregateID,
			AfterVersion: n[0].Version - 1, UntilVersion: n[0].Version})
		if err != nil || len(stored) != 1 {
			t.Fatalf("%s of %s: %v %v", n[0].Type, n[0].AggregateID, stored, err)
		}
		if n[0].Principal != stored[0].Principal || n[0].OnBehalfOf != stored[0].OnBehalfOf {
			t.Fatalf("%s of %s: principal %q on behalf of %q in the tree, %q on behalf of %q in the log", n[0].Type, n[0].AggregateID,
				n[0].Principal, n[0].OnBehalfOf, stored[0].Principal, stored[0].OnBehalfOf)
		}
		if (auth.Principal{Subject: readertest.Owner}).MaySee(stored[0].Principal, stored[0].OnBehalfOf) {
			visible = append(visible, n[0].EventID)
		}
	}
	var mine reader.CausationTree
	p.Read("/v1/correlations/pay-1-corr").JSON(t, &mine)
	seen := readertest.EventIDs(mine)
	slices.Sort(visible)
	if len(visible) == 0 || !slices.Equal(seen, visible) || mine.Events != len(visible) || mine.TotalEvents != int64(len(visible)) {
		t.Fatalf("the owner sees %v (%d of %d), the policy lets it see %v", seen, mine.Events, mine.TotalEvents, visible)
	}
	t.Logf("the owner sees %d of the correlation's 4 events", len(visible))
	var a, b accounts.Summary
	p.Read("/v1/accounts/pay-a?min_version=4").JSON(t, &a)
	p.Read("/v1/accounts/pay-b?min_version=3").JSON(t, &b)
	if a.Balance != 600 || b.Balance != 400 {
		t.Fatalf("balances %d and %d, want 600 and 400", a.Balance, b.Balance)
	}
}
