package apispec

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	yaml "go.yaml.in/yaml/v4"

	"github.com/tributary-es/tributary/schemas"
)

// Fragment is one domain's part of an API's document (YAML): its paths,
// its components (schemas, responses, parameters, headers), its tags, and
// two lists the platform's document is completed with:
//
//	x-problem-codes:   # the problem codes its routes answer, by HTTP status
//	  '400': [invalid-amount, missing-owner]
//	  '422': [insufficient-funds]
//	x-states:          # the schema of each of its aggregate types' state
//	  account: AccountState
type Fragment struct {
	// Domain names the domain, for errors.
	Domain string
	// YAML is the fragment.
	YAML []byte
}

// EventSchema is the current payload schema (JSON Schema 2020-12) of one
// event type.
type EventSchema struct {
	AggregateType, EventType string
	Version                  int
	Schema                   []byte
}

// Parts are what a document is assembled from besides the platform's base.
type Parts struct {
	Fragments      []Fragment
	AggregateTypes []string
	Events         []EventSchema
}

// Document is an assembled, validated OpenAPI 3.1 document.
type Document struct {
	name string
	doc  *openapi3.T
	json []byte
}

// Name is the document's name, e.g. "writer".
func (d *Document) Name() string { return d.name }

// OpenAPI returns the document as kin-openapi holds it.
func (d *Document) OpenAPI() *openapi3.T { return d.doc }

// JSON returns the document as served.
func (d *Document) JSON() []byte { return slices.Clone(d.json) }

// Handler serves the document as JSON (application/json); it only writes
// the bytes encoded once by Assemble.
func (d *Document) Handler() http.Handler {
	body := d.json
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// Assemble builds the document name from base — the platform's part, with
// markers where the domains' lists go — and parts, and validates it as
// OpenAPI 3.1. The markers, each removed once filled:
//
//   - x-generated: aggregate-types — this schema's enum is every aggregate
//     type;
//   - x-generated: event-types — this schema's enum is every event type;
//   - x-generated: events — this schema's oneOf holds, for every event type,
//     its aggregate type, type and current schema version as consts and its
//     payload schema (the event schema file itself);
//   - x-generated: states — this schema's oneOf refers to every aggregate
//     type's state schema (the fragments' x-states);
//   - x-domain-codes: <status> — the fragments' problem codes of that status
//     are added to this schema's enum (as https://tributary.dev/problems/<code>).
//
// A fragment may not redefine a path or component of the base or of
// another fragment.
func Assemble(name string, base []byte, parts Parts) (*Document, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("apispec: %s: the base document: %w", name, err)
	}
	if doc == nil {
		return nil, fmt.Errorf("apispec: %s: the base document is empty", name)
	}
	codes := map[string][]string{}
	var states []string
	for _, f := range parts.Fragments {
		fs, cs, err := merge(doc, f)
		if err != nil {
			return nil, fmt.Errorf("apispec: %s: domain %q: %w", name, f.Domain, err)
		}
		states = append(states, fs...)
		for status, list := range cs {
			for _, c := range list {
				if !slices.Contains(codes[status], c) {
					codes[status] = append(codes[status], c)
				}
			}
		}
	}
	g := generator{parts: parts, codes: codes, states: states, used: map[string]bool{}}
	if err := g.fill(doc); err != nil {
		return nil, fmt.Errorf("apispec: %s: %w", name, err)
	}
	for status := range codes {
		if !g.used["codes "+status] {
			return nil, fmt.Errorf("apispec: %s: problem codes of status %s, but the document has no x-domain-codes: %s to put them", name, status, status)
		}
	}
	if len(states) > 0 && !g.used["states"] {
		return nil, fmt.Errorf("apispec: %s: the fragments have x-states, but the document has no x-generated: states", name)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("apispec: %s: %w", name, err)
	}
	t, err := parse(name, raw)
	if err != nil {
		return nil, err
	}
	served, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("apispec: encode %s as JSON: %w", name, err)
	}
	return &Document{name: name, doc: t, json: served}, nil
}

// merge adds fragment f's paths, components and tags to doc, and returns
// its states and problem codes.
func merge(doc map[string]any, f Fragment) (states []string, codes map[string][]string, err error) {
	var frag map[string]any
	if err := yaml.Unmarshal(f.YAML, &frag); err != nil {
		return nil, nil, fmt.Errorf("its document fragment: %w", err)
	}
	codes = map[string][]string{}
	// In a fixed order, so that a fragment wrong in several ways is always
	// told the same thing.
	for _, key := range slices.SortedFunc(maps.Keys(frag), byFragmentOrder) {
		value := frag[key]
		switch key {
		case "paths":
			if err := union(doc, "paths", value, "path"); err != nil {
				return nil, nil, err
			}
		case "components":
			sections, ok := value.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("components is not a map")
			}
			comps, _ := doc["components"].(map[string]any)
			if comps == nil {
				comps = map[string]any{}
				doc["components"] = comps
			}
			for _, section := range slices.Sorted(maps.Keys(sections)) {
				if err := union(comps, section, sections[section], "components."+section); err != nil {
					return nil, nil, err
				}
			}
		case "tags":
			list, _ := value.([]any)
			have, _ := doc["tags"].([]any)
			for _, tag := range list {
				name := fmt.Sprint(tag.(map[string]any)["name"])
				if !slices.ContainsFunc(have, func(t any) bool { return fmt.Sprint(t.(map[string]any)["name"]) == name }) {
					have = append(have, tag)
				}
			}
			doc["tags"] = have
		case "x-problem-codes":
			byStatus, ok := value.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("x-problem-codes is not a map of status to codes")
			}
			for _, status := range slices.Sorted(maps.Keys(byStatus)) {
				items, ok := byStatus[status].([]any)
				if _, err := strconv.Atoi(status); err != nil || !ok {
					return nil, nil, fmt.Errorf("x-problem-codes: %q: want an HTTP status and a list of codes", status)
				}
				for _, c := range items {
					codes[status] = append(codes[status], fmt.Sprint(c))
				}
			}
		case "x-states":
			byType, ok := value.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("x-states is not a map of aggregate type to schema name")
			}
			for _, typ := range slices.Sorted(maps.Keys(byType)) {
				states = append(states, fmt.Sprint(byType[typ]))
			}
		default:
			return nil, nil, fmt.Errorf("a fragment holds paths, components, tags, x-problem-codes and x-states, not %q", key)
		}
	}
	return states, codes, nil
}

