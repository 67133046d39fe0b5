package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apicall/apicall/consumer"
)

// replayConfig is a config whose kafka.brokers is empty, so replay uses
// kafka.embedded_listen (the embedded broker of a running `apicall run`).
func replayConfig(t *testing.T, broker, receiver string) string {
	t.Helper()
	return writeFile(t, "apicall.yaml", fmt.Sprintf(`kafka:
  embedded_listen: %q
  topics: [user-events]
dispatch:
  allow_private_networks: true
  max_attempts: 1
rules:
  - name: all
    path: 1
    event: "*"
    call:
      url: %s/hooks?id={{ user.id }}
`, broker, receiver))
}

func TestReplayUsageErrors(t *testing.T) {
	cfg := replayConfig(t, "127.0.0.1:1", "http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"--topic", "t", "--from-offset", "0"}, "--config is required"},
		{"no topic", []string{"--config", cfg, "--from-offset", "0"}, "--topic is required"},
		{"both froms", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--from-time", "2026-01-01T00:00:00Z"}, "--from-offset and --from-time: choose one"},
		{"no from", []string{"--config", cfg, "--topic", "t"}, "--from-offset or --from-time is required"},
		{"both tos", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--to-offset", "3", "--to-time", "2026-01-01T00:00:00Z"}, "--to-offset and --to-time: choose one"},
		{"from after to", []string{"--config", cfg, "--topic", "t", "--from-offset", "5", "--to-offset", "4"}, "--from-offset 5 is after --to-offset 4"},
		{"from time after to time", []string{"--config", cfg, "--topic", "t", "--from-time", "2026-01-02T00:00:00Z", "--to-time", "2026-01-01T00:00:00Z"}, "is after --to-time"},
		{"bad time", []string{"--config", cfg, "--topic", "t", "--from-time", "yesterday"}, "want an RFC3339 time"},
		{"negative offset", []string{"--config", cfg, "--topic", "t", "--from-offset", "-1"}, "want an offset"},
		{"bad partition", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--partition", "x"}, `--partition "x"`},
		{"negative rate", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--rate", "-1"}, "--rate -1"},
		{"two re-drives", []string{"--config", cfg, "--dead-letters", "--parked"}, "choose one"},
		{"re-drive with topic", []string{"--config", cfg, "--dead-letters", "--topic", "t"}, "choose one"},
		{"re-drive with range", []string{"--config", cfg, "--dead-letters", "--from-offset", "0"}, "use --since"},
		{"since on a range", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--since", "2026-01-01T00:00:00Z"}, "--since applies to --dead-letters"},
		{"unknown rule", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "--rule", "nope"}, `rule "nope" is not in the config (rules: all)`},
		{"stray argument", []string{"--config", cfg, "--topic", "t", "--from-offset", "0", "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "", append([]string{"replay"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
		})
	}
}

// replayBroker starts an embedded broker with 2 partitions of user-events,
// 10 events each (user ids p*100+i), and a receiver answering status().
func replayBroker(t *testing.T, status func(n int64) int) (cfg string, calls *atomic.Int64) {
	t.Helper()
	b, err := consumer.StartBroker(consumer.BrokerOptions{Listen: "127.0.0.1:0", Partitions: 2, Topics: []string{"user-events", "apicall.outcomes", "apicall.retry", "apicall.dead-letter"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	calls = new(atomic.Int64)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status(calls.Add(1)))
	}))
	t.Cleanup(rc.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range 10 {
			id := int(p)*100 + i
			recs = append(recs, &kgo.Record{Topic: "user-events", Partition: p, Key: []byte(strconv.Itoa(id)),
				Value: fmt.Appendf(nil, `{"event":"Register_newsletter","user":{"id":%d}}`, id)})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return replayConfig(t, b.Addr(), rc.URL), calls
}

func TestReplayCommand(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusOK)
	cfg, calls := replayBroker(t, func(int64) int { return int(status.Load()) })
	base := []string{"replay", "--config", cfg, "--topic", "user-events"}

	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    []string // substrings; a leading "~" makes it a regexp
		stderr    []string
		wantCalls int64
	}{
		{"partition out of range", []string{"--partition", "5", "--from-offset", "0"}, 2, nil, []string{"partition 5 does not exist: user-events has 2 partitions (0-1)"}, 0},
		{"from offset beyond the end", []string{"--partition", "1", "--from-offset", "11"}, 2, nil, []string{"from offset 11 is outside user-events/1: valid from offsets are 0 (log start) to 10 (end)"}, 0},
		{"unknown topic", []string{"--from-offset", "0", "--topic", "nope"}, 2, nil, []string{"topic nope does not exist"}, 0},
		{"to offset beyond the end is clamped", []string{"--partition", "0", "--from-offset", "8", "--to-offset", "99", "--dry-run"}, 0,
			[]string{"user-events/0@8 ", "user-events/0@9 ", "~all +2\n"}, []string{"to offset 99 is beyond the end of user-events/0 (last offset 9); replaying up to 9"}, 0},
		{"from time before the log", []string{"--partition", "1", "--from-time", "2000-01-01T00:00:00Z", "--to-offset", "0", "--dry-run"}, 0,
			[]string{"user-events/1@0 ", "1 of 1 records read (complete)"}, []string{"is before the first retained record of user-events/1; starting from offset 0"}, 0},
		{"delivered", []string{"--partition", "0", "--from-offset", "0", "--to-offset", "4"}, 0,
			[]string{"5 of 5 records read (complete)", "~all +5 +0 +0 +0\n"}, nil, 5},
		{"both partitions to the end", []string{"--from-offset", "7", "--rule", "all"}, 0,
			[]string{"6 of 6 records read", "~all +6 +0 +0 +0\n"}, nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n0 := calls.Load()
			code, out, errOut := runCLI(t, "", append(base, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			check := func(name, got string, wants []string) {
				for _, w := range wants {
					if re, ok := strings.CutPrefix(w, "~"); ok {
						if !regexp.MustCompile(re).MatchString(got) {
							t.Errorf("%s does not match %q:\n%s", name, re, got)
						}
					} else if !strings.Contains(got, w) {
						t.Errorf("%s lacks %q:\n%s", name, w, got)
					}
				}
			}
			check("stdout", out, tc.stdout)
			check("stderr", errOut, tc.stderr)
			if got := calls.Load() - n0; got != tc.wantCalls {
				t.Errorf("%d calls, want %d", got, tc.wantCalls)
			}
		})
	}

	// A receiver that refuses: rejected calls are failed calls, exit 1.
	status.Store(http.StatusBadRequest)
	code, out, errOut := runCLI(t, "", append(base, "--partition", "1", "--from-offset", "0", "--to-offset", "1")...)
	if code != 1 || !regexp.MustCompile(`all +0 +2 +0 +0\n`).MatchString(out) || !strings.Contains(errOut, "2 calls failed") {
		t.Errorf("refused calls: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 1, 2 rejected", code, out, errOut)
	}
}

// TestReplayInterrupted cancels a rate-limited replay: it stops, prints the
// table and where to resume, and exits 130.
func TestReplayInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, _ := replayBroker(t, func(n int64) int {
		if n == 3 {
			cancel()
		}
		return http.StatusOK
	})
	var out, errb syncBuffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, lookupEnv: os.LookupEnv}
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"replay", "--config", cfg, "--topic", "user-events", "--partition", "0", "--from-offset", "0", "--rate", "20"}, env)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("replay did not stop after cancel")
	}
	m := regexp.MustCompile(`user-events/0: next offset (\d+): resume with apicall replay --config \S+ --rate 20 --topic user-events --partition 0 --from-offset (\d+) --to-offset 9`).FindStringSubmatch(out.String())
	if code != exitInterrupted || m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d and a resume line", code, out.String(), errb.String(), exitInterrupted)
	}
}
