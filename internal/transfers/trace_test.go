package transfers

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/telemetry"
	"github.com/tributary-es/tributary/schemas"
)

// A transfer is one trace: the manager handles each record in a "process
// <topic>" span continuing the record's trace, its appends are children of
// that span, and the events it appends carry the trace on (their stored
// traceparent is the process span), so the request's trace id reaches every
// event of the transfer.
func TestTransferIsOneTrace(t *testing.T) {
	e := newEnv(t)
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	traced := postgres.NewStore(e.store.Pool(), testUpcasters(), postgres.WithTracerProvider(tp))
	steps := NewSteps(traced,
		aggregate.NewHandler(account.Aggregate(), traced, sch, aggregate.Options{}),
		aggregate.NewHandler(transfer.Aggregate(), traced, sch, aggregate.Options{}),
		2*time.Second, slog.New(slog.DiscardHandler))
	cfg := DefaultConfig()
	cfg.Client = []kgo.Opt{kgo.SeedBrokers(e.brokers...)}
	cfg.Topics = e.topics
	cfg.TracerProvider = tp
	m := NewManager(cfg, steps, testUpcasters(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, id := range []string{"from", "to"} {
		e.account(id, account.OpenAccount{ID: id, Owner: "Ada", Currency: "EUR", InitialDeposit: 1_000})
		e.account(id, account.ActivateAccount{})
	}
	// The request, as the writer stores it: with the trace context of its
	// HTTP span.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	id := NewTransferID()
	if _, err := e.transfers.Handle(context.Background(), aggregate.Request[transfer.Command]{AggregateID: id,
		Command: transfer.RequestTransfer{From: "from", To: "to", Amount: 300, Currency: "EUR", Reference: "rent"},
		Metadata: log.Metadata{CorrelationID: "corr-" + id, CausationID: "cmd-" + id, Principal: "alice",
			TraceParent: "00-" + traceID + "-00f067aa0ba902b7-01"}}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitEnded([]string{id}, 20*time.Second)[id]; st.Status != transfer.StatusCompleted {
		t.Fatalf("transfer %s", st.Status)
	}

	// Every event of the transfer carries the request's trace.
	var stepEvents int
	for _, s := range [][2]string{{transfer.AggregateType, id}, {account.AggregateType, "from"}, {account.AggregateType, "to"}} {
		for _, ev := range e.stream(s[0], s[1]) {
			if ev.CorrelationID != "corr-"+id {
				continue
			}
			if !strings.HasPrefix(ev.TraceParent, "00-"+traceID+"-") {
				t.Errorf("%s %s v%d: traceparent %q, not of the request's trace", s[1], ev.Type, ev.Version, ev.TraceParent)
			}
			if ev.Principal == Principal {
				stepEvents++
			}
		}
	}
	if stepEvents != 3 {
		t.Fatalf("%d events of the manager, want withdraw, deposit and completion", stepEvents)
	}

	// The spans: process spans in the request's trace, each append a child
	// of one of them.
	process := map[trace.SpanID]bool{}
	var appends int
	spans := exporter.GetSpans()
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != traceID {
			// The accounts' setup commands had no trace of their own.
			for _, a := range s.Attributes {
				if a.Key == telemetry.CorrelationIDKey && a.Value.AsString() == "corr-"+id {
					t.Errorf("span %q of the transfer is in trace %s, not the request's", s.Name, s.SpanContext.TraceID())
				}
			}
			continue
		}
		if strings.HasPrefix(s.Name, "process ") {
			if s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("%s is a %v span", s.Name, s.SpanKind)
			}
			process[s.SpanContext.SpanID()] = true
		}
	}
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "append ") && s.SpanContext.TraceID().String() == traceID {
			if !process[s.Parent.SpanID()] {
				t.Errorf("%s is not a child of a process span", s.Name)
			}
			appends++
		}
	}
	if len(process) < 3 || appends != 3 {
		t.Fatalf("%d process spans and %d appends in the request's trace (of %d spans), want at least 3 and 3", len(process), appends, len(spans))
	}
}
