package dispatcher

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// maxHostHold caps how long one Retry-After response may hold back every
// call to its host. The call that received it still reports the full
// RetryAfter; but a host shared by many rules should not go silent for
// hours because of one header.
const maxHostHold = 5 * time.Minute

// host is the per-destination state shared by every rule that calls it:
// circuit breaker, in-flight cap (bulkhead), optional rate limit and the
// "not before" time set by 429/503 Retry-After answers. Created lazily on
// first use and kept for the Dispatcher's life; the number of hosts is
// bounded by the configured rules' destinations.
type host struct {
	key     string
	sem     chan struct{} // capacity = the host's in-flight cap; a send takes a slot
	limiter *rate.Limiter // nil when the host has no rate limit
	// notBefore is a unix-nano time (Settings.Now's clock) before which no
	// call may be sent to the host; 0 means none.
	notBefore atomic.Int64
	breaker   *gobreaker.CircuitBreaker[attempt]
	m         *hostMetrics
	conns     *connPool // the host's keep-alive connections for the fast path (fast.go)
}

// hosts is the lazily filled HostKey -> *host table. Lookups read an
// immutable map through one atomic load: no lock, and a lookup by a key
// still in a byte buffer allocates nothing (sync.Map's any keys did for
// keys over 32 bytes). Adding a host copies the map, which is cheap next
// to building the host and happens once per destination.
type hosts struct {
	mu sync.Mutex                       // serialises additions
	m  atomic.Pointer[map[string]*host] // never modified once stored
}

// lookup returns the host for key, or nil if none has been built yet.
func (hs *hosts) lookup(key []byte) *host {
	if m := hs.m.Load(); m != nil {
		return (*m)[string(key)]
	}
	return nil
}

// get returns the host for key, building it with mk on first use. mk runs
// at most once per key (under mu), so metric children and the breaker are
// never built twice.
func (hs *hosts) get(key string, mk func() *host) *host {
	if m := hs.m.Load(); m != nil {
		if h, ok := (*m)[key]; ok {
			return h
		}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var old map[string]*host
	if m := hs.m.Load(); m != nil {
		old = *m
	}
	if h, ok := old[key]; ok {
		return h
	}
	h := mk()
	m := make(map[string]*host, len(old)+1)
	maps.Copy(m, old)
	m[key] = h
	hs.m.Store(&m)
	return h
}

// newHost builds the state for one destination from the settings.
func (d *Dispatcher) newHost(key string, u *url.URL) *host {
	hs := d.s.hostSettings(u)
	limit := d.s.MaxInFlightPerHost
	if hs.MaxInFlight > 0 {
		limit = hs.MaxInFlight
	}
	h := &host{
		key:   key,
		sem:   make(chan struct{}, limit),
		m:     d.metrics.forHost(key),
		conns: d.newConnPool(key),
	}
	if hs.Rate > 0 {
		burst := hs.Burst
		if burst <= 0 {
			burst = max(1, int(hs.Rate))
		}
		h.limiter = rate.NewLimiter(rate.Limit(hs.Rate), burst)
	}
	h.m.state.Set(0)
	h.breaker = newBreaker(key, d.s.Breaker, h.m, d.metrics.transitions, d.log)
	return h
}

// hostSettings finds the override for u: "host:port" first, then "host".
func (s *Settings) hostSettings(u *url.URL) HostSettings {
	if len(s.Hosts) == 0 {
		return HostSettings{}
	}
	name := strings.ToLower(u.Hostname())
	if p := u.Port(); p != "" {
		if hs, ok := s.Hosts[net.JoinHostPort(name, p)]; ok {
			return hs
		}
	}
	return s.Hosts[name]
}

// enter waits, within the HostWait budget, for the host's Retry-After hold,
// a rate-limit token and a free in-flight slot, in that order. Waiting is
// bounded so a slow or throttled host never holds the caller (a partition
// worker) for long: past the budget the call is refused with
// ErrRateLimited or ErrHostSaturated and the consumer parks it. For
// ErrRateLimited it returns how long the caller should wait.
//
// Waits end early when c is canceled (caller or Close). On success the
// caller owns a slot and must call leave.
func (d *Dispatcher) enter(c *call, h *host) (retryAfter time.Duration, err error) {
	budget := d.s.HostWait
	var wait time.Duration
	var res *rate.Reservation
	// The clock is read only for a hold or a rate limit; most hosts, most
	// of the time, have neither.
	if nb := h.notBefore.Load(); nb != 0 || h.limiter != nil {
		now := d.s.Now()
		if nb != 0 {
			if hold := time.Duration(nb - now.UnixNano()); hold > 0 {
				if hold > budget {
					return hold, fmt.Errorf("%w: host asked to wait %s (Retry-After)", ErrRateLimited, hold.Round(time.Millisecond))
				}
				wait = hold
			}
		}
		if h.limiter != nil {
			res = h.limiter.ReserveN(now.Add(wait), 1)
			delay := res.DelayFrom(now)
			if !res.OK() || delay > budget {
				res.CancelAt(now)
				return delay, fmt.Errorf("%w: next token in %s", ErrRateLimited, delay.Round(time.Millisecond))
			}
			wait = max(wait, delay)
		}
	}
	if wait > 0 {
		if err := d.s.Sleep(c.waitCtx(), wait); err != nil {
			if res != nil {
				res.CancelAt(d.s.Now())
			}
			return 0, fmt.Errorf("%w: %w", ErrCanceled, err)
		}
	}
	if err := c.err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrCanceled, err)
	}
	// Fast path: a free slot needs no timer.
	select {
	case h.sem <- struct{}{}:
		h.m.inflight.Inc()
		return 0, nil
	default:
	}
	ctx := c.waitCtx()
	t := time.NewTimer(max(budget-wait, 0))
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		h.m.inflight.Inc()
		return 0, nil
	case <-t.C:
		return 0, fmt.Errorf("%w: %d calls in flight", ErrHostSaturated, cap(h.sem))
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrCanceled, ctx.Err())
	}
}

// leave returns the slot taken by enter.
func (h *host) leave() {
	h.m.inflight.Dec()
	<-h.sem
}

// holdUntil records a Retry-After from a 429 or 503 so that other calls to
// the host wait (or park) until then instead of hammering it. It only ever
// moves the hold later.
func (h *host) holdUntil(t time.Time, now time.Time) {
	if limit := now.Add(maxHostHold); t.After(limit) {
		t = limit
	}
	until := t.UnixNano()
	for {
		cur := h.notBefore.Load()
		if cur >= until || h.notBefore.CompareAndSwap(cur, until) {
			return
		}
	}
}
