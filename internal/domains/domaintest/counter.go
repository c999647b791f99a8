package domaintest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tributary-es/tributary/internal/decider"
)

// AggregateType names the counter in the event log.
const AggregateType = "counter"

// Status is the lifecycle stage of a counter.
type Status string

// The statuses a counter passes through.
const (
	StatusNone    Status = ""        // never created
	StatusPending Status = "pending" // created, not started yet
	StatusActive  Status = "active"
	StatusRetired Status = "retired"
)

// MaxStep is the largest single increment: more is refused with 422
// step-limit-exceeded.
const MaxStep = 1_000_000

// Units are the units a counter may count in.
var Units = []string{"items", "grams", "meters", "seconds"}

// State is what Decide needs to know about one counter.
type State struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Unit   string `json:"unit"`
	Value  int64  `json:"value"`
	Status Status `json:"status"`
}

// Command is one of the commands below.
type Command interface{ commandName() string }

// Create creates a counter for an owner in a unit, optionally with a first
// increment.
type Create struct {
	ID, Owner, Unit string
	Initial         int64
}

// Start starts a pending counter so that its value may change.
type Start struct{}

// Increment adds to an active counter.
type Increment struct {
	Amount     int64
	Unit, Note string
}

// Decrement takes from an active counter that holds enough.
type Decrement struct {
	Amount     int64
	Unit, Note string
}

// Retire retires a counter whose value is zero.
type Retire struct{ Reason string }

func (Create) commandName() string    { return "CreateCounter" }
func (Start) commandName() string     { return "StartCounter" }
func (Increment) commandName() string { return "IncrementCounter" }
func (Decrement) commandName() string { return "DecrementCounter" }
func (Retire) commandName() string    { return "RetireCounter" }

// Event is one fact about a counter.
type Event interface {
	EventType() string
	SchemaVersion() int
}

// Created: a counter was created for an owner in a unit.
type Created struct {
	Owner string `json:"owner"`
	Unit  string `json:"unit"`
}

// Started: a pending counter became active.
type Started struct{}

// Incremented: the value went up. Schema v2 added Note; v1 events read as
// note "unknown" (UpcastIncrementedV1).
type Incremented struct {
	Amount int64  `json:"amount"`
	Unit   string `json:"unit"`
	Note   string `json:"note"`
}

// Decremented: the value went down.
type Decremented struct {
	Amount int64  `json:"amount"`
	Unit   string `json:"unit"`
	Note   string `json:"note"`
}

// Retired: the counter was retired; its value never changes again.
type Retired struct {
	Reason string `json:"reason,omitempty"`
}

func (Created) EventType() string     { return "CounterCreated" }
func (Started) EventType() string     { return "CounterStarted" }
func (Incremented) EventType() string { return "CounterIncremented" }
func (Decremented) EventType() string { return "CounterDecremented" }
func (Retired) EventType() string     { return "CounterRetired" }

func (Created) SchemaVersion() int     { return 1 }
func (Started) SchemaVersion() int     { return 1 }
func (Incremented) SchemaVersion() int { return 2 }
func (Decremented) SchemaVersion() int { return 1 }
func (Retired) SchemaVersion() int     { return 1 }

// DecodeEvent turns a stored payload, upcast to its current schema version,
// back into an Event.
func DecodeEvent(eventType string, payload []byte) (Event, error) {
	switch eventType {
	case "CounterCreated":
		return decider.Decode[Created, Event](payload)
	case "CounterStarted":
		return decider.Decode[Started, Event](payload)
	case "CounterIncremented":
		return decider.Decode[Incremented, Event](payload)
	case "CounterDecremented":
		return decider.Decode[Decremented, Event](payload)
	case "CounterRetired":
		return decider.Decode[Retired, Event](payload)
	}
	return nil, fmt.Errorf("unknown counter event type %q", eventType)
}

// UpcastIncrementedV1 lifts a CounterIncremented v1 payload, which had no
// note, to v2 by reading its note as "unknown".
func UpcastIncrementedV1(payload json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("CounterIncremented v1: not a JSON object: %v", err)
	}
	if _, ok := fields["note"]; !ok {
		fields["note"] = json.RawMessage(`"unknown"`)
	}
	return json.Marshal(fields)
}

func checkText(field, value string, required bool) error {
	if required && strings.TrimSpace(value) == "" {
		return decider.Invalid("missing-"+field, "%s is required", field)
	}
	if !utf8.ValidString(value) || utf8.RuneCountInString(value) > 200 {
		return decider.Invalid("invalid-"+field, "%s must be valid UTF-8 of at most 200 characters", field)
	}
	return nil
}

