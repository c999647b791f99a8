// Package kafka is the event log's Kafka side: the CloudEvents 1.0
// binary-mode envelope of every record, topic naming and creation, and the
// franz-go client settings (brokers, TLS, SASL). Only the franz-go client API
// is used, so the same code runs against real Kafka and the embedded kfake.
package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	if e.TraceParent != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	if e.TraceState != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTraceState, Value: []byte(e.TraceState)})
	}
	return &kgo.Record{Topic: topic, Key: []byte(e.AggregateID), Value: e.Payload, Headers: h}
}

// DecodeRecord reads a stored event back from a record made by NewRecord.
// It fails, naming the attribute, on a record that is not such an event.
func DecodeRecord(r *kgo.Record) (log.Event, error) {
	h := make(map[string]string, len(r.Headers))
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	var errs []error
	need := func(k string) string {
		v, ok := h[k]
		if !ok || v == "" {
			errs = append(errs, fmt.Errorf("missing header %s", k))
		}
		return v
	}
	integer := func(k string) int64 {
		v := need(k)
		n, err := strconv.ParseInt(v, 10, 64)
		if v != "" && err != nil {
			errs = append(errs, fmt.Errorf("header %s=%q is not an integer", k, v))
		}
		return n
	}
	if v := need(HeaderSpecVersion); v != "" && v != "1.0" {
		errs = append(errs, fmt.Errorf("unsupported %s %q", HeaderSpecVersion, v))
	}
	if v := need(HeaderContentType); v != "" && v != "application/json" {
		errs = append(errs, fmt.Errorf("%s %q: the payload must be plain JSON", HeaderContentType, v))
	}
	need(HeaderSource)
	e := log.Event{
		AggregateType:  need(HeaderAggregateType),
		AggregateID:    need(HeaderSubject),
		Version:        integer(HeaderStreamVersion),
		SchemaVersion:  int(integer(HeaderSchemaVersion)),
		GlobalPosition: integer(HeaderGlobalPosition),
		Payload:        r.Value,
		Metadata: log.Metadata{
			CorrelationID: h[HeaderCorrelationID], CausationID: h[HeaderCausationID], Principal: h[HeaderPrincipal],
			TraceParent: h[HeaderTraceParent], TraceState: h[HeaderTraceState],
		},
	}
	id, err := uuid.Parse(need(HeaderID))
	if h[HeaderID] != "" && err != nil {
		errs = append(errs, fmt.Errorf("header %s is not a UUID: %v", HeaderID, err))
	}
	e.ID = id
	ceType := need(HeaderType)
	prefix := TypePrefix + e.AggregateType + "."
	suffix := ".v" + strconv.Itoa(e.SchemaVersion)
	if ceType != "" && (!strings.HasPrefix(ceType, prefix) || !strings.HasSuffix(ceType, suffix) || len(ceType) <= len(prefix)+len(suffix)) {
		errs = append(errs, fmt.Errorf("header %s=%q does not match aggregate type %q and schema version %d", HeaderType, ceType, e.AggregateType, e.SchemaVersion))
	} else if ceType != "" {
		e.Type = ceType[len(prefix) : len(ceType)-len(suffix)]
	}
	if t := need(HeaderTime); t != "" {
		if e.RecordedAt, err = time.Parse(time.RFC3339Nano, t); err != nil {
			errs = append(errs, fmt.Errorf("header %s=%q is not an RFC 3339 time", HeaderTime, t))
		}
	}
	if string(r.Key) != e.AggregateID {
		errs = append(errs, fmt.Errorf("record key %q differs from %s %q", r.Key, HeaderSubject, e.AggregateID))
	}
	if pk := need(HeaderPartitionKey); pk != "" && pk != string(r.Key) {
		errs = append(errs, fmt.Errorf("%s %q differs from the record key %q", HeaderPartitionKey, pk, r.Key))
	}
	if ds, ok := h[HeaderDataSchema]; ok && e.Type != "" && ds != DataSchema(e.AggregateType, e.Type, e.SchemaVersion) {
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