// union adds the entries of the map value to doc[key], refusing any that
// is there already.
func union(doc map[string]any, key string, value any, what string) error {
	entries, ok := value.(map[string]any)
	if !ok {
		return fmt.Errorf("%s is not a map", what)
	}
	have, _ := doc[key].(map[string]any)
	if have == nil {
		have = map[string]any{}
		doc[key] = have
	}
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		if _, dup := have[k]; dup {
			return fmt.Errorf("%s %q is defined already", what, k)
		}
		have[k] = entries[k]
	}
	return nil
}

// byFragmentOrder orders a fragment's keys as merge reads them: unknown
// keys first (they are refused at once), then paths, components, tags,
// x-problem-codes and x-states.
func byFragmentOrder(a, b string) int {
	rank := func(key string) int {
		return slices.Index([]string{"paths", "components", "tags", "x-problem-codes", "x-states"}, key)
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

// generator fills the base document's markers.
type generator struct {
	parts  Parts
	codes  map[string][]string
	states []string
	used   map[string]bool
}

// fill walks v and fills every marker it finds.
func (g *generator) fill(v any) error {
	switch v := v.(type) {
	case map[string]any:
		if marker, ok := v["x-generated"]; ok {
			delete(v, "x-generated")
			if err := g.generate(fmt.Sprint(marker), v); err != nil {
				return err
			}
		}
		if status, ok := v["x-domain-codes"]; ok {
			delete(v, "x-domain-codes")
			s := fmt.Sprint(status)
			g.used["codes "+s] = true
			enum, _ := v["enum"].([]any)
			for _, c := range g.codes[s] {
				uri := "https://tributary.dev/problems/" + c
				if slices.Contains(enum, any(uri)) {
					return fmt.Errorf("problem code %s of status %s is the platform's already", c, s)
				}
				enum = append(enum, uri)
			}
			if len(enum) == 0 {
				// No domain answers this status here: nothing matches.
				v["not"] = map[string]any{}
			} else {
				v["enum"] = enum
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := g.fill(v[k]); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range v {
			if err := g.fill(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *generator) generate(marker string, schema map[string]any) error {
	g.used[marker] = true
	switch marker {
	case "aggregate-types":
		schema["enum"] = toAny(g.parts.AggregateTypes)
	case "event-types":
		var types []string
		for _, e := range g.parts.Events {
			if !slices.Contains(types, e.EventType) {
				types = append(types, e.EventType)
			}
		}
		schema["enum"] = toAny(types)
	case "events":
		var oneOf []any
		for _, e := range g.parts.Events {
			var payload map[string]any
			if err := json.Unmarshal(e.Schema, &payload); err != nil {
				return fmt.Errorf("the schema of %s/%s v%d: %w", e.AggregateType, e.EventType, e.Version, err)
			}
			// The file's identity stays with the file; the document's
			// dialect is OpenAPI 3.1's (JSON Schema 2020-12) already.
			delete(payload, "$schema")
			delete(payload, "$id")
			payload["description"] = fmt.Sprintf("Payload of %s v%d (schemas/events/%s/%s.v%d.json).", e.EventType, e.Version, e.AggregateType, e.EventType, e.Version)
			oneOf = append(oneOf, map[string]any{"properties": map[string]any{
				"aggregateType": map[string]any{"const": e.AggregateType},
				"type":          map[string]any{"const": e.EventType},
				"schemaVersion": map[string]any{"const": e.Version},
				"payload":       payload,
			}})
		}
		if len(oneOf) == 0 {
			return fmt.Errorf("no event schema for the events' oneOf")
		}
		schema["oneOf"] = oneOf
	case "states":
		var oneOf []any
		for _, s := range g.states {
			oneOf = append(oneOf, map[string]any{"$ref": "#/components/schemas/" + s})
		}
		if len(oneOf) == 0 {
			return fmt.Errorf("no domain declares its states (x-states)")
		}
		schema["oneOf"] = oneOf
	default:
		return fmt.Errorf("unknown marker x-generated: %s (want aggregate-types, event-types, events or states)", marker)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Base returns the platform's part of document name:
// schemas/openapi/<name>.yaml.
func Base(name string) ([]byte, error) {
	file, err := fileOf(name)
	if err != nil {
		return nil, err
	}
	data, err := fs.ReadFile(schemas.OpenAPI, file)
	if err != nil {
		return nil, fmt.Errorf("apispec: no document %q: %w", name, err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, fmt.Errorf("apispec: document %q is empty", name)
	}
	return data, nil
}
