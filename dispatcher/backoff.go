package dispatcher

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps what a Retry-After header can ask for, so an absurd
// value cannot overflow time.Duration; a day is already far past any
// in-process or parking budget.
const maxRetryAfter = 24 * time.Hour

// backoff returns the delay before attempt n+1 after n failed attempts:
// "full jitter" (a uniform draw in [0, min(max, base*2^(n-1))]), which
// spreads the retries of many calls that failed together instead of
// sending them back in synchronized waves.
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	if base <= 0 || maxDelay <= 0 {
		return 0
	}
	ceiling := base
	for i := 1; i < n && ceiling < maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxDelay)
	return rand.N(ceiling + 1)
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 section 10.2.3). It returns 0 when the header is absent,
// malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// sleepCtx waits d or until ctx ends, whichever is first; it is the default
// Settings.Sleep. A timer (not time.After) is stopped early so a canceled
// wait leaves nothing behind.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
