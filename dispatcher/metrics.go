package dispatcher

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the dispatcher's Prometheus collectors. Names are a public
// contract (docs/internals.md). The host label is a HostKey, so its
// cardinality is bounded by the configured rules' destinations.
type metrics struct {
	duration     *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	inflight     *prometheus.GaugeVec
	breakerState *prometheus.GaugeVec
	transitions  *prometheus.CounterVec
}

// newMetrics builds the collectors and registers them on reg (nil: not
// registered, useful in tests). Registration errors are returned, not
// panicked as promauto would, because New can report them and a second
// Dispatcher on the same registry is a wiring mistake worth a clear error.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "apicall_delivery_duration_seconds",
			Help: "Duration of one HTTP attempt, from sending the request to reading the bounded response body.",
			// Default buckets span 5ms..10s, which matches the default per-attempt timeout.
			Buckets: prometheus.DefBuckets,
		}, []string{"host"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_attempts_total",
			Help: "Attempts to call a host by classified reason, including attempts refused before the network (breaker_open, host_saturated, rate_limited, ssrf).",
		}, []string{"host", "reason"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apicall_host_inflight",
			Help: "Calls currently holding a slot of the host's in-flight cap.",
		}, []string{"host"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apicall_breaker_state",
			Help: "Circuit breaker state per host: 0 closed, 1 half-open, 2 open. Updated on transitions; open becomes half-open on the next call after the open timeout.",
		}, []string{"host"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_breaker_transitions_total",
			Help: "Circuit breaker state transitions per host and target state (closed, half_open, open).",
		}, []string{"host", "to"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.duration, m.attempts, m.inflight, m.breakerState, m.transitions} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// hostMetrics are one host's children, resolved once when the host is first
// seen so the hot path does no label lookups.
type hostMetrics struct {
	duration prometheus.Observer
	inflight prometheus.Gauge
	state    prometheus.Gauge
	attempts [len(reasons)]prometheus.Counter
}

// reasons lists every Classify reason in a fixed order; hostMetrics indexes
// its attempt counters by position in it.
var reasons = [...]string{
	ReasonOK, ReasonStatus4xx, ReasonStatus408, ReasonStatus429, ReasonStatus5xx,
	ReasonTimeout, ReasonConnection, ReasonBreakerOpen, ReasonHostSaturated,
	ReasonRateLimited, ReasonSSRF, ReasonRedirect, ReasonInvalidRequest, ReasonCanceled,
}

func (m *metrics) forHost(host string) *hostMetrics {
	hm := &hostMetrics{
		duration: m.duration.WithLabelValues(host),
		inflight: m.inflight.WithLabelValues(host),
		state:    m.breakerState.WithLabelValues(host),
	}
	for i, r := range reasons {
		hm.attempts[i] = m.attempts.WithLabelValues(host, r)
	}
	return hm
}

// attempt counts one attempt with the given reason.
func (hm *hostMetrics) attempt(reason string) {
	for i, r := range reasons {
		if r == reason {
			hm.attempts[i].Inc()
			return
		}
	}
}
