// Package dispatcher sends rendered API calls over HTTP: one shared client,
// per-host circuit breakers and in-flight caps, retries with backoff, an SSRF
// guard, request signing and outcome classification. It knows nothing of Kafka.
package dispatcher

import (
	"net/http"
	"time"
)

// Request is one API call to make, already rendered from a rule and an event.
type Request struct {
	// Rule is the rule name; used only as a metric label and in errors.
	Rule string
	// Method is the HTTP method (GET, POST, PUT, PATCH, DELETE).
	Method string
	// URL is the final URL, snippet tags already substituted.
	URL string
	// Header holds the headers to send (Content-Type included). The
	// dispatcher adds Idempotency-Key, User-Agent and signing headers.
	Header http.Header
	// Body is the request body; nil sends none (GET).
	Body []byte
	// IdempotencyKey is sent as the Idempotency-Key header and as the
	// Standard Webhooks webhook-id; stable across redeliveries and replays.
	IdempotencyKey string
	// Timeout bounds each attempt; zero means the dispatcher's default.
	Timeout time.Duration
	// SigningSecrets, when non-empty, sign the call (Standard Webhooks).
	SigningSecrets []string
	// MaxAttempts bounds in-process attempts; zero means the default.
	MaxAttempts int
}
