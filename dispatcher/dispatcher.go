package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

const (
	// maxResponse is how much of a response body Result.Response keeps:
	// enough for an error message from the receiver, bounded so a large
	// response cannot blow up memory or the outcome record.
	maxResponse = 4 << 10
	// maxDrain is how much more of a body is read (and discarded) so the
	// keep-alive connection can be reused; past it, closing the connection
	// is cheaper than reading on.
	maxDrain = 64 << 10
	// idleConnTimeout closes keep-alive connections unused this long.
	idleConnTimeout = 90 * time.Second
)

// Result is the outcome of one Do call.
type Result struct {
	// Outcome says what the caller should do: done, give up, or park.
	Outcome Outcome
	// Status is the HTTP status of the last attempt; 0 when none was received.
	Status int
	// Attempts is how many times the HTTP client was invoked (calls refused
	// by the breaker, the host cap or the rate limit are not counted).
	Attempts int
	// Reason is the bounded classification of the last attempt (see Classify).
	Reason string
	// Err describes the failure (nil when Delivered). URLs in it are
	// redacted: no query string, no user info. Match with errors.Is on the
	// package's sentinels or errors.As on *SSRFError.
	Err error
	// Latency is the wall time of the whole Do, backoff included.
	Latency time.Duration
	// RetryAfter is the delay the receiver (Retry-After) or the host's rate
	// limit asked for; the consumer should not re-attempt before it. 0: none.
	RetryAfter time.Duration
	// Host is the HostKey of the call ("" when the URL is invalid).
	Host string
	// Response is the start of the last response body, at most 4 KiB.
	Response []byte
	// BodyReleased is true when nothing Do started still reads the
	// Request's Body, so the caller may reuse its memory. It is false
	// when an attempt went through net/http: its transport writes the
	// body from its own goroutine, which may still run after the answer
	// (a receiver that replies before reading the whole request).
	BodyReleased bool
}

// Dispatcher sends Requests. It is safe for concurrent use; create one per
// process and share it, so that connection pools, breakers and host caps
// are shared by every partition worker and rule.
type Dispatcher struct {
	s         Settings
	log       *slog.Logger
	metrics   *metrics
	transport *http.Transport
	client    *http.Client
	// dialer connects both paths (net/http's and the fast one) through
	// the SSRF guard.
	dialer *net.Dialer
	hosts  hosts
	// calls lets Close refuse new calls, cancel those in flight and wait
	// for them.
	calls registry
	// userAgent is the User-Agent header value, built once and shared
	// read-only by every request like the rules' header values.
	userAgent []string
	// scratch holds *[maxResponse]byte buffers for reading and draining
	// response bodies, so a call allocates only what Result.Response keeps.
	scratch sync.Pool
	// readers and writers are the fast path's buffers (fast.go), pooled
	// rather than kept per connection: a call holds them only while it
	// writes or waits for its answer.
	readers, writers sync.Pool
}

