package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// DecodeJSON decodes a JSON event value: an object with optional members
// "event" (string; the topic name when absent, null or ""), "timestamp"
// (string), "user" and "data" (objects; null counts as absent). Every other
// member is kept in Event.Raw, which is a copy of value, so the caller may
// reuse value's buffer. User and Data are sub-slices of Raw.
//
// It validates the whole value (UTF-8, JSON syntax) and then makes one pass
// over the top level, skipping nested values without decoding them: the hot
// path never builds a map of a profile no rule may look at.
func DecodeJSON(topic string, value []byte) (Event, error) {
	return decodeJSON(topic, value, false)
}

// decodeJSON is DecodeJSON; with alias, Event.Raw is value itself, not a
// copy (DecoderOptions.ValuesImmutable).
func decodeJSON(topic string, value []byte, alias bool) (Event, error) {
	if len(value) == 0 {
		return Event{}, decodeErr(ReasonNotJSON, "empty value")
	}
	// RFC 8259 requires UTF-8 between systems; receivers with strict parsers
	// would reject the call body otherwise, long after we could say why.
	if !utf8.Valid(value) {
		return Event{}, decodeErr(ReasonNotJSON, "not UTF-8")
	}
	if i := skipWS(value, 0); i == len(value) || value[i] != '{' {
		if !validJSON(value) {
			return Event{}, notJSON(value)
		}
		return Event{}, decodeErr(ReasonNotObject, "top level is %s, not an object", jsonKind(value[i]))
	}
	// One pass validates the object and notes its members (scanValid).
	sp, ok := scanValid(value)
	if !ok {
		return Event{}, notJSON(value)
	}
	raw := value
	if !alias {
		raw = bytes.Clone(value) // same offsets: sp holds for the copy
	}
	return buildEvent(topic, raw, &sp)
}

// notJSON is the error for a value that is not valid JSON, saying where.
func notJSON(value []byte) error {
	var v json.RawMessage // only on the error path: find out where
	return &DecodeError{Reason: ReasonNotJSON, Err: json.Unmarshal(value, &v)}
}

// scanObject notes where the four event members sit in b, which must be
// valid JSON; the first occurrence of a duplicated member wins (as gjson, and
// so templates reading Raw, see it). JSON events get the same notes from
// scanValid, which validates in the same pass; this walk serves Avro output
// with a map at the top, which is valid by construction.
func scanObject(b []byte, sp *spans) error {
	i := skipWS(b, 0)
	if b[i] != '{' {
		return decodeErr(ReasonNotObject, "top level is %s, not an object", jsonKind(b[i]))
	}
	i = skipWS(b, i+1)
	if b[i] == '}' {
		return nil
	}
	for {
		ks := i
		i = skipString(b, i)
		key := b[ks+1 : i-1]
		i = skipWS(b, i)
		i = skipWS(b, i+1) // ':'
		vs := i
		s := memberSpan(sp, key, b[ks:ks+len(key)+2])
		if s == &sp.user && s.end == 0 && b[i] == '{' {
			// The first user member: walk it member by member (index.go).
			i, sp.userMembers, sp.userIndexed = indexObject(b, i)
		} else {
			i = skipValue(b, i)
		}
		if s != nil && s.end == 0 {
			*s = span{vs, i}
		}
		i = skipWS(b, i)
		if b[i] != ',' {
			return nil // '}'
		}
		i = skipWS(b, i+1)
	}
}

// memberSpan returns the span to fill for a member name, or nil.
func memberSpan(sp *spans, key, quoted []byte) *span {
	return sp.of(memberOf(key, quoted))
}

// Event members noted in spans; noMember for any other name.
const (
	noMember = iota
	eventMember
	timestampMember
	userMember
	dataMember
)

// memberOf returns which event member a key names (key is its bytes between
// the quotes, quoted the whole string).
func memberOf(key, quoted []byte) int {
	name := string(key) // no allocation: only compared
	if bytes.IndexByte(key, '\\') >= 0 {
		var s string
		if json.Unmarshal(quoted, &s) != nil {
			return noMember
		}
		name = s
	}
	switch name {
	case "event":
		return eventMember
	case "timestamp":
		return timestampMember
	case "user":
		return userMember
	case "data":
		return dataMember
	}
	return noMember
}

// of returns the span of member m, or nil for noMember.
func (sp *spans) of(m int) *span {
	switch m {
	case eventMember:
		return &sp.event
	case timestampMember:
		return &sp.timestamp
	case userMember:
		return &sp.user
	case dataMember:
		return &sp.data
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// jsonString reads a JSON value that should be a string or null.
func jsonString(v []byte) (string, bool, error) {
	switch v[0] {
	case 'n':
		return "", true, nil
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			return string(v[1 : len(v)-1]), false, nil
		}
		return unquote(v), false, nil
	}
	return "", false, errors.New(jsonKind(v[0]) + ", not a string")
}

// unquote decodes a valid JSON string with escapes (the rare case; kept out
// of jsonString so its result does not escape to the heap on the fast path).
func unquote(v []byte) string {
	var s string
	_ = json.Unmarshal(v, &s) // v is valid JSON
	return s
}
