package consumer

import (
	"strconv"

	"github.com/apicall/apicall/config"
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
	b = config.AppendJSONString(b, r.SourceTopic)
	b = append(b, `,"source_partition":`...)
	b = strconv.AppendInt(b, int64(r.SourcePartition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, r.SourceOffset, 10)
	b = append(b, `,"rule":`...)
	b = config.AppendJSONString(b, r.Rule)
	b = append(b, `,"path":`...)
	if len(r.Path) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, r.Path...)
	}
	b = append(b, `,"method":`...)
	b = config.AppendJSONString(b, r.Method)
	b = append(b, `,"url":`...)
	b = config.AppendJSONString(b, r.URL)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"outcome":`...)
	b = config.AppendJSONString(b, r.Outcome)
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = config.AppendJSONString(b, r.Reason)
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = config.AppendJSONString(b, r.Error)
	}
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, r.LatencyMS, 10)
	if r.EventTime != "" {
		b = append(b, `,"event_time":`...)
		b = config.AppendJSONString(b, r.EventTime)
	}
	b = append(b, `,"timestamp":`...)
	b = config.AppendJSONString(b, r.Timestamp)
	if r.NextAttemptAt != "" {
		b = append(b, `,"next_attempt_at":`...)
		b = config.AppendJSONString(b, r.NextAttemptAt)
	}
	b = append(b, `,"idempotency_key":`...)
	b = config.AppendJSONString(b, r.IdempotencyKey)
	if r.Replayed {
		b = append(b, `,"replayed":true`...)
	}
	return append(b, '}')
}
