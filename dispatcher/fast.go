package dispatcher

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// The common call (http or https, no redirects to follow, no user info in
// the URL, headers net/http would accept) is written and its answer parsed
// by fasthttp, over keep-alive connections pooled here, instead of going
// through net/http's Transport. The exchange then runs in the calling
// goroutine: write the request, read the response, pool the connection.
// net/http hands every request to two goroutines per connection (writeLoop,
// readLoop) through channels and builds a context, a cancel watcher and
// several allocations around it. In make bench's baseline loop the switch
// alone cut CPU per delivered event from 22 to 10 microseconds, and apicall
// makes 1.25 calls per event; with ~1000 calls in flight it also drops
// ~2000 goroutine stacks the GC must scan.
//
// Everything else (redirects, user info turned into basic auth, a header
// net/http would refuse, GET with a body, non-ASCII or zoned hosts) keeps
// going through net/http, so its behaviour and errors stay the reference;
// Settings.DisableFastPath sends everything that way. What the fast path
// gives up is HTTP/2, which a webhook receiver has no need for. The wire
// request is tested against net/http's (fast_test.go), and make test runs
// the package's suite through both paths.

// fastReadBuffer bounds a response's header block (net/http allows 64 KiB
// but reads through a 4 KiB buffer). The buffer is pooled and held only
// while a call waits for its response, so ~1000 calls in flight hold 16 MB.
const fastReadBuffer = 16 << 10

// connPool is one host's idle keep-alive connections for the fast path,
// most recently used first out (the others age out). It starts no
// goroutine: connections idle past idleConnTimeout are closed by a timer
// armed while any are pooled, by the next acquire that meets one, or by
// closeIdle.
type connPool struct {
	dial  func(ctx context.Context) (net.Conn, error)
	mu    sync.Mutex
	idle  []idleConn // oldest first
	sweep *time.Timer
	done  bool // closeIdle ran: pool nothing more
}

type idleConn struct {
	c    net.Conn
	used time.Time
}

// newConnPool builds the pool of the host behind key ("scheme://host:port").
// Connections go through the Dispatcher's guarded dialer; https ones are
// TLS (HTTP/1.1) with the host's name, handshaken within the dial context.
func (d *Dispatcher) newConnPool(key string) *connPool {
	addr, isTLS := strings.CutPrefix(key, "https://")
	if !isTLS {
		addr = strings.TrimPrefix(key, "http://")
	}
	serverName, _, _ := net.SplitHostPort(addr)
	return &connPool{dial: func(ctx context.Context) (net.Conn, error) {
		conn, err := d.dialer.DialContext(ctx, "tcp", addr)
		if err != nil || !isTLS {
			return conn, err
		}
		tc := tls.Client(conn, &tls.Config{ServerName: serverName, RootCAs: d.s.RootCAs, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}}
}

// take returns the most recently used idle connection, or nil. Idle ones
// past idleConnTimeout are closed on the way.
func (p *connPool) take() net.Conn {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		ic := p.idle[n-1]
		p.idle[n-1] = idleConn{}
		p.idle = p.idle[:n-1]
		if now.Sub(ic.used) < idleConnTimeout {
			p.mu.Unlock()
			return ic.c
		}
		ic.c.Close() // the rest are older still
		for _, o := range p.idle {
			o.c.Close()
		}
		clear(p.idle)
		p.idle = p.idle[:0]
	}
	p.mu.Unlock()
	return nil
}

// put pools c for reuse, or closes it once the pool is closed.
func (p *connPool) put(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		c.Close()
		return
	}
	p.idle = append(p.idle, idleConn{c: c, used: time.Now()})
	if p.sweep == nil {
		p.sweep = time.AfterFunc(idleConnTimeout, p.expire)
	}
}

// expire closes connections idle past idleConnTimeout and re-arms the timer
// while some remain.
func (p *connPool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].used) >= idleConnTimeout {
		p.idle[n].c.Close()
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.sweep = nil
	if !p.done && len(p.idle) > 0 {
		p.sweep = time.AfterFunc(idleConnTimeout-now.Sub(p.idle[0].used), p.expire)
	}
}

// closeIdle closes every pooled connection and pools no more (Close).
func (p *connPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	for _, ic := range p.idle {
		ic.c.Close()
	}
	p.idle = nil
}

// fastOK reports whether the call can take the fast path (see above).
func (d *Dispatcher) fastOK(c *call, r *Request) bool {
	if d.s.MaxRedirects != 0 || c.url.User != nil || d.s.DisableFastPath {
		return false
	}
	if (c.method == http.MethodGet || c.method == http.MethodHead) && len(r.Body) > 0 || c.method == http.MethodConnect {
		return false // fasthttp would drop the body; CONNECT is not a call
	}
	h := c.reqURL.Host
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 || h[i] == '%' {
			return false // net/http converts to punycode and drops zones
		}
	}
	for k, vs := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// fastHeader writes what header (dispatcher.go) builds into h: the
