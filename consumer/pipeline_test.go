package consumer

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fixtureUser is the documented profile (../shared/api-call-module.md), compact.
const fixtureUser = `{"id":7,"key":"x7NM5xw2eFxl","name":"John Doe","email":"johndoe@example.org","gender":"unknown","status":"visitor","phone_number":null,"first_seen":"2021-01-07T13:33:24.576109Z","last_seen":"2021-01-07T13:33:24.604490Z","page_views":1,"last_ip":"","timezone":"USA/DC","city":null,"region":null,"country":"USA","emails_enabled":true,"browser_language":"en","score":0,"browser":"Chrome","os_type":"Mac OS X","resolution":"1440x900","created_at":"2021-01-07T13:33:24.585602Z","updated_at":"2021-01-12T15:08:07.917571Z","attributes":[],"gravatar_url":null,"lists":[],"tags":[{"id":16,"name":"random_tag"}],"notifications":true,"facebook_url":null,"linkedin_url":null,"twitter_url":null,"google_url":null,"last_contacted":"2021-01-07T13:33:40.598000Z","user_id":"random_id"}`

func TestFixtureEventArrivesWithDocumentedBody(t *testing.T) {
	b := testBroker(t, 1, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: newsletter
    path: 6
    event: Register_newsletter
    call:
      url: %s/hooks/newsletter
      extra: '{"variable_1": "value_1"}'
  - name: newsletter-no-user
    path: 6
    event: Register_newsletter
    call:
      url: %s/hooks/slim
      extra: '{"variable_1": "value_1"}'
      exclude_user: true
`, rc.URL, rc.URL)))
	clock := time.Date(2021, 2, 1, 7, 27, 44, 469241000, time.UTC)
	startConsumer(t, cfg, func() time.Time { return clock })
	produce(t, b.Addr(), event(0, "7", fixtureUser))

	waitFor(t, "two calls", 60*time.Second, func() bool { return rc.count() == 2 })
	calls := rc.snapshot()
	slices.SortFunc(calls, func(a, b call) int { return len(b.Body) - len(a.Body) })
	want := `{"path":6,"timestamp":"2021-02-01T07:27:44.469241+00:00","extra":{"variable_1":"value_1"},"user":` + fixtureUser + `}`
	if got := string(calls[0].Body); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	wantSlim := `{"path":6,"timestamp":"2021-02-01T07:27:44.469241+00:00","extra":{"variable_1":"value_1"}}`
	if got := string(calls[1].Body); got != wantSlim {
		t.Errorf("exclude_user body\n got %s\nwant %s", got, wantSlim)
	}
	for _, c := range calls {
		if c.Method != http.MethodPost || c.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s Content-Type %q: want POST application/json", c.Method, c.URL, c.Header.Get("Content-Type"))
		}
	}
	// Two rules, two different idempotency keys.
	k0, k1 := calls[0].Header.Get("Idempotency-Key"), calls[1].Header.Get("Idempotency-Key")
	if k0 == "" || k1 == "" || k0 == k1 {
		t.Errorf("Idempotency-Key %q and %q: want two distinct keys", k0, k1)
	}
	waitFor(t, "committed offset 1", 30*time.Second, func() bool {
		c, _ := committed(t, b.Addr(), "apicall-test", testTopic)
		return c[0] == 1
	})
	outs := outcomes(t, b.Addr())
	if len(outs) != 2 {
		t.Fatalf("%d outcome records, want 2: %+v", len(outs), outs)
	}
	for _, o := range outs {
		if o.Outcome != outcomeDelivered || o.Status != 200 || o.SourceTopic != testTopic || o.SourceOffset != 0 || string(o.Path) != "6" {
			t.Errorf("outcome %+v: want delivered 200 from %s/0@0 path 6", o, testTopic)
		}
	}
}

// TestTenThousandEventsSixPartitions drains a backlog and checks that every
// event was called once and the group committed up to the end offsets.
func TestTenThousandEventsSixPartitions(t *testing.T) {
	const n = 10000
	b := testBroker(t, 6, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: all
    path: 1
    event: Register_newsletter
    call:
      url: %s/hooks?id={{ user.id }}
`, rc.URL)))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = event(int32(i%6), strconv.Itoa(i), fmt.Sprintf(`{"id":%d,"name":"user %d"}`, i, i))
	}
	produce(t, b.Addr(), recs...)
	start := time.Now()
	startConsumer(t, cfg, nil)
	waitFor(t, "all calls", 120*time.Second, func() bool { return rc.count() >= n })
	waitFor(t, "commits at end offsets", 60*time.Second, func() bool {
		c, e := committed(t, b.Addr(), "apicall-test", testTopic)
		for p, end := range e {
			if c[p] != end {
				return false
			}
		}
		return len(e) == 6
	})
	elapsed := time.Since(start)
	seen := map[string]int{}
	for _, c := range rc.snapshot() {
		seen[c.URL]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct events called, want %d", len(seen), n)
	}
	dups := rc.count() - len(seen)
	t.Logf("10000 events over 6 partitions: %.0f events/s end to end (%.2fs, %d duplicates)", n/elapsed.Seconds(), elapsed.Seconds(), dups)
	if dups != 0 {
		t.Errorf("%d duplicate calls in a clean run, want 0", dups)
	}
}

// TestRetryThen200 checks a receiver answering 500 then 200 is retried and
// the outcome records 2 attempts.
func TestRetryThen200(t *testing.T) {
	b := testBroker(t, 1, "")
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: r
    path: 1
    event: "*"
    call:
      url: %s/x
`, rc.URL)))
	startConsumer(t, cfg, nil)
	produce(t, b.Addr(), event(0, "k", `{"id":1}`))
	waitFor(t, "outcome", 60*time.Second, func() bool { return len(outcomes(t, b.Addr())) == 1 })
	o := outcomes(t, b.Addr())[0]
	if o.Outcome != outcomeDelivered || o.Attempts != 2 || o.Status != 200 {
		t.Errorf("outcome %+v: want delivered after 2 attempts", o)
	}
	calls := rc.snapshot()
	if len(calls) != 2 || calls[0].Header.Get("Idempotency-Key") != calls[1].Header.Get("Idempotency-Key") {
		t.Errorf("want 2 attempts with the same Idempotency-Key, got %d calls", len(calls))
	}
}
