package schemas

import (
	"strconv"
	"time"
)

// Outcome values of a DeliveryOutcome (the enum in delivery_outcome.avsc).
const (
	OutcomeDelivered    = "delivered"
	OutcomeRejected     = "rejected"
	OutcomeParked       = "parked"
	OutcomeDeadLettered = "dead_lettered"
)

// DeliveryOutcome is one record of the outcomes topic: what became of one
// rule's call for one event. delivery_outcome.avsc documents it; on Kafka it
// is written as JSON, exactly the natural JSON of that schema (AppendJSON),
// so a consumer of the topic may read it either way.
type DeliveryOutcome struct {
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Rule            string
	Path            string // the rule's path as JSON text (e.g. 6 or "welcome")
	Method          string
	URL             string // as sent, secrets redacted
	Status          int32  // HTTP status of the last attempt; 0 when none was answered
	Attempts        int32
	Outcome         string // one of the Outcome* constants
	Error           string // "" means none (null in JSON)
	LatencyMS       int64
	Timestamp       time.Time // kept to the microsecond
	IdempotencyKey  string
	Replayed        bool
}

// AppendJSON appends the outcome as one JSON object, fields in schema order,
// with no reflection (the consumer writes one per call).
func (o *DeliveryOutcome) AppendJSON(b []byte) []byte {
	b = append(b, `{"source_topic":`...)
	b = appendJSONString(b, o.SourceTopic)
	b = append(b, `,"source_partition":`...)
	b = strconv.AppendInt(b, int64(o.SourcePartition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, o.SourceOffset, 10)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, o.Rule)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, o.Path)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, o.Method)
	b = append(b, `,"url":`...)
	b = appendJSONString(b, o.URL)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(o.Status), 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(o.Attempts), 10)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, o.Outcome)
	b = append(b, `,"error":`...)
	if o.Error == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, o.Error)
	}
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, o.LatencyMS, 10)
	b = append(b, `,"timestamp":`...)
	// the same rendering as timestamp-micros in natural JSON
	b = appendLogicalInt(b, logicalTimestampMicro, o.Timestamp.UnixMicro())
	b = append(b, `,"idempotency_key":`...)
	b = appendJSONString(b, o.IdempotencyKey)
	b = append(b, `,"replayed":`...)
	b = strconv.AppendBool(b, o.Replayed)
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (o *DeliveryOutcome) MarshalJSON() ([]byte, error) { return o.AppendJSON(nil), nil }

// EncodeDeliveryOutcome encodes an outcome as Avro binary under s (from
// DeliveryOutcomeSchema), for sinks that want Avro rather than JSON.
func EncodeDeliveryOutcome(s *Schema, o *DeliveryOutcome) ([]byte, error) {
	return s.AppendAvro(nil, o.AppendJSON(nil))
}
