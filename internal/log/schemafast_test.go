package log

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tributary-es/tributary/schemas"
)

// fullAccepts is the full validator's verdict alone, without the fast path.
func fullAccepts(sch compiledSchema, payload []byte) bool {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	return err == nil && sch.full.Validate(v) == nil
}

// sortedKeys keeps the test order stable.
func sortedKeys(s *Schemas) []schemaKey {
	keys := make([]schemaKey, 0, len(s.byKey))
	for k := range s.byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b schemaKey) int {
		return strings.Compare(a.eventType+string(rune('0'+a.version)), b.eventType+string(rune('0'+b.version)))
	})
	return keys
}

// Every event schema of the repository is in the fast path's subset, and
// the payloads the writer stores take it.
func TestFastPathCoversTheEventSchemas(t *testing.T) {
	s := loadRealSchemas(t)
	for k, sch := range s.byKey {
		if sch.fast == nil {
			t.Errorf("%s/%s v%d has no fast path", k.aggregateType, k.eventType, k.version)
		}
	}
	for _, tt := range []struct {
		aggregateType string
		eventType     string
		version       int
		payload       string
	}{
		{"transfer", "TransferRequested", 1, `{"from":"a-1","to":"b_2","amount":5,"currency":"EUR","reference":"rent"}`},
		{"transfer", "TransferFailed", 1, `{"reason":"target closed","refunded":true}`},
		{"transfer", "TransferFailed", 1, `{"refunded":false, "reason":"no funds"}`},
		{"transfer", "TransferCompleted", 1, `{}`},
		{"account", "AccountOpened", 1, `{"owner":"Ada Lovelace","currency":"EUR"}`},
		{"account", "AccountOpened", 1, `{"owner":"` + strings.Repeat("é", 200) + `","currency":"JPY"}`},
		{"account", "AccountActivated", 1, `{}`},
		{"account", "FundsDeposited", 1, `{"amount":1250,"currency":"EUR"}`},
		{"account", "FundsDeposited", 2, ` { "amount" : 1 , "currency":"KRW","source":"initial-deposit"}` + "\n"},
		{"account", "FundsWithdrawn", 1, `{"reason":"rent","amount":9223372036854775807,"currency":"EUR"}`},
		{"account", "AccountClosed", 1, `{}`},
		{"account", "AccountClosed", 1, `{"reason":"moving abroad"}`},
	} {
		if !s.byKey[schemaKey{tt.aggregateType, tt.eventType, tt.version}].fast.accepts([]byte(tt.payload)) {
			t.Errorf("fast path refuses %s v%d %s", tt.eventType, tt.version, tt.payload)
		}
	}
}

// payloadsToCompare are valid and invalid payloads, and valid ones the fast
// path leaves to the full validator.
var payloadsToCompare = []string{
	`{"amount":100,"currency":"EUR","source":"salary"}`,
	`{"amount":100,"currency":"EUR"}`,
	`{"amount":100,"currency":"EUR","reason":"rent"}`,
	`{"owner":"Ada","currency":"EUR"}`,
	`{"reason":"moving"}`,
	`{}`,
	`{"reason":"target closed","refunded":true}`,
	`{"reason":"no funds","refunded":false}`,
	`{"from":"a","to":"b","amount":5,"currency":"EUR","reference":"rent"}`,
	// Invalid.
	`{"amount":0,"currency":"EUR","source":"salary"}`,
	`{"amount":-1,"currency":"EUR","source":"salary"}`,
	`{"amount":-0,"currency":"EUR","source":"salary"}`,
	`{"amount":"100","currency":"EUR","source":"salary"}`,
	`{"amount":1.5,"currency":"EUR","source":"salary"}`,
	`{"amount":100,"currency":"eur","source":"salary"}`,
	`{"amount":100,"currency":"EURO","source":"salary"}`,
	`{"amount":100,"currency":"EUR\n","source":"salary"}`,
	`{"amount":100,"currency":"EUR","source":""}`,
	`{"amount":100,"currency":"EUR","source":"` + strings.Repeat("é", 201) + `"}`,
	`{"amount":100,"currency":"EUR","source":"salary","note":"x"}`,
	`{"amount":100,"currency":"EUR","source":"salary",}`,
	`{"amount":100,"currency":"EUR","source":"salary"} {}`,
	`{"amount":100,"currency":"EUR","source":"salary"}x`,
	`{"amount":100,"currency":"EUR","source":null}`,
	`{"amount":100,"currency":"EUR","source":["salary"]}`,
	`{"amount":100,"currency":"EUR","source":{"a":1}}`,
	`{"amount":100 "currency":"EUR","source":"salary"}`,
	`{"amount":100,"currency":"EUR","source":"salary"`,
	`{"amount":01,"currency":"EUR","source":"salary"}`,
	`{"amount":1e,"currency":"EUR","source":"salary"}`,
	`{"amount":-,"currency":"EUR","source":"salary"}`,
	`{"amount":99999999999999999999,"currency":"EUR","source":"salary"}`,
	`{"owner":"","currency":"EUR"}`,
	`{"owner":"Ada"}`,
	`{"owner":"Ad\xffa","currency":"EUR"}`,
	`{"own\xffer":"Ada","currency":"EUR"}`,
	"\xef\xbb\xbf{}",
	`{"reason":42}`,
	`{"reason":true}`,
	`{"reason":"x","refunded":"true"}`,
	`{"reason":"x","refunded":1}`,
	`{"reason":"x","refunded":null}`,
	`{"reason":"x","refunded":tru}`,
	`{"reason":"x","refunded":truex}`,
	`{"reason":"x","refunded":True}`,
	`{"reason":"x"}`,
	`{"from":"a","to":"../b","amount":5,"currency":"EUR","reference":"rent"}`,
	`[]`, `null`, `""`, `1`, ``, `{`, `}`, `{"":1}`,
	// Valid, but spelled in ways the fast path leaves to the validator.
	`{"amount":1.0,"currency":"EUR","source":"salary"}`,
	`{"amount":1e2,"currency":"EUR","source":"salary"}`,
	`{"amount":100,"currency":"\u0045UR","source":"salary"}`,
	`{"amount":100,"currency":"EUR","source":"sal\"ary"}`,
	`{"amount":100,"amount":100,"currency":"EUR","source":"salary"}`,
	`{"amount":"x","amount":100,"currency":"EUR","source":"salary"}`,
}

