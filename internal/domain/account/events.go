package account

import (
	"encoding/json"
	"fmt"
	"github.com/tributary-es/tributary/internal/decider"
)

// Event is one fact about an account. The type name and schema version are
// what the event log stores beside the JSON payload.
type Event interface {
	EventType() string
	SchemaVersion() int
}

// AccountOpened: an account was opened for an owner in a currency.
type AccountOpened struct {
	Owner    string `json:"owner"`
	Currency string `json:"currency"`
}

// AccountActivated: a pending account became active.
type AccountActivated struct{}

// FundsDeposited: money came into the account. Schema v2 added Source; v1
// events read as source "unknown" (see UpcastFundsDepositedV1).
type FundsDeposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Source   string `json:"source"`
}

// FundsWithdrawn: money left the account.
type FundsWithdrawn struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Reason   string `json:"reason"`
}

// AccountClosed: the account was closed; nothing moves any more.
type AccountClosed struct {
	Reason string `json:"reason,omitempty"`
}

func (AccountOpened) EventType() string    { return "AccountOpened" }
func (AccountActivated) EventType() string { return "AccountActivated" }
func (FundsDeposited) EventType() string   { return "FundsDeposited" }
func (FundsWithdrawn) EventType() string   { return "FundsWithdrawn" }
func (AccountClosed) EventType() string    { return "AccountClosed" }

func (AccountOpened) SchemaVersion() int    { return 1 }
func (AccountActivated) SchemaVersion() int { return 1 }
func (FundsDeposited) SchemaVersion() int   { return 2 }
func (FundsWithdrawn) SchemaVersion() int   { return 1 }
func (AccountClosed) SchemaVersion() int    { return 1 }

// DecodeEvent turns a stored payload, already upcast to the current schema
// version, back into an Event.
func DecodeEvent(eventType string, payload []byte) (Event, error) {
	switch eventType {
	case "AccountOpened":
		return decider.Decode[AccountOpened, Event](payload)
	case "AccountActivated":
		return decider.Decode[AccountActivated, Event](payload)
	case "FundsDeposited":
		return decider.Decode[FundsDeposited, Event](payload)
	case "FundsWithdrawn":
		return decider.Decode[FundsWithdrawn, Event](payload)
	case "AccountClosed":
		return decider.Decode[AccountClosed, Event](payload)
	}
	return nil, fmt.Errorf("unknown account event type %q", eventType)
}

// UpcastFundsDepositedV1 turns a FundsDeposited v1 payload, which had no
// source, into v2 by reading its source as "unknown".
func UpcastFundsDepositedV1(payload json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return nil, fmt.Errorf("FundsDeposited v1: %w", err)
	}
	if fields == nil {
		return nil, fmt.Errorf("FundsDeposited v1: payload is not a JSON object")
	}
	if _, ok := fields["source"]; !ok {
		fields["source"] = json.RawMessage(`"unknown"`)
	}
	return json.Marshal(fields)
}
