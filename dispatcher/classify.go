package dispatcher

import (
	"context"
	"errors"
	"strconv"
)

// Outcome is what the caller should do with a call after Do returns.
type Outcome int

const (
	// Delivered: the receiver answered 2xx.
	Delivered Outcome = iota
	// Rejected: permanent failure (4xx other than 408/429, a redirect when
	// redirects are off, an SSRF refusal, an invalid request). Retrying
	// cannot help; the consumer records it and moves on.
	Rejected
	// Retry: transient failure after the in-process budget, or the call was
	// not attempted (breaker open, host saturated, rate limited, canceled).
	// The consumer parks it on the retry topic.
	Retry
)

// String returns the outcome as used in logs and outcome records.
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Rejected:
		return "rejected"
	case Retry:
		return "retry"
	default:
		return "outcome(" + strconv.Itoa(int(o)) + ")"
	}
}

// Reasons are bounded metric label values (apicall_attempts_total{reason})
// and Result.Reason. Keep this list closed: every value Classify returns is
// one of these.
const (
	ReasonOK             = "ok"
	ReasonStatus4xx      = "status_4xx"
	ReasonStatus408      = "status_408"
	ReasonStatus429      = "status_429"
	ReasonStatus5xx      = "status_5xx"
	ReasonTimeout        = "timeout"
	ReasonConnection     = "connection"
	ReasonBreakerOpen    = "breaker_open"
	ReasonHostSaturated  = "host_saturated"
	ReasonRateLimited    = "rate_limited"
	ReasonSSRF           = "ssrf"
	ReasonRedirect       = "redirect"
	ReasonInvalidRequest = "invalid_request"
	ReasonCanceled       = "canceled"
)

// Sentinel errors wrapped into Result.Err so callers can match with
// errors.Is instead of comparing strings. Classify recognises them.
var (
	// ErrBreakerOpen: the host's circuit breaker refused the call.
	ErrBreakerOpen = errors.New("circuit breaker open")
	// ErrHostSaturated: no free slot of the host's in-flight cap within HostWait.
	ErrHostSaturated = errors.New("host saturated")
	// ErrRateLimited: the host's rate limit (or a Retry-After hold) would
	// delay the call longer than HostWait.
	ErrRateLimited = errors.New("host rate limited")
	// ErrInvalidRequest: the request cannot be sent (bad URL, method, ...).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrCanceled: the caller's context ended (or the dispatcher was
	// closed) before the call completed. Says nothing about the host.
	ErrCanceled = errors.New("call canceled")
)

// Classify is the one place that decides what a response or a transport
// error means, in the manner of Alertmanager's Retrier.Check: the outcome
// for the caller and a bounded reason for metrics. Every other decision
// (retry in process, breaker success/failure, park) derives from its answer.
//
// err, when non-nil, wins over status: it is either a transport error (the
// status is then meaningless) or one of this package's refusals.
func Classify(status int, err error) (Outcome, string) {
	if err != nil {
		var ssrf *SSRFError
		switch {
		case errors.As(err, &ssrf):
			return Rejected, ReasonSSRF
		case errors.Is(err, ErrInvalidRequest):
			return Rejected, ReasonInvalidRequest
		case errors.Is(err, ErrBreakerOpen):
			return Retry, ReasonBreakerOpen
		case errors.Is(err, ErrHostSaturated):
			return Retry, ReasonHostSaturated
		case errors.Is(err, ErrRateLimited):
			return Retry, ReasonRateLimited
		case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
			return Retry, ReasonCanceled
		case errors.Is(err, context.DeadlineExceeded):
			return Retry, ReasonTimeout
		}
		// Not net.Error: fasthttp's ErrTimeout has Timeout but not Temporary.
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			return Retry, ReasonTimeout
		}
		return Retry, ReasonConnection
	}
	switch {
	case status >= 200 && status <= 299:
		return Delivered, ReasonOK
	case status >= 300 && status <= 399:
		// Only reached when redirects are off or exhausted: following
		// them is the client's job, and an unfollowed redirect will not
		// fix itself on retry.
		return Rejected, ReasonRedirect
	case status == 408:
		return Retry, ReasonStatus408
	case status == 429:
		return Retry, ReasonStatus429
	case status >= 400 && status <= 499:
		return Rejected, ReasonStatus4xx
	case status < 100:
		// No error and no status: nothing was sent.
		return Rejected, ReasonInvalidRequest
	default:
		// 5xx and anything non-standard (1xx final, >= 600): the server
		// misbehaved; try again later.
		return Retry, ReasonStatus5xx
	}
}

// breakerVerdict says how an attempt with this reason counts for the host's
// circuit breaker. A permanent 4xx or a redirect means the host is healthy
// and answering; refusals made before the network (our own caps, the SSRF
// guard, a bad request) and cancellations by the caller say nothing about
// the host and are excluded.
func breakerVerdict(reason string) (success, excluded bool) {
	switch reason {
	case ReasonOK, ReasonStatus4xx, ReasonRedirect:
		return true, false
	case ReasonStatus408, ReasonStatus429, ReasonStatus5xx, ReasonTimeout, ReasonConnection:
		return false, false
	default: // canceled, ssrf, invalid_request, host_saturated, rate_limited, breaker_open
		return false, true
	}
}

// parksImmediately reports reasons for which another in-process attempt is
// pointless: the host is protected (breaker, cap, rate) or the caller is gone.
func parksImmediately(reason string) bool {
	switch reason {
	case ReasonBreakerOpen, ReasonHostSaturated, ReasonRateLimited, ReasonCanceled:
		return true
	}
	return false
}
