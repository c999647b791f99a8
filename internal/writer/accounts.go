package writer

import (
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/schemas"
)

// AccountHandler runs the bank-account commands.
type AccountHandler = aggregate.Handler[account.State, account.Command, account.Event]

// Upcasters returns the upcaster chain of every domain the writer serves.
func Upcasters() *log.Upcasters {
	return log.NewUpcasters().
		Register(account.AggregateType, "FundsDeposited", 1, account.UpcastFundsDepositedV1)
}

// New wires the writer's API for the account and transfer domains over pool: the event
// store (with the upcasters), the event schemas, the command handler and
// the OpenAPI document (schemas/openapi/writer.yaml).
func New(pool *pgxpool.Pool, cfg Config, opts aggregate.Options, reg *prometheus.Registry, logger *slog.Logger) (*Server, error) {
	eventSchemas, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		return nil, err
	}
	spec, err := apispec.Handler("writer")
	if err != nil {
		return nil, err
	}
	store := postgres.NewStore(pool, Upcasters(), postgres.WithTracerProvider(cfg.TracerProvider))
	accounts := aggregate.NewHandler(AccountType(), store, eventSchemas, opts)
	transferHandler := aggregate.NewHandler(TransferType(), store, eventSchemas, opts)
	return NewServer(cfg, store, accounts, reg, spec, logger).WithTransfers(transferHandler), nil
}

// AccountType is the bank account as an aggregate type of the platform.
func AccountType() aggregate.Type[account.State, account.Command, account.Event] {
	return aggregate.Type[account.State, account.Command, account.Event]{
		Name:               account.AggregateType,
		Initial:            account.Initial,
		Decide:             account.Decide,
		Evolve:             account.Evolve,
		DecodeEvent:        account.DecodeEvent,
		StateSchemaVersion: account.StateSchemaVersion,
	}
}

// Accounts returns the account commands' handler, to share with a process
// manager in the same process: one cache of states and one lock per
// aggregate for both, so that neither finds the other's appends a conflict.
func (s *Server) Accounts() *AccountHandler { return s.accounts }

// Store returns the event store the API appends to: sharing it shares its
// group commit.
func (s *Server) Store() *postgres.Store { return s.store }

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

func (s *Server) openAccount(w http.ResponseWriter, r *http.Request) {
	var body openAccountBody
	raw, p := readJSON(r, s.cfg.MaxBodyBytes, false, &body)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	if body.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		body.ID = id.String()
	} else if p := httpapi.ID(body.ID); p != nil {
		problem.Write(w, r, p)
		return
	}
	cc, p := s.parseCommandContext(r, raw)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	cmd := account.OpenAccount{ID: body.ID, Owner: body.Owner, Currency: body.Currency, InitialDeposit: body.InitialDeposit}
	runCommand(s, w, r, s.accounts, body.ID, account.Command(cmd), cc, true, "OpenAccount")
}

// accountAction handles POST /v1/accounts/{id}/<action>: the body, of type
// B, becomes a command.
func accountAction[B any](s *Server, name string, allowEmpty bool, toCommand func(B) account.Command) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if p := httpapi.ID(id); p != nil {
			problem.Write(w, r, p)
			return
		}
		var body B
		raw, p := readJSON(r, s.cfg.MaxBodyBytes, allowEmpty, &body)
		if p != nil {
			problem.Write(w, r, p)
			return
		}
		cc, p := s.parseCommandContext(r, raw)
		if p != nil {
			problem.Write(w, r, p)
			return
		}
		runCommand(s, w, r, s.accounts, id, toCommand(body), cc, false, name)
	}
}

func (s *Server) accountRoutes() []route {
	return []route{
		{"POST /v1/accounts", http.HandlerFunc(s.openAccount)},
		{"POST /v1/accounts/{id}/activate", accountAction(s, "ActivateAccount", true,
			func(struct{}) account.Command { return account.ActivateAccount{} })},
		{"POST /v1/accounts/{id}/deposits", accountAction(s, "DepositFunds", false,
			func(b depositBody) account.Command {
				return account.DepositFunds{Amount: b.Amount, Currency: b.Currency, Source: b.Source}
			})},
		{"POST /v1/accounts/{id}/withdrawals", accountAction(s, "WithdrawFunds", false,
			func(b withdrawBody) account.Command {
				return account.WithdrawFunds{Amount: b.Amount, Currency: b.Currency, Reason: b.Reason}
			})},
		{"POST /v1/accounts/{id}/close", accountAction(s, "CloseAccount", true,
			func(b closeBody) account.Command { return account.CloseAccount{Reason: b.Reason} })},
	}
}
