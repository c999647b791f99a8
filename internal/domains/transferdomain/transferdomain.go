// Package transferdomain registers transfers between accounts with the
// platform: the transfer aggregate type and its event schemas, the
// writer's route that requests one, its read model and the reader's query.
// The process manager that moves the money is package transfers; the
// decider is package transfer.
package transferdomain

import (
	"context"
	"time"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/transfers"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

// Domain returns the transfer domain's registration. It needs the account
// domain registered before it: a transfer moves money between accounts.
func Domain() registry.Domain {
	return registry.Domain{
		Name:        "transfers",
		Aggregates:  []aggregate.Kind{aggregate.Of(transfer.Aggregate())},
		API:         schemas.APIOf("transfers"),
		Events:      schemas.EventsOf(transfer.AggregateType),
		Commands:    []writer.Route{requestTransfer()},
		Projections: []readmodels.Projection{transferview.Projection{}},
		Queries: []reader.Route{reader.Versioned("GET /v1/transfers/{id}", reader.VersionedModel[transferview.Summary]{
			What: "transfer",
			Read: func(src reader.Source) func(context.Context, string) (transferview.Summary, bool, error) {
				return transferview.NewQueries(src.Redis, src.Root, src.Views).Get
			},
			Version: func(t transferview.Summary) int64 { return t.Version },
			Owner:   func(t transferview.Summary) string { return t.Principal },
		})},
		Processes: []registry.Process{{Name: "transfers", New: newManager}},
	}
}

// newManager makes the process manager that moves a transfer's money:
// withdraw from the source, deposit to the target, complete (or refund and
// fail).
func newManager(deps registry.ProcessDeps) (registry.ProcessRunner, error) {
	accounts, err := aggregate.HandlerOf(deps.Handlers, account.Aggregate())
	if err != nil {
		return nil, err
	}
	transfersHandler, err := aggregate.HandlerOf(deps.Handlers, transfer.Aggregate())
	if err != nil {
		return nil, err
	}
	cfg := transfers.DefaultConfig()
	cfg.Client, cfg.Topics, cfg.Group = deps.Client, deps.Topics, deps.Group
	cfg.SessionTimeout, cfg.TracerProvider = deps.SessionTimeout, deps.TracerProvider
	steps := transfers.NewSteps(deps.Handlers.Store(), accounts, transfersHandler, 10*time.Second, deps.Logger)
	return transfers.NewManager(cfg, steps, deps.Upcasters, deps.Logger), nil
}

type transferBody struct {
	ID        string `json:"id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// requestTransfer is POST /v1/transfers: it starts a transfer, which the
// process manager (package transfers) carries out.
func requestTransfer() writer.Route {
	return writer.Command(transfer.Aggregate(), writer.CommandRoute[transferBody, transfer.Command]{
		Pattern: "POST /v1/transfers", Name: "RequestTransfer", Creates: true,
		ID: func(b transferBody) string { return b.ID },
		Command: func(_ string, b transferBody) transfer.Command {
			return transfer.RequestTransfer{From: b.From, To: b.To, Amount: b.Amount, Currency: b.Currency, Reference: b.Reference}
		},
		// Money leaves the source account: only its owner, or an operator,
		// may ask. (The process manager then moves it on the caller's
		// behalf.) A malformed source is the decider's to refuse.
		Authorize: func(ctx context.Context, caller auth.Principal, b transferBody, owners writer.Owners) error {
			if httpapi.ID(b.From) != nil {
				return nil
			}
			owner, err := owners.Owner(ctx, account.AggregateType, b.From)
			if err != nil {
				return err
			}
			if !caller.MayAccess(owner) {
				return auth.Refuse("the source account " + b.From + " does not exist or is not yours")
			}
			return nil
		},
	})
}
