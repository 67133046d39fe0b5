package consumer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apicall/apicall/config"
)

// childEnv makes the test binary run a consumer instead of the tests, so a
// test can kill a real apicall process with SIGKILL.
const childEnv = "APICALL_TEST_CONSUMER_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, disp, err := buildConsumer(cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer disp.Close()
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild runs a consumer in a child process with the config yaml.
func startChild(t *testing.T, yaml string) *exec.Cmd {
	t.Helper()
	p := filepath.Join(t.TempDir(), "child.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+p)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestKilledConsumerLosesNothing kills the consumer process with SIGKILL
// while calls are in flight, restarts it, and checks every event was called
// at least once, reporting the duplicates the redelivery caused.
func TestKilledConsumerLosesNothing(t *testing.T) {
	const n = 3000
	b := testBroker(t, 3, "")
	// A 5 ms receiver and 4 calls in flight per partition stretch the run
	// over about a second, so the kill lands after commits have happened.
	rc := newReceiver(t, func(int, *http.Request) int { time.Sleep(5 * time.Millisecond); return http.StatusOK })
	yaml := strings.Replace(baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: all
    path: 1
    event: Register_newsletter
    call:
      url: %s/hooks?id={{ user.id }}
`, rc.URL)), "dispatch:\n", "dispatch:\n  max_in_flight: 4\n", 1)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = event(int32(i%3), strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i))
	}
	produce(t, b.Addr(), recs...)

	first := startChild(t, yaml)
	waitFor(t, "half the calls before the kill", 120*time.Second, func() bool { return rc.count() >= n/2 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := rc.count()

	startChild(t, yaml)
	waitFor(t, "every event called", 180*time.Second, func() bool {
		seen := map[string]bool{}
		for _, c := range rc.snapshot() {
			seen[c.URL] = true
		}
		return len(seen) == n
	})
	waitFor(t, "commits at end offsets", 60*time.Second, func() bool {
		c, e := committed(t, b.Addr(), "apicall-test", testTopic)
		for p, end := range e {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	dups := rc.count() - n
	// Duplicates are the calls made after the last commit before the kill:
	// at most the in-flight cap plus one commit interval of calls. Far more
	// would mean commits are not keeping up with recorded outcomes.
	if dups > atKill/2 {
		t.Errorf("%d duplicates after a kill at %d calls: commits lag far behind recorded outcomes", dups, atKill)
	}
	t.Logf("killed after %d calls; after restart all %d events delivered, %d duplicates (redelivered uncommitted work)", atKill, n, dups)
}
