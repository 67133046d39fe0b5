package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sequence answers with the given statuses in order, then 200s.
func sequence(t *testing.T, ip string, statuses ...int) (url string, hits *atomic.Int64) {
	var mu sync.Mutex
	return countingServer(t, ip, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if len(statuses) == 0 {
			return
		}
		s := statuses[0]
		statuses = statuses[1:]
		if s == 429 || s == 503 {
			if ra := r.Header.Get("X-Test-Retry-After"); ra != "" {
				w.Header().Set("Retry-After", ra)
			}
		}
		w.WriteHeader(s)
		io.WriteString(w, http.StatusText(s))
	})
}

func TestRetryThenDelivered(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 500)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Now: clock.Now, Sleep: clock.Sleep})
	res := d.Do(t.Context(), post(u))
	checkResult(t, res, Delivered, ReasonOK, 2)
	if res.Status != 200 || res.Err != nil || hits.Load() != 2 {
		t.Errorf("status %d err %v hits %d; want 200, nil, 2", res.Status, res.Err, hits.Load())
	}
	if s := clock.Sleeps(); len(s) != 1 || s[0] < 0 || s[0] > 100*time.Millisecond {
		t.Errorf("backoff sleeps = %v, want one within [0, 100ms] (full jitter of Base)", s)
	}
	host, _ := HostKey(u)
	if got := testutil.ToFloat64(d.metrics.attempts.WithLabelValues(host, ReasonStatus5xx)); got != 1 {
		t.Errorf("attempts_total{reason=status_5xx} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.metrics.attempts.WithLabelValues(host, ReasonOK)); got != 1 {
		t.Errorf("attempts_total{reason=ok} = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(d.metrics.duration); n != 1 {
		t.Errorf("duration histogram has %d series, want 1", n)
	}
}

func TestRejectedNotRetried(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 404)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Sleep: clock.Sleep})
	res := d.Do(t.Context(), post(u))
	checkResult(t, res, Rejected, ReasonStatus4xx, 1)
	if res.Status != 404 || string(res.Response) != "Not Found" || hits.Load() != 1 || len(clock.Sleeps()) != 0 {
		t.Errorf("status %d response %q hits %d sleeps %v", res.Status, res.Response, hits.Load(), clock.Sleeps())
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "404") {
		t.Errorf("Err = %v, want it to mention the status", res.Err)
	}
}

func TestAttemptsExhausted(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 503, 502, 500, 500)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Sleep: clock.Sleep, MaxAttempts: 3,
		Backoff: BackoffSettings{Base: time.Second, Max: 1500 * time.Millisecond}})
	res := d.Do(t.Context(), post(u))
	checkResult(t, res, Retry, ReasonStatus5xx, 3)
	if hits.Load() != 3 || res.Status != 500 {
		t.Errorf("hits %d status %d; want 3, 500", hits.Load(), res.Status)
	}
	s := clock.Sleeps()
	if len(s) != 2 || s[0] > time.Second || s[1] > 1500*time.Millisecond {
		t.Errorf("sleeps %v: want 2 within [0,1s] and [0,1.5s]", s)
	}

	// The Request's MaxAttempts overrides the default.
	req := post(u)
	req.MaxAttempts = 1
	u2, _ := sequence(t, "127.0.0.3", 500)
	req.URL = u2
	checkResult(t, d.Do(t.Context(), req), Retry, ReasonStatus5xx, 1)
}

func TestRetryAfterHonouredInProcess(t *testing.T) {
	u, _ := sequence(t, "127.0.0.2", 429)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Now: clock.Now, Sleep: clock.Sleep})
	req := post(u)
	req.Header.Set("X-Test-Retry-After", "1")
	res := d.Do(t.Context(), req)
	checkResult(t, res, Delivered, ReasonOK, 2)
	if s := clock.Sleeps(); len(s) != 1 || s[0] != time.Second {
		t.Errorf("sleeps = %v, want exactly [1s] from Retry-After", s)
	}
}

