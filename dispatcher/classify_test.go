package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/sony/gobreaker/v2"
)

func TestClassify(t *testing.T) {
	dialRefused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	ssrf := &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &SSRFError{Addr: netip.MustParseAddr("10.0.0.1"), Class: "private"}}}
	tests := []struct {
		name    string
		status  int
		err     error
		outcome Outcome
		reason  string
	}{
		{"200", 200, nil, Delivered, ReasonOK},
		{"201", 201, nil, Delivered, ReasonOK},
		{"204", 204, nil, Delivered, ReasonOK},
		{"299", 299, nil, Delivered, ReasonOK},
		{"301", 301, nil, Rejected, ReasonRedirect},
		{"302", 302, nil, Rejected, ReasonRedirect},
		{"304", 304, nil, Rejected, ReasonRedirect},
		{"400", 400, nil, Rejected, ReasonStatus4xx},
		{"401", 401, nil, Rejected, ReasonStatus4xx},
		{"404", 404, nil, Rejected, ReasonStatus4xx},
		{"408", 408, nil, Retry, ReasonStatus408},
		{"409", 409, nil, Rejected, ReasonStatus4xx},
		{"422", 422, nil, Rejected, ReasonStatus4xx},
		{"429", 429, nil, Retry, ReasonStatus429},
		{"499", 499, nil, Rejected, ReasonStatus4xx},
		{"500", 500, nil, Retry, ReasonStatus5xx},
		{"502", 502, nil, Retry, ReasonStatus5xx},
		{"503", 503, nil, Retry, ReasonStatus5xx},
		{"599", 599, nil, Retry, ReasonStatus5xx},
		{"600", 600, nil, Retry, ReasonStatus5xx},
		{"no status no error", 0, nil, Rejected, ReasonInvalidRequest},
		{"connection refused", 0, dialRefused, Retry, ReasonConnection},
		{"eof", 0, errors.New("EOF"), Retry, ReasonConnection},
		{"deadline", 0, fmt.Errorf("post: %w", context.DeadlineExceeded), Retry, ReasonTimeout},
		{"net timeout", 0, &net.DNSError{IsTimeout: true}, Retry, ReasonTimeout},
		{"context canceled", 0, context.Canceled, Retry, ReasonCanceled},
		{"caller gone wins over deadline", 0, fmt.Errorf("%w: %w", ErrCanceled, context.DeadlineExceeded), Retry, ReasonCanceled},
		{"ssrf through url.Error", 0, ssrf, Rejected, ReasonSSRF},
		{"invalid", 0, fmt.Errorf("x: %w", ErrInvalidRequest), Rejected, ReasonInvalidRequest},
		{"breaker", 0, fmt.Errorf("%w (%w)", ErrBreakerOpen, gobreaker.ErrOpenState), Retry, ReasonBreakerOpen},
		{"saturated", 0, ErrHostSaturated, Retry, ReasonHostSaturated},
		{"rate limited", 0, ErrRateLimited, Retry, ReasonRateLimited},
		{"error wins over status", 200, dialRefused, Retry, ReasonConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcome, reason := Classify(tt.status, tt.err)
			if outcome != tt.outcome || reason != tt.reason {
				t.Errorf("Classify(%d, %v) = %s, %q; want %s, %q", tt.status, tt.err, outcome, reason, tt.outcome, tt.reason)
			}
			if !slices.Contains(reasons[:], reason) {
				t.Errorf("reason %q is not in the bounded label set", reason)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Delivered: "delivered", Rejected: "rejected", Retry: "retry", Outcome(9): "outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

func TestBreakerVerdict(t *testing.T) {
	tests := []struct {
		reason            string
		success, excluded bool
	}{
		{ReasonOK, true, false},
		{ReasonStatus4xx, true, false}, // a healthy host saying no
		{ReasonRedirect, true, false},
		{ReasonStatus408, false, false},
		{ReasonStatus429, false, false},
		{ReasonStatus5xx, false, false},
		{ReasonTimeout, false, false},
		{ReasonConnection, false, false},
		{ReasonCanceled, false, true}, // our shutdown or the caller, not the host
		{ReasonSSRF, false, true},
		{ReasonInvalidRequest, false, true},
		{ReasonHostSaturated, false, true},
		{ReasonRateLimited, false, true},
	}
	for _, tt := range tests {
		s, e := breakerVerdict(tt.reason)
		if s != tt.success || e != tt.excluded {
			t.Errorf("breakerVerdict(%q) = %v, %v; want %v, %v", tt.reason, s, e, tt.success, tt.excluded)
		}
	}
}
