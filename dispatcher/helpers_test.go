package dispatcher

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serveOn starts an httptest server listening on ip (e.g. "127.0.0.2"), so
// tests can give each simulated host its own address and breaker.
func serveOn(t testing.TB, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := serveOnUnstarted(t, ip, h)
	srv.Start()
	return srv
}

// httptestServer shortens signatures.
type httptestServer = httptest.Server

// serveOnUnstarted is serveOn without Start, for tests that tune srv.Config.
func serveOnUnstarted(t testing.TB, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	t.Cleanup(srv.Close)
	return srv
}

// loopback opens the guard for every 127/8 address, as most tests need.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is an injected clock whose Sleep records the requested delay
// and advances Now by it, so retry timing is asserted without waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// testDispatcher is a Dispatcher with its registry and log for assertions.
type testDispatcher struct {
	*Dispatcher
	reg *prometheus.Registry
	log *syncBuffer
}

// newTestDispatcher builds a Dispatcher closed at the end of the test. A
// nil Sleep in s is replaced by a fake clock's, so no test waits on backoff
// unless it asks to.
func newTestDispatcher(t testing.TB, s Settings) *testDispatcher {
	t.Helper()
	if os.Getenv("APICALL_DISPATCH_NET_HTTP") == "1" {
		// make test runs this package a second time so that every test
		// also covers the net/http path (see fast.go).
		s.DisableFastPath = true
	}
	if s.Sleep == nil {
		c := newFakeClock()
		s.Sleep = c.Sleep
	}
	reg := prometheus.NewRegistry()
	buf := &syncBuffer{}
	d, err := New(s, reg, slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(d.Close)
	return &testDispatcher{Dispatcher: d, reg: reg, log: buf}
}

// post builds a minimal valid request to url.
func post(url string) *Request {
	return &Request{
		Rule:           "test",
		Method:         http.MethodPost,
		URL:            url,
		Header:         http.Header{"Content-Type": {"application/json"}},
		Body:           []byte(`{"ok":true}`),
		IdempotencyKey: "0123456789abcdef0123456789abcdef",
	}
}

func checkResult(t *testing.T, res Result, outcome Outcome, reason string, attempts int) {
	t.Helper()
	if res.Outcome != outcome || res.Reason != reason || res.Attempts != attempts {
		t.Fatalf("got outcome=%s reason=%s attempts=%d (status %d, err %v); want outcome=%s reason=%s attempts=%d",
			res.Outcome, res.Reason, res.Attempts, res.Status, res.Err, outcome, reason, attempts)
	}
}

// hold blocks a handler until the client goes away or release is closed.
// The body is read first: net/http notices a client disconnect (and cancels
// r.Context) only once the request body has been consumed.
func hold(r *http.Request, release <-chan struct{}) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-release:
	}
}

// releaseAtCleanup returns a channel closed when the test ends, before its
// servers close, so a handler in hold never outlives the test.
func releaseAtCleanup(t *testing.T) <-chan struct{} {
	c := make(chan struct{})
	t.Cleanup(func() { close(c) })
	return c
}
