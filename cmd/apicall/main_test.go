package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apicall/apicall/deploy"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCLI runs one command in-process and returns its exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	env := &cliEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, lookupEnv: func(k string) (string, bool) {
		if k == "CRM_TOKEN" {
			return "s3cr3t-token", true
		}
		return "", false
	}}
	code := runWith(context.Background(), args, env)
	return code, out.String(), errb.String()
}

func TestCheckExitCodes(t *testing.T) {
	code, out, _ := runCLI(t, "", "check", "--config", "../../config/example.yaml")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check example.yaml: exit %d, out %q; want 0 and ok", code, out)
	}
	bad := writeFile(t, "bad.yaml", "kafka:\n  nope: 1\nrules:\n  - name: x\n    event: E\n    call:\n      url: http://example.com/\n      extra: '{\"a\": {{ user.name }}}'\n")
	code, _, errOut := runCLI(t, "", "check", "--config", bad)
	if code != 1 {
		t.Errorf("check bad config: exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":2:", "Enter valid JSON"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check bad config: stderr %q lacks %q", errOut, want)
		}
	}
	if code, _, _ := runCLI(t, "", "check"); code != 2 {
		t.Errorf("check without --config: exit %d, want 2", code)
	}
	if code, _, _ := runCLI(t, "", "nosuchcommand"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

func TestRenderSendsNothingAndHidesSecrets(t *testing.T) {
	code, out, errOut := runCLI(t, "", "render", "--config", "../../config/example.yaml", "--event", "../../config/testdata/fixture-event.json")
	if code != 0 {
		t.Fatalf("render: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "POST http://127.0.0.1:8080/hooks/newsletter?email=johndoe%40example.org") {
		t.Errorf("render output lacks the request line:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t-token") {
		t.Errorf("render printed a secret without --show-secrets:\n%s", out)
	}
	_, out, _ = runCLI(t, "", "render", "--config", "../../config/example.yaml", "--event", "../../config/testdata/fixture-event.json", "--show-secrets")
	if !strings.Contains(out, "s3cr3t-token") {
		t.Errorf("render --show-secrets hides the secret:\n%s", out)
	}
}

// TestRunServesMetricsAndHealth runs `apicall run` on the embedded broker
// and checks /healthz, /readyz and that /metrics exposes every metric the
// deploy alerts and dashboard use.
func TestRunServesMetricsAndHealth(t *testing.T) {
	admin, broker := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, "apicall.yaml", fmt.Sprintf(`kafka:
  embedded_listen: %q
  embedded_data_dir: "-"
  topics: [user-events]
admin:
  listen: %q
dispatch:
  allow_private_networks: true
  max_attempts: 1
  breaker: {min_requests: 1, failure_ratio: 0.5}
rules:
  - name: r
    path: 1
    event: "*"
    call:
      url: http://127.0.0.1:1/x?missing={{ user.nope }}
`, broker, admin))
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"run", "--config", cfg}, &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb, lookupEnv: os.LookupEnv})
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("run exited %d:\n%s", code, errb.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("run did not stop after cancel")
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := get("/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	// Publish an event whose call fails (nothing listens on port 1) and has
	// a missing snippet tag, so the labelled series (deliveries, breaker
	// transitions, missing tags) exist.
	code, _, errOut := runCLI(t, `{"event":"E","user":{"id":1}}`+"\n", "produce", "--brokers", broker, "--topic", "user-events")
	if code != 0 {
		t.Fatalf("produce: %d %s", code, errOut)
	}
	names, err := deploy.MetricNames("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	var body string
	waitUntil := time.Now().Add(60 * time.Second)
	for {
		_, body = get("/metrics")
		missing := missingMetrics(body, names)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("metrics used by deploy/ but absent from /metrics: %v", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	promtoolLint(t, body)
}

// promtoolLint runs `promtool check metrics` on a scrape when promtool is
// installed (Debian's prometheus package; .ci/run installs it).
func promtoolLint(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: metrics lint skipped")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func missingMetrics(body string, names []string) []string {
	var missing []string
	for _, n := range names {
		if !strings.Contains(body, "# TYPE "+n+" ") {
			missing = append(missing, n)
		}
	}
	return missing
}

// TestPprofOnlyWhenAsked: the profiler exposes internals, so the admin
// endpoint serves it only with APICALL_PPROF set.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		addr := freeAddr(t)
		srv, err := adminServer(addr, prometheus.NewRegistry(), func() error { return nil }, on, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv(ctx) }()
		resp, err := http.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; resp.StatusCode != want {
			t.Errorf("pprof on=%v: status %d, want %d", on, resp.StatusCode, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
