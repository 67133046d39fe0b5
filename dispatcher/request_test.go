package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestMatchesNewRequest pins the hand-built request to what
// http.NewRequestWithContext builds from the same URL, method and body.
func TestRequestMatchesNewRequest(t *testing.T) {
	d := newTestDispatcher(t, Settings{})
	for name, body := range map[string][]byte{"nil": nil, "empty": {}, "json": []byte(`{"a":1}`)} {
		for _, rawURL := range []string{"https://User:pw@API.example.com:/p%2Fq?x=1#f", "http://[::1]:8080/"} {
			t.Run(name+" "+rawURL, func(t *testing.T) {
				r := post(rawURL)
				r.Body = body
				c, err := d.prepare(r)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.WithValue(t.Context(), struct{}{}, 1)
				got := d.request(ctx, &c, r)
				want, err := http.NewRequestWithContext(ctx, r.Method, rawURL, bytesReaderOrNil(body))
				if err != nil {
					t.Fatal(err)
				}
				if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Proto != want.Proto ||
					got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
					got.ContentLength != want.ContentLength || got.Context() != want.Context() {
					t.Errorf("got %s %s %s %d.%d len %d; want %s %s %s %d.%d len %d", got.Method, got.URL, got.Proto,
						got.ProtoMajor, got.ProtoMinor, got.ContentLength, want.Method, want.URL, want.Proto,
						want.ProtoMajor, want.ProtoMinor, want.ContentLength)
				}
				// Host is left empty; on the wire it is URL.Host, which is
				// what NewRequestWithContext sets Host to.
				if got.Host != "" || got.URL.Host != want.Host {
					t.Errorf("Host %q URL.Host %q; want empty and %q", got.Host, got.URL.Host, want.Host)
				}
				if reflect.TypeOf(got.Body) != reflect.TypeOf(want.Body) || (got.GetBody == nil) != (want.GetBody == nil) {
					t.Fatalf("Body %T GetBody %v; want %T %v", got.Body, got.GetBody != nil, want.Body, want.GetBody != nil)
				}
				if got.Body != nil {
					if b, _ := io.ReadAll(got.Body); string(b) != string(body) {
						t.Errorf("Body = %q, want %q", b, body)
					}
				}
				if got.GetBody != nil {
					for range 2 {
						rc, err := got.GetBody()
						if err != nil {
							t.Fatal(err)
						}
						if b, _ := io.ReadAll(rc); string(b) != string(body) {
							t.Errorf("GetBody = %q, want %q", b, body)
						}
					}
				}
			})
		}
	}
}

func bytesReaderOrNil(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// TestCloseCancelsWaitingCall: a call sleeping in process (Retry-After)
// is ended by Close as one in an HTTP exchange is.
func TestCloseCancelsWaitingCall(t *testing.T) {
	u, hits := sequence(t, "127.0.0.2", 503)
	d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Sleep: sleepCtx})
	req := post(u)
	req.Header.Set("X-Test-Retry-After", "4")
	done := make(chan Result)
	go func() { done <- d.Do(context.Background(), req) }()
	for hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // into the sleep
	start := time.Now()
	d.Close()
	res := <-done
	checkResult(t, res, Retry, ReasonCanceled, 1)
	if !errors.Is(res.Err, ErrCanceled) || time.Since(start) > 2*time.Second {
		t.Errorf("Err %v after %s; want ErrCanceled, promptly", res.Err, time.Since(start))
	}
}

// TestCallerCancelEndsWaits: the caller's ctx ends a call waiting for a
// full host's slot and one sleeping between attempts.
func TestCallerCancelEndsWaits(t *testing.T) {
	t.Run("host slot", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := releaseAtCleanup(t)
		srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			hold(r, release)
		}))
		d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, MaxInFlightPerHost: 1, HostWait: time.Minute})
		go d.Do(t.Context(), post(srv.URL)) // holds the only slot until the test ends
		<-entered
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		res := d.Do(ctx, post(srv.URL))
		checkResult(t, res, Retry, ReasonCanceled, 0)
	})
	t.Run("backoff", func(t *testing.T) {
		var calls atomic.Int64
		srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Retry-After", "4")
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		d := newTestDispatcher(t, Settings{AllowCIDRs: loopback, Sleep: sleepCtx})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		res := d.Do(ctx, post(srv.URL))
		checkResult(t, res, Retry, ReasonCanceled, 1)
		if calls.Load() != 1 {
			t.Errorf("%d calls, want 1", calls.Load())
		}
	})
}

// User info in a rule's URL is sent as basic auth, as http.Client sends it,
// and the request carries our headers whichever path sent it.
func TestUserInfoBecomesBasicAuth(t *testing.T) {
	type seen struct {
		user, pass, key string
		ok              bool
	}
	got := make(chan seen, 2)
	srv := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		got <- seen{u, p, r.Header.Get("Idempotency-Key"), ok}
	}))
	d := newTestDispatcher(t, Settings{AllowPrivateNetworks: true})
	withAuth := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1)
	for _, tc := range []struct {
		url  string
		want seen
	}{
		{withAuth + "/hook", seen{"alice", "s3cret", "0123456789abcdef0123456789abcdef", true}},
		{srv.URL + "/hook", seen{"", "", "0123456789abcdef0123456789abcdef", false}},
	} {
		checkResult(t, d.Do(t.Context(), post(tc.url)), Delivered, ReasonOK, 1)
		if s := <-got; s != tc.want {
			t.Errorf("%s: receiver saw %+v, want %+v", tc.url, s, tc.want)
		}
	}
}
