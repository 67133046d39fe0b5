// Package schemas decodes user events from the wire formats producers use
// (plain JSON, Avro in the Confluent wire format, Avro single-object encoding)
// into one Event type, and holds the embedded Avro schemas.
//
// Avro values become the JSON a producer would have written by hand (unions
// unwrapped, record fields in the writer's order, timestamps as RFC 3339), so
// rules and templates only ever deal with JSON. docs/schemas.md describes the
// formats, that mapping, and every decode failure reason.
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
	// carries none (member absent, null or ""), the decoder sets it to the
	// source topic name.
	Name string
	// Timestamp is the event's own timestamp as carried (RFC 3339), or ""
	// when the payload has none. It is not parsed: a string is kept as the
	// producer wrote it; a member that is not a string (or null) makes the
	// value invalid_field.
	Timestamp string
	// User is the user profile as a raw JSON object; nil when absent.
	User json.RawMessage
	// Data is the event data as a raw JSON object; nil when absent.
	Data json.RawMessage
	// Raw is the whole event as one JSON object (for JSON input the record
	// value itself; for Avro its natural JSON form), so fields apicall does
	// not know are kept and reachable as {{ event.FIELD }}.
	//
	// User and Data are sub-slices of Raw (capacity-limited, so appending to
	// them copies); Raw never aliases the Kafka record buffer. Treat all
	// three as read-only.
	Raw json.RawMessage

	// Source position, filled by the consumer, not by decoders.
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Time is the Kafka record timestamp (used for lag and retry age).
	Time time.Time

	userIndex userIndex // see UserMember
}

// buildEvent fills an Event from a top-level JSON object raw (owned by the
// Event from now on) and the spans of its known members. JSON and Avro input
// share it, so both follow the same rules.
func buildEvent(topic string, raw []byte, sp *spans) (Event, error) {
	ev := Event{Raw: raw}
	if s := sp.event; s.end != 0 {
		name, _, err := jsonString(raw[s.start:s.end])
		if err != nil {
			return Event{}, decodeErr(ReasonInvalidField, `"event" is %v`, err)
		}
		ev.Name = name
	}
	if ev.Name == "" {
		ev.Name = topic
	}
	if s := sp.timestamp; s.end != 0 {
		ts, _, err := jsonString(raw[s.start:s.end])
		if err != nil {
			return Event{}, decodeErr(ReasonInvalidField, `"timestamp" is %v`, err)
		}
		ev.Timestamp = ts
	}
	var err error
	if ev.User, err = objectMember(raw, sp.user, "user"); err != nil {
		return Event{}, err
	}
	if ev.Data, err = objectMember(raw, sp.data, "data"); err != nil {
		return Event{}, err
	}
	switch {
	case sp.userIndexed:
		ev.setUserIndex(sp.userMembers)
	case ev.User != nil: // Avro: the natural JSON was not walked member by member
		if _, members, ok := indexObject(ev.User, 0); ok {
			ev.setUserIndex(members)
		}
	}
	return ev, nil
}

// objectMember returns the object at s as a sub-slice of raw whose capacity
// ends with it (an append to User must not overwrite Raw), nil when absent or
// null.
func objectMember(raw []byte, s span, name string) ([]byte, error) {
	if s.end == 0 {
		return nil, nil
	}
	switch raw[s.start] {
	case '{':
		return raw[s.start:s.end:s.end], nil
	case 'n':
		return nil, nil
	}
	return nil, decodeErr(ReasonInvalidField, "%q is %s, not an object", name, jsonKind(raw[s.start]))
}