// New builds a Dispatcher. Metrics are registered on reg (nil: not
// registered); log may be nil (discard).
func New(s Settings, reg prometheus.Registerer, log *slog.Logger) (*Dispatcher, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: register metrics: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &guard{allowAll: s.AllowPrivateNetworks, allow: s.AllowCIDRs}
	dialer := &net.Dialer{
		// No dial timeout of its own: the per-attempt context bounds it.
		KeepAlive: 30 * time.Second,
		Control:   g.control,
		Resolver:  s.Resolver,
	}
	tr := &http.Transport{
		// No proxy: a proxy would connect on our behalf and the guard
		// would only ever see the proxy's address.
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        0, // no global cap; the per-host pool below bounds it
		MaxIdleConnsPerHost: s.MaxIdleConnsPerHost,
		// MaxConnsPerHost stays 0: the host's in-flight cap already bounds
		// concurrent connections, and a second cap would queue invisibly.
		IdleConnTimeout:        idleConnTimeout,
		TLSClientConfig:        &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	maxRedirects := s.MaxRedirects
	d := &Dispatcher{
		s:         s,
		log:       log.With("component", "dispatcher"),
		metrics:   m,
		transport: tr,
		dialer:    dialer,
		client: &http.Client{
			Transport: tr,
			// Redirects are off by default (a webhook receiver has no
			// reason to bounce us elsewhere); when allowed, each hop dials
			// through the same guarded dialer.
			CheckRedirect: func(_ *http.Request, via []*http.Request) error {
				if len(via) > maxRedirects {
					return http.ErrUseLastResponse
				}
				return nil
			},
		},
	}
	d.userAgent = []string{s.UserAgent}
	d.scratch.New = func() any { return new([maxResponse]byte) }
	d.readers.New = func() any { return bufio.NewReaderSize(nil, fastReadBuffer) }
	d.writers.New = func() any { return bufio.NewWriterSize(nil, 4<<10) }
	return d, nil
}

// Close refuses new calls, cancels calls in flight (they return Retry with
// reason "canceled", which does not count against any breaker), waits for
// them to return and closes idle connections. It is safe to call twice.
func (d *Dispatcher) Close() {
	if !d.calls.close() {
		return
	}
	d.transport.CloseIdleConnections()
	if m := d.hosts.m.Load(); m != nil {
		for _, h := range *m {
			h.conns.closeIdle()
		}
	}
}

// call is a validated Request with everything derived from it once per Do,
// and the Do's cancellation state. It lives on Do's stack.
type call struct {
	method  string
	url     *url.URL // as parsed; errors show it redacted
	reqURL  *url.URL // what is sent: url, or a copy without an empty port
	key     string   // HostKey
	host    *host    // the key's host if it already existed; nil: Do gets it
	timeout time.Duration

	// Cancellation: the caller's ctx, or Close through calls. Neither is
	// wrapped in a derived context up front: an attempt derives its
	// timeout context from ctx and registers that with calls, and only
	// the rare waits (host hold, rate limit, full host, backoff) build
	// wait, a ctx that Close cancels too.
	ctx        context.Context
	calls      *registry
	ticket     ticket
	wait       context.Context
	cancelWait context.CancelFunc

	idem       []string                      // Idempotency-Key (and webhook-id) value, built once
	requestURI string                        // the fast path's request line target, built once
	getBody    func() (io.ReadCloser, error) // Request.GetBody, built once
	// netHTTP: an attempt went through net/http, whose transport may still
	// read the body after the response (see Result.BodyReleased).
	netHTTP bool
}

// redacted is the URL for error messages, built only when one is needed.
func (c *call) redacted() string { return redactURL(c.url) }

// err reports why the call must stop (context.Canceled once Close has
// begun), or nil.
func (c *call) err() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if c.calls.stopping() {
		return context.Canceled
	}
	return nil
}

// waitCtx returns a context that ends when the caller's does or Close is
// called, built on first use: most calls never wait, so they never pay for
// a derived context and its registration on the caller's.
func (c *call) waitCtx() context.Context {
	if c.wait == nil {
		c.wait, c.cancelWait = context.WithCancel(c.ctx)
		c.calls.setCancel(c.ticket, c.cancelWait)
	}
	return c.wait
}

// release frees the wait context, if one was built.
func (c *call) release() {
	if c.cancelWait != nil {
		c.cancelWait()
	}
}

// attempt is what one try produced.
type attempt struct {
	outcome    Outcome
	reason     string
	status     int
	err        error
	retryAfter time.Duration
	body       []byte
	sent       bool // the HTTP client was invoked
}

