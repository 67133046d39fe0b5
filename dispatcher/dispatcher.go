package dispatcher

import (
	"bytes"
	"context"
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
	hosts     hosts

	// Close refuses new calls (under mu), cancels in-flight ones through
	// closing and waits for them (inflight).
	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	closing  context.Context
	shutdown context.CancelFunc
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
		IdleConnTimeout:        90 * time.Second,
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
	d.closing, d.shutdown = context.WithCancel(context.Background())
	return d, nil
}

// Close refuses new calls, cancels calls in flight (they return Retry with
// reason "canceled", which does not count against any breaker), waits for
// them to return and closes idle connections. It is safe to call twice.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	already := d.closed
	d.closed = true
	d.mu.Unlock()
	if already {
		return
	}
	d.shutdown()
	d.inflight.Wait()
	d.transport.CloseIdleConnections()
}

// call is a validated Request with everything derived from it once per Do.
type call struct {
	method  string
	url     *url.URL
	key     string // HostKey
	timeout time.Duration
}

// redacted is the URL for error messages, built only when one is needed.
func (c *call) redacted() string { return redactURL(c.url) }

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

	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return Result{Outcome: Retry, Reason: ReasonCanceled, Err: fmt.Errorf("%w: dispatcher closed", ErrCanceled)}
	}
	d.inflight.Add(1)
	d.mu.RUnlock()
	defer d.inflight.Done()

	c, err := d.prepare(r)
	if err != nil {
		res.Outcome, res.Reason = Classify(0, err)
		res.Err = err
		return res
	}
	res.Host = c.key
	h := d.hosts.get(c.key, func() *host { return d.newHost(c.key, c.url) })

	// Close cancels this call through ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.closing, cancel)
	defer stop()

	maxAttempts := d.s.MaxAttempts
	if r.MaxAttempts > 0 {
		maxAttempts = r.MaxAttempts
	}
	for n := 1; ; n++ {
		a := d.attempt(ctx, h, c, r)
		h.m.attempt(a.reason)
		if a.sent {
			res.Attempts++
		}
		res.Outcome, res.Reason, res.Status, res.Err = a.outcome, a.reason, a.status, a.err
		res.RetryAfter, res.Response = a.retryAfter, a.body
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
		if err := d.s.Sleep(ctx, delay); err != nil {
			res.Reason = ReasonCanceled
			res.Err = fmt.Errorf("%w during backoff: %w (last attempt: %w)", ErrCanceled, err, a.err)
			return res
		}
	}
}

// prepare validates r and derives what every attempt needs.
func (d *Dispatcher) prepare(r *Request) (*call, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if r.IdempotencyKey == "" {
		// Guarantee 6: every call carries one; sending without it would
		// let a redelivery be applied twice.
		return nil, fmt.Errorf("%w: empty idempotency key", ErrInvalidRequest)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		// Not err itself: url.Error repeats the raw URL, secrets included.
		return nil, fmt.Errorf("%w: unparseable URL", ErrInvalidRequest)
	}
	key, err := hostKey(u)
	if err != nil {
		return nil, err
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet // as net/http
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("%w: bad method %.32q", ErrInvalidRequest, method)
	}
	timeout := d.s.Timeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	return &call{method: method, url: u, key: key, timeout: timeout}, nil
}

// attempt makes one try through the host's breaker: the breaker first (an
// open breaker refuses without waiting or touching the network), then the
// host's hold, rate limit and in-flight cap, then the HTTP exchange.
func (d *Dispatcher) attempt(ctx context.Context, h *host, c *call, r *Request) attempt {
	a, err := h.breaker.Execute(func() (attempt, error) {
		if retryAfter, err := d.enter(ctx, h); err != nil {
			a := failed(c, err)
			a.retryAfter = retryAfter
			return a, breakerError(a.reason)
		}
		defer h.leave()
		a := d.send(ctx, h, c, r)
		return a, breakerError(a.reason)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return failed(c, fmt.Errorf("%w for %s (%w)", ErrBreakerOpen, c.key, err))
	}
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
func (d *Dispatcher) send(ctx context.Context, h *host, c *call, r *Request) attempt {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(actx, c.method, r.URL, body)
	if err != nil {
		return failed(c, fmt.Errorf("%w: %s", ErrInvalidRequest, "cannot build request (bad method or URL)"))
	}
	req.Header = d.header(r)

	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		h.m.duration.Observe(time.Since(start).Seconds())
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop url.Error: it carries the unredacted URL
		}
		if ctx.Err() != nil {
			// The caller (or Close) ended the call, not the host.
			err = fmt.Errorf("%w: %w", ErrCanceled, err)
		}
		a := failed(c, err)
		a.sent = true
		return a
	}
	respBody := readBody(resp)
	h.m.duration.Observe(time.Since(start).Seconds())

	outcome, reason := Classify(resp.StatusCode, nil)
	a := attempt{outcome: outcome, reason: reason, status: resp.StatusCode, body: respBody, sent: true}
	if outcome != Delivered {
		a.err = fmt.Errorf("%s %s: status %d %s", c.method, c.redacted(), resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if outcome == Retry {
		now := d.s.Now()
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		if a.retryAfter > 0 && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			h.holdUntil(now.Add(a.retryAfter), now)
		}
	}
	return a
}

// header builds the attempt's headers: the Request's (shared with other
// attempts and rules, so never modified: values are shared read-only and
// the map is new), then ours, which win over any the rule set.
func (d *Dispatcher) header(r *Request) http.Header {
	h := make(http.Header, len(r.Header)+5)
	for k, v := range r.Header {
		h[k] = v
	}
	h.Set("Idempotency-Key", r.IdempotencyKey)
	h.Set("User-Agent", d.s.UserAgent)
	if len(r.SigningSecrets) > 0 {
		sign(h, r.SigningSecrets, r.IdempotencyKey, d.s.Now(), r.Body)
	}
	return h
}

// readBody returns up to maxResponse bytes of the body, drains at most
// maxDrain more (so a keep-alive connection can be reused) and closes it.
// Read errors are ignored: the status already says what happened, and a
// truncated error message is still useful.
func readBody(resp *http.Response) []byte {
	defer resp.Body.Close()
	if resp.ContentLength == 0 {
		return nil
	}
	n := int64(maxResponse)
	if resp.ContentLength > 0 && resp.ContentLength < n {
		n = resp.ContentLength
	}
	buf := make([]byte, n)
	got, _ := io.ReadFull(resp.Body, buf)
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	if got == 0 {
		return nil
	}
	return buf[:got]
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
	return hostKey(u)
}

func hostKey(u *url.URL) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	var port string
	switch scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return "", fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidRequest, u.Scheme)
	}
	name := strings.ToLower(u.Hostname())
	if name == "" {
		return "", fmt.Errorf("%w: URL has no host", ErrInvalidRequest)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("%w: bad port %q", ErrInvalidRequest, p)
		}
		port = p
	}
	return scheme + "://" + net.JoinHostPort(name, port), nil
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