func checkStep(s State, amount int64, unit, note string) error {
	if err := checkText("note", note, true); err != nil {
		return err
	}
	if amount <= 0 {
		return decider.Invalid("invalid-amount", "amount must be positive, got %d", amount)
	}
	if unit != s.Unit {
		return decider.Violated("unit-mismatch", "amount is in %q but the counter counts %q", unit, s.Unit)
	}
	if s.Status != StatusActive {
		return decider.Violated("counter-not-active", "the counter is %s, not active", s.Status)
	}
	return nil
}

// Decide returns the events command c causes on a counter in state s, or a
// *decider.RuleError saying why it is refused.
func Decide(s State, c Command) ([]Event, error) {
	if _, ok := c.(Create); !ok && s.Status == StatusNone {
		return nil, decider.NotFound("counter-not-found", "the counter was never created")
	}
	switch c := c.(type) {
	case Create:
		if s.Status != StatusNone {
			return nil, decider.AlreadyExists("already-created", "counter %s already exists", s.ID)
		}
		if err := checkText("owner", c.Owner, true); err != nil {
			return nil, err
		}
		if !knownUnit(c.Unit) {
			return nil, decider.Invalid("unsupported-unit", "unit %q is not one of %v", c.Unit, Units)
		}
		if c.Initial < 0 {
			return nil, decider.Invalid("invalid-amount", "the initial value must not be negative, got %d", c.Initial)
		}
		if c.Initial > MaxStep {
			return nil, decider.Violated("step-limit-exceeded", "a single step may be at most %d, got %d", MaxStep, c.Initial)
		}
		events := []Event{Created{Owner: c.Owner, Unit: c.Unit}}
		if c.Initial > 0 {
			events = append(events, Incremented{Amount: c.Initial, Unit: c.Unit, Note: "initial"})
		}
		return events, nil
	case Start:
		if s.Status != StatusPending {
			return nil, decider.Violated("not-pending", "only a pending counter can be started; this one is %s", s.Status)
		}
		return []Event{Started{}}, nil
	case Increment:
		if err := checkStep(s, c.Amount, c.Unit, c.Note); err != nil {
			return nil, err
		}
		if c.Amount > MaxStep {
			return nil, decider.Violated("step-limit-exceeded", "a single step may be at most %d, got %d", MaxStep, c.Amount)
		}
		return []Event{Incremented{Amount: c.Amount, Unit: c.Unit, Note: c.Note}}, nil
	case Decrement:
		if err := checkStep(s, c.Amount, c.Unit, c.Note); err != nil {
			return nil, err
		}
		if c.Amount > s.Value {
			return nil, decider.Violated("below-zero", "the value %d is less than the %d asked for", s.Value, c.Amount)
		}
		return []Event{Decremented{Amount: c.Amount, Unit: c.Unit, Note: c.Note}}, nil
	case Retire:
		if err := checkText("reason", c.Reason, false); err != nil {
			return nil, err
		}
		if s.Status == StatusRetired {
			return nil, decider.Violated("already-retired", "the counter is retired already")
		}
		if s.Value != 0 {
			return nil, decider.Violated("value-not-zero", "only a counter at zero can be retired; it is at %d", s.Value)
		}
		return []Event{Retired{Reason: c.Reason}}, nil
	}
	return nil, decider.Invalid("unknown-command", "unknown command %T", c)
}

func knownUnit(u string) bool {
	for _, known := range Units {
		if u == known {
			return true
		}
	}
	return false
}

// Evolve applies one event to the state. It never fails.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case Created:
		s.Owner, s.Unit, s.Status = e.Owner, e.Unit, StatusPending
	case Started:
		s.Status = StatusActive
	case Incremented:
		s.Value += e.Amount
	case Decremented:
		s.Value -= e.Amount
	case Retired:
		s.Status = StatusRetired
	}
	return s
}

// Initial is the state of a counter without events.
func Initial(id string) State { return State{ID: id} }

// Aggregate is the counter as an aggregate type: what the platform runs.
func Aggregate() decider.Aggregate[State, Command, Event] {
	return decider.Aggregate[State, Command, Event]{
		Name: AggregateType, Initial: Initial, Decide: Decide, Evolve: Evolve,
		DecodeEvent: DecodeEvent, StateSchemaVersion: 1,
	}
}
