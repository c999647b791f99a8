package registry_test

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/decider"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
)

// A tiny domain, "widgets", to register in every shape.
type widget struct{ Made bool }

type widgetEvent interface{ EventType() string }

type widgetMade struct{}

func (widgetMade) EventType() string  { return "WidgetMade" }
func (widgetMade) SchemaVersion() int { return 1 }

type makeWidget struct{}

func widgetType(name string) aggregate.Type[widget, makeWidget, widgetMade] {
	return decider.Aggregate[widget, makeWidget, widgetMade]{
		Name:    name,
		Initial: func(string) widget { return widget{} },
		Decide:  func(widget, makeWidget) ([]widgetMade, error) { return []widgetMade{{}}, nil },
		Evolve:  func(widget, widgetMade) widget { return widget{Made: true} },
		DecodeEvent: func(string, []byte) (widgetMade, error) {
			return widgetMade{}, nil
		},
	}
}

const schema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false}`

func events(files ...string) fstest.MapFS {
	fs := fstest.MapFS{}
	for _, f := range files {
		fs["events/"+f] = &fstest.MapFile{Data: []byte(schema)}
	}
	return fs
}

type widgetProjection struct {
	name  string
	types []string
}

func (p widgetProjection) Name() string                   { return p.name }
func (p widgetProjection) AggregateTypes() []string       { return p.types }
func (widgetProjection) Lua() string                      { return "" }
func (widgetProjection) Args(log.Event) ([]string, error) { return nil, nil }
func (widgetProjection) Describe() string                 { return "" }

var _ readmodels.Projection = widgetProjection{}

// widgetAPI documents the widget's command.
var widgetAPI = fstest.MapFS{"writer.yaml": {Data: []byte(`
paths:
  /v1/widgets/{id}:
    parameters:
      - $ref: '#/components/parameters/AggregateIdParam'
    post:
      operationId: makeWidget
      responses:
        '200': {$ref: '#/components/responses/CommandOK'}
        '400': {$ref: '#/components/responses/CommandBadRequest'}
components:
  schemas:
    WidgetState: {type: object}
x-states:
  widget: WidgetState
