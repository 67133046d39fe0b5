package dispatcher

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Settings configures a Dispatcher. It mirrors config.Dispatch (cmd maps one
// to the other) plus knobs config does not expose and test hooks. Each
// field's comment says what its zero value means, so Settings{} is a valid,
// production-safe configuration (SSRF guard on, no redirects).
type Settings struct {
	// AllowPrivateNetworks turns the SSRF guard off: calls may reach
	// loopback, private, link-local and metadata addresses. False (default)
	// refuses them at connect time.
	AllowPrivateNetworks bool
	// AllowCIDRs opens only these ranges while the guard stays on. A range
	// that merely covers a cloud metadata address (169.254.169.254, ...)
	// does not open it; only a single-address entry does. Nil opens nothing.
	AllowCIDRs []netip.Prefix
	// MaxInFlightPerHost caps concurrent calls to one host (bulkhead); 0 means 512.
	MaxInFlightPerHost int
	// HostWait bounds how long a call waits for its host (a free in-flight
	// slot, a rate-limit token, a Retry-After hold) before it returns Retry
	// so the consumer parks it instead of blocking the partition; 0 means 1s.
	HostWait time.Duration
	// Timeout bounds each attempt when the Request sets none; 0 means 10s.
	Timeout time.Duration
	// MaxAttempts in process when the Request sets none; 0 means 3.
	MaxAttempts int
	// MaxRedirects followed, each re-checked by the SSRF guard; 0 means none
	// (a 3xx is then Rejected with reason "redirect").
	MaxRedirects int
	// Breaker configures every host's circuit breaker.
	Breaker BreakerSettings
	// Hosts holds per-host overrides keyed by "host:port" or "host"
	// (matched in that order, case-insensitively). Nil means none.
	Hosts map[string]HostSettings
	// MaxIdleConnsPerHost is the keep-alive pool per host; 0 means the
	// largest in-flight cap (MaxInFlightPerHost or a Hosts override), so a
	// host at its cap reuses connections instead of opening new ones.
	MaxIdleConnsPerHost int
	// UserAgent sent with every call; "" means "apicall/dev". cmd sets
	// "apicall/" + the build version.
	UserAgent string
	// Backoff between in-process attempts (full jitter).
	Backoff BackoffSettings
	// MaxRetryAfterInProcess is the longest Retry-After honoured by sleeping
	// inside Do; a longer one ends the in-process attempts and Do returns
	// Retry with RetryAfter set, so the consumer parks the call. 0 means 5s.
	MaxRetryAfterInProcess time.Duration

	// DisableFastPath sends every call through net/http's Transport (see
	// fast.go), e.g. for a receiver that needs HTTP/2. False (default)
	// sends the common call over fasthttp's cheaper connection pool.
	DisableFastPath bool

	// Now is the clock for Retry-After dates, host holds and rate limits;
	// nil means time.Now. (Circuit breakers use gobreaker's own clock.)
	Now func() time.Time
	// Sleep waits between attempts and for host holds or rate-limit tokens;
	// it must return early with ctx.Err() when ctx ends. Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Resolver resolves host names; nil means net.DefaultResolver. The SSRF
	// guard checks whatever address it returns, at connect time.
	Resolver *net.Resolver
	// RootCAs verifies https receivers on both paths; nil means the
	// system's roots. (Tests trust their TLS servers with it.)
	RootCAs *x509.CertPool
}

// BreakerSettings mirrors config.Breaker.
type BreakerSettings struct {
	// Window is the rolling window for the failure ratio; 0 means 30s.
	Window time.Duration
	// MinRequests completed in the window before the breaker may trip; 0 means 20.
	MinRequests int
	// FailureRatio (failures / completed attempts) that trips it; 0 means 0.5.
	FailureRatio float64
	// OpenTimeout before a half-open probe; 0 means 30s.
	OpenTimeout time.Duration
	// HalfOpenRequests allowed while probing; they must all succeed to close
	// the breaker; 0 means 1.
	HalfOpenRequests int
}

// HostSettings mirrors config.Host.
type HostSettings struct {
	// Rate limits requests per second; 0 means unlimited.
	Rate float64
	// Burst for Rate; 0 means max(1, Rate).
	Burst int
	// MaxInFlight overrides Settings.MaxInFlightPerHost; 0 keeps it.
	MaxInFlight int
}

// BackoffSettings shape the delay between in-process attempts.
type BackoffSettings struct {
	// Base is the ceiling of the first delay; it doubles per attempt; 0 means 100ms.
	Base time.Duration
	// Max caps the ceiling; 0 means 5s.
	Max time.Duration
}

// withDefaults returns s with zero values replaced by the documented
// defaults, or an error listing every invalid field.
func (s Settings) withDefaults() (Settings, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	nonNeg := func(name string, v int64) {
		if v < 0 {
			bad("dispatcher: %s must not be negative", name)
		}
	}
	nonNeg("MaxInFlightPerHost", int64(s.MaxInFlightPerHost))
	nonNeg("HostWait", int64(s.HostWait))
	nonNeg("Timeout", int64(s.Timeout))
	nonNeg("MaxAttempts", int64(s.MaxAttempts))
	nonNeg("MaxRedirects", int64(s.MaxRedirects))
	nonNeg("MaxIdleConnsPerHost", int64(s.MaxIdleConnsPerHost))
	nonNeg("MaxRetryAfterInProcess", int64(s.MaxRetryAfterInProcess))
	nonNeg("Backoff.Base", int64(s.Backoff.Base))
	nonNeg("Backoff.Max", int64(s.Backoff.Max))
	nonNeg("Breaker.Window", int64(s.Breaker.Window))
	nonNeg("Breaker.MinRequests", int64(s.Breaker.MinRequests))
	nonNeg("Breaker.OpenTimeout", int64(s.Breaker.OpenTimeout))
	nonNeg("Breaker.HalfOpenRequests", int64(s.Breaker.HalfOpenRequests))
	if s.Breaker.FailureRatio < 0 || s.Breaker.FailureRatio > 1 {
		bad("dispatcher: Breaker.FailureRatio %v must be within [0, 1]", s.Breaker.FailureRatio)
	}
	for i, p := range s.AllowCIDRs {
		if !p.IsValid() {
			bad("dispatcher: AllowCIDRs[%d] is not a valid prefix", i)
		}
	}

	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&s.MaxInFlightPerHost, 512)
	def(&s.HostWait, time.Second)
	def(&s.Timeout, 10*time.Second)
	defInt(&s.MaxAttempts, 3)
	def(&s.MaxRetryAfterInProcess, 5*time.Second)
	def(&s.Backoff.Base, 100*time.Millisecond)
	def(&s.Backoff.Max, 5*time.Second)
	def(&s.Breaker.Window, 30*time.Second)
	defInt(&s.Breaker.MinRequests, 20)
	if s.Breaker.FailureRatio == 0 {
		s.Breaker.FailureRatio = 0.5
	}
	def(&s.Breaker.OpenTimeout, 30*time.Second)
	defInt(&s.Breaker.HalfOpenRequests, 1)
	if s.UserAgent == "" {
		s.UserAgent = "apicall/dev"
	}

	// Copy Hosts with normalised keys so lookups are case-insensitive and a
	// caller mutating its map later cannot race with us.
	maxCap := s.MaxInFlightPerHost
	if len(s.Hosts) > 0 {
		hosts := make(map[string]HostSettings, len(s.Hosts))
		for k, h := range s.Hosts {
			if h.Rate < 0 || h.Burst < 0 || h.MaxInFlight < 0 {
				bad("dispatcher: Hosts[%q]: rate, burst and max_in_flight must not be negative", k)
			}
			hosts[strings.ToLower(k)] = h
			maxCap = max(maxCap, h.MaxInFlight)
		}
		s.Hosts = hosts
	}
	defInt(&s.MaxIdleConnsPerHost, maxCap)
	s.AllowCIDRs = append([]netip.Prefix(nil), s.AllowCIDRs...)
	for i, p := range s.AllowCIDRs {
		s.AllowCIDRs[i] = p.Masked()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Sleep == nil {
		s.Sleep = sleepCtx
	}
	return s, errors.Join(errs...)
}
