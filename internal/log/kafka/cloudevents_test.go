package kafka

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

const (
	testTopic  = "tributary.account.events"
	testSource = "/tributary/writer"
)

// fullEvent has every field set, and a recorded time outside UTC with
// sub-second precision, so the golden file shows how each is written.
func fullEvent() log.Event {
	return log.Event{
		ID:             uuid.MustParse("01907e3a-5b2c-7d4e-8f10-2a3b4c5d6e7f"),
		AggregateType:  "account",
		AggregateID:    "acc-7f3a9c",
		Version:        42,
		Type:           "FundsDeposited",
		SchemaVersion:  2,
		Payload:        json.RawMessage(`{"amount":1250,"currency":"EUR","source":"salary"}`),
		RecordedAt:     time.Date(2024, 6, 1, 14, 34, 56, 789012000, time.FixedZone("CEST", 2*60*60)),
		GlobalPosition: 1234567,
		Metadata: log.Metadata{
			CorrelationID: "req-5b1d2e",
			CausationID:   "cmd-9c8e7f",
			Principal:     "process-manager",
			OnBehalfOf:    "user:alice",
			TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			TraceState:    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
		},
	}
}

// render writes a record as text: topic, key and value, then every header
// as "key: value" in record order.
func render(r *kgo.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "topic: %s\nkey: %s\nvalue: %s\n\nheaders:\n", r.Topic, r.Key, r.Value)
	for _, h := range r.Headers {
		fmt.Fprintf(&b, "%s: %s\n", h.Key, h.Value)
	}
	return b.String()
}

func TestNewRecordGolden(t *testing.T) {
	got := render(NewRecord(fullEvent(), testTopic, testSource))
	path := filepath.Join("testdata", "record.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestNewRecordGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("record differs from %s (rerun with -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// The fields that make a record land in the right place and be read
// correctly, checked without the golden file.
func TestNewRecordEnvelope(t *testing.T) {
	e := fullEvent()
	r := NewRecord(e, testTopic, testSource)
	if r.Topic != testTopic {
		t.Errorf("topic = %q, want %q", r.Topic, testTopic)
	}
	if string(r.Key) != e.AggregateID {
		t.Errorf("key = %q, want the aggregate id %q", r.Key, e.AggregateID)
	}
	if !bytes.Equal(r.Value, e.Payload) {
		t.Errorf("value = %s, want the payload %s", r.Value, e.Payload)
	}
	want := map[string]string{
		HeaderContentType:  "application/json",
		HeaderSpecVersion:  "1.0",
		HeaderID:           "01907e3a-5b2c-7d4e-8f10-2a3b4c5d6e7f",
		HeaderSource:       testSource,
		HeaderType:         "io.tributary.account.FundsDeposited.v2",
		HeaderSubject:      "acc-7f3a9c",
		HeaderTime:         "2024-06-01T12:34:56.789012Z",
		HeaderDataSchema:   "https://schemas.tributary.dev/events/account/FundsDeposited.v2.json",
		HeaderPartitionKey: "acc-7f3a9c",
		HeaderPrincipal:    "process-manager",
		HeaderOnBehalfOf:   "user:alice",
		HeaderTraceParent:  e.TraceParent,
		HeaderTraceState:   e.TraceState,
	}
	seen := map[string]int{}
	for _, h := range r.Headers {
		seen[h.Key]++
		if w, ok := want[h.Key]; ok && string(h.Value) != w {
			t.Errorf("header %s = %q, want %q", h.Key, h.Value, w)
		}
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("header %s appears %d times, want once", k, seen[k])
		}
	}
}

// The payload's schema $id must be the URI ce_dataschema names.
func TestDataSchemaIsTheSchemaID(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "schemas", "events", "account", "FundsDeposited.v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if got := DataSchema("account", "FundsDeposited", 2); got != s.ID {
		t.Errorf("DataSchema = %q, schema $id = %q", got, s.ID)
	}
}

// assertSameEvent compares two events, the recorded time as an instant.
func assertSameEvent(t *testing.T, got, want log.Event) {
	t.Helper()
	if !got.RecordedAt.Equal(want.RecordedAt) {
		t.Errorf("RecordedAt = %v, want %v", got.RecordedAt, want.RecordedAt)
	}
	got.RecordedAt, want.RecordedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event differs\ngot:  %+v\nwant: %+v", got, want)
	}
}

