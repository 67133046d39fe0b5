package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The benchmark itself runs with `make bench`; these check its arithmetic,
// parsing and receivers, and stay fast.

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.5, 5}, {0.99, 10}, {0.9, 9}, {0.1, 1}, {0.01, 1}, {1, 10}} {
		if got := percentile(v, tc.q); got != tc.want {
			t.Errorf("percentile(1..10, %v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %d, want 0", got)
	}
}

func TestSentAt(t *testing.T) {
	for _, tc := range []struct {
		query, body string
		want        int64
		ok          bool
	}{
		{"email=a&bench_sent_ns=1700000000123456789", "", 1700000000123456789, true},
		{"", `{"data":{"plan":"pro","sent_at_ns":42}}`, 42, true},
		{"bench_sent_ns=7", `{"sent_at_ns":9}`, 7, true},
		{"email=a", `{"data":{}}`, 0, false},
		{"bench_sent_ns=", "", 0, false},
	} {
		got, ok := sentAt(tc.query, []byte(tc.body))
		if got != tc.want || ok != tc.ok {
			t.Errorf("sentAt(%q, %q) = %d, %v; want %d, %v", tc.query, tc.body, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0")
	got, err := parseStatCPU(stat)
	if err != nil || got != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", got, err)
	}
	status := []byte("Name:\tapicall\nVmPeak:\t  900000 kB\nVmHWM:\t   123456 kB\nVmRSS:\t 100000 kB\n")
	if got := parseStatusKB(status, "VmHWM:"); got != 123456 {
		t.Errorf("VmHWM = %d, want 123456", got)
	}
}

// TestDoneOffsets: the commit point is the highest contiguous delivered
// offset + 1, whatever order deliveries finish in.
func TestDoneOffsets(t *testing.T) {
	d := &doneOffsets{next: 10}
	for o := int64(10); o < 15; o++ {
		d.add(o)
	}
	steps := []struct {
		done int64
		want int64
	}{{11, 10}, {13, 10}, {10, 12}, {12, 14}, {14, 15}}
	for _, s := range steps {
		d.done(s.done)
		if got, _ := d.commitPoint(); got != s.want {
			t.Fatalf("after done(%d): commit point %d, want %d", s.done, got, s.want)
		}
	}
	d.add(20) // a gap after everything is done
	if got, changed := d.commitPoint(); got != 20 || !changed {
		t.Fatalf("after a gap: commit point %d (changed %v), want 20", got, changed)
	}
}

// TestBenchRules: the generated config loads, and the expected calls follow
// the example's rules (newsletter-to-crm on every event, welcome-usa-only
// on one in four) however the calls are spread over hosts.
func TestBenchRules(t *testing.T) {
	example, err := readRules(filepath.Join("..", "..", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, hosts := range [][]string{{"http://127.0.0.1:1"}, {"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}} {
		cfg, err := writeConfig(filepath.Join(t.TempDir(), "apicall.yaml"), "127.0.0.1:9", "-", 0, 0, benchRules(example, hosts))
		if err != nil {
			t.Fatal(err)
		}
		got, err := expectedCalls(cfg, 400)
		if err != nil {
			t.Fatal(err)
		}
		if got != 500 {
			t.Errorf("%d hosts: %d expected calls for 400 events, want 500", len(hosts), got)
		}
	}
}

func TestEventIsJSON(t *testing.T) {
	b := appendEvent(nil, 6, 123)
	var ev struct {
		User struct {
			ID      int    `json:"id"`
			Country string `json:"country"`
		} `json:"user"`
		Data struct {
			SentAt int64 `json:"sent_at_ns"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if ev.User.ID != 7 || ev.Data.SentAt != 123 || len(b) < 900 || len(b) > 1300 {
		t.Errorf("event 6: id %d, sent_at %d, %d bytes; want 7, 123, about 1 KB", ev.User.ID, ev.Data.SentAt, len(b))
	}
}

func TestWithHost(t *testing.T) {
	got := withHost("http://127.0.0.1:8080/hooks/x?email={{ user.email }}", "http://127.0.0.1:5")
	if want := "http://127.0.0.1:5/hooks/x?email={{ user.email }}"; got != want {
		t.Errorf("withHost = %q, want %q", got, want)
	}
}

// TestReceivers checks both receiver kinds over real HTTP: the call is
// answered 200, counted once per Idempotency-Key (the repeat is a
// duplicate), its send time is read, and connections are counted.
func TestReceivers(t *testing.T) {
	for _, kind := range []string{receiverFast, receiverNetHTTP} {
		t.Run(kind, func(t *testing.T) {
			rs, err := startReceivers(2, time.Millisecond, kind)
			if err != nil {
				t.Fatal(err)
			}
			sent := time.Now().UnixNano()
			for _, u := range []string{rs.urls[0], rs.urls[0], rs.urls[1]} {
				req, _ := http.NewRequest(http.MethodPost, u+"/hook?bench_sent_ns="+strconv.FormatInt(sent, 10), strings.NewReader(`{"a":1}`))
				req.Header.Set("Idempotency-Key", "k-"+u)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			http.DefaultClient.CloseIdleConnections()
			if err := rs.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			tl := rs.tally
			if tl.calls.Load() != 3 || tl.distinct.Load() != 2 || tl.dups.Load() != 1 || tl.noSent.Load() != 0 || tl.conns.Load() < 2 {
				t.Errorf("calls %d distinct %d dups %d noSent %d conns %d; want 3 2 1 0 >=2",
					tl.calls.Load(), tl.distinct.Load(), tl.dups.Load(), tl.noSent.Load(), tl.conns.Load())
			}
			if lat := tl.latencies(); len(lat) != 2 || lat[0] <= 0 {
				t.Errorf("latencies %v; want 2 positive", lat)
			}
		})
	}
}

// TestTwentyMsTarget: the 20 ms, 1-partition target is judged on the
// events/s measured, and a miss with one host names the per-host cap's
// bound (512 calls / 20 ms / 1.25 calls per event = 20,480 events/s).
func TestTwentyMsTarget(t *testing.T) {
	run := func(hosts int, eps float64) result {
		return result{System: "apicall", OK: true, Mode: "backlog", LatencyMS: 20, Partitions: 1, Hosts: hosts,
			Events: 200000, ExpectedCalls: 250000, EventsPerSec: eps, PerHostCap: 512}
	}
	for _, c := range []struct {
		name   string
		r      result
		status string
		detail string
	}{
		{"one host, capped", run(1, 18756), "missed", "per-host cap 512 bounds 1 host(s) at 20480 events/s"},
		{"two hosts", run(2, 29243), "met", "29243 events/s with 2 host(s)"},
		{"two hosts, slow", run(2, 24000), "missed", "24000 events/s with 2 host(s)"},
	} {
		got := targets([]result{c.r}, nil)[1]
		if got.Status != c.status || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("%s: %s %q, want %s containing %q", c.name, got.Status, got.Detail, c.status, c.detail)
		}
		if c.r.Hosts == 2 && strings.Contains(got.Detail, "bounds") {
			t.Errorf("%s: a bound above the target named: %q", c.name, got.Detail)
		}
	}
}
