// Package account is the bank-account aggregate as a pure decider: Decide turns
// a command into events or a rule violation, Evolve folds one event into the
// state. It does no I/O and imports no infrastructure.
package account

import (
	"github.com/tributary-es/tributary/internal/decider"

	"strings"
	"unicode/utf8"
)

// AggregateType names this aggregate in the event log.
const AggregateType = "account"

// StateSchemaVersion is the version of State's JSON shape. Bump it whenever
// State changes so that older snapshots are ignored instead of trusted.
const StateSchemaVersion = 1

// Status is the lifecycle stage of an account.
type Status string

// The statuses an account passes through.
const (
	StatusNone    Status = ""        // never opened
	StatusPending Status = "pending" // opened, not yet activated
	StatusActive  Status = "active"
	StatusClosed  Status = "closed"
)

// State is what Decide needs to know about one account.
type State struct {
	ID       string `json:"id"`
	Owner    string `json:"owner"`
	Currency string `json:"currency"`
	// Balance is in minor units of Currency (cents for EUR).
	Balance int64  `json:"balance"`
	Status  Status `json:"status"`
}

// Command is one of the commands below.
type Command interface{ commandName() string }

// OpenAccount opens a new account, optionally with a first deposit.
type OpenAccount struct {
	ID             string
	Owner          string
	Currency       string
	InitialDeposit int64 // minor units; 0 for none
}

// ActivateAccount activates a pending account so that money can move.
type ActivateAccount struct{}

// DepositFunds adds money to an active account.
type DepositFunds struct {
	Amount   int64 // minor units, > 0
	Currency string
	Source   string
}

// WithdrawFunds takes money from an active account that holds enough of it.
type WithdrawFunds struct {
	Amount   int64 // minor units, > 0
	Currency string
	Reason   string
}

// CloseAccount closes an account whose balance is zero.
type CloseAccount struct {
	Reason string
}

// RefundFunds gives back money that left the account for something that
// then failed (a transfer whose target refused the deposit). Unlike a
// deposit it is accepted whatever the account's status and above the
// deposit limit: the money was this account's, and must not be lost.
type RefundFunds struct {
	Amount   int64 // minor units, > 0
	Currency string
	Source   string // what is refunded, e.g. "refund:transfer:<id>"
}

func (OpenAccount) commandName() string     { return "OpenAccount" }
func (ActivateAccount) commandName() string { return "ActivateAccount" }
func (DepositFunds) commandName() string    { return "DepositFunds" }
func (WithdrawFunds) commandName() string   { return "WithdrawFunds" }
func (CloseAccount) commandName() string    { return "CloseAccount" }
func (RefundFunds) commandName() string     { return "RefundFunds" }

// CommandName returns the name of a command, for metrics and traces.
func CommandName(c Command) string { return c.commandName() }

// currencyExponent tells whether accounts may hold a currency and its number
// of decimal places (ISO 4217 minor unit).
func currencyExponent(code string) (int, bool) {
	switch code {
	case "EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CAD", "AUD":
		return 2, true
	case "JPY", "KRW":
		return 0, true
	}
	return 0, false
}

// MaxDepositMajorUnits is the largest single deposit, in major units
// (1,000,000.00 EUR is 100,000,000 cents).
const MaxDepositMajorUnits = 1_000_000

// MaxDeposit returns the largest single deposit in minor units of currency.
func MaxDeposit(currency string) int64 {
	exp, _ := currencyExponent(currency)
	limit := int64(MaxDepositMajorUnits)
	for range exp {
		limit *= 10
	}
	return limit
}

const maxTextLen = 200

func checkText(field, value string, required bool) error {
	if required && strings.TrimSpace(value) == "" {
		return decider.Invalid("missing-"+field, "%s is required", field)
	}
	if !utf8.ValidString(value) || utf8.RuneCountInString(value) > maxTextLen {
		return decider.Invalid("invalid-"+field, "%s must be valid UTF-8 of at most %d characters", field, maxTextLen)
	}
	return nil
}

func checkAmount(s State, amount int64, currency string) error {
	if amount <= 0 {
		return decider.Invalid("invalid-amount", "amount must be a positive number of minor units, got %d", amount)
	}
	if currency != s.Currency {
		return decider.Violated("currency-mismatch", "amount is in %q but the account holds %q", currency, s.Currency)
	}
	return nil
}