func TestDecodeRecordRoundTrip(t *testing.T) {
	noTrace := fullEvent()
	noTrace.TraceParent, noTrace.TraceState = "", ""
	bare := fullEvent()
	bare.Metadata = log.Metadata{}
	bare.RecordedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	dotted := fullEvent()
	dotted.AggregateType, dotted.Type, dotted.SchemaVersion = "ledger", "Entry.Posted", 12
	dotted.RecordedAt = time.Date(2024, 2, 29, 23, 59, 59, 1, time.FixedZone("", -7*60*60))
	nilPayload := fullEvent()
	nilPayload.Payload = nil
	forItself := fullEvent()
	forItself.Principal, forItself.OnBehalfOf = "user:alice", ""

	for name, e := range map[string]log.Event{
		"full": fullEvent(), "no trace context": noTrace, "no metadata": bare,
		"dotted type, nanosecond time": dotted, "nil payload": nilPayload, "not on behalf of anyone": forItself,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeRecord(NewRecord(e, testTopic, testSource))
			if err != nil {
				t.Fatal(err)
			}
			assertSameEvent(t, got, e)
		})
	}
}

func TestNewRecordWithoutTraceContext(t *testing.T) {
	e := fullEvent()
	e.TraceParent, e.TraceState = "", ""
	for _, h := range NewRecord(e, testTopic, testSource).Headers {
		if h.Key == HeaderTraceParent || h.Key == HeaderTraceState {
			t.Errorf("event without trace context has header %s: %q", h.Key, h.Value)
		}
	}

	e.TraceParent = fullEvent().TraceParent
	var keys []string
	for _, h := range NewRecord(e, testTopic, testSource).Headers {
		if h.Key == HeaderTraceParent || h.Key == HeaderTraceState {
			keys = append(keys, h.Key)
		}
	}
	if !reflect.DeepEqual(keys, []string{HeaderTraceParent}) {
		t.Errorf("event with traceparent only has trace headers %v, want [traceparent]", keys)
	}
}

// ce_onbehalfof is written only for an event that acted for someone, and
// read back as it was written.
func TestOnBehalfOfHeader(t *testing.T) {
	e := fullEvent()
	e.OnBehalfOf = ""
	for _, h := range NewRecord(e, testTopic, testSource).Headers {
		if h.Key == HeaderOnBehalfOf {
			t.Errorf("event acting for nobody has header %s: %q", h.Key, h.Value)
		}
	}
	got, err := DecodeRecord(withHeader(HeaderOnBehalfOf, "user:bob", false))
	if err != nil {
		t.Fatal(err)
	}
	if got.OnBehalfOf != "user:bob" || got.Principal != "process-manager" {
		t.Errorf("decoded principal %q on behalf of %q, want process-manager on behalf of user:bob", got.Principal, got.OnBehalfOf)
	}
	got, err = DecodeRecord(withHeader(HeaderOnBehalfOf, "", true))
	if err != nil {
		t.Fatalf("a record without %s: %v", HeaderOnBehalfOf, err)
	}
	if got.OnBehalfOf != "" {
		t.Errorf("a record without %s decoded on behalf of %q", HeaderOnBehalfOf, got.OnBehalfOf)
	}
}

