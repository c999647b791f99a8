package telemetry_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	transferview "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/telemetry"
	"github.com/tributary-es/tributary/internal/writer"
)

// A transfer is one trace from POST /v1/transfers to the last Redis write:
// the request's HTTP span, its append, the relay's send of TransferRequested,
// the process manager's process span of it (consumer group
// tributary.transfers), the withdrawal appended under it, its send, the
// manager's process span of FundsWithdrawn, the deposit, and so on to the
// transfers projection's write of TransferCompleted. Nothing of the
// transfer's correlation lands in another trace.
func TestOneTracePerTransfer(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	p := newPipeline(t, pipelineOptions{tracerProvider: tp, transfers: true})

	for _, id := range []string{"acc-from", "acc-to"} {
		if status, body := p.do(t, http.MethodPost, p.writer+"/v1/accounts",
			`{"id":"`+id+`","owner":"Ada","currency":"EUR","initialDeposit":10000}`); status != http.StatusCreated {
			t.Fatalf("open %s: %d %s", id, status, body)
		}
		if status, body := p.do(t, http.MethodPost, p.writer+"/v1/accounts/"+id+"/activate", ""); status != http.StatusOK {
			t.Fatalf("activate %s: %d %s", id, status, body)
		}
	}
	status, body := p.do(t, http.MethodPost, p.writer+"/v1/transfers",
		`{"id":"t-traced","from":"acc-from","to":"acc-to","amount":2500,"currency":"EUR","reference":"rent"}`, "X-Correlation-ID", "corr-transfer")
	if status != http.StatusCreated {
		t.Fatalf("request transfer: %d %s", status, body)
	}
	var cmd writer.CommandResponse
	if err := json.Unmarshal(body, &cmd); err != nil {
		t.Fatal(err)
	}

	// Done once the transfers read model wrote the completion.
	var spans tracetest.SpanStubs
	var root tracetest.SpanStub
	waitFor(t, 30*time.Second, "the transfers projection's write of the completion", func() bool {
		status, body := p.do(t, http.MethodGet, p.reader+"/v1/transfers/t-traced", "")
		if status != http.StatusOK || !strings.Contains(string(body), `"completed"`) {
			return false
		}
		spans = exporter.GetSpans()
		for _, s := range spans {
			if s.Name == "POST /v1/transfers" && s.SpanKind == trace.SpanKindServer {
				root = s
			}
		}
		// Every span of the trace has ended, its parent too: the relay's send
		// span of the last event ends when Kafka acknowledges, which may come
		// after the consumers already handled the record.
		return root.SpanContext.IsValid() && parentsEnded(spans, root.SpanContext.TraceID())
	})
	traceID := root.SpanContext.TraceID()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var inTrace []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == traceID {
			byID[s.SpanContext.SpanID()] = s
			inTrace = append(inTrace, s)
		}
	}
	// Every span of the correlation is in the request's trace.
	for _, s := range spans {
		if attr(s, string(telemetry.CorrelationIDKey)) == "corr-transfer" && s.SpanContext.TraceID() != traceID {
			t.Errorf("span %q of the transfer is in another trace (parent %v)", s.Name, s.Parent)
		}
	}
	// The manager's process spans: consumers under the relay's send spans,
	// with the steps' appends under them.
	var managerSpans, stepAppends int
	for _, s := range inTrace {
		if strings.HasPrefix(s.Name, "process ") && attr(s, "messaging.consumer.group.name") == "tributary.transfers" {
			managerSpans++
			if s.SpanKind != trace.SpanKindConsumer || !strings.HasPrefix(byID[s.Parent.SpanID()].Name, "send ") {
				t.Errorf("manager span %q: kind %v under %q, want a CONSUMER under a send span", s.Name, s.SpanKind, byID[s.Parent.SpanID()].Name)
			}
		}
		if strings.HasPrefix(s.Name, "append ") && s.Parent.SpanID() != root.SpanContext.SpanID() {
			parent := byID[s.Parent.SpanID()]
			if attr(parent, "messaging.consumer.group.name") != "tributary.transfers" {
				t.Errorf("%s under %q, want the request's HTTP span or a manager's process span", s.Name, parent.Name)
			}
			stepAppends++
		}
	}
	if managerSpans < 3 || stepAppends != 3 {
		t.Fatalf("%d manager process spans and %d step appends in the trace, want at least 3 and 3 (withdraw, deposit, complete); trace:\n%s",
			managerSpans, stepAppends, describe(inTrace))
	}
	// The last Redis write: the transfers projection's write of the
	// completion, in the same trace.
	var completionWritten bool
	for _, s := range inTrace {
		if s.Name == "write "+transferview.Name {
			completionWritten = true
		}
	}
	if !completionWritten {
		t.Fatalf("no transfers write span in the request's trace; trace:\n%s", describe(inTrace))
	}
}

// parentsEnded reports whether every span of the trace whose parent is in
// the trace has that parent among the ended spans.
func parentsEnded(spans tracetest.SpanStubs, traceID trace.TraceID) bool {
	ended := map[trace.SpanID]bool{}
	for _, s := range spans {
		ended[s.SpanContext.SpanID()] = true
	}
	for _, s := range spans {
		if s.SpanContext.TraceID() == traceID && s.Parent.IsValid() && s.Parent.TraceID() == traceID && !ended[s.Parent.SpanID()] {
			return false
		}
	}
	return true
}
