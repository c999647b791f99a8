package transfers_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/modeltest"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/testenv"
)

// The read model of a transfer is the fold of its events, owned by the
// principal who requested it.
func TestTransfersAreTheFold(t *testing.T) {
	rdb, root := testenv.Redis(t)
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	var events []log.Event
	// The requester appends the first event, the process manager the rest
	// on the requester's behalf: the requester owns the transfer.
	add := func(id string, version int64, ev transfer.Event) {
		payload, _ := json.Marshal(ev)
		meta := log.Metadata{CorrelationID: "corr-" + id, Principal: "process-manager", OnBehalfOf: "req-" + id}
		if version == 1 {
			meta = log.Metadata{CorrelationID: "corr-" + id, Principal: "req-" + id}
		}
		events = append(events, log.Event{ID: uuid.Must(uuid.NewV7()), AggregateType: transfer.AggregateType, AggregateID: id,
			Version: version, Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
			RecordedAt: at.Add(time.Duration(len(events)) * time.Second), GlobalPosition: int64(len(events) + 1), Metadata: meta})
	}
	add("t-ok", 1, transfer.TransferRequested{From: "a", To: "b", Amount: 300, Currency: "EUR", Reference: "rent"})
	add("t-bad", 1, transfer.TransferRequested{From: "a", To: "c", Amount: 200, Currency: "EUR", Reference: "gift"})
	add("t-run", 1, transfer.TransferRequested{From: "b", To: "a", Amount: 5, Currency: "EUR", Reference: "tip"})
	add("t-ok", 2, transfer.TransferCompleted{})
	add("t-bad", 2, transfer.TransferFailed{Reason: "deposit refused: pending", Refunded: true})
	modeltest.Project(t, rdb, root, transfers.Projection{}, 8, events)

	q := transfers.NewQueries(rdb, root, readmodels.NewViews(rdb, 0))
	ctx := context.Background()
	for id, want := range map[string]transfers.Summary{
		"t-ok":  {ID: "t-ok", From: "a", To: "b", Amount: 300, Currency: "EUR", Reference: "rent", Status: "completed", Version: 2, CorrelationID: "corr-t-ok", Principal: "req-t-ok"},
		"t-bad": {ID: "t-bad", From: "a", To: "c", Amount: 200, Currency: "EUR", Reference: "gift", Status: "failed", Reason: "deposit refused: pending", Refunded: true, Version: 2, CorrelationID: "corr-t-bad", Principal: "req-t-bad"},
		"t-run": {ID: "t-run", From: "b", To: "a", Amount: 5, Currency: "EUR", Reference: "tip", Status: "requested", Version: 1, CorrelationID: "corr-t-run", Principal: "req-t-run"},
	} {
		got, found, err := q.Get(ctx, id)
		if err != nil || !found {
			t.Fatalf("%s: found %v, %v", id, found, err)
		}
		if (got.EndedAt != nil) != (want.Status != "requested") || got.RequestedAt.IsZero() {
			t.Errorf("%s: requested at %v, ended at %v", id, got.RequestedAt, got.EndedAt)
		}
		got.EndedAt, got.RequestedAt = nil, time.Time{}
		if got != want {
			t.Errorf("%s: %+v, want %+v", id, got, want)
		}
	}
	if _, found, err := q.Get(ctx, "t-none"); found || err != nil {
		t.Fatalf("an unknown transfer: found %v, %v", found, err)
	}
}
