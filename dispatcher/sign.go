package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (https://www.standardwebhooks.com) header names. They
// are lower-case in the spec; http.Header canonicalises them on the wire,
// which receivers must (and do) treat case-insensitively.
const (
	headerWebhookID        = "Webhook-Id"
	headerWebhookTimestamp = "Webhook-Timestamp"
	headerWebhookSignature = "Webhook-Signature"
	secretPrefix           = "whsec_"
)

// Sign returns one Standard Webhooks v1 signature, "v1,<base64>", where
// <base64> is the standard base64 of HMAC-SHA256 over "id.timestamp.body"
// with timestamp in unix seconds.
//
// A secret of the form "whsec_<base64>" is keyed with the decoded bytes, as
// the spec and its libraries do; any other secret (or one whose base64 does
// not decode) is keyed with its raw bytes, so a plain shared password works
// with receivers that use the same bytes.
func Sign(secret string, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, signingKey(secret))
	var num [20]byte
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(num[:0], ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	var sum [sha256.Size]byte
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(sum[:0]))
}

// signingKey turns a configured secret into HMAC key bytes.
func signingKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, secretPrefix); ok {
		if key, err := base64.StdEncoding.DecodeString(rest); err == nil && len(key) > 0 {
			return key
		}
	}
	return []byte(secret)
}

// sign sets the Standard Webhooks headers on h: one space-separated
// signature per secret, so a receiver that knows either the old or the new
// secret accepts the call while secrets rotate. The timestamp is taken per
// attempt so receivers that bound clock skew accept in-process retries.
func sign(h http.Header, secrets []string, id string, ts time.Time, body []byte) {
	var b strings.Builder
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Sign(s, id, ts, body))
	}
	h.Set(headerWebhookID, id)
	h.Set(headerWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(headerWebhookSignature, b.String())
}
