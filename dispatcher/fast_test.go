package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawCapture is a TCP server that answers every request on a connection
// with 204 and keeps each request's raw bytes, parsed back with net/http.
type rawCapture struct {
	ln   net.Listener
	reqs chan captured
}

type captured struct {
	req  *http.Request
	body []byte
}

func newRawCapture(t *testing.T) *rawCapture {
	rc := &rawCapture{reqs: make(chan captured, 16)}
	rc.ln = serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			rc.reqs <- captured{req, body}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	return rc
}

// serveRaw is a TCP server on 127.0.0.3, for answers no net/http server
// would give: serve runs per accepted connection, which is closed after it.
func serveRaw(t *testing.T, serve func(c net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln
}

// TestFastPathSendsWhatNetHTTPSends sends the same calls through both paths
// and compares what a net/http server reads: method, target, Host, headers
// (net/http's automatic Accept-Encoding aside), framing and body.
func TestFastPathSendsWhatNetHTTPSends(t *testing.T) {
	rc := newRawCapture(t)
	base := "http://" + rc.ln.Addr().String()
	clock := newFakeClock()
	s := Settings{AllowCIDRs: loopback, UserAgent: "apicall/9", Now: clock.Now}
	fast := newTestDispatcher(t, s)
	fast.s.DisableFastPath = false // even in make test's net/http run
	s.DisableFastPath = true
	std := newTestDispatcher(t, s)

	type tc struct {
		name string
		mod  func(r *Request)
	}
	cases := []tc{
		{"post json", func(r *Request) {}},
		{"put with query", func(r *Request) { r.Method, r.URL = http.MethodPut, base+"/v1/c?list=7&x=%20y" }},
		{"escaped path", func(r *Request) { r.URL = base + "/a%2Fb/c%20d/%C3%A9?q=a+b&r=%26" }},
		{"no path", func(r *Request) { r.URL = base + "?only=query" }},
		{"get no body", func(r *Request) { r.Method, r.Body = http.MethodGet, nil }},
		{"delete with body", func(r *Request) { r.Method = http.MethodDelete }},
		{"post empty body", func(r *Request) { r.Body = []byte{} }},
		{"post nil body", func(r *Request) { r.Body = nil }},
		{"multi-value and custom headers", func(r *Request) {
			r.Header = http.Header{
				"Content-Type":  {"application/json; charset=utf-8"},
				"X-Multi":       {"a", "b"},
				"X-Empty":       {""},
				"Authorization": {"Bearer t0k"},
				"User-Agent":    {"rule-set"}, // ours wins on both paths
			}
		}},
		{"headers net/http does not send from the map", func(r *Request) {
			r.Header = http.Header{"Host": {"evil.example"}, "Content-Length": {"999"}, "Trailer": {"X"}, "Content-Type": {"text/plain"}}
		}},
		{"connection close", func(r *Request) { r.Header = http.Header{"Connection": {"close"}} }},
		{"signed", func(r *Request) { r.SigningSecrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} }},
		{"binary body", func(r *Request) { r.Body = []byte("\x00\xff\r\n\r\nGET / HTTP/1.1\r\n") }},
		{"large body", func(r *Request) { r.Body = bytes.Repeat([]byte("x"), 100<<10) }},
		{"patch", func(r *Request) { r.Method = http.MethodPatch }},
		{"head", func(r *Request) { r.Method, r.Body = http.MethodHead, nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got [2]captured
			for i, d := range []*testDispatcher{std, fast} {
				r := post(base + "/hook")
				c.mod(r)
				res := d.Do(t.Context(), r)
				checkResult(t, res, Delivered, ReasonOK, 1)
				select {
				case got[i] = <-rc.reqs:
				case <-time.After(5 * time.Second):
					t.Fatal("no request captured")
				}
			}
			want, have := got[0], got[1]
			want.req.Header.Del("Accept-Encoding") // net/http asks for gzip on its own
			if want.req.Method != have.req.Method || want.req.RequestURI != have.req.RequestURI || want.req.Host != have.req.Host {
				t.Errorf("request line: fast %s %s host %s; net/http %s %s host %s",
					have.req.Method, have.req.RequestURI, have.req.Host, want.req.Method, want.req.RequestURI, want.req.Host)
			}
			if fmt.Sprint(want.req.Header) != fmt.Sprint(have.req.Header) {
				t.Errorf("headers:\n fast     %v\n net/http %v", have.req.Header, want.req.Header)
			}
			if want.req.ContentLength != have.req.ContentLength || fmt.Sprint(want.req.TransferEncoding) != fmt.Sprint(have.req.TransferEncoding) || want.req.Close != have.req.Close {
				t.Errorf("framing: fast length %d te %v close %v; net/http length %d te %v close %v",
					have.req.ContentLength, have.req.TransferEncoding, have.req.Close, want.req.ContentLength, want.req.TransferEncoding, want.req.Close)
			}
			if !bytes.Equal(want.body, have.body) {
				t.Errorf("body: fast %d bytes, net/http %d bytes", len(have.body), len(want.body))
			}
		})
	}
}

