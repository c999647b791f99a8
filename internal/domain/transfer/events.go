package transfer

import (
	"fmt"
	"github.com/tributary-es/tributary/internal/decider"
)

// Event is one fact about a transfer.
type Event interface {
	EventType() string
	SchemaVersion() int
}

// TransferRequested: moving Amount from one account to another was asked for.
type TransferRequested struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// TransferCompleted: the target account was credited.
type TransferCompleted struct{}

// TransferFailed: the transfer could not be done; Refunded says whether the
// source had been debited and was credited back.
type TransferFailed struct {
	Reason   string `json:"reason"`
	Refunded bool   `json:"refunded"`
}

func (TransferRequested) EventType() string { return "TransferRequested" }
func (TransferCompleted) EventType() string { return "TransferCompleted" }
func (TransferFailed) EventType() string    { return "TransferFailed" }

func (TransferRequested) SchemaVersion() int { return 1 }
func (TransferCompleted) SchemaVersion() int { return 1 }
func (TransferFailed) SchemaVersion() int    { return 1 }

// DecodeEvent turns a stored payload back into an Event.
func DecodeEvent(eventType string, payload []byte) (Event, error) {
	switch eventType {
	case "TransferRequested":
		return decider.Decode[TransferRequested, Event](payload)
	case "TransferCompleted":
		return decider.Decode[TransferCompleted, Event](payload)
	case "TransferFailed":
		return decider.Decode[TransferFailed, Event](payload)
	}
	return nil, fmt.Errorf("unknown transfer event type %q", eventType)
}
