package dispatcher

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGuardCheck(t *testing.T) {
	on := &guard{}
	tests := []struct {
		addr    string
		refused bool
	}{
		{"8.8.8.8", false},
		{"93.184.215.14", false},
		{"2606:4700::1111", false},
		{"127.0.0.1", true},
		{"127.9.9.9", true},
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"169.254.1.1", true},
		{"100.64.0.1", true},
		{"100.100.100.200", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"224.0.0.1", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:8.8.8.8", false},
		{"fc00::1", true},
		{"fd00:ec2::254", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"ff02::1", true},
		{"64:ff9b::a00:1", true},    // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
		{"2002:7f00:1::", true},     // 6to4 of 127.0.0.1
		{"2002:808:808::", false},   // 6to4 of 8.8.8.8
	}
	for _, tt := range tests {
		err := on.check(netip.MustParseAddr(tt.addr))
		if (err != nil) != tt.refused {
			t.Errorf("check(%s) = %v, want refused=%v", tt.addr, err, tt.refused)
		}
		var se *SSRFError
		if err != nil && !errors.As(err, &se) {
			t.Errorf("check(%s) error %T is not *SSRFError", tt.addr, err)
		}
	}

	if err := (&guard{allowAll: true}).check(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("AllowPrivateNetworks still refuses metadata: %v", err)
	}
	some := &guard{allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("169.254.0.0/16")}}
	for addr, refused := range map[string]bool{
		"10.1.2.3":        false,
		"::ffff:10.1.2.3": false,
		"10.2.0.1":        true,
		"127.0.0.1":       true,
		"169.254.10.10":   false,
		"169.254.169.254": true, // a broad range does not open metadata
	} {
		if err := some.check(netip.MustParseAddr(addr)); (err != nil) != refused {
			t.Errorf("AllowCIDRs check(%s) = %v, want refused=%v", addr, err, refused)
		}
	}
	exact := &guard{allow: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}}
	if err := exact.check(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("an exact /32 entry does not open metadata: %v", err)
	}
}

// countingServer counts the requests it receives.
func countingServer(t *testing.T, ip string, h http.HandlerFunc) (url string, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	srv := serveOn(t, ip, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	return srv.URL, hits
}

func TestSSRFGuardRefusesInternalAddresses(t *testing.T) {
	local, hits := countingServer(t, "127.0.0.1", nil)
	d := newTestDispatcher(t, Settings{Timeout: 2 * time.Second}) // guard on: the default
	for _, u := range []string{
		local + "/hook?token=secret",
		"http://localhost" + local[strings.LastIndex(local, ":"):] + "/hook", // a name resolving to loopback
		"http://10.0.0.1:81/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:81/hook",
		"http://[::ffff:127.0.0.1]:81/hook",
	} {
		t.Run(u, func(t *testing.T) {
			res := d.Do(t.Context(), post(u))
			checkResult(t, res, Rejected, ReasonSSRF, 1)
			var se *SSRFError
			if !errors.As(res.Err, &se) {
				t.Fatalf("Err %v does not wrap *SSRFError", res.Err)
			}
			if msg := res.Err.Error(); !strings.Contains(msg, "allow_private_networks") || strings.Contains(msg, "secret") {
				t.Errorf("error message %q: want a hint and no query string", msg)
			}
			if res.Latency > time.Second {
				t.Errorf("refusal took %s; the guard should refuse before connecting", res.Latency)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("loopback server got %d requests through the guard", n)
	}
}

func TestSSRFAllowListAndPrivateNetworks(t *testing.T) {
	u, hits := countingServer(t, "127.0.0.2", nil)
	d := newTestDispatcher(t, Settings{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	checkResult(t, d.Do(t.Context(), post(u)), Delivered, ReasonOK, 1)

	other, otherHits := countingServer(t, "127.0.0.3", nil)
	checkResult(t, d.Do(t.Context(), post(other)), Rejected, ReasonSSRF, 1)

	open := newTestDispatcher(t, Settings{AllowPrivateNetworks: true})
	checkResult(t, open.Do(t.Context(), post(other)), Delivered, ReasonOK, 1)
	if hits.Load() != 1 || otherHits.Load() != 1 {
		t.Errorf("hits = %d, %d; want 1, 1", hits.Load(), otherHits.Load())
	}
}

func TestRedirects(t *testing.T) {
	internal, internalHits := countingServer(t, "127.0.0.1", nil)
	var allowedHits atomic.Int64
	allowed := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowedHits.Add(1)
		switch r.URL.Path {
		case "/to-internal":
			http.Redirect(w, r, internal+"/steal", http.StatusFound)
		case "/to-self":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			w.WriteHeader(http.StatusOK)
		}
	}))
	only2 := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}

	t.Run("off by default", func(t *testing.T) {
		d := newTestDispatcher(t, Settings{AllowCIDRs: only2})
		res := d.Do(t.Context(), post(allowed.URL+"/to-self"))
		checkResult(t, res, Rejected, ReasonRedirect, 1)
		if res.Status != http.StatusTemporaryRedirect {
			t.Errorf("status = %d, want 307", res.Status)
		}
	})
	t.Run("followed and re-checked by the guard", func(t *testing.T) {
		d := newTestDispatcher(t, Settings{AllowCIDRs: only2, MaxRedirects: 1})
		checkResult(t, d.Do(t.Context(), post(allowed.URL+"/to-self")), Delivered, ReasonOK, 1)
		res := d.Do(t.Context(), post(allowed.URL+"/to-internal"))
		checkResult(t, res, Rejected, ReasonSSRF, 1)
		if internalHits.Load() != 0 {
			t.Errorf("redirect reached the internal server %d times", internalHits.Load())
		}
	})
	t.Run("bounded", func(t *testing.T) {
		d := newTestDispatcher(t, Settings{AllowCIDRs: only2, MaxRedirects: 2})
		before := allowedHits.Load()
		res := d.Do(t.Context(), post(allowed.URL+"/loop"))
		checkResult(t, res, Rejected, ReasonRedirect, 1)
		if n := allowedHits.Load() - before; n != 3 {
			t.Errorf("server saw %d requests, want 3 (original + 2 redirects)", n)
		}
	})
}
