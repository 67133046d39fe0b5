package consumer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apicall/apicall/schemas"
)

// TestMixedWireFormatsAndGarbageOnOnePartition interleaves valid JSON, Avro
// in the Confluent wire format (schema from an httptest registry), Avro
// single-object encoding and undecodable records on one partition: every
// valid event is delivered, every bad one is dead-lettered with its reason
// and original bytes, and the partition is committed to its end.
func TestMixedWireFormatsAndGarbageOnOnePartition(t *testing.T) {
	schema, err := schemas.UserEventSchema()
	if err != nil {
		t.Fatal(err)
	}
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/schemas/ids/1" {
			http.Error(w, `{"error_code":40403,"message":"Schema not found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"schema": schema.String()})
	}))
	defer registry.Close()

	b := testBroker(t, 1, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`schemas:
  registry_url: %s
rules:
  - name: all
    path: 1
    event: Register_newsletter
    call:
      url: %s/x?id={{ user.id }}&name={{ user.name }}
`, registry.URL, rc.URL)))

	line := func(id int) []byte {
		return []byte(fmt.Sprintf(`{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":{"id":%d,"key":"k","name":"User %d","email":"u%d@example.org","gender":"unknown","status":"visitor","phone_number":null,"first_seen":"2021-01-07T13:33:24.576109Z","last_seen":"2021-01-07T13:33:24.604490Z","page_views":1,"last_ip":"","timezone":"USA/DC","city":null,"region":null,"country":"USA","emails_enabled":true,"browser_language":"en","score":0,"browser":"Chrome","os_type":"Mac OS X","resolution":"1440x900","created_at":"2021-01-07T13:33:24.585602Z","updated_at":"2021-01-12T15:08:07.917571Z","attributes":[],"gravatar_url":null,"lists":[],"tags":[{"id":16,"name":"random_tag"}],"notifications":true,"facebook_url":null,"linkedin_url":null,"twitter_url":null,"google_url":null,"last_contacted":"2021-01-07T13:33:40.598000Z","user_id":"random_id"},"data":{"plan":"pro"}}`, id, id, id))
	}
	confluent, err := schemas.EncodeConfluent(1, schema, line(2))
	if err != nil {
		t.Fatal(err)
	}
	single, err := schemas.EncodeSingleObject(schema, line(3))
	if err != nil {
		t.Fatal(err)
	}
	unknownID, _ := schemas.EncodeConfluent(99, schema, line(9))
	values := []struct {
		v      []byte
		reason string // "" = valid
	}{
		{line(1), ""},
		{[]byte("\x07\x01garbage bytes"), "x"},
		{confluent, ""},
		{[]byte(`[1,2,3]`), "not_object"},
		{single, ""},
		{confluent[:len(confluent)/2], "invalid_avro"},
		{unknownID, "unknown_schema"},
		{[]byte(`{"event": "Register_newsletter", "user": `), "not_json"},
		{line(4), ""},
	}
	recs := make([]*kgo.Record, len(values))
	for i, x := range values {
		recs[i] = &kgo.Record{Topic: testTopic, Partition: 0, Key: []byte(fmt.Sprint(i)), Value: x.v}
	}
	produce(t, b.Addr(), recs...)
	startConsumer(t, cfg, nil)

	waitFor(t, "committed to the end", 60*time.Second, func() bool {
		c, _ := committed(t, b.Addr(), "apicall-test", testTopic)
		return c[0] == int64(len(values))
	})
	got := map[string]bool{}
	for _, c := range rc.snapshot() {
		got[c.URL] = true
	}
	for _, id := range []int{1, 2, 3, 4} {
		if want := fmt.Sprintf("/x?id=%d&name=User+%d", id, id); !got[want] {
			t.Errorf("valid event %d not delivered as %s; calls: %v", id, want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d distinct calls, want 4: %v", len(got), got)
	}
	dl := readAll(t, b.Addr(), "apicall.dead-letter")
	byOffset := map[string]*kgo.Record{}
	for _, r := range dl {
		for _, h := range r.Headers {
			if h.Key == hdrSourceOffset {
				byOffset[string(h.Value)] = r
			}
		}
	}
	for i, x := range values {
		r := byOffset[fmt.Sprint(i)]
		if x.reason == "" {
			if r != nil {
				t.Errorf("valid record %d dead-lettered", i)
			}
			continue
		}
		if r == nil {
			t.Errorf("bad record %d (%s) not dead-lettered", i, x.reason)
			continue
		}
		reason := ""
		for _, h := range r.Headers {
			if h.Key == hdrReason {
				reason = string(h.Value)
			}
		}
		if x.reason != "x" && reason != x.reason {
			t.Errorf("record %d: reason %q, want %q", i, reason, x.reason)
		}
		if reason == "" || string(r.Value) != string(x.v) || string(r.Key) != fmt.Sprint(i) {
			t.Errorf("record %d: dead letter must keep key and value untouched and give a reason (got reason %q)", i, reason)
		}
	}
}
