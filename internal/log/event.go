// Package log defines what the event log holds — the envelope of every stored
// event — and the rules that apply to every read of it: upcasting old schema
// versions and validating new payloads. It knows nothing of any domain.
package log

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event is one stored event with its full envelope (DESIGN §3).
type Event struct {
	ID             uuid.UUID       `json:"id"`
	AggregateType  string          `json:"aggregateType"`
	AggregateID    string          `json:"aggregateId"`
	Version        int64           `json:"version"`
	Type           string          `json:"type"`
	SchemaVersion  int             `json:"schemaVersion"`
	Payload        json.RawMessage `json:"payload"`
	RecordedAt     time.Time       `json:"recordedAt"`
	GlobalPosition int64           `json:"globalPosition"`
	Metadata
}

// Metadata is what an event carries about why and by whom it happened.
type Metadata struct {
	// CorrelationID is the id of the original request; every event that
	// follows from it keeps it.
	CorrelationID string `json:"correlationId"`
	// CausationID is the id of the command or event that directly caused this one.
	CausationID string `json:"causationId"`
	// Principal is who acted.
	Principal string `json:"principal"`
	// OnBehalfOf is the principal who asked, when Principal acted for
	// someone else (a process manager's steps); empty otherwise.
	OnBehalfOf string `json:"onBehalfOf,omitempty"`
	// TraceParent and TraceState are the W3C trace context of the command.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// NewEvent is an event about to be appended: the store assigns its version,
// global position and recorded time.
type NewEvent struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Payload       json.RawMessage
}
