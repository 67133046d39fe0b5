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
	var sig [signatureLen]byte
	return string(appendSignature(sig[:0], signingKey(secret), signedPrefix(id, ts.Unix()), body))
}

// signatureLen is the length of one "v1,<base64>" signature (padded base64
// of a SHA-256 sum).
const signatureLen = len("v1,") + (sha256.Size+2)/3*4

// signedPrefix returns "id.timestamp.", the start of the signed content,
// shared by every secret's signature. It has sha256.Size bytes of spare
// capacity, which appendSignature uses for the MAC so that it need not
// allocate one.
func signedPrefix(id string, unix int64) []byte {
	p := make([]byte, 0, len(id)+22+sha256.Size)
	p = append(p, id...)
	p = append(p, '.')
	p = strconv.AppendInt(p, unix, 10)
	return append(p, '.')
}

// appendSignature appends "v1,<base64 HMAC-SHA256(key, prefix+body)>" to
// dst. It overwrites prefix's spare capacity (see signedPrefix).
func appendSignature(dst, key, prefix, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(prefix)
	mac.Write(body)
	sum := mac.Sum(prefix[len(prefix):len(prefix)])
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, sum)
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
//
// id is the webhook-id value, shared read-only with Idempotency-Key. The
// keys are canonical already, so they are assigned, not Set; the timestamp
// and the signatures are cut from one string.
func sign(h http.Header, secrets []string, id []string, ts time.Time, body []byte) {
	unix := ts.Unix()
	prefix := signedPrefix(id[0], unix)
	var b strings.Builder
	b.Grow(20 + len(secrets)*(signatureLen+1))
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], unix, 10))
	n := b.Len()
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		var sig [signatureLen]byte
		b.Write(appendSignature(sig[:0], signingKey(s), prefix, body))
	}
	all := b.String()
	vals := []string{all[:n], all[n:]}
	h[headerWebhookID] = id
	h[headerWebhookTimestamp] = vals[0:1:1]
	h[headerWebhookSignature] = vals[1:2:2]
}