// Decide returns the events that command c causes on an account in state s,
// or a *decider.RuleError saying why it is refused. Events carry no clock of their
// own: the store stamps the recorded time.
func Decide(s State, c Command) ([]Event, error) {
	if _, ok := c.(OpenAccount); !ok && s.Status == StatusNone {
		return nil, decider.NotFound("account-not-found", "the account was never opened")
	}
	switch c := c.(type) {
	case OpenAccount:
		return decideOpen(s, c)
	case ActivateAccount:
		if s.Status != StatusPending {
			return nil, decider.Violated("not-pending", "only a pending account can be activated; this one is %s", s.Status)
		}
		return []Event{AccountActivated{}}, nil
	case DepositFunds:
		if err := checkText("source", c.Source, true); err != nil {
			return nil, err
		}
		if err := checkAmount(s, c.Amount, c.Currency); err != nil {
			return nil, err
		}
		if s.Status != StatusActive {
			return nil, decider.Violated("account-not-active", "deposits need an active account; this one is %s", s.Status)
		}
		if limit := MaxDeposit(s.Currency); c.Amount > limit {
			return nil, decider.Violated("deposit-limit-exceeded", "a single deposit may be at most %d minor units, got %d", limit, c.Amount)
		}
		return []Event{FundsDeposited{Amount: c.Amount, Currency: c.Currency, Source: c.Source}}, nil
	case WithdrawFunds:
		if err := checkText("reason", c.Reason, true); err != nil {
			return nil, err
		}
		if err := checkAmount(s, c.Amount, c.Currency); err != nil {
			return nil, err
		}
		if s.Status != StatusActive {
			return nil, decider.Violated("account-not-active", "withdrawals need an active account; this one is %s", s.Status)
		}
		if c.Amount > s.Balance {
			return nil, decider.Violated("insufficient-funds", "balance %d is less than the %d requested", s.Balance, c.Amount)
		}
		return []Event{FundsWithdrawn{Amount: c.Amount, Currency: c.Currency, Reason: c.Reason}}, nil
	case RefundFunds:
		if err := checkText("source", c.Source, true); err != nil {
			return nil, err
		}
		if err := checkAmount(s, c.Amount, c.Currency); err != nil {
			return nil, err
		}
		return []Event{FundsDeposited{Amount: c.Amount, Currency: c.Currency, Source: c.Source}}, nil
	case CloseAccount:
		if err := checkText("reason", c.Reason, false); err != nil {
			return nil, err
		}
		if s.Status == StatusClosed {
			return nil, decider.Violated("already-closed", "the account is already closed")
		}
		if s.Balance != 0 {
			return nil, decider.Violated("balance-not-zero", "only an account with a zero balance can be closed; balance is %d", s.Balance)
		}
		return []Event{AccountClosed{Reason: c.Reason}}, nil
	}
	return nil, decider.Invalid("unknown-command", "unknown command %T", c)
}

func decideOpen(s State, c OpenAccount) ([]Event, error) {
	if s.Status != StatusNone {
		return nil, decider.AlreadyExists("already-open", "account %s already exists", s.ID)
	}
	if err := checkText("owner", c.Owner, true); err != nil {
		return nil, err
	}
	if _, ok := currencyExponent(c.Currency); !ok {
		return nil, decider.Invalid("unsupported-currency", "currency %q is not supported", c.Currency)
	}
	if c.InitialDeposit < 0 {
		return nil, decider.Invalid("invalid-amount", "initial deposit must not be negative, got %d", c.InitialDeposit)
	}
	if limit := MaxDeposit(c.Currency); c.InitialDeposit > limit {
		return nil, decider.Violated("deposit-limit-exceeded", "a single deposit may be at most %d minor units, got %d", limit, c.InitialDeposit)
	}
	events := []Event{AccountOpened{Owner: c.Owner, Currency: c.Currency}}
	if c.InitialDeposit > 0 {
		events = append(events, FundsDeposited{Amount: c.InitialDeposit, Currency: c.Currency, Source: "initial-deposit"})
	}
	return events, nil
}

// Evolve applies one event to the state. It never fails.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case AccountOpened:
		s.Owner, s.Currency, s.Status = e.Owner, e.Currency, StatusPending
	case AccountActivated:
		s.Status = StatusActive
	case FundsDeposited:
		s.Balance += e.Amount
	case FundsWithdrawn:
		s.Balance -= e.Amount
	case AccountClosed:
		s.Status = StatusClosed
	}
	return s
}

// Creates tells the command that starts an account: OpenAccount.
func Creates(c Command) bool {
	_, ok := c.(OpenAccount)
	return ok
}

// Aggregate is the account as an aggregate type: what the platform runs.
func Aggregate() decider.Aggregate[State, Command, Event] {
	return decider.Aggregate[State, Command, Event]{
		Name: AggregateType, Initial: Initial, Decide: Decide, Evolve: Evolve,
		DecodeEvent: DecodeEvent, StateSchemaVersion: StateSchemaVersion, Creates: Creates,
	}
}

// Initial returns the state of an account with no events yet.
func Initial(id string) State { return State{ID: id} }

// Fold replays events over the initial state.
func Fold(id string, events []Event) State { return decider.Fold(Initial(id), Evolve, events) }
