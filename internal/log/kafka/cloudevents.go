// Package kafka is the event log's Kafka side: the CloudEvents 1.0
// binary-mode envelope of every record, topic naming and creation, and the
// franz-go client settings (brokers, TLS, SASL). Only the franz-go client API
// is used, so the same code runs against real Kafka and the embedded kfake.
package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/log"
)

// CloudEvents binary-mode header names (Kafka protocol binding), and the
// extensions Tributary adds.
const (
	HeaderContentType    = "content-type"
	HeaderSpecVersion    = "ce_specversion"
	HeaderID             = "ce_id"
	HeaderSource         = "ce_source"
	HeaderType           = "ce_type"
	HeaderSubject        = "ce_subject"
	HeaderTime           = "ce_time"
	HeaderDataSchema     = "ce_dataschema"
	HeaderPartitionKey   = "ce_partitionkey"
	HeaderAggregateType  = "ce_aggregatetype"
	HeaderStreamVersion  = "ce_streamversion"
	HeaderSchemaVersion  = "ce_schemaversion"
	HeaderGlobalPosition = "ce_globalposition"
	HeaderCorrelationID  = "ce_correlationid"
	HeaderCausationID    = "ce_causationid"
	HeaderPrincipal      = "ce_principal"
	HeaderOnBehalfOf     = "ce_onbehalfof" // whom ce_principal acted for (a process manager's steps); absent when empty
	HeaderTraceParent    = "traceparent"
	HeaderTraceState     = "tracestate"
)

// SchemaBase prefixes ce_dataschema: the absolute $id of the payload's schema.
const SchemaBase = "https://schemas.tributary.dev/events/"

// TypePrefix prefixes ce_type, e.g. io.tributary.account.FundsDeposited.v2.
const TypePrefix = "io.tributary."

// CEType returns the CloudEvents type of an event type at a schema version.
func CEType(aggregateType, eventType string, schemaVersion int) string {
	return TypePrefix + aggregateType + "." + eventType + ".v" + strconv.Itoa(schemaVersion)
}

// DataSchema returns the URI of the payload's JSON Schema.
func DataSchema(aggregateType, eventType string, schemaVersion int) string {
	return SchemaBase + aggregateType + "/" + eventType + ".v" + strconv.Itoa(schemaVersion) + ".json"
}

// NewRecord wraps a stored event as a Kafka record on topic: key = aggregate
// id (so the default murmur2 partitioner keeps an aggregate on one
// partition), value = the JSON payload, CloudEvents attributes as headers.
func NewRecord(e log.Event, topic, source string) *kgo.Record {
	h := []kgo.RecordHeader{
		{Key: HeaderContentType, Value: []byte("application/json")},
		{Key: HeaderSpecVersion, Value: []byte("1.0")},
		{Key: HeaderID, Value: []byte(e.ID.String())},
		{Key: HeaderSource, Value: []byte(source)},
		{Key: HeaderType, Value: []byte(CEType(e.AggregateType, e.Type, e.SchemaVersion))},
		{Key: HeaderSubject, Value: []byte(e.AggregateID)},
		{Key: HeaderTime, Value: []byte(e.RecordedAt.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderDataSchema, Value: []byte(DataSchema(e.AggregateType, e.Type, e.SchemaVersion))},
		{Key: HeaderPartitionKey, Value: []byte(e.AggregateID)},
		{Key: HeaderAggregateType, Value: []byte(e.AggregateType)},
		{Key: HeaderStreamVersion, Value: []byte(strconv.FormatInt(e.Version, 10))},
		{Key: HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: HeaderGlobalPosition, Value: []byte(strconv.FormatInt(e.GlobalPosition, 10))},
		{Key: HeaderCorrelationID, Value: []byte(e.CorrelationID)},
		{Key: HeaderCausationID, Value: []byte(e.CausationID)},
		{Key: HeaderPrincipal, Value: []byte(e.Principal)},
	}
	if e.OnBehalfOf != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderOnBehalfOf, Value: []byte(e.OnBehalfOf)})
	}
	if e.TraceParent != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	if e.TraceState != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceState, Value: []byte(e.TraceState)})
	}
	return &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: e.Payload, Headers: h}
}

