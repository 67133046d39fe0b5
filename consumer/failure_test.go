package consumer

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// outcomeCounts tallies outcome records by rule and outcome.
func outcomeCounts(t testing.TB, addr string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, o := range outcomes(t, addr) {
		m[o.Rule+"/"+o.Outcome]++
	}
	return m
}

// TestParkRetryThenDeadLetter: a receiver that always answers 503 gets the
// call parked on the retry topic, re-attempted from it on schedule, and
// dead-lettered after retry.max_attempts; every step is an outcome record
// and the source offset is committed once the call is parked.
func TestParkRetryThenDeadLetter(t *testing.T) {
	b := testBroker(t, 1, "")
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: down
    path: 1
    event: "*"
    call:
      url: %s/x
      max_attempts: 2
`, rc.URL)))
	startConsumer(t, cfg, nil)
	produce(t, b.Addr(), event(0, "k1", `{"id":1}`))

	waitFor(t, "dead letter", 60*time.Second, func() bool { return outcomeCounts(t, b.Addr())["down/dead_lettered"] == 1 })
	got := outcomeCounts(t, b.Addr())
	// retry.max_attempts 2: parked after the first pass, re-attempted twice
	// from the retry topic (parked again, then dead-lettered).
	if got["down/parked"] != 2 || got["down/dead_lettered"] != 1 || got["down/delivered"] != 0 {
		t.Errorf("outcomes %v: want 2 parked and 1 dead_lettered", got)
	}
	if n := rc.count(); n != 6 {
		t.Errorf("receiver saw %d attempts, want 6 (3 passes x 2 attempts)", n)
	}
	dl := readAll(t, b.Addr(), "apicall.dead-letter")
	if len(dl) != 1 {
		t.Fatalf("%d dead-letter records, want 1", len(dl))
	}
	h := map[string]string{}
	for _, x := range dl[0].Headers {
		h[x.Key] = string(x.Value)
	}
	if h[hdrReason] != "max_attempts" || h[hdrRule] != "down" || h[hdrSourceOffset] != "0" || h[hdrAttempts] != "6" || string(dl[0].Key) != "k1" {
		t.Errorf("dead-letter headers %v key %q: want reason max_attempts, rule down, offset 0, 6 attempts, key k1", h, dl[0].Key)
	}
	if string(dl[0].Value) != string(event(0, "", `{"id":1}`).Value) {
		t.Errorf("dead-letter value %q is not the original event", dl[0].Value)
	}
	c, _ := committed(t, b.Addr(), "apicall-test", testTopic)
	if c[0] != 1 {
		t.Errorf("committed %v: want partition 0 at 1 (the event is done once parked)", c)
	}
}

// TestParkedCallDeliveredAfterRecovery: the receiver fails, the call is
// parked, the receiver recovers, the retry delivers it.
func TestParkedCallDeliveredAfterRecovery(t *testing.T) {
	b := testBroker(t, 1, "")
	var healthy atomic.Bool
	rc := newReceiver(t, func(int, *http.Request) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: flaky
    path: 1
    event: "*"
    call:
      url: %s/x
      max_attempts: 1
`, rc.URL)))
	startConsumer(t, cfg, nil)
	produce(t, b.Addr(), event(0, "k", `{"id":1}`))
	waitFor(t, "parked", 60*time.Second, func() bool { return outcomeCounts(t, b.Addr())["flaky/parked"] >= 1 })
	healthy.Store(true)
	waitFor(t, "delivered", 60*time.Second, func() bool { return outcomeCounts(t, b.Addr())["flaky/delivered"] == 1 })
	calls := rc.snapshot()
	if first, last := calls[0].Header.Get("Idempotency-Key"), calls[len(calls)-1].Header.Get("Idempotency-Key"); first != last {
		t.Errorf("retry changed the Idempotency-Key: %q then %q", first, last)
	}
}

// TestDeadHostDoesNotSlowHealthyHost: one host refuses connections, another
// is healthy; every event calls both. The healthy host's calls keep flowing
// (the dead host's breaker opens and its calls are parked), and the run is
// compared with an all-healthy run.
func TestDeadHostDoesNotSlowHealthyHost(t *testing.T) {
	const n = 2000
	healthyRun := func(t *testing.T, deadURL string) (time.Duration, map[string]int, map[int64]bool) {
		b := testBroker(t, 1, "")
		rc := newReceiver(t, nil)
		cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: healthy
    path: 1
    event: "*"
    call:
      url: %s/ok?id={{ user.id }}
  - name: other
    path: 2
    event: "*"
    call:
      url: %s/x?id={{ user.id }}
      max_attempts: 1
`, rc.URL, deadURL)))
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = event(0, strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i))
		}
		produce(t, b.Addr(), recs...)
		start := time.Now()
		startConsumer(t, cfg, nil)
		waitFor(t, "healthy host calls", 120*time.Second, func() bool {
			seen := 0
			for _, c := range rc.snapshot() {
				if len(c.URL) > 3 && c.URL[:3] == "/ok" {
					seen++
				}
			}
			return seen >= n
		})
		elapsed := time.Since(start)
		waitFor(t, "source committed", 60*time.Second, func() bool {
			c, _ := committed(t, b.Addr(), "apicall-test", testTopic)
			return c[0] == n
		})
		parked := map[int64]bool{}
		for _, o := range outcomes(t, b.Addr()) {
			if o.Rule == "other" && o.Outcome == outcomeParked {
				parked[o.SourceOffset] = true
			}
		}
		return elapsed, outcomeCounts(t, b.Addr()), parked
	}

	other := newReceiver(t, nil)
	allHealthy, _, _ := healthyRun(t, other.URL)

	// A dead host: a loopback port with nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	withDead, counts, parked := healthyRun(t, dead)

	if counts["healthy/delivered"] < n {
		t.Errorf("healthy host: %d delivered, want %d", counts["healthy/delivered"], n)
	}
	if len(parked) != n || counts["other/delivered"] != 0 {
		t.Errorf("dead host: %d events parked, %d delivered; want all %d parked (none lost)", len(parked), counts["other/delivered"], n)
	}
	t.Logf("%d events: healthy host served in %v with a dead second host vs %v with both healthy (ratio %.2f)",
		n, withDead.Round(time.Millisecond), allHealthy.Round(time.Millisecond), allHealthy.Seconds()/withDead.Seconds())
}
