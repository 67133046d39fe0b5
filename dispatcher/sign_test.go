package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// verifyStandardWebhook is written from the Standard Webhooks spec, not from
// Sign: the signed content is "id.timestamp.body", the key is the base64
// after "whsec_" (or the raw secret), and webhook-signature holds
// space-separated "v1,<base64 HMAC-SHA256>" entries, any of which may match.
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) bool {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	key := []byte(secret)
	if b64, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return false
		}
	}
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, id+"."+ts+".")
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// TestSignVector reproduces the published Standard Webhooks test vector, so
// receivers using the reference libraries accept what we send.
func TestSignVector(t *testing.T) {
	got := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestSigningEndToEnd(t *testing.T) {
	const (
		oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		newSecret = "plain text secret"
	)
	var (
		mu      sync.Mutex
		gotHdr  http.Header
		gotBody []byte
	)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotHdr, gotBody = r.Header.Clone(), b
		mu.Unlock()
	}))
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback})

	t.Run("rotation", func(t *testing.T) {
		req := post(srv.URL + "/hook")
		req.SigningSecrets = []string{oldSecret, newSecret}
		res := d.Do(t.Context(), req)
		checkResult(t, res, Delivered, ReasonOK, 1)
		mu.Lock()
		defer mu.Unlock()
		if got := gotHdr.Get("webhook-id"); got != req.IdempotencyKey {
			t.Errorf("webhook-id = %q, want the idempotency key %q", got, req.IdempotencyKey)
		}
		if n := len(strings.Fields(gotHdr.Get("webhook-signature"))); n != 2 {
			t.Errorf("webhook-signature has %d entries, want 2: %q", n, gotHdr.Get("webhook-signature"))
		}
		for _, s := range []string{oldSecret, newSecret} {
			if !verifyStandardWebhook(s, gotHdr, gotBody, time.Now()) {
				t.Errorf("receiver holding %q rejects the call; headers %v", s, gotHdr)
			}
		}
		if verifyStandardWebhook("whsec_"+base64.StdEncoding.EncodeToString([]byte("other")), gotHdr, gotBody, time.Now()) {
			t.Error("a receiver with the wrong secret accepts the call")
		}
		if verifyStandardWebhook(oldSecret, gotHdr, append(gotBody, ' '), time.Now()) {
			t.Error("a tampered body verifies")
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		res := d.Do(t.Context(), post(srv.URL+"/hook"))
		checkResult(t, res, Delivered, ReasonOK, 1)
		mu.Lock()
		defer mu.Unlock()
		if v := gotHdr.Get("webhook-signature"); v != "" {
			t.Errorf("unsigned call carries webhook-signature %q", v)
		}
	})
}
