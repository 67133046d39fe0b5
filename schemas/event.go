// Package schemas decodes user events from the wire formats producers use
// (plain JSON, Avro in the Confluent wire format, Avro single-object encoding)
// into one Event type, and holds the embedded Avro schemas.
package schemas

import (
	"encoding/json"
	"time"
)

// Event is one user event, whatever wire format carried it.
//
// User and Data are kept as raw JSON so that the profile is passed through to
// receivers byte for byte (nulls stay null, numbers stay numbers, field order
// kept) and so that the hot path never decodes what no rule looks at.
type Event struct {
	// Name is the event name (e.g. "Register_newsletter"). When the payload
	// carries none, the decoder sets it to the source topic name.
	Name string
	// Timestamp is the event's own timestamp as carried (RFC 3339), or ""
	// when the payload has none.
	Timestamp string
	// User is the user profile as a raw JSON object; nil when absent.
	User json.RawMessage
	// Data is the event data as a raw JSON object; nil when absent.
	Data json.RawMessage
	// Raw is the whole event as one JSON object (for JSON input the record
	// value itself; for Avro its natural JSON form), so fields apicall does
	// not know are kept and reachable as {{ event.FIELD }}.
	Raw json.RawMessage

	// Source position, filled by the consumer, not by decoders.
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Time is the Kafka record timestamp (used for lag and retry age).
	Time time.Time
}
