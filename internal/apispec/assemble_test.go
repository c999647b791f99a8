package apispec

import (
	"encoding/json"
	"strings"
	"testing"
)

const assembleBase = `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /healthz:
    get:
      responses:
        '200': {description: ok}
components:
  schemas:
    AggregateType: {type: string, x-generated: aggregate-types}
    EventType: {type: string, x-generated: event-types}
    Event:
      type: object
      x-generated: events
    State:
      x-generated: states
    BadRequestProblem:
      type: object
      properties:
        type:
          x-domain-codes: 400
          enum: [https://tributary.dev/problems/invalid-id]
    NotFoundProblem:
      type: object
      properties:
        type: {x-domain-codes: 404}
`

const widgetFragment = `
tags: [{name: widgets}]
paths:
  /v1/widgets/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        '200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/WidgetState'}}}}
components:
  schemas:
    WidgetState: {type: object}
x-problem-codes:
  '400': [missing-size, invalid-id-twice]
x-states:
  widget: WidgetState
`

var widgetEvents = []EventSchema{{AggregateType: "widget", EventType: "WidgetMade", Version: 2,
	Schema: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","type":"object","required":["size"],"properties":{"size":{"type":"integer"}}}`)}}

func TestAssembleFillsTheMarkersFromTheParts(t *testing.T) {
	doc, err := Assemble("test", []byte(assembleBase), Parts{
		Fragments:      []Fragment{{Domain: "widgets", YAML: []byte(widgetFragment)}},
		AggregateTypes: []string{"widget"},
		Events:         widgetEvents,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := string(doc.JSON())
	for _, want := range []string{`"/v1/widgets/{id}"`, `"/healthz"`, `"WidgetState"`, `"name":"widgets"`,
		`https://tributary.dev/problems/invalid-id"`, `https://tributary.dev/problems/missing-size"`,
		`"const":"WidgetMade"`, `"const":2`, `"required":["size"]`, `"$ref":"#/components/schemas/WidgetState"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("the document lacks %s", want)
		}
	}
	for _, gone := range []string{"x-generated", "x-domain-codes", "x-problem-codes", "x-states", `"$id"`, "draft/2020-12/schema"} {
		if strings.Contains(raw, gone) {
			t.Errorf("the document still holds %s", gone)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(doc.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	schemas := m["components"].(map[string]any)["schemas"].(map[string]any)
	if got := schemas["AggregateType"].(map[string]any)["enum"]; len(got.([]any)) != 1 || got.([]any)[0] != "widget" {
		t.Errorf("AggregateType enum %v", got)
	}
	// No domain answers 404 here: the code list matches nothing.
	if nf := schemas["NotFoundProblem"].(map[string]any)["properties"].(map[string]any)["type"].(map[string]any); nf["not"] == nil {
		t.Errorf("a status no domain answers: %v, want a schema nothing matches", nf)
	}
	again, err := Assemble("test", []byte(assembleBase), Parts{Fragments: []Fragment{{Domain: "widgets", YAML: []byte(widgetFragment)}},
		AggregateTypes: []string{"widget"}, Events: widgetEvents})
	if err != nil || string(again.JSON()) != string(doc.JSON()) {
		t.Error("the same parts assembled twice differ: the served document must be stable byte for byte")
	}
}

func TestAssembleRefusesWhatDoesNotFit(t *testing.T) {
	parts := func(frags ...string) Parts {
		p := Parts{AggregateTypes: []string{"widget"}, Events: widgetEvents}
		for i, f := range frags {
			p.Fragments = append(p.Fragments, Fragment{Domain: "d" + string(rune('0'+i)), YAML: []byte(f)})
		}
		return p
	}
	for _, tt := range []struct {
		name  string
		base  string
		parts Parts
		want  string
	}{
		{"a path twice", assembleBase, parts(widgetFragment, widgetFragment), `path "/v1/widgets/{id}" is defined already`},
		{"a platform path", assembleBase, parts("paths:\n  /healthz: {}\n"), `path "/healthz" is defined already`},
		{"a platform schema", assembleBase, parts("components:\n  schemas:\n    Event: {type: object}\n"), `components.schemas "Event" is defined already`},
		{"an unknown key", assembleBase, parts("info: {title: x}\n"), `not "info"`},
		{"a status without a list", assembleBase, parts("components:\n  schemas:\n    W: {type: object}\nx-states:\n  widget: W\nx-problem-codes:\n  '418': [teapot]\n"), `problem codes of status 418`},
		{"a platform code", assembleBase, parts("x-problem-codes:\n  '400': [invalid-id]\n"), `problem code invalid-id of status 400 is the platform's already`},
		{"a bad status", assembleBase, parts("x-problem-codes:\n  teapot: [x]\n"), `want an HTTP status`},
		{"no states", assembleBase, parts(), `no domain declares its states`},
		{"a state of no schema", assembleBase, parts("x-states:\n  widget: Nothing\n"), `Nothing`},
		{"an unknown marker", strings.Replace(assembleBase, "x-generated: states", "x-generated: moods", 1), parts(widgetFragment), `unknown marker x-generated: moods`},
		{"not YAML", assembleBase, parts("paths: ["), `fragment`},
		{"no events", assembleBase, Parts{AggregateTypes: []string{"widget"}, Fragments: []Fragment{{Domain: "w", YAML: []byte(widgetFragment)}}}, `no event schema`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Assemble("test", []byte(tt.base), tt.parts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Assemble: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
