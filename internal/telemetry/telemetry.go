// Package telemetry sets up a process's OpenTelemetry tracing from the
// standard OTEL_* environment variables: spans are exported over OTLP when
// an endpoint is set (or with whatever OTEL_TRACES_EXPORTER names), and not
// at all otherwise. Providers are handed to the parts that make spans; no
// global provider or propagator is set.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a process's tracer provider and propagator.
type Tracing struct {
	// TracerProvider makes the spans; a no-op one when nothing exports.
	TracerProvider trace.TracerProvider
	// Propagator carries trace context over HTTP (OTEL_PROPAGATORS,
	// W3C tracecontext and baggage by default).
	Propagator propagation.TextMapPropagator
	// Exporting tells whether spans leave the process.
	Exporting bool

	shutdown func(context.Context) error
}

// Setup builds the tracing of the process named service (the default
// service.name; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it).
// getenv decides whether anything is exported:
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: nothing;
//   - OTEL_TRACES_EXPORTER set: that exporter (otlp, console);
//   - otherwise OTLP (http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL says
//     grpc) when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, nothing when neither is.
//
// The exporters read their own settings (endpoint, headers, timeouts) from
// the process environment. Sampling follows OTEL_TRACES_SAMPLER (parent
// based, always on by default). Call Shutdown to flush on exit.
func Setup(ctx context.Context, service string, getenv func(string) string) (*Tracing, error) {
	prop := autoprop.NewTextMapPropagator()
	off := &Tracing{TracerProvider: noop.NewTracerProvider(), Propagator: prop, shutdown: func(context.Context) error { return nil }}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return off, nil
	}
	exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	endpoint := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	if exporter == "none" || (exporter == "" && !endpoint) {
		return off, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return off, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{TracerProvider: tp, Propagator: prop, Exporting: true, shutdown: tp.Shutdown}, nil
}

// Shutdown flushes the spans not exported yet and stops exporting.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// ChildrenOnly wraps tp so that its tracers make spans only inside a trace
// that is already going: with no span in the context they start none. For
// instrumentation of shared clients (otelpgx on a pool also used by
// background loops) whose spans matter only as part of a request's trace.
func ChildrenOnly(tp trace.TracerProvider) trace.TracerProvider {
	return childrenOnlyProvider{TracerProvider: tp}
}

type childrenOnlyProvider struct {
	trace.TracerProvider
}

func (p childrenOnlyProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childrenOnlyTracer{Tracer: p.TracerProvider.Tracer(name, opts...)}
}

type childrenOnlyTracer struct {
	trace.Tracer
}

func (t childrenOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.Tracer.Start(ctx, name, opts...)
}
