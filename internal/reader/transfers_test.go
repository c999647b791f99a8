package reader_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
)

// A transfer is served from its read model, at least as new as asked, and
// its events join the correlation's causation tree.
func TestTransferIsServed(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	ctx := context.Background()
	id := uuid.NewString()
	var last log.Event
	for i, ev := range []transfer.Event{
		transfer.TransferRequested{From: "a", To: "b", Amount: 300, Currency: "EUR", Reference: "rent"},
		transfer.TransferFailed{Reason: "deposit refused: the account is pending", Refunded: true},
	} {
		payload, _ := json.Marshal(ev)
		out, err := p.store.Append(ctx, postgres.AppendRequest{AggregateType: transfer.AggregateType, AggregateID: id,
			Expected: postgres.ExpectedVersion(i), Events: []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: ev.EventType(),
				SchemaVersion: ev.SchemaVersion(), Payload: payload}},
			Metadata: log.Metadata{CorrelationID: "corr-" + id, CausationID: fmt.Sprint("cause-", i), Principal: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		last = out[0]
	}
	r := p.read(fmt.Sprintf("/v1/transfers/%s?min_version=2", id))
	var got transfers.Summary
	r.json(t, &got)
	if r.status != http.StatusOK || got.Status != "failed" || !got.Refunded || got.Amount != 300 || got.From != "a" ||
		got.Version != 2 || got.EndedAt == nil || r.header.Get("ETag") != `"2"` {
		t.Fatalf("transfer: %d %s", r.status, r.body)
	}
	if r := p.read(fmt.Sprintf("/v1/correlations/corr-%s?min_position=%d", id, last.GlobalPosition)); r.status != http.StatusOK {
		t.Fatalf("the transfer's correlation: %d %s", r.status, r.body)
	}
	for path, status := range map[string]int{
		"/v1/transfers/" + uuid.NewString(): http.StatusNotFound,
		"/v1/transfers/..%2Fx":              http.StatusBadRequest,
	} {
		if r := p.read(path); r.status != status {
			t.Errorf("GET %s: %d %s, want %d", path, r.status, r.body, status)
		}
	}
}
