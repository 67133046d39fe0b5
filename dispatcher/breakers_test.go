package dispatcher

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBreakerOpensFailsFastAndRecovers drives one host through
// closed -> open -> half-open -> closed: a dead host (connection refused)
// trips it, calls then fail fast without the network, and after
// OpenTimeout one probe to the recovered host closes it.
func TestBreakerOpensFailsFastAndRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // dead host: connection refused

	const openTimeout = 300 * time.Millisecond
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1,
		Breaker: BreakerSettings{MinRequests: 4, FailureRatio: 0.5, OpenTimeout: openTimeout}})
	u := "http://" + addr + "/hook"
	host, _ := HostKey(u)
	state := func() float64 { return testutil.ToFloat64(d.metrics.breakerState.WithLabelValues(host)) }

	var tripped time.Time
	for i := range 4 {
		tripped = time.Now()
		checkResult(t, d.Do(t.Context(), post(u)), Retry, ReasonConnection, 1)
		if want := map[bool]float64{true: 2, false: 0}[i == 3]; state() != want {
			t.Fatalf("after %d failures breaker state = %v, want %v", i+1, state(), want)
		}
	}
	for range 3 {
		res := d.Do(t.Context(), post(u))
		if openLapsed(t, tripped, openTimeout) {
			break
		}
		checkResult(t, res, Retry, ReasonBreakerOpen, 0)
	}

	// The host comes back on the same address.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	// Wait for the condition (OpenTimeout elapsed), not for a fixed time:
	// gobreaker keeps its own clock, so poll until the probe is let through.
	deadline := time.Now().Add(5 * time.Second)
	var res Result
	for {
		res = d.Do(t.Context(), post(u))
		if res.Reason != ReasonBreakerOpen || time.Now().After(deadline) {
			break
		}
		time.Sleep(openTimeout / 5)
	}
	checkResult(t, res, Delivered, ReasonOK, 1)
	if state() != 0 {
		t.Errorf("breaker state after a successful probe = %v, want 0 (closed)", state())
	}
	for to, want := range map[string]float64{"open": 1, "half_open": 1, "closed": 1} {
		if got := testutil.ToFloat64(d.metrics.transitions.WithLabelValues(host, to)); got != want {
			t.Errorf("transitions_total{to=%s} = %v, want %v", to, got, want)
		}
	}
	logs := d.log.String()
	if strings.Count(logs, "circuit breaker opened") != 1 || strings.Count(logs, "circuit breaker closed") != 1 ||
		!strings.Contains(logs, "level=WARN msg=\"circuit breaker opened") {
		t.Errorf("want one WARN line for open and one INFO for close, got:\n%s", logs)
	}
	if strings.Contains(logs, "connection refused") {
		t.Errorf("individual failed attempts are logged:\n%s", logs)
	}
}

func TestBreakerHalfOpenProbeFailureReopens(t *testing.T) {
	const openTimeout = 300 * time.Millisecond
	u, _ := sequence(t, "127.0.0.2", 500, 500, 500)
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1,
		Breaker: BreakerSettings{MinRequests: 2, OpenTimeout: openTimeout}})
	host, _ := HostKey(u)
	checkResult(t, d.Do(t.Context(), post(u)), Retry, ReasonStatus5xx, 1)
	tripped := time.Now()
	checkResult(t, d.Do(t.Context(), post(u)), Retry, ReasonStatus5xx, 1)
	if res := d.Do(t.Context(), post(u)); !openLapsed(t, tripped, openTimeout) {
		checkResult(t, res, Retry, ReasonBreakerOpen, 0)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.hosts.get(host, nil).breaker.State().String() != "half-open" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	reopened := time.Now()
	checkResult(t, d.Do(t.Context(), post(u)), Retry, ReasonStatus5xx, 1) // the probe fails
	if res := d.Do(t.Context(), post(u)); !openLapsed(t, reopened, openTimeout) {
		checkResult(t, res, Retry, ReasonBreakerOpen, 0)
	}
	if got := testutil.ToFloat64(d.metrics.transitions.WithLabelValues(host, "open")); got != 2 {
		t.Errorf("transitions_total{to=open} = %v, want 2", got)
	}
}

// openLapsed reports whether the open timeout may already have run out
// since since (a loaded machine), in which case a fail-fast check would be
// racing gobreaker's clock and is skipped rather than made flaky.
func openLapsed(t *testing.T, since time.Time, openTimeout time.Duration) bool {
	t.Helper()
	if time.Since(since) >= openTimeout {
		t.Logf("open timeout lapsed before the fail-fast check (slow machine); check skipped")
		return true
	}
	return false
}

func TestBreakerIgnoresPermanentRejections(t *testing.T) {
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Breaker: BreakerSettings{MinRequests: 2}})
	for range 10 {
		checkResult(t, d.Do(t.Context(), post(srv.URL)), Rejected, ReasonStatus4xx, 1)
	}
	host, _ := HostKey(srv.URL)
	if got := testutil.ToFloat64(d.metrics.breakerState.WithLabelValues(host)); got != 0 {
		t.Errorf("404s opened the breaker (state %v)", got)
	}
}

func TestBreakerRatioNotConsecutive(t *testing.T) {
	// Alternating failures and successes never make 5 consecutive
	// failures, but a 50% failure ratio still trips the breaker (gobreaker
	// evaluates ReadyToTrip on each failure, so the 6th call fails).
	u, _ := sequence(t, "127.0.0.2", 200, 500, 200, 500, 200, 500)
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1, Breaker: BreakerSettings{MinRequests: 6}})
	for range 6 {
		d.Do(t.Context(), post(u))
	}
	checkResult(t, d.Do(t.Context(), post(u)), Retry, ReasonBreakerOpen, 0)
}
