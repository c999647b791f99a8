package writer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/decider"
	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/writer"
)

// unbound is an aggregate type no handler is bound for.
type unboundEvent struct{}

func (unboundEvent) EventType() string  { return "Happened" }
func (unboundEvent) SchemaVersion() int { return 1 }

func unbound() decider.Aggregate[struct{}, struct{}, unboundEvent] {
	return decider.Aggregate[struct{}, struct{}, unboundEvent]{
		Name: "unbound", Initial: func(string) struct{} { return struct{}{} },
		Decide:      func(struct{}, struct{}) ([]unboundEvent, error) { return []unboundEvent{{}}, nil },
		Evolve:      func(s struct{}, _ unboundEvent) struct{} { return s },
		DecodeEvent: func(string, []byte) (unboundEvent, error) { return unboundEvent{}, nil },
	}
}

// A route wired wrong is refused when the server is made, saying which and
// why, not when its first request comes.
func TestMiswiredRoutesFailAtStart(t *testing.T) {
	d := fixture
	store := postgres.NewStore(nil, d.Upcasters())
	counters, err := aggregate.Bind(d.Aggregates(), store, d.Schemas(), aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := func(string, struct{}) domaintest.Command { return domaintest.Start{} }
	for _, tt := range []struct {
		name  string
		route writer.Route
		want  string
	}{
		{"no command", writer.Command(domaintest.Aggregate(), writer.CommandRoute[struct{}, domaintest.Command]{Pattern: "POST /v1/x/{id}"}),
			"no Command"},
		{"creates without ID", writer.Command(domaintest.Aggregate(), writer.CommandRoute[struct{}, domaintest.Command]{
			Pattern: "POST /v1/x", Creates: true, Command: start}), "ID is for (and needed by) a route that Creates"},
		{"ID without creating", writer.Command(domaintest.Aggregate(), writer.CommandRoute[struct{}, domaintest.Command]{
			Pattern: "POST /v1/x/{id}", ID: func(struct{}) string { return "" }, Command: start}), "ID is for (and needed by)"},
		{"no {id}", writer.Command(domaintest.Aggregate(), writer.CommandRoute[struct{}, domaintest.Command]{
			Pattern: "POST /v1/x", Command: start}), "no {id} names the aggregate"},
		{"a type not bound", writer.Command(unbound(), writer.CommandRoute[struct{}, struct{}]{
			Pattern: "POST /v1/y/{id}", Command: func(string, struct{}) struct{} { return struct{}{} }}),
			`aggregate type "unbound" is not registered`},
		{"not made by Command", writer.Route{Pattern: "POST /v1/z"}, "was not made by writer.Command"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := writer.NewServer(writer.DefaultConfig(), counters, []writer.Route{tt.route}, prometheus.NewRegistry(),
				http.NotFoundHandler(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewServer: %v, want an error saying %q", err, tt.want)
			}
		})
	}
	twice := d.Writer().Routes[0]
	if _, err := writer.NewServer(writer.DefaultConfig(), counters, []writer.Route{twice, twice}, prometheus.NewRegistry(),
		http.NotFoundHandler(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "two routes are") {
		t.Fatalf("the same route twice: %v", err)
	}
}
