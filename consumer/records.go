package consumer

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
)

// Outcome values written in outcome records and used as metric labels.
const (
	outcomeDelivered    = "delivered"
	outcomeRejected     = "rejected"
	outcomeParked       = "parked"
	outcomeDeadLettered = "dead_lettered"
)

// OutcomeRecord is the JSON value of one record on outcomes.topic: the fate
// of one (event, rule) pair. docs/outcomes.md documents it; the Avro schema
// schemas/delivery_outcome.avsc describes the same fields.
type OutcomeRecord struct {
	SourceTopic     string          `json:"source_topic"`
	SourcePartition int32           `json:"source_partition"`
	SourceOffset    int64           `json:"source_offset"`
	Rule            string          `json:"rule"`
	Path            json.RawMessage `json:"path"`
	Method          string          `json:"method"`
	// URL is redacted: no query values, no user info.
	URL            string `json:"url"`
	Status         int    `json:"status"`
	Attempts       int    `json:"attempts"`
	Outcome        string `json:"outcome"`
	Reason         string `json:"reason,omitempty"`
	Error          string `json:"error,omitempty"`
	LatencyMS      int64  `json:"latency_ms"`
	EventTime      string `json:"event_time,omitempty"`
	Timestamp      string `json:"timestamp"`
	NextAttemptAt  string `json:"next_attempt_at,omitempty"`
	IdempotencyKey string `json:"idempotency_key"`
	Replayed       bool   `json:"replayed,omitempty"`
}

// Headers apicall puts on records it writes to the retry and dead-letter
// topics. The record value and key are the original event's, untouched, so
// that re-drive and replay decode exactly what the producer sent.
const (
	hdrReason        = "apicall-reason"
	hdrError         = "apicall-error"
	hdrSourceTopic   = "apicall-source-topic"
	hdrSourcePart    = "apicall-source-partition"
	hdrSourceOffset  = "apicall-source-offset"
	hdrSourceTime    = "apicall-source-timestamp"
	hdrAt            = "apicall-dead-lettered-at"
	hdrRule          = "apicall-rule"
	hdrAttempts      = "apicall-attempts"
	hdrRetries       = "apicall-retries"
	hdrFirstAttempt  = "apicall-first-attempt-at"
	hdrNextAttempt   = "apicall-next-attempt-at"
	hdrLastStatus    = "apicall-last-status"
	hdrParkedAt      = "apicall-parked-at"
	hdrValueBytes    = "apicall-value-bytes"
	timeLayoutMicros = "2006-01-02T15:04:05.000000Z07:00"
)

// source identifies where an event came from.
type source struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
	Time      time.Time
}

func sourceFromSarama(m *sarama.ConsumerMessage) source {
	h := make([]kafka.Header, 0, len(m.Headers))
	for _, x := range m.Headers {
		if x == nil {
			continue
		}
		h = append(h, kafka.Header{Key: string(x.Key), Value: x.Value})
	}
	return source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: h, Time: m.Timestamp}
}

// copyHeaders returns the original headers without any apicall-* header
// from an earlier pass, so a record re-parked many times does not grow.
func copyHeaders(h []kafka.Header) []kafka.Header {
	out := make([]kafka.Header, 0, len(h)+8)
	for _, x := range h {
		if len(x.Key) >= 8 && x.Key[:8] == "apicall-" {
			continue
		}
		out = append(out, x)
	}
	return out
}

// annotated returns the source record as a message for topic with the given
// apicall headers added, key and value untouched.
func (s source) annotated(topic string, kv ...string) kafka.Message {
	h := copyHeaders(s.Headers)
	h = append(h,
		kafka.Header{Key: hdrSourceTopic, Value: []byte(s.Topic)},
		kafka.Header{Key: hdrSourcePart, Value: []byte(strconv.Itoa(int(s.Partition)))},
		kafka.Header{Key: hdrSourceOffset, Value: []byte(strconv.FormatInt(s.Offset, 10))},
	)
	if !s.Time.IsZero() {
		h = append(h, kafka.Header{Key: hdrSourceTime, Value: []byte(s.Time.UTC().Format(timeLayoutMicros))})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, kafka.Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return kafka.Message{Topic: topic, Key: s.Key, Value: s.Value, Headers: h}
}

// withoutValue returns m without the event's value and original headers,
// plus apicall-value-bytes with the value's size: a dead letter too large
// to write whole still records the event's position, rule and reason (the
// event itself stays in the source topic at apicall-source-offset).
func withoutValue(m kafka.Message, size int) kafka.Message {
	h := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, x := range m.Headers {
		if len(x.Key) >= 8 && x.Key[:8] == "apicall-" {
			h = append(h, x)
		}
	}
	m.Value = nil
	m.Headers = append(h, kafka.Header{Key: hdrValueBytes, Value: []byte(strconv.Itoa(size))})
	return m
}

// header returns the value of the last header named k.
func header(h []kafka.Header, k string) (string, bool) {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Key == k {
			return string(h[i].Value), true
		}
	}
	return "", false
}

// formatMicros is t.UTC().Format(timeLayoutMicros) without the layout
// interpretation Format does on every call: two timestamps per outcome
// record made Format 2% of apicall's CPU in make bench.
func formatMicros(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(timeLayoutMicros)
	}
	hour, minute, sec := t.Clock()
	var b [27]byte // 2006-01-02T15:04:05.000000Z
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, t.Nanosecond()/1000, 6)
	b[26] = 'Z'
	return string(b[:])
}