// Do sends r, retrying in process per the classification, and reports the
// outcome. It never panics and returns once no goroutine of its own is left
// running. ctx bounds the whole call; canceling it returns Retry with reason
// "canceled".
func (d *Dispatcher) Do(ctx context.Context, r *Request) (res Result) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			// A bug, not bad input we could describe: log the stack once
			// here, since the Result cannot carry it.
			d.log.Error("panic while dispatching; call rejected", "panic", p, "stack", string(debug.Stack()))
			res.Outcome, res.Reason = Rejected, ReasonInvalidRequest
			res.Err = fmt.Errorf("%w: internal error: %v", ErrInvalidRequest, p)
		}
		res.Latency = time.Since(start)
	}()

	t, ok := d.calls.add()
	if !ok {
		return Result{Outcome: Retry, Reason: ReasonCanceled, Err: fmt.Errorf("%w: dispatcher closed", ErrCanceled)}
	}
	defer d.calls.remove(t)

	c, err := d.prepare(r)
	if err != nil {
		res.Outcome, res.Reason = Classify(0, err)
		res.Err = err
		return res
	}
	res.Host = c.key
	h := c.host
	if h == nil {
		h = d.hosts.get(c.key, func() *host { return d.newHost(c.key, c.url) })
	}

	if ctx == nil {
		// A bug in the caller, handled like any panic (see above).
		panic("dispatcher: nil context")
	}
	c.ctx, c.calls, c.ticket = ctx, &d.calls, t
	defer c.release()

	maxAttempts := d.s.MaxAttempts
	if r.MaxAttempts > 0 {
		maxAttempts = r.MaxAttempts
	}
	for n := 1; ; n++ {
		a := d.attempt(h, &c, r)
		h.m.attempt(a.reason)
		if a.sent {
			res.Attempts++
		}
		res.Outcome, res.Reason, res.Status, res.Err = a.outcome, a.reason, a.status, a.err
		res.RetryAfter, res.Response = a.retryAfter, a.body
		res.BodyReleased = !c.netHTTP
		if a.outcome != Retry || parksImmediately(a.reason) || n >= maxAttempts {
			return res
		}
		delay := a.retryAfter
		if delay > d.s.MaxRetryAfterInProcess {
			// Too long to hold a partition worker: park with RetryAfter.
			return res
		}
		if delay <= 0 {
			delay = backoff(d.s.Backoff.Base, d.s.Backoff.Max, n)
		}
		if err := d.s.Sleep(c.waitCtx(), delay); err != nil {
			res.Reason = ReasonCanceled
			res.Err = fmt.Errorf("%w during backoff: %w (last attempt: %w)", ErrCanceled, err, a.err)
			return res
		}
	}
}

// prepare validates r and derives what every attempt needs. The URL is
// parsed here only: attempts build their http.Request from the result.
func (d *Dispatcher) prepare(r *Request) (call, error) {
	if r == nil {
		return call{}, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if r.IdempotencyKey == "" {
		// Guarantee 6: every call carries one; sending without it would
		// let a redelivery be applied twice.
		return call{}, fmt.Errorf("%w: empty idempotency key", ErrInvalidRequest)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		// Not err itself: url.Error repeats the raw URL, secrets included.
		return call{}, fmt.Errorf("%w: unparseable URL", ErrInvalidRequest)
	}
	var buf [64]byte
	key, err := appendHostKey(buf[:0], u)
	if err != nil {
		return call{}, err
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet // as net/http
	}
	if !validMethod(method) {
		return call{}, fmt.Errorf("%w: bad method %.32q", ErrInvalidRequest, method)
	}
	timeout := d.s.Timeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	c := call{method: method, url: u, reqURL: u, timeout: timeout}
	if strings.HasSuffix(u.Host, ":") {
		// net/http sends "host:" as "host" (Issue 14836); errors keep
		// showing the URL as given.
		ru := *u
		ru.Host = strings.TrimSuffix(u.Host, ":")
		c.reqURL = &ru
	}
	// A known host lends its key string: no allocation per call.
	if h := d.hosts.lookup(key); h != nil {
		c.host, c.key = h, h.key
	} else {
		c.key = string(key)
	}
	return c, nil
}

// attempt makes one try through the host's breaker: the breaker first (an
// open breaker refuses without waiting or touching the network), then the
// host's hold, rate limit and in-flight cap, then the HTTP exchange.
func (d *Dispatcher) attempt(h *host, c *call, r *Request) attempt {
	a, err := h.breaker.Execute(func() (attempt, error) {
		if retryAfter, err := d.enter(c, h); err != nil {
			a := failed(c, err)
			a.retryAfter = retryAfter
			return a, breakerError(a.reason)
		}
		defer h.leave()
		a := d.send(h, c, r)
		return a, breakerError(a.reason)
	})
	// err is nil or one of breakerError's sentinels unless the breaker
	// refused the call.
	if err != nil && (errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)) {
		return failed(c, fmt.Errorf("%w for %s (%w)", ErrBreakerOpen, c.key, err))
	}
	return a
}

// sendFailed is the attempt whose HTTP exchange (on either path) ended in
// err: canceled when the caller or Close ended the call, not the host.
func sendFailed(c *call, err error) attempt {
	if c.err() != nil {
		err = fmt.Errorf("%w: %w", ErrCanceled, err)
	}
	a := failed(c, err)
	a.sent = true
	return a
}