// SetTraceContext replaces the record's traceparent and tracestate headers
// (an empty value removes the header).
func SetTraceContext(rec *kgo.Record, traceParent, traceState string) {
	h := rec.Headers[:0]
	for _, kv := range rec.Headers {
		if kv.Key != HeaderTraceParent && kv.Key != HeaderTraceState {
			h = append(h, kv)
		}
	}
	if traceParent != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceParent, Value: []byte(traceParent)})
	}
	if traceState != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceState, Value: []byte(traceState)})
	}
	rec.Headers = h
}

// HeaderCarrier reads and writes trace context in a record's headers, as
// OpenTelemetry's propagators want (propagation.TextMapCarrier).
type HeaderCarrier struct{ Record *kgo.Record }

// Get returns the value of the header key, "" when there is none.
func (c HeaderCarrier) Get(key string) string {
	for _, h := range c.Record.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header key with value.
func (c HeaderCarrier) Set(key, value string) {
	for i, h := range c.Record.Headers {
		if h.Key == key {
			c.Record.Headers[i].Value = []byte(value)
			return
		}
	}
	c.Record.Headers = append(c.Record.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys lists the record's header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, len(c.Record.Headers))
	for i, h := range c.Record.Headers {
		keys[i] = h.Key
	}
	return keys
}

// The headers DecodeRecord reads, as indexes into its table.
const (
	hContentType = iota
	hSpecVersion
	hID
	hSource
	hType
	hSubject
	hTime
	hDataSchema
	hPartitionKey
	hAggregateType
	hStreamVersion
	hSchemaVersion
	hGlobalPosition
	hCorrelationID
	hCausationID
	hPrincipal
	hOnBehalfOf
	hTraceParent
	hTraceState
	numHeaders
)

// headerIndex maps a header name to its index in DecodeRecord's table, or -1.
func headerIndex(k string) int {
	switch k {
	case HeaderContentType:
		return hContentType
	case HeaderSpecVersion:
		return hSpecVersion
	case HeaderID:
		return hID
	case HeaderSource:
		return hSource
	case HeaderType:
		return hType
	case HeaderSubject:
		return hSubject
	case HeaderTime:
		return hTime
	case HeaderDataSchema:
		return hDataSchema
	case HeaderPartitionKey:
		return hPartitionKey
	case HeaderAggregateType:
		return hAggregateType
	case HeaderStreamVersion:
		return hStreamVersion
	case HeaderSchemaVersion:
		return hSchemaVersion
	case HeaderGlobalPosition:
		return hGlobalPosition
	case HeaderCorrelationID:
		return hCorrelationID
	case HeaderCausationID:
		return hCausationID
	case HeaderPrincipal:
		return hPrincipal
	case HeaderOnBehalfOf:
		return hOnBehalfOf
	case HeaderTraceParent:
		return hTraceParent
	case HeaderTraceState:
		return hTraceState
	}
	return -1
}

var headerNames = [numHeaders]string{
	HeaderContentType, HeaderSpecVersion, HeaderID, HeaderSource, HeaderType, HeaderSubject, HeaderTime,
	HeaderDataSchema, HeaderPartitionKey, HeaderAggregateType, HeaderStreamVersion, HeaderSchemaVersion,
	HeaderGlobalPosition, HeaderCorrelationID, HeaderCausationID, HeaderPrincipal, HeaderOnBehalfOf,
	HeaderTraceParent, HeaderTraceState,
}

// DecodeRecord reads a stored event back from a record made by NewRecord.
// It fails, naming the attribute, on a record that is not such an event.
// Of a header given twice the last value counts; unknown headers are ignored.
func DecodeRecord(r *kgo.Record) (log.Event, error) {
	// The projector decodes every record it applies: the headers are looked
	// up in a table rather than a map, and only the values the event keeps
	// become strings.
	var h [numHeaders][]byte
	var present [numHeaders]bool
	for _, kv := range r.Headers {
		if i := headerIndex(kv.Key); i >= 0 {
			h[i], present[i] = kv.Value, true
		}
	}
	var errs []error
	need := func(i int) []byte {
		if len(h[i]) == 0 {
			errs = append(errs, fmt.Errorf("missing header %s", headerNames[i]))
		}
		return h[i]
	}
	integer := func(i int) int64 {
		v := need(i)
		n, err := strconv.ParseInt(string(v), 10, 64)
		if len(v) > 0 && err != nil {
			errs = append(errs, fmt.Errorf("header %s=%q is not an integer", headerNames[i], v))
		}
		return n
	}
	if v := need(hSpecVersion); len(v) > 0 && string(v) != "1.0" {
		errs = append(errs, fmt.Errorf("unsupported %s %q", HeaderSpecVersion, v))
	}
	if v := need(hContentType); len(v) > 0 && string(v) != "application/json" {
		errs = append(errs, fmt.Errorf("%s %q: the payload must be plain JSON", HeaderContentType, v))
	}
	need(hSource)
	e := log.Event{
		AggregateType:  string(need(hAggregateType)),
		AggregateID:    string(need(hSubject)),
		Version:        integer(hStreamVersion),
		SchemaVersion:  int(integer(hSchemaVersion)),
		GlobalPosition: integer(hGlobalPosition),
		Payload:        r.Value,
		Metadata: log.Metadata{
			CorrelationID: string(h[hCorrelationID]), CausationID: string(h[hCausationID]), Principal: string(h[hPrincipal]),
			OnBehalfOf: string(h[hOnBehalfOf]), TraceParent: string(h[hTraceParent]), TraceState: string(h[hTraceState]),
		},
	}
	id, err := uuid.ParseBytes(need(hID))
	if len(h[hID]) > 0 && err != nil {
		errs = append(errs, fmt.Errorf("header %s is not a UUID: %v", HeaderID, err))
	}
	e.ID = id
	ceType := need(hType)
	prefixLen := len(TypePrefix) + len(e.AggregateType) + 1
	var version [22]byte
	suffix := strconv.AppendInt(append(version[:0], ".v"...), int64(e.SchemaVersion), 10)
	switch {
	case len(ceType) == 0:
	case len(ceType) <= prefixLen+len(suffix) || string(ceType[:len(TypePrefix)]) != TypePrefix ||
		string(ceType[len(TypePrefix):prefixLen-1]) != e.AggregateType || ceType[prefixLen-1] != '.' ||
		!bytes.HasSuffix(ceType, suffix):
		errs = append(errs, fmt.Errorf("header %s=%q does not match aggregate type %q and schema version %d", HeaderType, ceType, e.AggregateType, e.SchemaVersion))
	default:
		e.Type = string(ceType[prefixLen : len(ceType)-len(suffix)])
	}
	if t := need(hTime); len(t) > 0 {
		if e.RecordedAt, err = time.Parse(time.RFC3339Nano, string(t)); err != nil {
			errs = append(errs, fmt.Errorf("header %s=%q is not an RFC 3339 time", HeaderTime, t))
		}
	}
	if string(r.Key) != e.AggregateID {
		errs = append(errs, fmt.Errorf("record key %q differs from %s %q", r.Key, HeaderSubject, e.AggregateID))
	}
	if pk := need(hPartitionKey); len(pk) > 0 && string(pk) != string(r.Key) {
		errs = append(errs, fmt.Errorf("%s %q differs from the record key %q", HeaderPartitionKey, pk, r.Key))
	}
	if ds := h[hDataSchema]; present[hDataSchema] && e.Type != "" && !isDataSchema(ds, e.AggregateType, e.Type, e.SchemaVersion) {
		errs = append(errs, fmt.Errorf("%s %q is not the schema of %s v%d", HeaderDataSchema, ds, e.Type, e.SchemaVersion))
	}
	if e.Version < 1 || e.SchemaVersion < 1 || e.GlobalPosition < 1 {
		errs = append(errs, fmt.Errorf("%s, %s and %s must be positive", HeaderStreamVersion, HeaderSchemaVersion, HeaderGlobalPosition))
	}
	if err := errors.Join(errs...); err != nil {
		return log.Event{}, fmt.Errorf("not a Tributary event (%s/%d@%d): %w", r.Topic, r.Partition, r.Offset, err)
	}
	return e, nil
}

// isDataSchema tells whether ds is DataSchema(aggregateType, eventType,
// schemaVersion), without building that string.
func isDataSchema(ds []byte, aggregateType, eventType string, schemaVersion int) bool {
	for _, part := range [...]string{SchemaBase, aggregateType, "/", eventType, ".v"} {
		if len(ds) < len(part) || string(ds[:len(part)]) != part {
			return false
		}
		ds = ds[len(part):]
	}
	var buf [20]byte
	version := strconv.AppendInt(buf[:0], int64(schemaVersion), 10)
	return bytes.HasPrefix(ds, version) && string(ds[len(version):]) == ".json"
}
