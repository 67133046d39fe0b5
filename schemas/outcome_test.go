package schemas

import (
	"encoding/json"
	"testing"
	"time"
)

// The JSON written to the outcomes topic is exactly the natural JSON of the
// documented Avro schema: encode it in Avro, decode it, get the same bytes.
func TestDeliveryOutcomeJSONIsTheSchemasNaturalJSON(t *testing.T) {
	s, err := DeliveryOutcomeSchema()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []DeliveryOutcome{
		{
			SourceTopic: "events", SourcePartition: 3, SourceOffset: 1234, Rule: "welcome", Path: "6",
			Method: "POST", URL: "https://app.example.org/hook?token=REDACTED", Status: 200, Attempts: 1,
			Outcome: OutcomeDelivered, LatencyMS: 87, IdempotencyKey: "0123456789abcdef0123456789abcdef",
			Timestamp: time.Date(2021, 2, 1, 7, 27, 44, 469241789, time.FixedZone("x", 3600)),
		},
		{
			SourceTopic: "events", Rule: "r", Path: `"a \"quoted\" path"`, Method: "GET", URL: "u",
			Outcome: OutcomeDeadLettered, Error: "attempts exhausted: 503", Replayed: true,
			Timestamp: time.Unix(0, 0),
		},
	} {
		js := o.AppendJSON(nil)
		if !json.Valid(js) {
			t.Fatalf("invalid JSON: %s", js)
		}
		bin, err := EncodeDeliveryOutcome(s, &o)
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		back, err := s.AppendJSON(nil, bin)
		if err != nil {
			t.Fatal(err)
		}
		if string(back) != string(js) {
			t.Fatalf("natural JSON differs:\ngot  %s\nwant %s", back, js)
		}
		viaMarshal, _ := json.Marshal(&o)
		if string(viaMarshal) != string(js) {
			t.Fatalf("MarshalJSON: %s", viaMarshal)
		}
	}
	o := DeliveryOutcome{Outcome: "lost", Timestamp: time.Unix(0, 0)}
	if _, err := EncodeDeliveryOutcome(s, &o); err == nil {
		t.Fatal("an outcome outside the enum must not encode")
	}
}