// The fast path never accepts a payload the full validator refuses.
func TestFastPathAcceptsOnlyWhatTheValidatorAccepts(t *testing.T) {
	s := loadRealSchemas(t)
	for _, k := range sortedKeys(s) {
		sch := s.byKey[k]
		for _, p := range payloadsToCompare {
			if sch.fast.accepts([]byte(p)) && !fullAccepts(sch, []byte(p)) {
				t.Errorf("%s v%d: the fast path accepts %q, the validator refuses it", k.eventType, k.version, p)
			}
		}
	}
}

// A schema that uses anything beyond flat, closed string and integer
// properties is validated by the full validator only.
func TestFastPathOnlyForItsSubset(t *testing.T) {
	const prop = `{"type":"object","additionalProperties":false,"properties":{"x":%s}}`
	for name, schema := range map[string]string{
		"open object":        `{"type":"object","properties":{"x":{"type":"string"}}}`,
		"nested object":      strings.Replace(prop, "%s", `{"type":"object"}`, 1),
		"format":             strings.Replace(prop, "%s", `{"type":"string","format":"uuid"}`, 1),
		"enum":               strings.Replace(prop, "%s", `{"type":"string","enum":["a"]}`, 1),
		"type list":          strings.Replace(prop, "%s", `{"type":["string","null"]}`, 1),
		"number":             strings.Replace(prop, "%s", `{"type":"number"}`, 1),
		"fractional minimum": strings.Replace(prop, "%s", `{"type":"integer","minimum":0.5}`, 1),
		"exclusiveMinimum":   strings.Replace(prop, "%s", `{"type":"integer","exclusiveMinimum":0}`, 1),
		"boolean schema":     strings.Replace(prop, "%s", `true`, 1),
		"boolean with const": strings.Replace(prop, "%s", `{"type":"boolean","const":true}`, 1),
		"draft 7":            `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false}`,
		"allOf":              `{"type":"object","additionalProperties":false,"allOf":[{"required":["x"]}]}`,
		"required unknown":   `{"type":"object","additionalProperties":false,"required":["y"],"properties":{}}`,
	} {
		s, err := LoadSchemas(fstest.MapFS{"events/w/Made.v1.json": {Data: []byte(schema)}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.byKey[schemaKey{"w", "Made", 1}].fast != nil {
			t.Errorf("%s: %s has a fast path", name, schema)
		}
	}
}

// FuzzFastPath compares the fast path with the full validator on arbitrary
// payloads for every event schema.
func FuzzFastPath(f *testing.F) {
	for _, p := range payloadsToCompare {
		f.Add([]byte(p))
	}
	s, err := LoadSchemas(schemas.Events)
	if err != nil {
		f.Fatal(err)
	}
	keys := sortedKeys(s)
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, k := range keys {
			sch := s.byKey[k]
			if sch.fast.accepts(payload) && !fullAccepts(sch, payload) {
				t.Errorf("%s v%d: the fast path accepts %q, the validator refuses it", k.eventType, k.version, payload)
			}
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	s, err := LoadSchemas(schemas.Events)
	if err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"amount":1250,"currency":"EUR","source":"salary"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Validate("account", "FundsDeposited", 2, payload); err != nil {
			b.Fatal(err)
		}
	}
}
