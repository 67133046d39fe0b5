package dispatcher

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// breakerBuckets is how many buckets the rolling window has: the failure
// ratio then forgets old results gradually (one tenth of the window at a
// time) instead of all at once as a fixed window would.
const breakerBuckets = 10

// Verdicts handed to gobreaker by an attempt. The attempt's own error is
// reported through the result; the breaker only needs to know how to count.
var (
	errBreakerFailure = errors.New("breaker: failure")
	errBreakerExclude = errors.New("breaker: excluded")
)

// breakerError maps an attempt reason to what gobreaker should count.
func breakerError(reason string) error {
	success, excluded := breakerVerdict(reason)
	switch {
	case excluded:
		return errBreakerExclude
	case success:
		return nil
	default:
		return errBreakerFailure
	}
}

// newBreaker builds the circuit breaker for one host. Every attempt to the
// host runs inside it (see Dispatcher.attempt), so it is shared by all rules
// that call the host.
func newBreaker(host string, s BreakerSettings, hm *hostMetrics, transitions *prometheus.CounterVec, log *slog.Logger) *gobreaker.CircuitBreaker[attempt] {
	minRequests := uint32(s.MinRequests)
	ratio := s.FailureRatio
	bucket := s.Window / breakerBuckets
	return gobreaker.NewCircuitBreaker[attempt](gobreaker.Settings{
		Name:         host,
		MaxRequests:  uint32(s.HalfOpenRequests),
		Interval:     s.Window,
		BucketPeriod: bucket, // 0 (tiny window) falls back to a fixed window
		Timeout:      s.OpenTimeout,
		// Trip on the ratio of completed attempts in the window, not on a
		// run of consecutive failures: a host failing half its calls is
		// unhealthy even if successes interleave. Excluded attempts and
		// attempts still in flight are not in the denominator.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return done >= minRequests && done > 0 &&
				float64(c.TotalFailures)/float64(done) >= ratio
		},
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded:   func(err error) bool { return errors.Is(err, errBreakerExclude) },
		// Called with the breaker's mutex held: keep it to a gauge, a
		// counter and one log line. Transitions are what operators need to
		// see; individual failed attempts are in metrics, not logs.
		OnStateChange: func(name string, from, to gobreaker.State) {
			hm.state.Set(stateValue(to))
			transitions.WithLabelValues(name, stateLabel(to)).Inc()
			switch to {
			case gobreaker.StateOpen:
				log.Warn("circuit breaker opened; calls to host are parked until a probe succeeds",
					"host", name, "from", stateLabel(from), "probe_after", s.OpenTimeout)
			case gobreaker.StateHalfOpen:
				log.Info("circuit breaker half-open; probing host", "host", name)
			case gobreaker.StateClosed:
				log.Info("circuit breaker closed; host recovered", "host", name, "from", stateLabel(from))
			}
		},
	})
}

// stateValue is the apicall_breaker_state encoding (0 closed, 1 half-open, 2 open).
func stateValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

// stateLabel is the "to" label of apicall_breaker_transitions_total.
func stateLabel(s gobreaker.State) string {
	switch s {
	case gobreaker.StateHalfOpen:
		return "half_open"
	case gobreaker.StateOpen:
		return "open"
	default:
		return "closed"
	}
}
