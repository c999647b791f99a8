package telemetry

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Span attribute keys of Tributary's own ids, beside OpenTelemetry's.
const (
	// CorrelationIDKey is the id of the request a span's events follow from.
	CorrelationIDKey = attribute.Key("tributary.correlation_id")
	// CausationIDKey is the id of the command or event that directly caused
	// a span's event.
	CausationIDKey = attribute.Key("tributary.causation_id")
)

// EventAttributes are the correlation and causation ids of an event.
func EventAttributes(correlationID, causationID string) []attribute.KeyValue {
	return []attribute.KeyValue{CorrelationIDKey.String(correlationID), CausationIDKey.String(causationID)}
}

// KafkaRecordAttributes are OpenTelemetry's messaging attributes (semconv
// v1.43) of one Kafka record; offset < 0 leaves the offset out (a record
// not yet acknowledged).
func KafkaRecordAttributes(op attribute.KeyValue, topic string, partition int32, key string, offset int64) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		op,
		semconv.MessagingDestinationName(topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))),
		semconv.MessagingKafkaMessageKey(key),
	}
	if offset >= 0 {
		attrs = append(attrs, semconv.MessagingKafkaOffset(int(offset)))
	}
	return attrs
}