// TestFastPathFallsBack checks that calls the fast path does not handle
// still work through net/http with its answers (here: its refusal of a
// header value with a newline, which would otherwise split the request).
func TestFastPathFallsBack(t *testing.T) {
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
	d.s.DisableFastPath = false // even in make test's net/http run
	for _, c := range []struct {
		name string
		r    *Request
		want bool
	}{
		{"plain", post("http://127.0.0.1/"), true},
		{"user info", post("http://u:p@127.0.0.1/"), false},
		{"get with body", &Request{Method: http.MethodGet, URL: "http://127.0.0.1/", Body: []byte("x"), IdempotencyKey: "k"}, false},
		{"unicode host", post("http://bücher.example/"), false},
		{"zoned host", post("http://[fe80::1%25eth0]:80/"), false},
		{"newline in header value", &Request{Method: http.MethodPost, URL: "http://127.0.0.1/", Header: http.Header{"X-A": {"a\r\nX-Injected: 1"}}, IdempotencyKey: "k"}, false},
		{"bad header name", &Request{Method: http.MethodPost, URL: "http://127.0.0.1/", Header: http.Header{"X A": {"a"}}, IdempotencyKey: "k"}, false},
	} {
		c2, err := d.prepare(c.r)
		if err != nil {
			t.Fatalf("%s: prepare: %v", c.name, err)
		}
		if got := d.fastOK(&c2, c.r); got != c.want {
			t.Errorf("%s: fastOK = %v, want %v", c.name, got, c.want)
		}
	}

	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Injected") != "" {
			t.Error("a header value split the request")
		}
	}))
	r := post(srv.URL)
	r.Header = http.Header{"X-A": {"a\r\nX-Injected: 1"}}
	res := d.Do(t.Context(), r)
	if res.Outcome == Delivered || res.Status != 0 {
		t.Fatalf("header with a newline: got %s status %d, want net/http's refusal", res.Outcome, res.Status)
	}
}

// TestFastPathResendsOnStaleConnection: a server that closes an idle
// keep-alive connection without saying so must not fail the next call.
func TestFastPathResendsOnStaleConnection(t *testing.T) {
	var served atomic.Int64
	ln := serveRaw(t, func(c net.Conn) { // one answer per connection, then a silent close
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		served.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1})
	for i := range 3 {
		res := d.Do(t.Context(), post("http://"+ln.Addr().String()+"/"))
		checkResult(t, res, Delivered, ReasonOK, 1)
		_ = i
		time.Sleep(20 * time.Millisecond) // let the close reach us idle
	}
	if n := served.Load(); n != 3 {
		t.Errorf("server answered %d requests, want 3", n)
	}
}

