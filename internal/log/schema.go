package log

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// SchemaError says that a payload does not match the JSON Schema of its event
// type and version. Nothing is stored when it is returned.
type SchemaError struct {
	AggregateType, EventType string
	SchemaVersion            int
	Reason                   string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s/%s v%d payload is invalid: %s", e.AggregateType, e.EventType, e.SchemaVersion, e.Reason)
}

// ErrUnknownSchema is returned for an event type and version that has no schema:
// such an event is refused rather than stored unchecked.
var ErrUnknownSchema = errors.New("no schema for event type and version")

type schemaKey struct {
	aggregateType, eventType string
	version                  int
}

// Schemas validates event payloads against the JSON Schemas (2020-12) of
// their type and version. It is safe for concurrent use.
type Schemas struct {
	byKey map[schemaKey]compiledSchema
}

type compiledSchema struct {
	raw  []byte // the file, as read
	full *jsonschema.Schema
	fast *fastSchema // nil: the schema is outside the fast path's subset
}

var schemaFileName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*)\.v([1-9][0-9]*)\.json$`)

// LoadSchemas compiles every file events/<aggregate type>/<EventType>.v<N>.json
// in each of fsyss (one per domain, say). Formats (uuid, date-time, ...) are
// asserted, not just annotated. The same file in two of them is an error.
func LoadSchemas(fsyss ...fs.FS) (*Schemas, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.DefaultDraft(jsonschema.Draft2020)
	s := &Schemas{byKey: make(map[schemaKey]compiledSchema)}
	for _, fsys := range fsyss {
		if err := s.load(c, fsys); err != nil {
			return nil, fmt.Errorf("load event schemas: %w", err)
		}
	}
	return s, nil
}

// load compiles the schemas of fsys into s.
func (s *Schemas) load(c *jsonschema.Compiler, fsys fs.FS) error {
	return fs.WalkDir(fsys, "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		m := schemaFileName.FindStringSubmatch(d.Name())
		if m == nil {
			return fmt.Errorf("schema file %s: name must be <EventType>.v<N>.json", p)
		}
		version, _ := strconv.Atoi(m[2])
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("schema file %s: %w", p, err)
		}
		// The file path is the resource's address; its absolute $id is kept
		// as an alias by the compiler.
		loc := "file:///" + p
		if err := c.AddResource(loc, doc); err != nil {
			return fmt.Errorf("schema file %s: %w", p, err)
		}
		compiled, err := c.Compile(loc)
		if err != nil {
			return fmt.Errorf("schema file %s: %w", p, err)
		}
		key := schemaKey{path.Base(path.Dir(p)), m[1], version}
		if _, dup := s.byKey[key]; dup {
			return fmt.Errorf("schema file %s: a schema of %s/%s v%d is loaded already", p, key.aggregateType, key.eventType, key.version)
		}
		s.byKey[key] = compiledSchema{raw, compiled, compileFast(doc)}
		return nil
	})
}

// Validate checks payload against the schema of its aggregate type, event type
// and schema version. It returns a *SchemaError when the payload does not
// match, and an error wrapping ErrUnknownSchema when there is no such schema.
func (s *Schemas) Validate(aggregateType, eventType string, version int, payload json.RawMessage) error {
	sch, ok := s.byKey[schemaKey{aggregateType, eventType, version}]
	if !ok {
		return fmt.Errorf("%s/%s v%d: %w", aggregateType, eventType, version, ErrUnknownSchema)
	}
	if sch.fast != nil && sch.fast.accepts(payload) {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &SchemaError{aggregateType, eventType, version, "not JSON: " + err.Error()}
	}
	if err := sch.full.Validate(v); err != nil {
		return &SchemaError{aggregateType, eventType, version, err.Error()}
	}
	return nil
}

// Has tells whether a schema exists for the event type and version.
func (s *Schemas) Has(aggregateType, eventType string, version int) bool {
	_, ok := s.byKey[schemaKey{aggregateType, eventType, version}]
	return ok
}

// EventSchema names one loaded schema: an event type of an aggregate type
// at a schema version.
type EventSchema struct {
	AggregateType, EventType string
	Version                  int
}

// List returns the loaded schemas by aggregate type, event type and
// version.
func (s *Schemas) List() []EventSchema {
	out := make([]EventSchema, 0, len(s.byKey))
	for k := range s.byKey {
		out = append(out, EventSchema{k.aggregateType, k.eventType, k.version})
	}
	slices.SortFunc(out, func(a, b EventSchema) int {
		return cmp.Or(cmp.Compare(a.AggregateType, b.AggregateType), cmp.Compare(a.EventType, b.EventType), cmp.Compare(a.Version, b.Version))
	})
	return out
}

// Raw returns the schema file of an event type at a version, as read; nil
// when there is none.
func (s *Schemas) Raw(aggregateType, eventType string, version int) []byte {
	return s.byKey[schemaKey{aggregateType, eventType, version}].raw
}
