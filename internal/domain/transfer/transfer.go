// Package transfer is the money transfer between two accounts as a pure
// decider. A transfer touches two account aggregates, so it cannot be one
// transaction: this aggregate records what was asked and how it ended, and a
// process manager moves the money (withdraw from the source, deposit to the
// target, refund the source if the deposit is refused) and reports back.
// It does no I/O and imports no infrastructure.
package transfer

import (
	"github.com/tributary-es/tributary/internal/decider"

	"regexp"
	"strings"
	"unicode/utf8"
)

// AggregateType names this aggregate in the event log.
const AggregateType = "transfer"

// StateSchemaVersion is the version of State's JSON shape.
const StateSchemaVersion = 1

// Status is the lifecycle stage of a transfer.
type Status string

// The statuses a transfer passes through: requested, then completed or
// failed. Failed means no money moved in the end: either the source was
// never debited, or it was refunded.
const (
	StatusNone      Status = ""
	StatusRequested Status = "requested"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
)

// State is what Decide needs to know about one transfer.
type State struct {
	ID        string `json:"id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
	Status    Status `json:"status"`
	// Reason says why a failed transfer failed.
	Reason string `json:"reason,omitempty"`
}

// Command is one of the commands below.
type Command interface{ commandName() string }

// RequestTransfer asks to move Amount (minor units of Currency) from one
// account to another.
type RequestTransfer struct {
	From, To  string
	Amount    int64
	Currency  string
	Reference string
}

// CompleteTransfer records that the target was credited.
type CompleteTransfer struct{}

// FailTransfer records that the transfer cannot be done, and whether the
// source had been debited and was refunded.
type FailTransfer struct {
	Reason   string
	Refunded bool
}

func (RequestTransfer) commandName() string  { return "RequestTransfer" }
func (CompleteTransfer) commandName() string { return "CompleteTransfer" }
func (FailTransfer) commandName() string     { return "FailTransfer" }

// CommandName returns the name of a command, for metrics and traces.
func CommandName(c Command) string { return c.commandName() }

var (
	accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	currencyPattern  = regexp.MustCompile(`^[A-Z]{3}$`)
)

const maxTextLen = 200

func checkText(field, value string) error {
	if strings.TrimSpace(value) == "" {
		return decider.Invalid("missing-"+field, "%s is required", field)
	}
	if !utf8.ValidString(value) || utf8.RuneCountInString(value) > maxTextLen {
		return decider.Invalid("invalid-"+field, "%s must be valid UTF-8 of at most %d characters", field, maxTextLen)
	}
	return nil
}

// Decide returns the events that command c causes on a transfer in state s,
// or a *decider.RuleError saying why it is refused. The accounts' own rules (funds,
// status, currency, limits) are theirs to enforce when the process manager
// moves the money.
func Decide(s State, c Command) ([]Event, error) {
	if _, ok := c.(RequestTransfer); !ok && s.Status == StatusNone {
		return nil, decider.NotFound("transfer-not-found", "the transfer was never requested")
	}
	switch c := c.(type) {
	case RequestTransfer:
		if s.Status != StatusNone {
			return nil, decider.AlreadyExists("already-requested", "transfer %s already exists", s.ID)
		}
		switch {
		case !accountIDPattern.MatchString(c.From):
			return nil, decider.Invalid("invalid-from", "from must be an account id")
		case !accountIDPattern.MatchString(c.To):
			return nil, decider.Invalid("invalid-to", "to must be an account id")
		case c.From == c.To:
			return nil, decider.Invalid("same-account", "from and to must be different accounts")
		case c.Amount <= 0:
			return nil, decider.Invalid("invalid-amount", "amount must be a positive number of minor units, got %d", c.Amount)
		case !currencyPattern.MatchString(c.Currency):
			return nil, decider.Invalid("invalid-currency", "currency must be an ISO 4217 code such as EUR")
		}
		if err := checkText("reference", c.Reference); err != nil {
			return nil, err
		}
		return []Event{TransferRequested{From: c.From, To: c.To, Amount: c.Amount, Currency: c.Currency, Reference: c.Reference}}, nil
	case CompleteTransfer:
		if s.Status != StatusRequested {
			return nil, decider.Violated("not-in-progress", "only a requested transfer can complete; this one is %s", s.Status)
		}
		return []Event{TransferCompleted{}}, nil
	case FailTransfer:
		if err := checkText("reason", c.Reason); err != nil {
			return nil, err
		}
		if s.Status != StatusRequested {
			return nil, decider.Violated("not-in-progress", "only a requested transfer can fail; this one is %s", s.Status)
		}
		return []Event{TransferFailed{Reason: c.Reason, Refunded: c.Refunded}}, nil
	}
	return nil, decider.Invalid("unknown-command", "unknown command %T", c)
}

// Evolve applies one event to the state. It never fails.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case TransferRequested:
		s.From, s.To, s.Amount, s.Currency, s.Reference = e.From, e.To, e.Amount, e.Currency, e.Reference
		s.Status = StatusRequested
	case TransferCompleted:
		s.Status = StatusCompleted
	case TransferFailed:
		s.Status, s.Reason = StatusFailed, e.Reason
	}
	return s
}

// Creates tells the command that starts an transfer: RequestTransfer.
func Creates(c Command) bool {
	_, ok := c.(RequestTransfer)
	return ok
}

// Aggregate is the transfer as an aggregate type: what the platform runs.
func Aggregate() decider.Aggregate[State, Command, Event] {
	return decider.Aggregate[State, Command, Event]{
		Name: AggregateType, Initial: Initial, Decide: Decide, Evolve: Evolve,
		DecodeEvent: DecodeEvent, StateSchemaVersion: StateSchemaVersion, Creates: Creates,
	}
}

// Initial returns the state of a transfer with no events yet.
func Initial(id string) State { return State{ID: id} }

// Fold replays events over the initial state.
func Fold(id string, events []Event) State { return decider.Fold(Initial(id), Evolve, events) }
