package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tributary-es/tributary/internal/telemetry"
)

// Spans are exported only when the OTEL_* environment asks for it: an OTLP
// endpoint or an explicit exporter, unless the SDK is disabled.
func TestSetupFromEnvironment(t *testing.T) {
	// A collector that takes every export.
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer collector.Close()
	endpoint := collector.URL
	tests := []struct {
		name      string
		env       map[string]string
		exporting bool
		fails     bool
	}{
		{name: "nothing set: nothing exported", env: map[string]string{}},
		{name: "an OTLP endpoint: OTLP", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, exporting: true},
		{name: "a traces endpoint: OTLP", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces"}, exporting: true},
		{name: "an exporter named", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, exporting: true},
		{name: "none beats an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}},
		{name: "SDK disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}},
		{name: "an unknown exporter is an error", env: map[string]string{"OTEL_TRACES_EXPORTER": "carrier-pigeon"}, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
				t.Setenv(k, tt.env[k]) // the exporters read the process environment
			}
			tr, err := telemetry.Setup(context.Background(), "tributary-test", func(k string) string { return tt.env[k] })
			if tt.fails {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tr.Shutdown(context.Background()) }()
			if tr.Exporting != tt.exporting {
				t.Errorf("exporting %v, want %v", tr.Exporting, tt.exporting)
			}
			if tr.TracerProvider == nil || tr.Propagator == nil {
				t.Fatal("no provider or propagator")
			}
			_, span := tr.TracerProvider.Tracer("test").Start(context.Background(), "x")
			if span.IsRecording() != tt.exporting {
				t.Errorf("span recording %v, want %v", span.IsRecording(), tt.exporting)
			}
			span.End()
		})
	}
}

// ChildrenOnly starts spans inside a trace and none outside one.
func TestChildrenOnly(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	tr := telemetry.ChildrenOnly(tp).Tracer("test")
	_, orphan := tr.Start(context.Background(), "orphan")
	orphan.End()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	_, child := tr.Start(ctx, "child")
	child.End()
	parent.End()
	var names []string
	for _, s := range exporter.GetSpans() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "child,parent" {
		t.Errorf("spans %v, want child and parent only", names)
	}
}
