package log

import (
	"encoding/json"
	"fmt"
)

// UpcastFunc turns the payload of one schema version into the next one.
type UpcastFunc func(payload json.RawMessage) (json.RawMessage, error)

type upcastKey struct {
	aggregateType, eventType string
	from                     int
}

// Upcasters holds, per aggregate type, event type and schema version, the
// function that lifts a payload one version up. Reads apply the chain until
// no step is left, so stored events are never rewritten (G8). Build it once
// at start; it is safe for concurrent reads afterwards.
type Upcasters struct {
	steps map[upcastKey]UpcastFunc
}

// NewUpcasters returns an empty chain: every payload reads as stored.
func NewUpcasters() *Upcasters {
	return &Upcasters{steps: make(map[upcastKey]UpcastFunc)}
}

// Register adds the step from schema version from to from+1. It panics on a
// duplicate registration, which is a wiring bug found at start.
func (u *Upcasters) Register(aggregateType, eventType string, from int, fn UpcastFunc) *Upcasters {
	k := upcastKey{aggregateType, eventType, from}
	if _, dup := u.steps[k]; dup {
		panic(fmt.Sprintf("upcaster for %s/%s v%d registered twice", aggregateType, eventType, from))
	}
	u.steps[k] = fn
	return u
}

// Upcast lifts e's payload to the newest schema version the chain knows.
func (u *Upcasters) Upcast(e Event) (Event, error) {
	if u == nil {
		return e, nil
	}
	for {
		step, ok := u.steps[upcastKey{e.AggregateType, e.Type, e.SchemaVersion}]
		if !ok {
			return e, nil
		}
		payload, err := step(e.Payload)
		if err != nil {
			return e, fmt.Errorf("upcast %s/%s v%d (event %s): %w", e.AggregateType, e.Type, e.SchemaVersion, e.ID, err)
		}
		e.Payload = payload
		e.SchemaVersion++
	}
}
