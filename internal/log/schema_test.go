package log

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tributary-es/tributary/schemas"
)

func loadRealSchemas(t *testing.T) *Schemas {
	t.Helper()
	s, err := LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatalf("LoadSchemas(schemas.Events): %v", err)
	}
	return s
}

func TestSchemasAcceptGoodPayloads(t *testing.T) {
	s := loadRealSchemas(t)
	tests := []struct {
		eventType string
		version   int
		payload   string
	}{
		{"AccountOpened", 1, `{"owner":"Ada Lovelace","currency":"EUR"}`},
		{"AccountOpened", 1, `{"owner":"` + strings.Repeat("é", 200) + `","currency":"JPY"}`},
		{"AccountActivated", 1, `{}`},
		{"FundsDeposited", 1, `{"amount":1250,"currency":"EUR"}`},
		{"FundsDeposited", 2, `{"amount":1250,"currency":"EUR","source":"salary"}`},
		{"FundsDeposited", 2, `{"amount":1,"currency":"KRW","source":"initial-deposit"}`},
		{"FundsWithdrawn", 1, `{"amount":1250,"currency":"EUR","reason":"rent"}`},
		{"AccountClosed", 1, `{}`},
		{"AccountClosed", 1, `{"reason":"moving abroad"}`},
	}
	for _, tt := range tests {
		t.Run(tt.eventType+" "+tt.payload, func(t *testing.T) {
			if !s.Has("account", tt.eventType, tt.version) {
				t.Fatalf("Has(account, %s, %d) = false", tt.eventType, tt.version)
			}
			if err := s.Validate("account", tt.eventType, tt.version, json.RawMessage(tt.payload)); err != nil {
				t.Fatalf("Validate(account/%s v%d, %s): %v", tt.eventType, tt.version, tt.payload, err)
			}
		})
	}
}