// Request's headers, then ours, which win. Unsigned calls skip header's
// map (a map per call was 7% of the bytes apicall allocated in make
// bench); signed ones use it, so signing stays in one place.
func (d *Dispatcher) fastHeader(h *fasthttp.RequestHeader, c *call, r *Request) {
	if len(r.SigningSecrets) > 0 {
		for k, vs := range d.header(c, r) {
			if !excludedHeader(k) {
				for _, v := range vs {
					h.Add(k, v)
				}
			}
		}
		return
	}
	for k, vs := range r.Header {
		if excludedHeader(k) || k == "Idempotency-Key" || k == "User-Agent" {
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Set("Idempotency-Key", r.IdempotencyKey)
	h.Set("User-Agent", d.userAgent[0])
}

// excludedHeader reports the header keys net/http does not send from
// Request.Header (it derives them from the request itself).
func excludedHeader(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// sendFast is send's fast path. It returns what send would: the status,
// the Retry-After header and the kept start of the body, or the error.
func (d *Dispatcher) sendFast(h *host, c *call, r *Request) attempt {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.Header.DisableNormalizing()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(c.method)
	if c.requestURI == "" {
		c.requestURI = c.reqURL.RequestURI()
	}
	req.SetRequestURI(c.requestURI)
	req.Header.SetHost(c.reqURL.Host)
	d.fastHeader(&req.Header, c, r)
	if r.Body != nil {
		req.SetBodyRaw(r.Body)
	}
	resp.SkipBody = c.method == http.MethodHead // its Content-Length has no body behind it

	start := time.Now()
	err := d.exchange(h.conns, c, req, resp)
	h.m.duration.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return sendFailed(c, err)
	}
	var body []byte
	if b := resp.Body(); len(b) > 0 {
		body = append([]byte(nil), b[:min(len(b), maxResponse)]...)
	}
	return d.answered(h, c, resp.StatusCode(), string(resp.Header.Peek("Retry-After")), body)
}

// exchange writes req and reads resp on a pooled connection, within the
// call's timeout. The connection is registered so that the caller's
// context and Close can end the exchange at once (by moving its deadline
// to the past); a connection that was touched that way, failed, or that
// either side asked to close, is closed instead of pooled.
//
// A reused keep-alive connection the server had already closed fails
// before any answer; like net/http, the request is then sent once more on
// a new connection (the Idempotency-Key makes a duplicate harmless).
func (d *Dispatcher) exchange(p *connPool, c *call, req *fasthttp.Request, resp *fasthttp.Response) error {
	deadline := time.Now().Add(c.timeout)
	parent := c.ctx
	if c.wait != nil {
		parent = c.wait // Close cancels it
	}
	for try := 0; ; try++ {
		var err error
		conn := p.take()
		reused := conn != nil
		if !reused {
			// Dialling is the one step bounded by a context: the
			// caller's, and Close through the registry as for an exchange.
			ctx, cancel := context.WithDeadline(parent, deadline)
			if c.wait == nil {
				c.calls.setCancel(c.ticket, cancel)
			}
			conn, err = p.dial(ctx)
			if c.wait == nil {
				c.calls.clearCancel(c.ticket)
			}
			cancel()
			if err != nil {
				return err
			}
		}
		if err := conn.SetDeadline(deadline); err != nil {
			conn.Close()
			return err
		}
		// A deadline in the past ends any blocked read or write at once.
		interrupt := func() { _ = conn.SetDeadline(time.Unix(1, 0)) }
		if c.wait == nil {
			c.calls.setCancel(c.ticket, interrupt)
		}
		stop := context.AfterFunc(parent, interrupt)

		wrote := false
		bw := d.writers.Get().(*bufio.Writer)
		bw.Reset(conn)
		err = req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		d.writers.Put(bw)
		if err == nil {
			wrote = true
			br := d.readers.Get().(*bufio.Reader)
			br.Reset(conn)
			err = resp.ReadLimitBody(br, maxResponse+maxDrain)
			if err == nil && br.Buffered() > 0 {
				err = errUnsolicited // bytes after the response: not reusable
			}
			br.Reset(nil)
			d.readers.Put(br)
		}

		interrupted := !stop()
		if c.wait == nil {
			c.calls.clearCancel(c.ticket)
		}
		if err != nil || interrupted || c.calls.stopping() || resp.ConnectionClose() || req.ConnectionClose() {
			conn.Close()
		} else {
			p.put(conn)
		}
		switch {
		case err == errUnsolicited:
			err = nil // the answer itself was whole
		case err == nil && interrupted:
			err = context.Canceled
		}
		if err != nil && try == 0 && reused && staleConn(err, wrote) && c.err() == nil {
			resp.Reset()
			continue
		}
		return err
	}
}

// errUnsolicited: the server sent more than its response.
var errUnsolicited = errors.New("unsolicited bytes after the response")

// staleConn reports whether err is what a keep-alive connection the server
// has closed produces before any response byte: a failed write, or EOF or
// a reset instead of a status line.
func staleConn(err error, wrote bool) bool {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return false
	}
	if !wrote {
		return true
	}
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
}
