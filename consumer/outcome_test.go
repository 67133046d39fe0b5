package consumer

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// The outcome topic's format is a public contract (docs/outcomes.md) that
// used to be written with json.Marshal: the append encoder must give the
// same bytes for every record.
func TestOutcomeAppendJSONIsJSONMarshal(t *testing.T) {
	for _, r := range []OutcomeRecord{
		{},
		{
			SourceTopic: "user-events", SourcePartition: 3, SourceOffset: 41, Rule: "newsletter-to-crm",
			Path: json.RawMessage("6"), Method: "POST", URL: "http://crm.example.com/hooks/newsletter?email=REDACTED",
			Status: 200, Attempts: 1, Outcome: outcomeDelivered, Reason: "ok", LatencyMS: 12,
			EventTime: "2026-11-24T16:00:00.123000Z", Timestamp: "2026-11-24T16:00:00.140000Z",
			IdempotencyKey: "5f1c0e0123456789abcdef0123456789",
		},
		{
			SourceTopic: "t", SourcePartition: -1, SourceOffset: -2, Rule: "r", Path: json.RawMessage(`"welcome \"x\""`),
			Outcome: outcomeParked, Reason: "status_5xx", NextAttemptAt: "2026-11-24T16:00:10Z",
			Error:    "POST http://h/p: status 503 <b>Service & \"Unavailable\"</b>\n\t\r\b\f\x00\x1f\x7f \u2028\u2029 é 🎉 \xff\xfe",
			Replayed: true, Attempts: 7, LatencyMS: 1 << 40,
		},
	} {
		got := string(r.AppendJSON(nil))
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Path) == 0 {
			// Marshal refuses an empty RawMessage; the encoder writes null.
			r.Path = json.RawMessage("null")
			want, _ = json.Marshal(&r)
		}
		if got != string(want) {
			t.Errorf("AppendJSON differs from json.Marshal:\ngot  %s\nwant %s", got, want)
		}
	}
}

func FuzzOutcomeAppendJSON(f *testing.F) {
	f.Add("user-events", "newsletter-to-crm", "POST", "http://h/p?a=REDACTED", "delivered", "ok", "", "2026-11-24T16:00:00Z", int64(41), true)
	f.Add("t", "r", "", "", "parked", "", "<&>\u2028\xff\"\\\n", "", int64(-1), false)
	f.Fuzz(func(t *testing.T, topic, rule, method, u, outcome, reason, errText, ts string, off int64, replayed bool) {
		r := OutcomeRecord{
			SourceTopic: topic, SourceOffset: off, Rule: rule, Path: json.RawMessage(`"p"`), Method: method, URL: u,
			Outcome: outcome, Reason: reason, Error: errText, Timestamp: ts, EventTime: errText, NextAttemptAt: reason,
			IdempotencyKey: rule, Replayed: replayed,
		}
		got := r.AppendJSON(nil)
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON differs from json.Marshal:\ngot  %s\nwant %s", got, want)
		}
	})
}

func BenchmarkOutcomeAppendJSON(b *testing.B) {
	r := OutcomeRecord{
		SourceTopic: "user-events", SourcePartition: 3, SourceOffset: 41, Rule: "newsletter-to-crm",
		Path: json.RawMessage("6"), Method: "POST", URL: "http://crm.example.com/hooks/newsletter?email=REDACTED",
		Status: 200, Attempts: 1, Outcome: outcomeDelivered, Reason: "ok", LatencyMS: 12,
		EventTime: "2026-11-24T16:00:00.123000Z", Timestamp: "2026-11-24T16:00:00.140000Z",
		IdempotencyKey: "5f1c0e0123456789abcdef0123456789",
	}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.AppendJSON(make([]byte, 0, 512))
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&r)
		}
	})
}

func TestFormatMicros(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0), time.Date(2021, 2, 1, 7, 27, 44, 469241789, time.FixedZone("x", 3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), {},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(rng.Int64N(1<<36)-1<<35, rng.Int64N(1e9)).In(time.FixedZone("y", int(rng.Int64N(50000))-25000)))
	}
	for _, tm := range times {
		if got, want := formatMicros(tm), tm.UTC().Format(timeLayoutMicros); got != want {
			t.Fatalf("formatMicros(%v) = %q, want %q", tm, got, want)
		}
	}
}
