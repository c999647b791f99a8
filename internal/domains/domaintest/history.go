package domaintest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/log"
)

// History is a valid event history of many counters, as the writer would
// store it: versions 1, 2, 3… per counter, global positions in order,
// events of different counters interleaved.
type History struct {
	Events []log.Event
	ByID   map[string][]log.Event
}

// Generate makes count events over n counters (ids depend on seed): each
// counter is created, started, then incremented and decremented within its
// value, and sometimes retired at zero. Every event's principal is
// principal.
func Generate(n, count int, seed uint64, principal string) *History {
	rng := rand.New(rand.NewPCG(seed, 1))
	h := &History{ByID: make(map[string][]log.Event)}
	states := make([]State, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("ctr-%d-%05d", seed, i)
		states[i] = Initial(ids[i])
	}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	emit := func(i int, ev Event) {
		id := ids[i]
		payload, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		e := log.Event{
			ID: uuid.Must(uuid.NewV7()), AggregateType: AggregateType, AggregateID: id,
			Version: int64(len(h.ByID[id]) + 1), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(),
			Payload: payload, RecordedAt: base.Add(time.Duration(len(h.Events)) * time.Millisecond),
			GlobalPosition: int64(len(h.Events) + 1),
			Metadata: log.Metadata{
				CorrelationID: fmt.Sprintf("corr-%s-%d", id, len(h.ByID[id])/3),
				CausationID:   uuid.NewString(), Principal: principal,
			},
		}
		h.Events = append(h.Events, e)
		h.ByID[id] = append(h.ByID[id], e)
		states[i] = Evolve(states[i], ev)
	}
	for len(h.Events) < count {
		i := rng.IntN(n)
		s := states[i]
		switch {
		case s.Status == StatusNone:
			emit(i, Created{Owner: "owner " + ids[i], Unit: "items"})
		case s.Status == StatusPending:
			emit(i, Started{})
		case s.Status == StatusRetired:
			continue
		case s.Value > 0 && rng.IntN(3) == 0:
			emit(i, Decremented{Amount: 1 + rng.Int64N(s.Value), Unit: "items", Note: "used"})
		case s.Value == 0 && rng.IntN(40) == 0:
			emit(i, Retired{Reason: "done"})
		default:
			emit(i, Incremented{Amount: 1 + rng.Int64N(100_000), Unit: "items", Note: "stocked"})
		}
	}
	return h
}

// Fold is the state a counter's stored events give.
func Fold(events []log.Event) (State, error) {
	if len(events) == 0 {
		return State{}, fmt.Errorf("no events to fold")
	}
	s := Initial(events[0].AggregateID)
	for _, e := range events {
		ev, err := DecodeEvent(e.Type, e.Payload)
		if err != nil {
			return State{}, err
		}
		s = Evolve(s, ev)
	}
	return s, nil
}