// withHeader returns the record of fullEvent with header k set to v, or
// removed when remove is true.
func withHeader(k, v string, remove bool) *kgo.Record {
	r := NewRecord(fullEvent(), testTopic, testSource)
	var hs []kgo.RecordHeader
	for _, h := range r.Headers {
		switch {
		case h.Key != k:
			hs = append(hs, h)
		case !remove:
			hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	r.Headers = hs
	return r
}

// assertRejected checks that DecodeRecord fails, naming each of names, and
// returns no event.
func assertRejected(t *testing.T, r *kgo.Record, names ...string) {
	t.Helper()
	e, err := DecodeRecord(r)
	if err == nil {
		t.Fatalf("DecodeRecord accepted the record: %+v", e)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %s", err, n)
		}
	}
	if !reflect.DeepEqual(e, log.Event{}) {
		t.Errorf("DecodeRecord returned %+v with its error, want the zero event", e)
	}
}

func TestDecodeRecordRejectsMissingHeader(t *testing.T) {
	required := []string{
		HeaderSpecVersion, HeaderID, HeaderType, HeaderSubject, HeaderTime,
		HeaderAggregateType, HeaderStreamVersion, HeaderSchemaVersion, HeaderGlobalPosition,
	}
	for _, k := range required {
		t.Run(k+" absent", func(t *testing.T) {
			assertRejected(t, withHeader(k, "", true), "missing header "+k)
		})
		t.Run(k+" empty", func(t *testing.T) {
			assertRejected(t, withHeader(k, "", false), "missing header "+k)
		})
	}
}

func TestDecodeRecordRejectsBadHeader(t *testing.T) {
	tests := []struct {
		name, header, value string
	}{
		{"spec version 0.3", HeaderSpecVersion, "0.3"},
		{"spec version 1", HeaderSpecVersion, "1"},
		{"stream version not a number", HeaderStreamVersion, "v42"},
		{"stream version a float", HeaderStreamVersion, "42.0"},
		{"stream version overflows int64", HeaderStreamVersion, "9223372036854775808"},
		{"schema version not a number", HeaderSchemaVersion, "two"},
		{"global position not a number", HeaderGlobalPosition, "0x12"},
		{"id not a UUID", HeaderID, "evt-1"},
		{"id a truncated UUID", HeaderID, "01907e3a-5b2c-7d4e-8f10-2a3b4c5d6e7"},
		{"type of another aggregate", HeaderType, "io.tributary.order.FundsDeposited.v2"},
		{"type of another schema version", HeaderType, "io.tributary.account.FundsDeposited.v1"},
		{"type with another prefix", HeaderType, "com.example.account.FundsDeposited.v2"},
		{"type without event name", HeaderType, "io.tributary.account..v2"},
		{"type without version", HeaderType, "io.tributary.account.FundsDeposited"},
		{"time not a time", HeaderTime, "yesterday"},
		{"time without zone", HeaderTime, "2024-06-01T12:34:56"},
		{"time with month 13", HeaderTime, "2024-13-01T12:34:56Z"},
		{"time as Unix seconds", HeaderTime, "1717245296"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRejected(t, withHeader(tt.header, tt.value, false), tt.header)
		})
	}
}

func TestDecodeRecordRejectsKeyOtherThanSubject(t *testing.T) {
	for name, key := range map[string][]byte{"other id": []byte("acc-other"), "empty": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			r := NewRecord(fullEvent(), testTopic, testSource)
			r.Key = key
			assertRejected(t, r, HeaderSubject, "record key")
		})
	}
}

// Every problem is reported, not only the first.
func TestDecodeRecordReportsEveryProblem(t *testing.T) {
	r := withHeader(HeaderID, "nope", false)
	for i, h := range r.Headers {
		if h.Key == HeaderTime {
			r.Headers[i].Value = []byte("soon")
		}
	}
	r.Key = []byte("acc-other")
	assertRejected(t, r, HeaderID, HeaderTime, HeaderSubject)
}

// headerLines encodes a record's headers for the fuzzer as "key: value"
// lines; parseHeaderLines reads them back (a line without ": " is a key with
// an empty value).
func headerLines(hs []kgo.RecordHeader) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s: %s\n", h.Key, h.Value)
	}
	return b.String()
}

