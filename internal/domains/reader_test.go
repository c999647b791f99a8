package domains_test

import (
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
)

// newModels builds every read model from these events: the owner's account
// and a transfer out of it to bob's account, carried out by the process
// manager on the owner's behalf, and one deposit of bob's own that reuses
// the owner's correlation id.
func newModels(t *testing.T) *readertest.Models {
	t.Helper()
	m := readertest.NewModels(t, banktest.Registry())
	const pm = "process-manager"
	opened := m.Event(account.AggregateType, "acc-ada", "open-ada", account.AccountOpened{Owner: "Ada", Currency: "EUR"}, nil, readertest.Owner, "")
	m.Event(account.AggregateType, "acc-ada", "open-ada", account.FundsDeposited{Amount: 500, Currency: "EUR", Source: "salary"}, &opened, readertest.Owner, "")
	m.Event(account.AggregateType, "acc-ada", "activate-ada", account.AccountActivated{}, nil, readertest.Operator, "")
	m.Event(account.AggregateType, "acc-bob", "open-bob", account.AccountOpened{Owner: "Bob", Currency: "EUR"}, nil, "bob", "")
	m.Event(account.AggregateType, "acc-bob", "activate-bob", account.AccountActivated{}, nil, readertest.Operator, "")
	requested := m.Event(transfer.AggregateType, "tr-ada", "corr-ada",
		transfer.TransferRequested{From: "acc-ada", To: "acc-bob", Amount: 200, Currency: "EUR", Reference: "rent"}, nil, readertest.Owner, "")
	withdrawn := m.Event(account.AggregateType, "acc-ada", "corr-ada", account.FundsWithdrawn{Amount: 200, Currency: "EUR", Reason: "tr-ada"}, &requested, pm, readertest.Owner)
	deposited := m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 200, Currency: "EUR", Source: "tr-ada"}, &withdrawn, pm, readertest.Owner)
	m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 7, Currency: "EUR", Source: "cash"}, &deposited, "bob", "")
	m.Event(transfer.AggregateType, "tr-ada", "corr-ada", transfer.TransferCompleted{}, &deposited, pm, readertest.Owner)
	m.Event(account.AggregateType, "acc-bob", "corr-ada", account.FundsDeposited{Amount: 1, Currency: "EUR", Source: "migration"}, nil, "", "")
	m.Project()
	return m
}

// G11 on every route the OpenAPI document names: the public ones serve
// anyone; every other one answers 401 without valid credentials, serves the
// owner and the operator, refuses the stranger (403; a causation tree with
// nothing of theirs is 404, as an unknown one) — also when it asks for a
// version (no wait, no "stale" that tells it) or sends If-None-Match (no
// 304) — and the directory to anyone but an operator. Refused requests
// change nothing in Redis.
func TestEveryRouteServesOnlyWhomItMay(t *testing.T) {
	m := newModels(t)
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 5 * time.Second // a refusal must not wait for it
	srv := m.Server(cfg, false)
	readertest.CheckEveryRouteServesOnlyWhomItMay(t, m, srv, cfg.MaxWait, readertest.Access{
		// A request for each route of the document.
		Samples: map[string]readertest.RouteSample{
			"/v1/accounts/{id}":              {Path: "/v1/accounts/acc-ada", Owner: 200, Stranger: 403, Versioned: true},
			"/v1/accounts/{id}/transactions": {Path: "/v1/accounts/acc-ada/transactions?limit=2", Owner: 200, Stranger: 403, Versioned: true},
			"/v1/accounts":                   {Path: "/v1/accounts?status=active", Owner: 403, Stranger: 403},
			"/v1/transfers/{id}":             {Path: "/v1/transfers/tr-ada", Owner: 200, Stranger: 403, Versioned: true},
			"/v1/correlations/{id}":          {Path: "/v1/correlations/corr-ada", Owner: 200, Stranger: 404},
			"/healthz":                       {Path: "/healthz", Public: true},
			"/readyz":                        {Path: "/readyz", Public: true},
			"/metrics":                       {Path: "/metrics", Public: true},
			"/openapi.json":                  {Path: "/openapi.json", Public: true},
		},
		// An id nobody has is 404 whoever asks; what exists and is not
		// theirs, 403, whatever its kind.
		Unknown: []string{"/v1/accounts/acc-nobody", "/v1/accounts/acc-nobody/transactions", "/v1/transfers/tr-nobody", "/v1/correlations/nobody"},
		Others:  []string{"/v1/accounts/acc-bob", "/v1/accounts/acc-bob/transactions"},
	})

	// What the owner and the operator are served carries the owner.
	var sum accounts.Summary
	m.Get(srv, readertest.AsOwner, "/v1/accounts/acc-ada").JSON(t, &sum)
	var tr transferview.Summary
	m.Get(srv, readertest.AsOperator, "/v1/transfers/tr-ada").JSON(t, &tr)
	var page accountdomain.Transactions
	m.Get(srv, readertest.AsOwner, "/v1/accounts/acc-ada/transactions").JSON(t, &page)
	if sum.Principal != readertest.Owner || sum.Balance != 300 || tr.Principal != readertest.Owner || tr.Status != "completed" || len(page.Items) != 4 {
		t.Fatalf("summary %+v, transfer %+v, %d history entries", sum, tr, len(page.Items))
	}
}

// The document is served at /openapi.json, and every route of the reader is
// in it.
func TestOpenAPIDocumentIsServedAndComplete(t *testing.T) {
	p := banktest.NewPipeline(t, reader.DefaultConfig())
	readertest.CheckDocumentIsServed(t, p, []string{"/healthz", "/metrics", "/openapi.json", "/readyz", "/v1/accounts", "/v1/accounts/{id}",
		"/v1/accounts/{id}/transactions", "/v1/correlations/{id}", "/v1/transfers/{id}"})
}
