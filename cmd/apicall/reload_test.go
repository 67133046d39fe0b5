package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunReloadsRules runs `apicall run` in process and changes its config
// while it runs: a valid file with one more rule is picked up on SIGHUP and
// the next events hit the new rule; a broken file is rejected with its
// errors logged and the running rules kept; and a change of the file alone
// (no signal) is picked up by the poll.
func TestRunReloadsRules(t *testing.T) {
	admin, broker := freeAddr(t), freeAddr(t)
	var (
		mu    sync.Mutex
		calls = map[string]bool{} // "rule/id"
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		calls[strings.TrimPrefix(r.URL.Path, "/")+"/"+r.URL.Query().Get("id")] = true
		mu.Unlock()
	}))
	defer recv.Close()
	called := func(rule string, id int) bool {
		mu.Lock()
		defer mu.Unlock()
		return calls[fmt.Sprintf("%s/%d", rule, id)]
	}
	head := fmt.Sprintf(`kafka:
  embedded_listen: %q
  embedded_data_dir: "-"
  topics: [user-events]
  commit_interval: 50ms
admin:
  listen: %q
dispatch:
  allow_private_networks: true
rules:
`, broker, admin)
	rule := func(name string) string {
		return fmt.Sprintf("  - name: %s\n    path: 1\n    event: \"*\"\n    call:\n      url: %s/%s?id={{ user.id }}\n", name, recv.URL, name)
	}
	cfg := writeFile(t, "apicall.yaml", head+rule("r1"))
	rewrite := func(content string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

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
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, errb.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	send := func(id int) {
		t.Helper()
		if code, _, errOut := runCLI(t, fmt.Sprintf(`{"event":"E","user":{"id":%d}}`+"\n", id), "produce", "--brokers", broker, "--topic", "user-events"); code != 0 {
			t.Fatalf("produce: exit %d: %s", code, errOut)
		}
	}
	logged := func(parts ...string) int {
		n := 0
		for _, line := range strings.Split(errb.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				n++
			}
		}
		return n
	}
	hup := func(parts ...string) {
		t.Helper()
		before := logged(parts...)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		wait(strings.Join(parts, " "), func() bool { return logged(parts...) > before })
	}

	send(1)
	wait("r1 called for event 1", func() bool { return called("r1", 1) })

	// A valid config with a second rule, on SIGHUP.
	rewrite(head + rule("r1") + rule("r2"))
	hup(`"msg":"config reloaded"`, `"trigger":"SIGHUP"`, `"rules":2`)
	send(2)
	wait("r1 and r2 called for event 2", func() bool { return called("r1", 2) && called("r2", 2) })

	// A broken config is rejected, with its error, and the rules stay.
	rewrite(head + rule("r1") + rule("r2") + "  - name: r3\n    path: 1\n    event: \"*\"\n    call:\n      url: http://x/{{ user.name\n")
	hup(`"msg":"config reload rejected; keeping the running rules"`, `"trigger":"SIGHUP"`, `apicall.yaml:`)
	send(3)
	wait("r1 and r2 called for event 3", func() bool { return called("r1", 3) && called("r2", 3) })

	// A change of the file alone is picked up by the poll.
	rewrite(head + rule("r1") + rule("r3"))
	wait("a reload on the file change", func() bool {
		return logged(`"msg":"config reloaded"`, `"trigger":"file changed"`, `"rules":2`) > 0
	})
	send(4)
	wait("r1 and r3 called for event 4", func() bool { return called("r1", 4) && called("r3", 4) })
	if called("r2", 4) {
		t.Error("r2 was called for event 4 after the reload removed it")
	}
}