func TestRetryAfterTooLongParks(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 503, 503)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Now: clock.Now, Sleep: clock.Sleep})
	req := post(u)
	req.Header.Set("X-Test-Retry-After", "3600")
	res := d.Do(t.Context(), req)
	checkResult(t, res, Retry, ReasonStatus5xx, 1)
	if res.RetryAfter != time.Hour || len(clock.Sleeps()) != 0 {
		t.Errorf("RetryAfter %s sleeps %v; want 1h and no sleep", res.RetryAfter, clock.Sleeps())
	}

	// Other calls to the host now park without touching it.
	res = d.Do(t.Context(), post(u))
	checkResult(t, res, Retry, ReasonRateLimited, 0)
	if res.RetryAfter != maxHostHold || hits.Load() != 1 {
		t.Errorf("RetryAfter %s hits %d; want %s (the host hold cap) and 1", res.RetryAfter, hits.Load(), maxHostHold)
	}
}

func TestRetryAfterHoldsHostForOtherCalls(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 429)
	clock := newFakeClock()
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Now: clock.Now, Sleep: clock.Sleep, MaxAttempts: 1, HostWait: time.Second})
	req := post(u)
	req.Header.Set("X-Test-Retry-After", "1")
	res := d.Do(t.Context(), req)
	checkResult(t, res, Retry, ReasonStatus429, 1)
	if res.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %s, want 1s", res.RetryAfter)
	}
	// A hold within HostWait is waited out, not parked.
	res = d.Do(t.Context(), post(u))
	checkResult(t, res, Delivered, ReasonOK, 1)
	if s := clock.Sleeps(); len(s) != 1 || s[0] != time.Second || hits.Load() != 2 {
		t.Errorf("sleeps %v hits %d; want [1s] (wait for the hold) and 2", s, hits.Load())
	}
}

func TestTimeout(t *testing.T) {
	release := releaseAtCleanup(t)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hold(r, release) // until the client gives up
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1})
	req := post(srv.URL)
	req.Timeout = 50 * time.Millisecond
	res := d.Do(t.Context(), req)
	checkResult(t, res, Retry, ReasonTimeout, 1)
}

func TestCanceledDoesNotCountForBreaker(t *testing.T) {
	entered := make(chan struct{}, 4)
	release := releaseAtCleanup(t)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		hold(r, release)
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Breaker: BreakerSettings{MinRequests: 1}})
	for range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		go func() { <-entered; cancel() }()
		res := d.Do(ctx, post(srv.URL))
		checkResult(t, res, Retry, ReasonCanceled, 1)
		if !errors.Is(res.Err, ErrCanceled) {
			t.Errorf("Err %v does not wrap ErrCanceled", res.Err)
		}
	}
	host, _ := HostKey(srv.URL)
	h := d.hosts.get(host, nil)
	if c := h.breaker.Counts(); c.TotalFailures != 0 || h.breaker.State().String() != "closed" {
		t.Errorf("breaker counts %+v state %s; cancellations must not count", c, h.breaker.State())
	}

	// Already canceled: nothing is sent.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checkResult(t, d.Do(ctx, post(srv.URL)), Retry, ReasonCanceled, 0)
}

func TestCloseCancelsInFlightAndRefusesNew(t *testing.T) {
	entered := make(chan struct{})
	release := releaseAtCleanup(t)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		hold(r, release)
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
	done := make(chan Result)
	go func() { done <- d.Do(context.Background(), post(srv.URL)) }()
	<-entered
	d.Close()
	checkResult(t, <-done, Retry, ReasonCanceled, 1)
	checkResult(t, d.Do(t.Context(), post(srv.URL)), Retry, ReasonCanceled, 0)
	d.Close() // twice is fine
}