// failed turns an error into an attempt via Classify.
func failed(c *call, err error) attempt {
	outcome, reason := Classify(0, err)
	return attempt{outcome: outcome, reason: reason, err: fmt.Errorf("%s %s: %w", c.method, c.redacted(), err)}
}

// send performs one HTTP exchange with the per-attempt timeout. The
// response body is read up to maxResponse, drained up to maxDrain so the
// connection returns to the pool, and closed.
func (d *Dispatcher) send(h *host, c *call, r *Request) attempt {
	if d.fastOK(c, r) {
		return d.sendFast(h, c, r)
	}
	c.netHTTP = true
	// The attempt's context is the only one derived per attempt. Close
	// reaches it through the registry, or through c.wait once a wait has
	// built that (it is then the parent).
	var actx context.Context
	var cancel context.CancelFunc
	if c.wait != nil {
		actx, cancel = context.WithTimeout(c.wait, c.timeout)
	} else {
		actx, cancel = context.WithTimeout(c.ctx, c.timeout)
		c.calls.setCancel(c.ticket, cancel)
	}
	defer cancel()
	req := d.request(actx, c, r)

	start := time.Now()
	resp, err := d.roundTrip(c, req)
	if err != nil {
		h.m.duration.Observe(time.Since(start).Seconds())
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop url.Error: it carries the unredacted URL
		}
		return sendFailed(c, err)
	}
	respBody := d.readBody(resp)
	h.m.duration.Observe(time.Since(start).Seconds())
	return d.answered(h, c, resp.StatusCode, resp.Header.Get("Retry-After"), respBody)
}

// answered classifies an attempt that got a response, from either path:
// its status, Retry-After header and the kept start of its body.
func (d *Dispatcher) answered(h *host, c *call, status int, retryAfter string, body []byte) attempt {
	outcome, reason := Classify(status, nil)
	a := attempt{outcome: outcome, reason: reason, status: status, body: body, sent: true}
	if outcome != Delivered {
		a.err = fmt.Errorf("%s %s: status %d %s", c.method, c.redacted(), status, http.StatusText(status))
	}
	if outcome == Retry {
		now := d.s.Now()
		a.retryAfter = parseRetryAfter(retryAfter, now)
		if a.retryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			h.holdUntil(now.Add(a.retryAfter), now)
		}
	}
	return a
}

// roundTrip sends req. With redirects off (the default) and no user info
// in the URL, http.Client adds nothing the transport does not do: a 3xx
// comes back as the response either way (CheckRedirect returns
// ErrUseLastResponse at once), and there are no credentials to turn into
// basic auth. The transport is then called directly, which saves the
// header clone and bookkeeping Client makes per request (net/http.Header
// Clone was 4% of the bytes apicall allocated in make bench).
func (d *Dispatcher) roundTrip(c *call, req *http.Request) (*http.Response, error) {
	if d.s.MaxRedirects == 0 && c.url.User == nil {
		return d.client.Transport.RoundTrip(req)
	}
	return d.client.Do(req)
}

// request builds the attempt's request as http.NewRequestWithContext does
// for a *bytes.Reader body (same Body and GetBody types, ContentLength,
// NoBody for an empty body), but from the URL prepare parsed instead of
// parsing it again. prepare has already checked the method and URL.
//
// Host is left empty: net/http then sends URL.Host, the value
// NewRequestWithContext would copy into Host, and http.Client skips the URL
// clone it makes for every request whose Host is set.
func (d *Dispatcher) request(ctx context.Context, c *call, r *Request) *http.Request {
	req := http.Request{
		Method:     c.method,
		URL:        c.reqURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     d.header(c, r),
	}
	if r.Body != nil {
		if len(r.Body) == 0 {
			req.Body, req.GetBody = http.NoBody, noBody
		} else {
			req.ContentLength = int64(len(r.Body))
			// NopCloser of a *bytes.Reader, exactly: the transport
			// recognises it as in-memory and sends headers and body
			// in one write.
			req.Body = io.NopCloser(bytes.NewReader(r.Body))
			if c.getBody == nil {
				body := r.Body
				c.getBody = func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(body)), nil
				}
			}
			req.GetBody = c.getBody
		}
	}
	// WithContext copies req to the heap: one Request allocation, as with
	// NewRequestWithContext.
	return req.WithContext(ctx)
}

// noBody is GetBody for an empty body, as net/http sets it.
func noBody() (io.ReadCloser, error) { return http.NoBody, nil }