func TestSchemasRejectBadPayloads(t *testing.T) {
	s := loadRealSchemas(t)
	tests := []struct {
		name      string
		eventType string
		version   int
		payload   string
	}{
		{"missing source in v2", "FundsDeposited", 2, `{"amount":100,"currency":"EUR"}`},
		{"missing amount", "FundsWithdrawn", 1, `{"currency":"EUR","reason":"rent"}`},
		{"missing owner", "AccountOpened", 1, `{"currency":"EUR"}`},
		{"amount as string", "FundsDeposited", 2, `{"amount":"100","currency":"EUR","source":"salary"}`},
		{"amount as fraction", "FundsDeposited", 2, `{"amount":1.5,"currency":"EUR","source":"salary"}`},
		{"reason as number", "AccountClosed", 1, `{"reason":42}`},
		{"amount zero", "FundsDeposited", 2, `{"amount":0,"currency":"EUR","source":"salary"}`},
		{"amount negative", "FundsWithdrawn", 1, `{"amount":-1,"currency":"EUR","reason":"rent"}`},
		{"extra property", "FundsDeposited", 2, `{"amount":100,"currency":"EUR","source":"salary","note":"x"}`},
		{"source in v1", "FundsDeposited", 1, `{"amount":100,"currency":"EUR","source":"salary"}`},
		{"property on AccountActivated", "AccountActivated", 1, `{"by":"admin"}`},
		{"lower-case currency", "FundsDeposited", 2, `{"amount":100,"currency":"eur","source":"salary"}`},
		{"four-letter currency", "AccountOpened", 1, `{"owner":"Ada","currency":"EURO"}`},
		{"empty owner", "AccountOpened", 1, `{"owner":"","currency":"EUR"}`},
		{"owner of 201 characters", "AccountOpened", 1, `{"owner":"` + strings.Repeat("é", 201) + `","currency":"EUR"}`},
		{"empty reason", "FundsWithdrawn", 1, `{"amount":1,"currency":"EUR","reason":""}`},
		{"array instead of object", "AccountClosed", 1, `[]`},
		{"null", "AccountActivated", 1, `null`},
		{"not JSON", "FundsDeposited", 2, `{"amount":100,`},
		{"empty payload", "AccountActivated", 1, ``},
		{"trailing data", "AccountActivated", 1, `{} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate("account", tt.eventType, tt.version, json.RawMessage(tt.payload))
			if err == nil {
				t.Fatalf("Validate(account/%s v%d, %s) = nil, want a *SchemaError", tt.eventType, tt.version, tt.payload)
			}
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SchemaError", err, err)
			}
			if se.AggregateType != "account" || se.EventType != tt.eventType || se.SchemaVersion != tt.version {
				t.Errorf("SchemaError names %s/%s v%d, want account/%s v%d", se.AggregateType, se.EventType, se.SchemaVersion, tt.eventType, tt.version)
			}
			if se.Reason == "" {
				t.Error("SchemaError has no reason")
			}
			if errors.Is(err, ErrUnknownSchema) {
				t.Error("a payload error must not read as an unknown schema")
			}
		})
	}
}

func TestSchemaErrorNotJSONReason(t *testing.T) {
	err := loadRealSchemas(t).Validate("account", "AccountOpened", 1, json.RawMessage(`owner=Ada`))
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *SchemaError", err)
	}
	if !strings.HasPrefix(se.Reason, "not JSON") {
		t.Errorf("Reason = %q, want it to start with \"not JSON\"", se.Reason)
	}
	if want := "account/AccountOpened v1 payload is invalid: not JSON"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", err, want)
	}
}

func TestSchemasUnknownTypeOrVersion(t *testing.T) {
	s := loadRealSchemas(t)
	tests := []struct {
		aggregateType, eventType string
		version                  int
	}{
		{"account", "FundsDeposited", 3},
		{"account", "AccountOpened", 0},
		{"account", "AccountOpened", 2},
		{"account", "AccountFrozen", 1},
		{"account", "accountopened", 1},
		{"ledger", "AccountOpened", 1},
		{"", "", 0},
	}
	for _, tt := range tests {
		name := tt.aggregateType + "/" + tt.eventType
		t.Run(name, func(t *testing.T) {
			if s.Has(tt.aggregateType, tt.eventType, tt.version) {
				t.Errorf("Has(%s v%d) = true", name, tt.version)
			}
			err := s.Validate(tt.aggregateType, tt.eventType, tt.version, json.RawMessage(`{}`))
			if !errors.Is(err, ErrUnknownSchema) {
				t.Fatalf("Validate(%s v%d) = %v, want an error wrapping ErrUnknownSchema", name, tt.version, err)
			}
			var se *SchemaError
			if errors.As(err, &se) {
				t.Errorf("an unknown schema must not read as a *SchemaError: %v", err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
		})
	}
}

const widgetSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["name"],
  "properties": {"name": {"type": "string", "minLength": 1}}
}`

func TestLoadSchemasFromMapFS(t *testing.T) {
	fsys := fstest.MapFS{
		"events/widget/Made.v1.json":  {Data: []byte(widgetSchema)},
		"events/widget/Made.v12.json": {Data: []byte(`{"type":"object"}`)},
		"events/gadget/Made.v1.json":  {Data: []byte(`{"type":"array"}`)},
		"other/ignored.txt":           {Data: []byte("not a schema")},
	}
	s, err := LoadSchemas(fsys)
	if err != nil {
		t.Fatalf("LoadSchemas: %v", err)
	}
	for _, k := range []struct {
		agg, typ string
		v        int
		want     bool
	}{
		{"widget", "Made", 1, true},
		{"widget", "Made", 12, true},
		{"gadget", "Made", 1, true},
		{"widget", "Made", 2, false},
		{"events", "Made", 1, false},
	} {
		if got := s.Has(k.agg, k.typ, k.v); got != k.want {
			t.Errorf("Has(%s, %s, %d) = %v, want %v", k.agg, k.typ, k.v, got, k.want)
		}
	}
	if err := s.Validate("widget", "Made", 1, json.RawMessage(`{"name":"gear"}`)); err != nil {
		t.Errorf("Validate(widget/Made v1, good): %v", err)
	}
	var se *SchemaError
	if err := s.Validate("widget", "Made", 1, json.RawMessage(`{"name":""}`)); !errors.As(err, &se) {
		t.Errorf("Validate(widget/Made v1, empty name) = %v, want a *SchemaError", err)
	}
	// The same event type under another aggregate has its own schema.
	if err := s.Validate("gadget", "Made", 1, json.RawMessage(`[]`)); err != nil {
		t.Errorf("Validate(gadget/Made v1, []): %v", err)
	}
}

func TestLoadSchemasRejectsBadlyNamedFiles(t *testing.T) {
	for _, name := range []string{
		"Made.json",
		"Made.v0.json",
		"Made.v01.json",
		"Made-v1.json",
		"Made.V1.json",
		"Made.v1.yaml",
		"1Made.v1.json",
		"Made.v1.json.bak",
		"README.md",
	} {
		t.Run(name, func(t *testing.T) {
			p := "events/widget/" + name
			fsys := fstest.MapFS{
				"events/widget/Made.v1.json": {Data: []byte(widgetSchema)},
				p:                            {Data: []byte(widgetSchema)},
			}
			s, err := LoadSchemas(fsys)
			if err == nil {
				t.Fatalf("LoadSchemas accepted a file named %s", name)
			}
			if s != nil {
				t.Errorf("LoadSchemas returned schemas with error %v", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file %s", err, p)
			}
		})
	}
}

func TestLoadSchemasRejectsInvalidDocuments(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"not JSON", `{"type": "object",`},
		{"empty file", ``},
		{"type is not a string", `{"type": 5}`},
		{"unknown type name", `{"type": "objekt"}`},
		{"negative minLength", `{"type": "string", "minLength": -1}`},
		{"pattern that does not compile", `{"type": "string", "pattern": "("}`},
		{"dangling reference", `{"$ref": "#/$defs/missing"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const p = "events/widget/Made.v1.json"
			s, err := LoadSchemas(fstest.MapFS{p: {Data: []byte(tt.doc)}})
			if err == nil {
				t.Fatalf("LoadSchemas accepted schema %s", tt.doc)
			}
			if s != nil {
				t.Errorf("LoadSchemas returned schemas with error %v", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file %s", err, p)
			}
		})
	}
}

func TestLoadSchemasWithoutEventsDirectory(t *testing.T) {
	if _, err := LoadSchemas(fstest.MapFS{"schemas/widget/Made.v1.json": {Data: []byte(widgetSchema)}}); err == nil {
		t.Fatal("LoadSchemas of a file system without events/ succeeded, want an error")
	}
}