func parseHeaderLines(s string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return hs
}

// FuzzDecodeRecord feeds DecodeRecord arbitrary keys, values and headers.
// It must never panic; a record it accepts must be the record NewRecord
// makes of the decoded event: re-encoding gives the same value for every
// header NewRecord writes. Tolerated, as they change nothing a consumer
// reads: header order, headers NewRecord does not write (other tools and
// tracing add their own), the same value spelled otherwise (an integer, the
// UUID, the time as an instant), absent for empty metadata, and an absent
// ce_dataschema (optional in CloudEvents; checked only when given).
func FuzzDecodeRecord(f *testing.F) {
	full := NewRecord(fullEvent(), testTopic, testSource)
	f.Add(full.Key, full.Value, headerLines(full.Headers))
	e := fullEvent()
	e.Metadata = log.Metadata{}
	bare := NewRecord(e, testTopic, testSource)
	f.Add(bare.Key, bare.Value, headerLines(bare.Headers))
	for _, k := range []string{HeaderID, HeaderTime, HeaderType, HeaderStreamVersion} {
		r := withHeader(k, "x", false)
		f.Add(r.Key, r.Value, headerLines(r.Headers))
	}
	f.Add([]byte{}, []byte{}, "")
	f.Add([]byte("k"), []byte("{}"), "ce_specversion: 1.0\nce_specversion: 0.3\n")

	f.Fuzz(func(t *testing.T, key, value []byte, headers string) {
		r := &kgo.Record{Topic: testTopic, Key: key, Value: value, Headers: parseHeaderLines(headers)}
		got, err := DecodeRecord(r)
		if err != nil {
			return
		}
		in := map[string]string{}
		for _, h := range r.Headers {
			in[h.Key] = string(h.Value) // the last one wins, as in DecodeRecord
		}
		re := NewRecord(got, testTopic, in[HeaderSource])
		if string(re.Key) != string(key) || !bytes.Equal(re.Value, value) {
			t.Errorf("re-encoded key/value %q/%q, input %q/%q", re.Key, re.Value, key, value)
		}
		for _, h := range re.Headers {
			inV, present := in[h.Key]
			if !present && h.Key == HeaderDataSchema {
				continue // optional in CloudEvents: DecodeRecord checks it only when given
			}
			if !present && h.Key != HeaderCorrelationID && h.Key != HeaderCausationID && h.Key != HeaderPrincipal {
				t.Errorf("accepted a record without %s (re-encoded as %q)", h.Key, h.Value)
				continue
			}
			if !sameValue(h.Key, inV, string(h.Value)) {
				t.Errorf("accepted %s %q, re-encoded as %q", h.Key, inV, h.Value)
			}
		}
		again, err := DecodeRecord(re)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, render(re))
		}
		assertSameEvent(t, again, got)
	})
}

// sameValue reports whether a and b are the same value of header k.
func sameValue(k, a, b string) bool {
	if a == b {
		return true
	}
	switch k {
	case HeaderID:
		x, errX := uuid.Parse(a)
		y, errY := uuid.Parse(b)
		return errX == nil && errY == nil && x == y
	case HeaderTime:
		x, errX := time.Parse(time.RFC3339Nano, a)
		y, errY := time.Parse(time.RFC3339Nano, b)
		return errX == nil && errY == nil && x.Equal(y)
	case HeaderStreamVersion, HeaderSchemaVersion, HeaderGlobalPosition:
		x, errX := strconv.ParseInt(a, 10, 64)
		y, errY := strconv.ParseInt(b, 10, 64)
		return errX == nil && errY == nil && x == y
	}
	return false
}

// The projector decodes every record it applies.
func BenchmarkDecodeRecord(b *testing.B) {
	r := NewRecord(fullEvent(), testTopic, testSource)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(r); err != nil {
			b.Fatal(err)
		}
	}
}