// TestFastPathOversizedResponse: a body past the drain limit still yields
// the status and the kept start of the body, and its connection is not
// reused.
func TestFastPathOversizedResponse(t *testing.T) {
	big := bytes.Repeat([]byte("z"), maxResponse+maxDrain+10)
	var conns atomic.Int64
	srv := httpServerCountingConns(t, "127.0.0.2", &conns, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		w.Write(big)
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
	for range 2 {
		res := d.Do(t.Context(), post(srv.URL))
		checkResult(t, res, Rejected, ReasonStatus4xx, 1)
		if res.Status != http.StatusConflict {
			t.Fatalf("status %d, want 409", res.Status)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections for 2 oversized answers, want 2 (no reuse of a half-read one)", n)
	}
}

// TestTLSBothPaths: an https receiver is verified against Settings.RootCAs
// and reached with its certificate's name on both paths; an untrusted
// certificate is a connection failure, not a delivery.
func TestTLSBothPaths(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("call arrived without TLS")
		}
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	for _, netHTTP := range []bool{false, true} {
		d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, RootCAs: roots})
		d.s.DisableFastPath = netHTTP
		for range 2 { // the second reuses the connection
			checkResult(t, d.Do(t.Context(), post(srv.URL+"/tls")), Delivered, ReasonOK, 1)
		}
		untrusted := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxAttempts: 1})
		untrusted.s.DisableFastPath = netHTTP
		res := untrusted.Do(t.Context(), post(srv.URL+"/tls"))
		checkResult(t, res, Retry, ReasonConnection, 1)
		if !strings.Contains(res.Err.Error(), "certificate") {
			t.Errorf("net_http=%v: untrusted certificate gave %v", netHTTP, res.Err)
		}
	}
}

// TestInterimResponsesSkipped: 1xx answers before the final one (103 Early
// Hints) are read past on both paths, and the connection stays usable.
func TestInterimResponsesSkipped(t *testing.T) {
	var conns atomic.Int64
	ln := serveRaw(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	for _, netHTTP := range []bool{false, true} {
		d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
		d.s.DisableFastPath = netHTTP
		for range 2 {
			res := d.Do(t.Context(), post("http://"+ln.Addr().String()+"/"))
			checkResult(t, res, Delivered, ReasonOK, 1)
			if res.Status != http.StatusCreated || string(res.Response) != "ok" {
				t.Fatalf("net_http=%v: status %d body %q, want 201 ok", netHTTP, res.Status, res.Response)
			}
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections for 2 dispatchers x 2 calls, want 2 (reuse after the interim answer)", n)
	}
}

// TestCloseCancelsDial: Close ends a call still connecting (here: stuck in
// name resolution) on both paths, instead of leaving it to its timeout.
func TestCloseCancelsDial(t *testing.T) {
	for _, netHTTP := range []bool{false, true} {
		entered := make(chan struct{}, 1)
		ended := make(chan error, 1) // why the first lookup ended
		resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			first := false
			select {
			case entered <- struct{}{}:
				first = true
			default:
			}
			<-ctx.Done()
			if first {
				ended <- ctx.Err()
			}
			return nil, ctx.Err()
		}}
		d, err := New(Settings{AllowPrivateNetworks: true, Resolver: resolver, Timeout: time.Minute, DisableFastPath: netHTTP}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan Result, 1)
		go func() { done <- d.Do(context.Background(), post("http://receiver.invalid/")) }()
		<-entered
		d.Close()
		res := <-done
		if res.Reason != ReasonCanceled {
			t.Errorf("net_http=%v: Close during the dial gave %s (%v), want %s", netHTTP, res.Reason, res.Err, ReasonCanceled)
		}
		// Canceled, not the resolver's own per-query timeout: Close
		// reached the dial itself.
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Errorf("net_http=%v: the dial ended with %v, want context.Canceled from Close", netHTTP, err)
		}
	}
}

// TestBodyReleased: the caller may reuse the body only when no attempt went
// through net/http, whose transport can still be writing it after the
// answer. A receiver that answers before reading the body shows why.
func TestBodyReleased(t *testing.T) {
	srv := serveOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // before the body is read
	}))
	big := make([]byte, 1<<20)
	for _, c := range []struct {
		name    string
		netHTTP bool
		r       *Request
		want    bool
	}{
		{"fast path", false, post(srv.URL), true},
		{"fast path, big body answered early", false, &Request{Method: http.MethodPost, URL: srv.URL, Body: big, IdempotencyKey: "k"}, true},
		{"net/http path", true, post(srv.URL), false},
		{"fallback from the fast path", false, post(strings.Replace(srv.URL, "http://", "http://u:p@", 1)), false},
	} {
		d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})
		d.s.DisableFastPath = c.netHTTP
		res := d.Do(t.Context(), c.r)
		if res.Outcome != Delivered {
			t.Fatalf("%s: %s %v", c.name, res.Outcome, res.Err)
		}
		if res.BodyReleased != c.want {
			t.Errorf("%s: BodyReleased = %v, want %v", c.name, res.BodyReleased, c.want)
		}
	}
}
