package consumer

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the consumer's Prometheus series; names are a public contract
// (docs/internals.md, ../shared/design.md).
type metrics struct {
	events         *prometheus.CounterVec
	deliveries     *prometheus.CounterVec
	eventsBy       *counterCache[[2]string] // events by topic, result
	deliveriesBy   *counterCache[[3]string] // deliveries by rule, host, outcome
	deadLetters    *prometheus.CounterVec
	missingTags    *prometheus.CounterVec
	commits        *prometheus.CounterVec
	commitDuration prometheus.Histogram
	rebalances     prometheus.Counter
	inflight       prometheus.Gauge
	oldestInflight prometheus.Gauge
	retryPending   prometheus.Gauge
	lagMessages    *prometheus.GaugeVec
	lagSeconds     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_events_total",
			Help: "Events read, by source topic and result (matched, unmatched, undecodable).",
		}, []string{"topic", "result"}),
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_deliveries_total",
			Help: "Recorded call outcomes by rule, destination host and outcome (delivered, rejected, parked, dead_lettered).",
		}, []string{"rule", "host", "outcome"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_dead_letters_total",
			Help: "Records written to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		missingTags: f.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_missing_tags_total",
			Help: "Snippet tags rendered empty because the event had no value for them, by rule.",
		}, []string{"rule"}),
		commits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "apicall_commits_total",
			Help: "Offset commits by result (ok, error).",
		}, []string{"result"}),
		commitDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "apicall_commit_duration_seconds",
			Help:    "Time an offset commit took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		rebalances: f.NewCounter(prometheus.CounterOpts{
			Name: "apicall_rebalances_total",
			Help: "Consumer group sessions started (each rebalance starts one).",
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "apicall_inflight_events",
			Help: "Events read and not yet done (outcomes not all recorded).",
		}),
		oldestInflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "apicall_oldest_inflight_seconds",
			Help: "Age (by Kafka record time) of the oldest event read by this replica and not yet committable.",
		}),
		retryPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "apicall_retry_pending",
			Help: "Parked calls read from the retry topic and waiting for their next attempt time.",
		}),
		lagMessages: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apicall_consumer_lag_messages",
			Help: "End offset minus the group's committed offset, for every partition of the subscribed topics (the whole group, not only this replica's partitions: aggregate replicas with max, not sum).",
		}, []string{"topic", "partition"}),
		lagSeconds: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apicall_consumer_lag_seconds",
			Help: "Age of the oldest event not yet committed by the group (0 when caught up), for every partition of the subscribed topics (whole group: aggregate with max).",
		}, []string{"topic", "partition"}),
	}
	m.eventsBy = newCounterCache(m.events, func(k [2]string) []string { return k[:] })
	m.deliveriesBy = newCounterCache(m.deliveries, func(k [3]string) []string { return k[:] })
	return m
}

// counterCache hands out the children of a CounterVec from a map keyed by
// their label values. CounterVec.WithLabelValues hashes and validates every
// label value on each call: for the two counters incremented per event and
// per call that was 1.5% of apicall's CPU in the make bench profile. The
// label sets are bounded (topics, rules and their hosts, outcomes), so the
// map is too; the vec is never reset or pruned.
type counterCache[K comparable] struct {
	vec    *prometheus.CounterVec
	labels func(K) []string
	mu     sync.RWMutex
	m      map[K]prometheus.Counter
}

func newCounterCache[K comparable](vec *prometheus.CounterVec, labels func(K) []string) *counterCache[K] {
	return &counterCache[K]{vec: vec, labels: labels, m: make(map[K]prometheus.Counter)}
}

// with returns the counter for the label values k.
func (c *counterCache[K]) with(k K) prometheus.Counter {
	c.mu.RLock()
	ctr, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return ctr
	}
	ctr = c.vec.WithLabelValues(c.labels(k)...)
	c.mu.Lock()
	c.m[k] = ctr
	c.mu.Unlock()
	return ctr
}
