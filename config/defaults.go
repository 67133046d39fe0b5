package config

import (
	"math"
	"strings"
	"time"
)

// Defaults, as documented on each field in config.go and in
// docs/configuration.md. Keep the three in step.
const (
	DefaultEmbeddedListen  = "127.0.0.1:9092"
	DefaultEmbeddedDataDir = ".apicall/kafka"
	DefaultGroup           = "apicall"
	DefaultClientID        = "apicall"
	DefaultMaxMessageBytes = 1 << 20
	DefaultInitialOffset   = "oldest"
	DefaultCommitInterval  = 200 * time.Millisecond
	DefaultFormat          = "auto"
	DefaultAdminListen     = "127.0.0.1:9464"
	DefaultOutcomesTopic   = "apicall.outcomes"
	DefaultRetryTopic      = "apicall.retry"
	DefaultDeadLetterTopic = "apicall.dead-letter"

	DefaultMaxInFlight        = 1024
	DefaultMaxInFlightTotal   = 1024
	DefaultMaxInFlightPerHost = 512
	DefaultHostWait           = time.Second
	DefaultTimeout            = 10 * time.Second
	DefaultMaxAttempts        = 3
	DefaultOrdering           = "none"
	DefaultShutdownGrace      = 30 * time.Second

	DefaultBreakerWindow           = 30 * time.Second
	DefaultBreakerMinRequests      = 20
	DefaultBreakerFailureRatio     = 0.5
	DefaultBreakerOpenTimeout      = 30 * time.Second
	DefaultBreakerHalfOpenRequests = 1

	DefaultRetryMaxAttempts = 6
	DefaultRetryMaxAge      = 24 * time.Hour
	DefaultRetryMaxPending  = 10000

	DefaultMethod = "POST"
)

// DefaultRetrySchedule returns the default delays before each re-attempt
// from the retry topic (a fresh slice: callers may keep it).
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 6 * time.Hour}
}

// applyDefaults replaces zero values with the documented defaults, so code
// holding a *Config from Load never has to know what zero means. It runs
// before validate, which therefore sees final values; negative numbers are
// left alone for validate to report.
func applyDefaults(c *Config) {
	k := &c.Kafka
	setString(&k.EmbeddedListen, DefaultEmbeddedListen)
	setString(&k.EmbeddedDataDir, DefaultEmbeddedDataDir)
	setString(&k.Group, DefaultGroup)
	setString(&k.ClientID, DefaultClientID)
	setString(&k.Format, DefaultFormat)
	k.Format = strings.ToLower(k.Format)
	for i := range k.Topics {
		setString(&k.Topics[i].Format, k.Format)
		k.Topics[i].Format = strings.ToLower(k.Topics[i].Format)
	}
	setInt(&k.MaxMessageBytes, DefaultMaxMessageBytes)
	setString(&k.InitialOffset, DefaultInitialOffset)
	setDuration(&k.CommitInterval, DefaultCommitInterval)
	k.SASL.Mechanism = strings.ToUpper(k.SASL.Mechanism)

	setString(&c.Admin.Listen, DefaultAdminListen)

	setString(&c.Outcomes.Topic, DefaultOutcomesTopic)
	setString(&c.Outcomes.RetryTopic, DefaultRetryTopic)
	setString(&c.Outcomes.DeadLetterTopic, DefaultDeadLetterTopic)

	d := &c.Dispatch
	setInt(&d.MaxInFlight, DefaultMaxInFlight)
	setInt(&d.MaxInFlightTotal, DefaultMaxInFlightTotal)
	setInt(&d.MaxInFlightPerHost, DefaultMaxInFlightPerHost)
	setDuration(&d.HostWait, DefaultHostWait)
	setDuration(&d.Timeout, DefaultTimeout)
	setInt(&d.MaxAttempts, DefaultMaxAttempts)
	setString(&d.Ordering, DefaultOrdering)
	setDuration(&d.ShutdownGrace, DefaultShutdownGrace)
	setDuration(&d.Breaker.Window, DefaultBreakerWindow)
	setInt(&d.Breaker.MinRequests, DefaultBreakerMinRequests)
	if d.Breaker.FailureRatio == 0 {
		d.Breaker.FailureRatio = DefaultBreakerFailureRatio
	}
	setDuration(&d.Breaker.OpenTimeout, DefaultBreakerOpenTimeout)
	setInt(&d.Breaker.HalfOpenRequests, DefaultBreakerHalfOpenRequests)
	for name, h := range d.Hosts {
		if h.Burst == 0 {
			h.Burst = int(math.Max(1, math.Ceil(h.Rate)))
		}
		setInt(&h.MaxInFlight, d.MaxInFlightPerHost)
		d.Hosts[name] = h
	}

	r := &c.Retry
	if len(r.Schedule) == 0 {
		r.Schedule = DefaultRetrySchedule()
	}
	setInt(&r.MaxAttempts, DefaultRetryMaxAttempts)
	setDuration(&r.MaxAge, DefaultRetryMaxAge)
	setInt(&r.MaxPending, DefaultRetryMaxPending)

	for i := range c.Rules {
		call := &c.Rules[i].Call
		setString(&call.Method, DefaultMethod)
		call.Method = strings.ToUpper(call.Method)
		setDuration(&call.Timeout, d.Timeout)
		setInt(&call.MaxAttempts, d.MaxAttempts)
	}
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}
