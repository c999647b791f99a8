// Package accountdomain registers the bank account with the platform: its
// aggregate type, event schemas and upcasters, the writer's routes of its
// commands, its read models and the reader's queries over them. The
// decider itself is package account, which knows nothing of the platform.
package accountdomain

import (
	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

// Domain returns the account domain's registration.
func Domain() registry.Domain {
	return registry.Domain{
		Name:       "accounts",
		Aggregates: []aggregate.Kind{aggregate.Of(account.Aggregate())},
		API:        schemas.APIOf("accounts"),
		Events:     schemas.EventsOf(account.AggregateType),
		Upcasters: []registry.Upcaster{
			{AggregateType: account.AggregateType, EventType: "FundsDeposited", From: 1, Upcast: account.UpcastFundsDepositedV1},
		},
		Commands:    commands(),
		Projections: []readmodels.Projection{accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{}},
		Queries:     queries(),
	}
}

type openAccountBody struct {
	ID             string `json:"id"`
	Owner          string `json:"owner"`
	Currency       string `json:"currency"`
	InitialDeposit int64  `json:"initialDeposit"`
}

type depositBody struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Source   string `json:"source"`
}

type withdrawBody struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Reason   string `json:"reason"`
}

type closeBody struct {
	Reason string `json:"reason"`
}

// commands are the writer's routes of the account commands
// (schemas/openapi/writer.yaml documents them).
func commands() []writer.Route {
	typ := account.Aggregate()
	return []writer.Route{
		writer.Command(typ, writer.CommandRoute[openAccountBody, account.Command]{
			Pattern: "POST /v1/accounts", Name: "OpenAccount", Creates: true,
			ID: func(b openAccountBody) string { return b.ID },
			Command: func(id string, b openAccountBody) account.Command {
				return account.OpenAccount{ID: id, Owner: b.Owner, Currency: b.Currency, InitialDeposit: b.InitialDeposit}
			},
		}),
		writer.Command(typ, writer.CommandRoute[struct{}, account.Command]{
			Pattern: "POST /v1/accounts/{id}/activate", Name: "ActivateAccount", EmptyBody: true,
			Command: func(string, struct{}) account.Command { return account.ActivateAccount{} },
		}),
		writer.Command(typ, writer.CommandRoute[depositBody, account.Command]{
			Pattern: "POST /v1/accounts/{id}/deposits", Name: "DepositFunds",
			Command: func(_ string, b depositBody) account.Command {
				return account.DepositFunds{Amount: b.Amount, Currency: b.Currency, Source: b.Source}
			},
		}),
		writer.Command(typ, writer.CommandRoute[withdrawBody, account.Command]{
			Pattern: "POST /v1/accounts/{id}/withdrawals", Name: "WithdrawFunds",
			Command: func(_ string, b withdrawBody) account.Command {
				return account.WithdrawFunds{Amount: b.Amount, Currency: b.Currency, Reason: b.Reason}
			},
		}),
		writer.Command(typ, writer.CommandRoute[closeBody, account.Command]{
			Pattern: "POST /v1/accounts/{id}/close", Name: "CloseAccount", EmptyBody: true,
			Command: func(_ string, b closeBody) account.Command { return account.CloseAccount{Reason: b.Reason} },
		}),
	}
}
