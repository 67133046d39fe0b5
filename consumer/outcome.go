package consumer

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the record as the JSON documented in docs/outcomes.md:
// the bytes json.Marshal gives for an OutcomeRecord (same field order,
// omitempty, HTML-safe escaping; a test holds the two equal), without
// reflection or the validation pass Marshal makes over Path. One record is
// written per call, so this sits on the hot path (make bench profile:
// json.Marshal was about 8% of apicall's CPU).
//
// Path must be compact JSON (the rule's path as config renders it); an empty
// Path is written as null.
func (r *OutcomeRecord) AppendJSON(b []byte) []byte {
	b = append(b, `{"source_topic":`...)
	b = appendJSONString(b, r.SourceTopic)
	b = append(b, `,"source_partition":`...)
	b = strconv.AppendInt(b, int64(r.SourcePartition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, r.SourceOffset, 10)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, r.Rule)
	b = append(b, `,"path":`...)
	if len(r.Path) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, r.Path...)
	}
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"url":`...)
	b = appendJSONString(b, r.URL)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, r.Outcome)
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, r.Reason)
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, r.LatencyMS, 10)
	if r.EventTime != "" {
		b = append(b, `,"event_time":`...)
		b = appendJSONString(b, r.EventTime)
	}
	b = append(b, `,"timestamp":`...)
	b = appendJSONString(b, r.Timestamp)
	if r.NextAttemptAt != "" {
		b = append(b, `,"next_attempt_at":`...)
		b = appendJSONString(b, r.NextAttemptAt)
	}
	b = append(b, `,"idempotency_key":`...)
	b = appendJSONString(b, r.IdempotencyKey)
	if r.Replayed {
		b = append(b, `,"replayed":true`...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string escaped the way encoding/json
// escapes it by default: control characters, quote and backslash, the HTML
// characters <, > and &, U+2028 and U+2029; invalid UTF-8 becomes \ufffd.
// Error texts quote receivers' responses, so any of these can occur.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