func TestRequestOnTheWire(t *testing.T) {
	type seen struct {
		method string
		path   string
		header http.Header
		body   []byte
	}
	got := make(chan seen, 1)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.RequestURI(), r.Header.Clone(), b}
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, UserAgent: "apicall/1.2.3"})
	body := []byte("{\"email\":\"a@b.c\",\"bin\":\"\x00\xff\"}\n")
	req := post(srv.URL + "/v1/contacts?list=7")
	req.Method = http.MethodPut
	req.Body = body
	req.Header.Set("X-Api-Key", "k")
	req.Header.Set("User-Agent", "rule-set")
	before := req.Header.Clone()

	res := d.Do(t.Context(), req)
	checkResult(t, res, Delivered, ReasonOK, 1)
	s := <-got
	if s.method != http.MethodPut || s.path != "/v1/contacts?list=7" || !bytes.Equal(s.body, body) {
		t.Errorf("got %s %s body %q; want PUT /v1/contacts?list=7 body %q", s.method, s.path, s.body, body)
	}
	for k, want := range map[string]string{
		"Idempotency-Key": req.IdempotencyKey,
		"User-Agent":      "apicall/1.2.3",
		"X-Api-Key":       "k",
		"Content-Type":    "application/json",
	} {
		if v := s.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if !equalHeader(req.Header, before) {
		t.Errorf("r.Header was modified: %v, was %v", req.Header, before)
	}

	// GET without a body.
	req = post(srv.URL)
	req.Method, req.Body = http.MethodGet, nil
	checkResult(t, d.Do(t.Context(), req), Delivered, ReasonOK, 1)
	if s := <-got; s.method != http.MethodGet || len(s.body) != 0 || s.header.Get("Idempotency-Key") == "" {
		t.Errorf("GET: %s body %q idempotency %q", s.method, s.body, s.header.Get("Idempotency-Key"))
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

func TestResponseTruncatedAndConnectionsReused(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	var newConns atomic.Int64
	srv := httpServerCountingConns(t, "127.0.0.2", &newConns, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/err" {
			w.WriteHeader(http.StatusBadRequest)
		}
		w.Write(big)
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
	for i := range 20 {
		path := "/ok"
		if i%2 == 1 {
			path = "/err"
		}
		res := d.Do(t.Context(), post(srv.URL+path))
		if len(res.Response) != maxResponse || !bytes.Equal(res.Response, big[:maxResponse]) {
			t.Fatalf("Response has %d bytes, want the first %d", len(res.Response), maxResponse)
		}
	}
	if n := newConns.Load(); n != 1 {
		t.Errorf("20 sequential calls opened %d connections, want 1 (keep-alive reuse)", n)
	}
}

func httpServerCountingConns(t *testing.T, ip string, n *atomic.Int64, h http.Handler) *httptestServer {
	srv := serveOnUnstarted(t, ip, h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	return srv
}

func TestInvalidRequests(t *testing.T) {
	d := newTestDispatcher(t, Settings{})
	noKey := post("http://example.com/")
	noKey.IdempotencyKey = ""
	badMethod := post("http://example.com/")
	badMethod.Method = "BAD METHOD"
	for name, req := range map[string]*Request{
		"nil":          nil,
		"no key":       noKey,
		"bad method":   badMethod,
		"relative URL": post("/hook"),
		"ftp":          post("ftp://example.com/x"),
		"unparseable":  post("http://exa mple.com/%zz?token=secret"),
		"no host":      post("http:///path"),
		"bad port":     post("http://example.com:99999/"),
	} {
		t.Run(name, func(t *testing.T) {
			res := d.Do(t.Context(), req)
			if res.Outcome != Rejected || res.Reason != ReasonInvalidRequest || !errors.Is(res.Err, ErrInvalidRequest) {
				t.Fatalf("got %s %s %v; want rejected invalid_request", res.Outcome, res.Reason, res.Err)
			}
			if strings.Contains(res.Err.Error(), "secret") {
				t.Errorf("error leaks the URL: %v", res.Err)
			}
		})
	}
}

func TestErrorsRedactURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1})
	res := d.Do(t.Context(), post("http://user:pass@"+addr+"/p/a/t/h?token=secret&email=a@b.c#frag"))
	checkResult(t, res, Retry, ReasonConnection, 1)
	msg := res.Err.Error()
	for _, leak := range []string{"secret", "pass", "a@b.c", "token", "frag"} {
		if strings.Contains(msg, leak) {
			t.Errorf("error %q leaks %q", msg, leak)
		}
	}
	if !strings.Contains(msg, "http://"+addr+"/p/a/t/h") {
		t.Errorf("error %q should name scheme, host and path", msg)
	}
}

func TestHostKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://API.Example.com/v1?x=1", "https://api.example.com:443"},
		{"http://example.com", "http://example.com:80"},
		{"HTTP://example.com:8080/a", "http://example.com:8080"},
		{"https://user:pw@example.com/", "https://example.com:443"},
		{"http://[::1]:9000/", "http://[::1]:9000"},
		{"http://127.0.0.2:1234", "http://127.0.0.2:1234"},
	}
	for _, tt := range tests {
		got, err := HostKey(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("HostKey(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "/relative", "mailto:a@b.c", "http://", "http://h:0/", "ws://h/"} {
		if got, err := HostKey(bad); err == nil {
			t.Errorf("HostKey(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSettingsValidation(t *testing.T) {
	_, err := New(Settings{MaxAttempts: -1, HostWait: -time.Second, Breaker: BreakerSettings{FailureRatio: 2},
		Hosts: map[string]HostSettings{"x": {Rate: -1}}}, nil, nil)
	if err == nil {
		t.Fatal("New accepted invalid settings")
	}
	for _, want := range []string{"MaxAttempts", "HostWait", "FailureRatio", `Hosts["x"]`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}

	s, err := Settings{Hosts: map[string]HostSettings{"Big.Example.com": {MaxInFlight: 2000}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxInFlightPerHost != 512 || s.HostWait != time.Second || s.Timeout != 10*time.Second || s.MaxAttempts != 3 ||
		s.Breaker != (BreakerSettings{30 * time.Second, 20, 0.5, 30 * time.Second, 1}) ||
		s.UserAgent != "apicall/dev" || s.MaxRetryAfterInProcess != 5*time.Second ||
		s.Backoff != (BackoffSettings{100 * time.Millisecond, 5 * time.Second}) || s.MaxIdleConnsPerHost != 2000 {
		t.Errorf("defaults not applied: %+v", s)
	}
	if _, ok := s.Hosts["big.example.com"]; !ok {
		t.Errorf("host keys not normalised: %v", s.Hosts)
	}

	// Metrics go on the registerer passed in; a second Dispatcher on the
	// same one is a clear error, not a panic.
	reg := prometheus.NewRegistry()
	d, err := New(Settings{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := New(Settings{}, reg, nil); err == nil {
		t.Error("second New on the same registry succeeded")
	}
}

func BenchmarkDo(b *testing.B) {
	srv := serveOn(b, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	d, err := New(Settings{AllowCIDRs: loopback}, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	req := post(srv.URL + "/hook")
	// baseline is the bare net/http round trip (client and in-process
	// server), so serial minus baseline is the dispatcher's own overhead.
	b.Run("baseline", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		b.ReportAllocs()
		for b.Loop() {
			r, err := http.NewRequestWithContext(context.Background(), req.Method, req.URL, bytes.NewReader(req.Body))
			if err != nil {
				b.Fatal(err)
			}
			r.Header = req.Header.Clone()
			resp, err := client.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res := d.Do(context.Background(), req); res.Outcome != Delivered {
				b.Fatalf("%s %s %v", res.Outcome, res.Reason, res.Err)
			}
		}
	})
	// The same calls through net/http (dispatch.net_http), beside the fast
	// path's serial.
	b.Run("serial-net_http", func(b *testing.B) {
		dn, err := New(Settings{AllowCIDRs: loopback, DisableFastPath: true}, prometheus.NewRegistry(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer dn.Close()
		b.ReportAllocs()
		for b.Loop() {
			if res := dn.Do(context.Background(), req); res.Outcome != Delivered {
				b.Fatalf("%s %s %v", res.Outcome, res.Reason, res.Err)
			}
		}
	})
	b.Run("signed", func(b *testing.B) {
		signed := *req
		signed.SigningSecrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
		b.ReportAllocs()
		for b.Loop() {
			if res := d.Do(context.Background(), &signed); res.Outcome != Delivered {
				b.Fatalf("%s %s %v", res.Outcome, res.Reason, res.Err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res := d.Do(context.Background(), req); res.Outcome != Delivered {
					b.Errorf("%s %s %v", res.Outcome, res.Reason, res.Err)
					return
				}
			}
		})
	})
}
