package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
)

// eventStore is the whole event store, read straight from Postgres after
// the run: the truth every other place is checked against.
type eventStore struct {
	events  []log.Event          // in global order
	byID    map[string]log.Event // event id → event
	streams map[streamKey][]log.Event
	// byCorrelation lists the events of each correlation id.
	byCorrelation map[string][]log.Event
}

type streamKey struct{ aggregateType, aggregateID string }

func readStore(ctx context.Context, databaseURL string) (*eventStore, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT global_position, event_id, aggregate_type, aggregate_id, version, event_type,
        schema_version, payload, recorded_at, correlation_id, causation_id, principal, on_behalf_of FROM events ORDER BY global_position`)
	if err != nil {
		return nil, fmt.Errorf("read the event store: %w", err)
	}
	s := &eventStore{byID: make(map[string]log.Event), streams: make(map[streamKey][]log.Event), byCorrelation: make(map[string][]log.Event)}
	for rows.Next() {
		var e log.Event
		if err := rows.Scan(&e.GlobalPosition, &e.ID, &e.AggregateType, &e.AggregateID, &e.Version, &e.Type,
			&e.SchemaVersion, &e.Payload, &e.RecordedAt, &e.CorrelationID, &e.CausationID, &e.Principal, &e.OnBehalfOf); err != nil {
			return nil, fmt.Errorf("read the event store: %w", err)
		}
		s.events = append(s.events, e)
		s.byID[e.ID.String()] = e
		k := streamKey{e.AggregateType, e.AggregateID}
		s.streams[k] = append(s.streams[k], e)
		s.byCorrelation[e.CorrelationID] = append(s.byCorrelation[e.CorrelationID], e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the event store: %w", err)
	}
	for _, evs := range s.streams {
		slices.SortFunc(evs, func(a, b log.Event) int { return cmp.Compare(a.Version, b.Version) })
	}
	return s, nil
}

// ids returns the aggregate ids of a type, sorted.
func (s *eventStore) ids(aggregateType string) []string {
	var ids []string
	for k := range s.streams {
		if k.aggregateType == aggregateType {
			ids = append(ids, k.aggregateID)
		}
	}
	slices.Sort(ids)
	return ids
}

// account folds an account's events; it calls step with the state after
// each one.
func (s *eventStore) account(id string, step func(log.Event, account.State)) (account.State, error) {
	var st account.State
	for _, e := range s.streams[streamKey{account.AggregateType, id}] {
		ev, err := account.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			return st, fmt.Errorf("%s v%d: %w", id, e.Version, err)
		}
		st = account.Evolve(st, ev)
		if step != nil {
			step(e, st)
		}
	}
	return st, nil
}

// transfer folds a transfer's events.
func (s *eventStore) transfer(id string) (transfer.State, error) {
	var st transfer.State
	for _, e := range s.streams[streamKey{transfer.AggregateType, id}] {
		ev, err := transfer.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			return st, fmt.Errorf("%s v%d: %w", id, e.Version, err)
		}
		st = transfer.Evolve(st, ev)
	}
	return st, nil
}

// version is the last version of a stream; 0 for none.
func (s *eventStore) version(aggregateType, id string) int64 {
	evs := s.streams[streamKey{aggregateType, id}]
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Version
}

// owner is the principal of a stream's first event, who owns it (DESIGN
// G11); "" for no stream.
func (s *eventStore) owner(aggregateType, id string) string {
	evs := s.streams[streamKey{aggregateType, id}]
	if len(evs) == 0 {
		return ""
	}
	return evs[0].Principal
}