`)}}

func widgets() registry.Domain {
	return registry.Domain{
		Name:       "widgets",
		API:        widgetAPI,
		Aggregates: []aggregate.Kind{aggregate.Of(widgetType("widget"))},
		Events:     events("widget/WidgetMade.v1.json", "widget/WidgetMade.v2.json"),
		Upcasters: []registry.Upcaster{{AggregateType: "widget", EventType: "WidgetMade", From: 1,
			Upcast: func(p json.RawMessage) (json.RawMessage, error) { return p, nil }}},
		Commands: []writer.Route{writer.Command(widgetType("widget"), writer.CommandRoute[struct{}, makeWidget]{
			Pattern: "POST /v1/widgets/{id}", Name: "MakeWidget", EmptyBody: true,
			Command: func(string, struct{}) makeWidget { return makeWidget{} },
		})},
		Projections: []readmodels.Projection{widgetProjection{"widget-list", []string{"widget"}}},
		Processes: []registry.Process{{Name: "widget-maker", New: func(registry.ProcessDeps) (registry.ProcessRunner, error) {
			return nil, nil
		}}},
	}
}

func TestAWholeDomainRegisters(t *testing.T) {
	r, err := registry.New(widgets())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AggregateTypes(); len(got) != 1 || got[0] != "widget" {
		t.Errorf("aggregate types %v", got)
	}
	if got := strings.Join(r.ProjectionNames(), ","); got != "widget-list,correlation" {
		t.Errorf("projections %s: the domain's, then the platform's correlation index", got)
	}
	if c := r.Projection("correlation"); c == nil || strings.Join(c.AggregateTypes(), ",") != "widget" {
		t.Errorf("the correlation index reads %v, want every aggregate type", c)
	}
	if !r.Schemas().Has("widget", "WidgetMade", 2) {
		t.Error("the domain's event schemas are not loaded")
	}
	up, err := r.Upcasters().Upcast(log.Event{AggregateType: "widget", Type: "WidgetMade", SchemaVersion: 1, Payload: json.RawMessage(`{}`)})
	if err != nil || up.SchemaVersion != 2 {
		t.Errorf("upcast: v%d, %v", up.SchemaVersion, err)
	}
	if app := r.Writer(); len(app.Routes) != 1 || len(app.Aggregates) != 1 {
		t.Errorf("writer app: %d routes, %d aggregate types", len(app.Routes), len(app.Aggregates))
	}
	if ps := r.Processes(); len(ps) != 1 || ps[0].Name != "widget-maker" {
		t.Errorf("processes %v", ps)
	}
}

// A domain registered half-way fails at start, saying what is missing.
func TestAHalfRegisteredDomainIsRefused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spoil func(d *registry.Domain) []registry.Domain
		want  string
	}{
		{"no name", func(d *registry.Domain) []registry.Domain { d.Name = ""; return nil }, `domain name ""`},
		{"twice", func(d *registry.Domain) []registry.Domain { return []registry.Domain{*d, *d} }, `registered twice`},
		{"no aggregate type", func(d *registry.Domain) []registry.Domain { d.Aggregates = nil; return nil }, `has no aggregate type`},
		{"no event schemas", func(d *registry.Domain) []registry.Domain { d.Events = nil; return nil }, `has no event schemas`},
		{"schemas of no type", func(d *registry.Domain) []registry.Domain {
			d.Events = events("gadget/GadgetMade.v1.json")
			return nil
		}, `no domain has aggregate type "gadget"`},
		{"a type without schemas", func(d *registry.Domain) []registry.Domain {
			d.Aggregates = append(d.Aggregates, aggregate.Of(widgetType("gizmo")))
			return nil
		}, `aggregate type "gizmo" has no event schema`},
		{"an aggregate type of another domain", func(d *registry.Domain) []registry.Domain {
			other := widgets()
			other.Name = "others"
			other.Commands, other.Projections, other.Processes, other.Upcasters = nil, nil, nil, nil
			other.Events = events()
			return []registry.Domain{*d, other}
		}, `aggregate type "widget" is domain "widgets"'s already`},
		{"an upcaster without the newer schema", func(d *registry.Domain) []registry.Domain {
			d.Events = events("widget/WidgetMade.v1.json")
			return nil
		}, `upcaster of widget/WidgetMade v1: needs a function and the schemas of v1 and v2`},
		{"an upcaster of another type", func(d *registry.Domain) []registry.Domain {
			d.Upcasters[0].AggregateType = "gadget"
			return nil
		}, `upcaster of gadget/WidgetMade: not an aggregate type of the domain`},
		{"a route on another type", func(d *registry.Domain) []registry.Domain {
			d.Commands = append(d.Commands, writer.Command(widgetType("gadget"), writer.CommandRoute[struct{}, makeWidget]{
				Pattern: "POST /v1/gadgets/{id}", Name: "MakeGadget", Command: func(string, struct{}) makeWidget { return makeWidget{} }}))
			return nil
		}, `command route "POST /v1/gadgets/{id}" acts on aggregate type "gadget"`},
		{"a route twice", func(d *registry.Domain) []registry.Domain {
			d.Commands = append(d.Commands, d.Commands[0])
			return nil
		}, `command route "POST /v1/widgets/{id}" is domain "widgets"'s already`},
		{"a projection of an unknown type", func(d *registry.Domain) []registry.Domain {
			d.Projections = []readmodels.Projection{widgetProjection{"gadget-list", []string{"gadget"}}}
			return nil
		}, `projection "gadget-list" reads aggregate type "gadget"`},
		{"a projection named like the platform's", func(d *registry.Domain) []registry.Domain {
			d.Projections = []readmodels.Projection{widgetProjection{"correlation", []string{"widget"}}}
			return nil
		}, `projection "correlation" is the platform's`},
		{"a projection without a name", func(d *registry.Domain) []registry.Domain {
			d.Projections = []readmodels.Projection{widgetProjection{"", []string{"widget"}}}
			return nil
		}, `a projection without a valid name`},
		{"a route without documents", func(d *registry.Domain) []registry.Domain {
			d.API = nil
			return nil
		}, `domain "widgets" has writer routes but no API documents`},
		{"a route not documented", func(d *registry.Domain) []registry.Domain {
			d.Commands = append(d.Commands, writer.Command(widgetType("widget"), writer.CommandRoute[struct{}, makeWidget]{
				Pattern: "POST /v1/widgets/{id}/polish", Name: "PolishWidget", Command: func(string, struct{}) makeWidget { return makeWidget{} }}))
			return nil
		}, `command route "POST /v1/widgets/{id}/polish" is not in its writer.yaml`},
		{"a fragment redefining the platform's", func(d *registry.Domain) []registry.Domain {
			d.API = fstest.MapFS{"writer.yaml": {Data: []byte("paths:\n  /healthz: {}\n")}}
			return nil
		}, `path "/healthz" is defined already`},
		{"a process without New", func(d *registry.Domain) []registry.Domain {
			d.Processes[0].New = nil
			return nil
		}, `a process manager needs a name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := widgets()
			list := tt.spoil(&d)
			if list == nil {
				list = []registry.Domain{d}
			}
			_, err := registry.New(list...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("registry.New: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// This build's domains register.
func TestThisBuildsDomainsRegister(t *testing.T) {
	r, err := domains.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AggregateTypes()) == 0 || len(r.Projections()) < 2 || len(r.Processes()) == 0 {
		t.Fatalf("domains %s: %d aggregate types, %d projections, %d processes", r, len(r.AggregateTypes()), len(r.Projections()), len(r.Processes()))
	}
	for _, typ := range r.AggregateTypes() {
		if r.Projection("correlation") == nil || !strings.Contains(strings.Join(r.Projection("correlation").AggregateTypes(), ","), typ) {
			t.Errorf("the correlation index does not read %s", typ)
		}
	}
}
