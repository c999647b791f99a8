package projector

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// outcomeKey is the span attribute saying what became of a processed event.
const outcomeKey = attribute.Key("tributary.projection.outcome")

// processSpans are the CONSUMER spans "process <topic>" of a batch's
// records, each continuing the trace of the record's traceparent header
// (the relay's send span), following OpenTelemetry's messaging conventions.
type processSpans struct {
	spans []trace.Span
}

// start begins the process span of rec.
func (w *worker) startProcessSpan(ctx context.Context, ps *processSpans, rec *kgo.Record) {
	p := w.l.p
	if p.tracer == nil {
		return
	}
	parent := propagation.TraceContext{}.Extract(ctx, kafka.HeaderCarrier{Record: rec})
	attrs := append(telemetry.KafkaRecordAttributes(semconv.MessagingOperationTypeProcess, rec.Topic, rec.Partition, string(rec.Key), rec.Offset),
		semconv.MessagingOperationName("process"),
		semconv.MessagingConsumerGroupName(w.r.group),
		attribute.String("tributary.projection", p.proj.Name()),
	)
	attrs = append(attrs, telemetry.EventAttributes(header(rec, kafka.HeaderCorrelationID), header(rec, kafka.HeaderCausationID))...)
	if id := header(rec, kafka.HeaderID); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	_, span := p.tracer.Start(parent, "process "+rec.Topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	ps.spans = append(ps.spans, span)
}

// write starts the span of one atomic Redis step that applies the records
// of spans[from:]: a child of the first one's process span, linked to the
// others, so the read-model write sits in the trace of the command whose
// event starts the step and is reachable from the others.
func (w *worker) startWriteSpan(ps *processSpans, from int, b readmodels.Batch) (context.Context, trace.Span) {
	p := w.l.p
	if from >= len(ps.spans) {
		return context.Background(), trace.SpanFromContext(context.Background())
	}
	links := make([]trace.Link, 0, len(ps.spans)-from-1)
	for _, s := range ps.spans[from+1:] {
		links = append(links, trace.Link{SpanContext: s.SpanContext()})
	}
	parent := trace.ContextWithSpan(context.Background(), ps.spans[from])
	return p.tracer.Start(parent, "write "+p.proj.Name(), trace.WithLinks(links...),
		trace.WithAttributes(
			semconv.DBSystemNameRedis,
			attribute.String("tributary.projection", p.proj.Name()),
			attribute.Int64("tributary.generation", b.Generation),
			attribute.Int("tributary.events", len(b.Items)),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(b.Partition))),
		))
}

// outcome records what became of the i-th record's event.
func (ps *processSpans) outcome(i int, o readmodels.Outcome) {
	if i >= len(ps.spans) {
		return
	}
	switch o {
	case readmodels.Applied:
		ps.spans[i].SetAttributes(outcomeKey.String(outcomeApplied))
	case readmodels.Duplicate:
		ps.spans[i].SetAttributes(outcomeKey.String(outcomeDuplicate))
	case readmodels.Skipped:
		ps.spans[i].SetAttributes(outcomeKey.String(outcomeDeadLettered))
	}
}

// parked marks the i-th record's event as put on the dead-letter topic.
func (ps *processSpans) parked(i int, reason string) {
	if i >= len(ps.spans) {
		return
	}
	ps.spans[i].SetAttributes(outcomeKey.String(outcomeDeadLettered))
	ps.spans[i].SetStatus(codes.Error, reason)
}

// end ends every span; err, if any, is why the batch was not applied.
func (ps *processSpans) end(err error) {
	for _, s := range ps.spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}

// header is the value of a record's header, "" when it has none.
func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
