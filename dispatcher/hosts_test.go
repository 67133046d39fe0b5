package dispatcher

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestIsolation: a slow host at its in-flight cap makes extra calls to it
// park quickly (host_saturated) while a healthy host is unaffected.
func TestIsolation(t *testing.T) {
	entered := make(chan struct{}, 8)
	release := make(chan struct{})
	slow := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		hold(r, release)
	}))
	healthy := serveOn(t, "127.0.0.3", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxInFlightPerHost: 2, HostWait: 50 * time.Millisecond, MaxAttempts: 1})

	var wg sync.WaitGroup
	results := make(chan Result, 2)
	for range 2 {
		wg.Go(func() { results <- d.Do(t.Context(), post(slow.URL)) })
	}
	<-entered
	<-entered // both slots of the slow host are taken
	slowKey, _ := HostKey(slow.URL)
	if got := testutil.ToFloat64(d.metrics.inflight.WithLabelValues(slowKey)); got != 2 {
		t.Errorf("host_inflight = %v, want 2", got)
	}

	res := d.Do(t.Context(), post(slow.URL))
	checkResult(t, res, Retry, ReasonHostSaturated, 0)
	if res.Latency > 2*time.Second {
		t.Errorf("saturated call waited %s; HostWait is 50ms", res.Latency)
	}
	for range 5 {
		res := d.Do(t.Context(), post(healthy.URL))
		checkResult(t, res, Delivered, ReasonOK, 1)
	}

	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		checkResult(t, r, Delivered, ReasonOK, 1)
	}
	if got := testutil.ToFloat64(d.metrics.inflight.WithLabelValues(slowKey)); got != 0 {
		t.Errorf("host_inflight after the calls = %v, want 0", got)
	}
}

func TestHostRateLimit(t *testing.T) {
	u, hits := countingServer(t, "127.0.0.2", nil)
	u3, hits3 := countingServer(t, "127.0.0.3", nil)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Now: clock.Now, Sleep: clock.Sleep, HostWait: 600 * time.Millisecond,
		Hosts: map[string]HostSettings{"127.0.0.2": {Rate: 2, Burst: 1}, "127.0.0.3": {Rate: 1}}})

	checkResult(t, d.Do(t.Context(), post(u)), Delivered, ReasonOK, 1)
	// The next token is 500ms away: within HostWait, so the call waits.
	checkResult(t, d.Do(t.Context(), post(u)), Delivered, ReasonOK, 1)
	if s := clock.Sleeps(); len(s) != 1 || s[0] != 500*time.Millisecond {
		t.Errorf("sleeps = %v, want [500ms]", s)
	}

	// At 1 call/s the next token is beyond HostWait: the call parks, and
	// its canceled reservation does not push later calls further out.
	checkResult(t, d.Do(t.Context(), post(u3)), Delivered, ReasonOK, 1)
	for range 2 {
		res := d.Do(t.Context(), post(u3))
		checkResult(t, res, Retry, ReasonRateLimited, 0)
		if res.RetryAfter != time.Second {
			t.Errorf("RetryAfter = %s, want 1s (the token delay)", res.RetryAfter)
		}
	}
	if hits.Load() != 2 || hits3.Load() != 1 {
		t.Errorf("hits = %d, %d; want 2, 1", hits.Load(), hits3.Load())
	}
}

func TestHostOverridesMaxInFlight(t *testing.T) {
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback,
		Hosts: map[string]HostSettings{"127.0.0.2:8080": {MaxInFlight: 3}, "127.0.0.3": {MaxInFlight: 5}}})
	for u, want := range map[string]int{
		"http://127.0.0.2:8080/": 3,
		"http://127.0.0.2:9090/": 512,
		"http://127.0.0.3:1/":    5,
	} {
		c, err := d.prepare(post(u))
		if err != nil {
			t.Fatal(err)
		}
		if got := cap(d.newHost(c.key, c.url).sem); got != want {
			t.Errorf("%s: cap %d, want %d", u, got, want)
		}
	}
}