// header builds the attempt's headers: the Request's (shared with other
// attempts and rules, so never modified: values are shared read-only and
// the map is new), then ours, which win over any the rule set. Our keys are
// already canonical and assigned directly; their values are built once
// (User-Agent per Dispatcher, Idempotency-Key per call) and, like the
// rule's, only ever read.
func (d *Dispatcher) header(c *call, r *Request) http.Header {
	n := len(r.Header) + 2
	signed := len(r.SigningSecrets) > 0
	if signed {
		n += 3
	}
	h := make(http.Header, n)
	for k, v := range r.Header {
		h[k] = v
	}
	if c.idem == nil {
		c.idem = []string{r.IdempotencyKey}
	}
	h["Idempotency-Key"] = c.idem
	h["User-Agent"] = d.userAgent
	if signed {
		sign(h, r.SigningSecrets, c.idem, d.s.Now(), r.Body)
	}
	return h
}

// readBody returns up to maxResponse bytes of the body, drains at most
// maxDrain more (so a keep-alive connection can be reused) and closes it.
// Read errors are ignored: the status already says what happened, and a
// truncated error message is still useful.
//
// Reading and draining go through a pooled buffer: an empty body (the
// common answer) allocates nothing even when its length is unknown, and a
// short one allocates just its size.
func (d *Dispatcher) readBody(resp *http.Response) []byte {
	defer resp.Body.Close()
	if resp.ContentLength == 0 {
		return nil
	}
	buf := d.scratch.Get().(*[maxResponse]byte)
	defer d.scratch.Put(buf)
	n := int64(maxResponse)
	if resp.ContentLength > 0 && resp.ContentLength < n {
		n = resp.ContentLength
	}
	got, _ := io.ReadFull(resp.Body, buf[:n])
	var kept []byte
	if got > 0 {
		kept = bytes.Clone(buf[:got])
	}
	drain(resp.Body, buf[:], maxDrain)
	return kept
}

// drain reads and discards up to limit bytes of body through scratch,
// stopping at EOF or any error, as io.CopyN(io.Discard, body, limit) would
// without its per-call LimitReader.
func drain(body io.Reader, scratch []byte, limit int64) {
	for limit > 0 {
		p := scratch
		if int64(len(p)) > limit {
			p = p[:limit]
		}
		n, err := body.Read(p)
		limit -= int64(n)
		if err != nil {
			return
		}
	}
}

// HostKey returns "scheme://host:port" for rawURL, lower-cased and with the
// scheme's default port made explicit. It is the key of the per-host
// breaker, cap and rate limit and the "host" metric label: stable for all
// URLs of one destination, free of paths and queries (bounded cardinality,
// no personal data).
func HostKey(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: unparseable URL", ErrInvalidRequest)
	}
	key, err := appendHostKey(nil, u)
	if err != nil {
		return "", err
	}
	return string(key), nil
}

// appendHostKey appends u's HostKey to dst. Building it in a caller's
// buffer lets Do find a known host without allocating the key.
func appendHostKey(dst []byte, u *url.URL) ([]byte, error) {
	var port string
	switch scheme := u.Scheme; {
	case strings.EqualFold(scheme, "http"):
		dst, port = append(dst, "http://"...), "80"
	case strings.EqualFold(scheme, "https"):
		dst, port = append(dst, "https://"...), "443"
	default:
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidRequest, u.Scheme)
	}
	name := u.Hostname()
	if name == "" {
		return nil, fmt.Errorf("%w: URL has no host", ErrInvalidRequest)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%w: bad port %q", ErrInvalidRequest, p)
		}
		port = p
	}
	// As net.JoinHostPort(strings.ToLower(name), port).
	ipv6 := strings.IndexByte(name, ':') >= 0
	if ipv6 {
		dst = append(dst, '[')
	}
	dst = appendLower(dst, name)
	if ipv6 {
		dst = append(dst, ']')
	}
	dst = append(dst, ':')
	return append(dst, port...), nil
}

// appendLower appends strings.ToLower(s) to dst, without allocating when s
// is ASCII (as host names nearly always are).
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(dst, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// validMethod reports whether m is an RFC 9110 token, as net/http requires;
// checked up front so a bad rule is rejected before it takes a host slot.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// redactURL is u for error messages: scheme, host and path only. The query
// string and user info often hold tokens and personal data.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}
