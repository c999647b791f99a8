package telemetry_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/telemetry"
	"github.com/tributary-es/tributary/internal/writer"
)

// One command makes one trace: the writer's HTTP span, the append, the
// relay's send of every event (continued from the context stored with the
// event), every projection's process span of every event (continued from
// the send span carried in the record's traceparent) and the Redis write
// under it, with the command's correlation and causation ids on the spans
// that handle its events.
func TestOneTracePerCommand(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	p := newPipeline(t, pipelineOptions{tracerProvider: tp})

	status, body := p.do(t, http.MethodPost, p.writer+"/v1/accounts",
		`{"id":"acc-traced","owner":"Ada","currency":"EUR","initialDeposit":10000}`, "X-Correlation-ID", "corr-traced-1")
	if status != http.StatusCreated {
		t.Fatalf("open account: %d %s", status, body)
	}
	var cmd writer.CommandResponse
	if err := json.Unmarshal(body, &cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.CorrelationID != "corr-traced-1" || len(cmd.Events) == 0 {
		t.Fatalf("command response %+v", cmd)
	}
	events := len(cmd.Events)
	projections := []string{accounts.SummaryName, accounts.HistoryName, accounts.DirectoryName, correlation.Name}

	// The trace is complete once every projection wrote every event.
	var spans tracetest.SpanStubs
	var root tracetest.SpanStub
	waitFor(t, 20*time.Second, "every projection's write span", func() bool {
		spans = exporter.GetSpans()
		for _, s := range spans {
			if s.Name == "POST /v1/accounts" && s.SpanKind == trace.SpanKindServer {
				root = s
			}
		}
		if !root.SpanContext.IsValid() {
			return false
		}
		processed := map[string]int{}
		for _, s := range spans {
			if s.SpanContext.TraceID() == root.SpanContext.TraceID() && s.Name == "process tributary.account.events" {
				processed[attr(s, "tributary.projection")]++
			}
		}
		for _, name := range projections {
			if processed[name] < events {
				return false
			}
		}
		return true
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
	parentOf := func(s tracetest.SpanStub) tracetest.SpanStub { return byID[s.Parent.SpanID()] }
	named := func(name string) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range inTrace {
			if s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	if root.Parent.IsValid() {
		t.Errorf("the HTTP span has a parent: %v", root.Parent)
	}
	ids := func(s tracetest.SpanStub) {
		t.Helper()
		if got := attr(s, string(telemetry.CorrelationIDKey)); got != cmd.CorrelationID {
			t.Errorf("%s: correlation id %q, want %q", s.Name, got, cmd.CorrelationID)
		}
		if got := attr(s, string(telemetry.CausationIDKey)); got != cmd.CausationID {
			t.Errorf("%s: causation id %q, want %q", s.Name, got, cmd.CausationID)
		}
	}

	ids(root)
	appends := named("append account")
	if len(appends) != 1 || parentOf(appends[0]).SpanContext.SpanID() != root.SpanContext.SpanID() {
		t.Fatalf("append spans %d, want one under the HTTP span; trace:\n%s", len(appends), describe(inTrace))
	}
	ids(appends[0])
	if !slices.ContainsFunc(inTrace, func(s tracetest.SpanStub) bool {
		return s.Parent.SpanID() == appends[0].SpanContext.SpanID() && s.SpanKind == trace.SpanKindClient
	}) {
		t.Errorf("no Postgres statement (otelpgx) under the append span; trace:\n%s", describe(inTrace))
	}

	sends := named("send tributary.account.events")
	if len(sends) != events {
		t.Fatalf("%d send spans, want %d (one per event); trace:\n%s", len(sends), events, describe(inTrace))
	}
	for _, s := range sends {
		ids(s)
		if s.SpanKind != trace.SpanKindProducer || parentOf(s).SpanContext.SpanID() != root.SpanContext.SpanID() {
			t.Errorf("send span kind %v, parent %q: want a PRODUCER under the HTTP span", s.SpanKind, parentOf(s).Name)
		}
		for k, want := range map[string]string{"messaging.system": "kafka", "messaging.operation.type": "send",
			"messaging.destination.name": "tributary.account.events", "messaging.kafka.message.key": "acc-traced"} {
			if got := attr(s, k); got != want {
				t.Errorf("send span %s = %q, want %q", k, got, want)
			}
		}
		if attr(s, "messaging.destination.partition.id") == "" || attr(s, "messaging.kafka.offset") == "" {
			t.Errorf("send span without partition or offset: %v", s.Attributes)
		}
	}

	processes := named("process tributary.account.events")
	if len(processes) != events*len(projections) {
		t.Errorf("%d process spans, want %d (every event in every projection)", len(processes), events*len(projections))
	}
	for _, s := range processes {
		ids(s)
		if s.SpanKind != trace.SpanKindConsumer || parentOf(s).Name != "send tributary.account.events" {
			t.Errorf("process span kind %v, parent %q: want a CONSUMER under the send span", s.SpanKind, parentOf(s).Name)
		}
		if !strings.HasPrefix(attr(s, "messaging.consumer.group.name"), p.prefix+".") || attr(s, "messaging.kafka.offset") == "" ||
			attr(s, "messaging.operation.type") != "process" || attr(s, "tributary.projection.outcome") != "applied" {
			t.Errorf("process span attributes %v", s.Attributes)
		}
	}

	for _, name := range projections {
		writes := named("write " + name)
		if len(writes) == 0 {
			t.Errorf("no write span of %s; trace:\n%s", name, describe(inTrace))
			continue
		}
		for _, w := range writes {
			if parentOf(w).Name != "process tributary.account.events" {
				t.Errorf("write %s under %q, want a process span", name, parentOf(w).Name)
			}
			var redisCalls int
			for _, s := range inTrace {
				if s.Parent.SpanID() == w.SpanContext.SpanID() && attr(s, "db.system.name")+attr(s, "db.system") != "" {
					redisCalls++
				}
			}
			if redisCalls == 0 {
				t.Errorf("write %s has no Redis call under it; trace:\n%s", name, describe(inTrace))
			}
		}
	}

	// Nothing of this command went into another trace.
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID && attr(s, string(telemetry.CorrelationIDKey)) == cmd.CorrelationID {
			t.Errorf("span %s of the command in another trace", s.Name)
		}
	}

	// Queries make their own server spans in the reader.
	waitFor(t, 10*time.Second, "the summary served", func() bool {
		status, _ := p.do(t, http.MethodGet, p.reader+"/v1/accounts/acc-traced", "")
		return status == http.StatusOK
	})
	waitFor(t, 5*time.Second, "the reader's span", func() bool {
		return slices.ContainsFunc(exporter.GetSpans(), func(s tracetest.SpanStub) bool {
			return s.Name == "GET /v1/accounts/{id}" && s.SpanKind == trace.SpanKindServer
		})
	})
}

// attr is the value of a span's attribute as a string, "" when absent.
func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}

// describe lists spans for failure messages.
func describe(spans []tracetest.SpanStub) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s %s (%v) parent %s\n", s.SpanContext.SpanID(), s.Name, s.SpanKind, s.Parent.SpanID())
	}
	return b.String()
}
