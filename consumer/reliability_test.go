package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apicall/apicall/schemas"
)

// The reliability scenarios: apicall under kills, group churn, misbehaving
// receivers, a cut network, broker restarts and hostile input, each over real
// TCP against kfake and httptest receivers and judged by the checker
// (checker_test.go). `go test` runs a short version of each; APICALL_SOAK=1
// (make soak) runs the long one. docs/reliability.md has the parameters and
// the measured table.

func soakMode() bool { return os.Getenv("APICALL_SOAK") == "1" }

// pick returns short in the default run and long under APICALL_SOAK=1.
func pick[T any](short, long T) T {
	if soakMode() {
		return long
	}
	return short
}

// relConf is a scenario's config.
type relConf struct {
	brokers  string
	kafka    string // extra lines under kafka:, indented two spaces
	dispatch string // extra lines under dispatch:
	retry    string // lines under retry:; "" means a fast schedule
	grace    string // dispatch.shutdown_grace; "" means 5s
	top      string // extra top-level sections
	rules    string
}

func relYAML(c relConf) string {
	if c.retry == "" {
		c.retry = "  schedule: [200ms, 500ms]\n  max_attempts: 3\n"
	}
	if c.grace == "" {
		c.grace = "5s"
	}
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  group: apicall-test
  topics: [%s]
  commit_interval: 50ms
%sadmin:
  listen: "-"
dispatch:
  allow_private_networks: true
  shutdown_grace: %s
%sretry:
%s%srules:
%s`, c.brokers, testTopic, c.kafka, c.grace, c.dispatch, c.retry, c.top, c.rules)
}

// twoRules: rule a fires for every event, rule b only for
// Register_newsletter (every other event of stdEvent); bExtra adds lines to
// b's call.
func twoRules(a, b *sink, bExtra ...string) string {
	return fmt.Sprintf(`  - name: a
    path: 1
    event: "*"
    call:
      url: %s/r/a?id={{ user.id }}
  - name: b
    path: 2
    event: Register_newsletter
    call:
      url: %s/r/b?id={{ user.id }}
      extra: '{"plan": "{{ data.plan }}"}'
`, a.URL, b.URL) + strings.Join(bExtra, "")
}

// firstFails answers 503 to the first call of one key in ten (a rule with
// max_attempts 1 then parks it) and 200 to everything else.
func firstFails() func(int, *http.Request) action {
	var seen sync.Map
	return func(_ int, r *http.Request) action {
		k := r.Header.Get("Idempotency-Key")
		if _, again := seen.LoadOrStore(k, true); !again && len(k) > 0 && k[0] < '2' {
			return action{status: http.StatusServiceUnavailable}
		}
		return action{}
	}
}

// stdEvent is event i on partition p, matching twoRules.
func stdEvent(i int, p int32) (*kgo.Record, expect) {
	name, rules := "Page_view", []string{"a"}
	if i%2 == 0 {
		name, rules = "Register_newsletter", []string{"a", "b"}
	}
	v := fmt.Sprintf(`{"event":%q,"timestamp":"2021-02-01T07:27:44Z","user":{"id":%d,"name":"user %d"},"data":{"plan":"pro"}}`, name, i, i)
	return &kgo.Record{Topic: testTopic, Partition: p, Key: []byte(strconv.Itoa(i)), Value: []byte(v)}, expect{rules: rules}
}

func delayed(d time.Duration) func(int, *http.Request) action {
	return func(int, *http.Request) action { return action{delay: d} }
}

// waitProgress waits until the live group's commits moved past from.
func waitProgress(t *testing.T, ck *checker, what string, d time.Duration) {
	t.Helper()
	from := ck.committedTotal()
	waitFor(t, what, d, func() bool { return ck.committedTotal() > from })
}

// TestReliabilityKill kills the apicall process (a child running the
// consumer) with SIGKILL at random moments under load, restarts it, and
// repeats: nothing is lost, no commit passes an unrecorded outcome, and the
// duplicates are bounded by what can be uncommitted at a kill: the in-flight
// cap plus the calls of a few commit intervals.
func TestReliabilityKill(t *testing.T) {
	kills := pick(3, 10)
	rate := pick(300, 500)
	const inflightTotal = 24
	b := startRelBroker(t, relBrokerOptions{partitions: 3})
	ck := newChecker(t, "kill", b.Addr(), "apicall-test")
	a := ck.newSink("a", delayed(2*time.Millisecond))
	bs := ck.newSink("b", firstFails()) // parks some calls: the retry group is killed too
	yaml := relYAML(relConf{brokers: b.Addr(), dispatch: fmt.Sprintf("  max_in_flight: 8\n  max_in_flight_total: %d\n", inflightTotal), rules: twoRules(a, bs, "      max_attempts: 1\n")})

	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	loaded := ck.load(ctx, rate, 3, stdEvent)
	var killedAt []time.Time
	for k := 1; k <= kills; k++ {
		child := startChild(t, yaml)
		before := ck.calls()
		waitFor(t, "the restarted child calling", 60*time.Second, func() bool { return ck.calls() >= before+50 })
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait()
		killedAt = append(killedAt, time.Now())
		ck.mark("kill (SIGKILL, restarted)")
		// Short runs evict the dead member at once instead of waiting for
		// its 10s session timeout; soak runs take the real path every
		// other kill.
		if !soakMode() || k%2 == 1 {
			ectx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := ck.evict(ectx, "apicall-test", "apicall-test.retry"); err != nil {
				t.Logf("evict: %v", err)
			}
			cancel()
		}
	}
	startChild(t, yaml)
	time.Sleep(pick(time.Second, 3*time.Second)) // a last stretch under load
	stopLoad()
	produced := loaded()
	ck.settle(120 * time.Second)
	sum := ck.verify()

	// At a kill, the calls that can be repeated are those of events not
	// yet committed: the in-flight ones (cap x 2 rules) and those done in
	// the last commit intervals (50ms each; 250ms allows for the commit's
	// round trip under the race detector).
	bound := 0
	for _, at := range killedAt {
		bound += 2*inflightTotal + ck.callsBetween(at.Add(-250*time.Millisecond), at)
	}
	if sum.duplicates > bound {
		t.Errorf("%d duplicate calls after %d kills; bound (in-flight cap + calls of the last 250ms before each kill) is %d", sum.duplicates, kills, bound)
	}
	t.Logf("kill: %d events produced, %d kills, %d duplicates (bound %d)", produced, kills, sum.duplicates, bound)
}

// TestReliabilityGroupChurn runs members of one group in process, with
// members joining and leaving every second or two under load: nothing is
// lost, a settled view never shows a partition owned by two members, and
// commits never go backwards (the checker).
func TestReliabilityGroupChurn(t *testing.T) {
	dur := pick(8*time.Second, 90*time.Second)
	b := startRelBroker(t, relBrokerOptions{partitions: 6})
	ck := newChecker(t, "group-churn", b.Addr(), "apicall-test")
	a := ck.newSink("a", delayed(time.Millisecond))
	// One call in five takes up to 400ms, longer than the 200ms grace: a
	// revoke cuts them short, and their events must not be committed.
	bs := ck.newSink("b", func(int, *http.Request) action {
		if rand.IntN(5) == 0 {
			return action{delay: time.Duration(rand.IntN(400)) * time.Millisecond}
		}
		return action{}
	})
	yaml := relYAML(relConf{brokers: b.Addr(), grace: "200ms", dispatch: "  max_in_flight: 16\n", rules: twoRules(a, bs, "      max_attempts: 1\n")})

	var (
		mu      sync.Mutex
		members []*running
	)
	join := func() {
		r := startConsumer(t, loadConfig(t, yaml), nil)
		mu.Lock()
		members = append(members, r)
		mu.Unlock()
	}
	for range 3 {
		join()
	}

	// Ownership: two snapshots 50ms apart that agree are a settled view;
	// in it no partition may have two owners.
	var overlaps []string
	watch, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		snap := func() map[topicPartition][]int {
			mu.Lock()
			ms := slices.Clone(members)
			mu.Unlock()
			own := map[topicPartition][]int{}
			for i, m := range ms {
				m.c.partitions.Range(func(k, _ any) bool {
					own[k.(topicPartition)] = append(own[k.(topicPartition)], i)
					return true
				})
			}
			return own
		}
		for watch.Err() == nil {
			s1 := snap()
			time.Sleep(50 * time.Millisecond)
			s2 := snap()
			if !equalOwners(s1, s2) {
				continue
			}
			for tp, o := range s2 {
				if len(o) > 1 {
					overlaps = append(overlaps, fmt.Sprintf("%s/%d owned by members %v at %s", tp.topic, tp.partition, o, time.Now().Format(time.TimeOnly+".000")))
				}
			}
		}
	})

	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	loaded := ck.load(ctx, 300, 6, stdEvent)
	waitFor(t, "first calls", 30*time.Second, func() bool { return ck.calls() > 100 })
	t.Logf("group-churn: first calls after %v", time.Since(ck.start).Round(time.Millisecond))
	// A member leaves the way a pod is stopped: on its own, while the
	// others go on (sarama cannot interrupt a JoinGroup, so a member
	// stopped during a rebalance takes a few seconds to leave).
	var leaving sync.WaitGroup
	stopAsync := func(m *running) {
		leaving.Go(func() {
			t0 := time.Now()
			m.stop(t)
			ck.mark("rebalance (member left)")
			t.Logf("group-churn: member stopped in %v", time.Since(t0).Round(time.Millisecond))
		})
	}
	changes := 0
	for end := time.Now().Add(dur); time.Now().Before(end); {
		time.Sleep(time.Second + time.Duration(rand.IntN(1000))*time.Millisecond)
		mu.Lock()
		n := len(members)
		mu.Unlock()
		if n > 3 || n > 1 && rand.IntN(2) == 0 {
			mu.Lock()
			i := rand.IntN(len(members))
			m := members[i]
			members = slices.Delete(members, i, i+1)
			mu.Unlock()
			ck.mark("rebalance (member left)")
			stopAsync(m)
		} else {
			ck.mark("rebalance (member joined)")
			join()
		}
		changes++
	}
	for {
		mu.Lock()
		n := len(members)
		mu.Unlock()
		if n >= 2 {
			break
		}
		join()
	}
	stopLoad()
	produced := loaded()
	t.Logf("group-churn: load stopped after %v", time.Since(ck.start).Round(time.Millisecond))
	ck.settle(120 * time.Second)
	t.Logf("group-churn: settled after %v", time.Since(ck.start).Round(time.Millisecond))
	stopWatch()
	wg.Wait()
	sum := ck.verify()
	if len(overlaps) > 0 {
		t.Errorf("partitions owned by two members in a settled view (%d times), first: %s", len(overlaps), overlaps[0])
	}
	t.Logf("group-churn: %d events, %d membership changes, %d duplicates", produced, changes, sum.duplicates)
	mu.Lock()
	for _, m := range members {
		stopAsync(m)
	}
	mu.Unlock()
	leaving.Wait()
}

func equalOwners(a, b map[topicPartition][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestReliabilityReceivers points rules at receivers that time out, reset
// connections, answer slowly, answer 500 or 429 with Retry-After, or answer
// 200 after reading half the body, next to a healthy one: every call ends
// delivered or dead-lettered (none lost), the breaker of the resetting host
// opens, Retry-After is honoured, and the healthy host's calls all go
// through at the first attempt.
func TestReliabilityReceivers(t *testing.T) {
	n := pick(600, 4000)
	b := startRelBroker(t, relBrokerOptions{partitions: 3})
	ck := newChecker(t, "receivers", b.Addr(), "apicall-test")
	var start atomic.Int64 // unix nanos of the first call
	sometimes := func(p float64) bool { return rand.Float64() < p }
	healthy := ck.newSink("healthy", nil)
	timeout := ck.newSink("timeout", func(int, *http.Request) action {
		if sometimes(0.3) {
			return action{delay: 2 * time.Second} // the rule's timeout is 100ms
		}
		return action{}
	})
	timeout.shortTimeout = true
	reset := ck.newSink("reset", func(int, *http.Request) action {
		start.CompareAndSwap(0, time.Now().UnixNano())
		// Down for the first 1.5s (the breaker opens), then flaky.
		if time.Since(time.Unix(0, start.Load())) < 1500*time.Millisecond || sometimes(0.2) {
			return action{reset: true}
		}
		return action{}
	})
	slow := ck.newSink("slow", delayed(50*time.Millisecond))
	status := ck.newSink("status", func(n int, _ *http.Request) action {
		switch {
		case n%250 == 100:
			// Rare: a 429 holds the whole host for its Retry-After.
			return action{status: http.StatusTooManyRequests, retryAfter: "1"}
		case sometimes(0.3):
			return action{status: http.StatusInternalServerError}
		}
		return action{}
	})
	half := ck.newSink("half", func(int, *http.Request) action {
		if sometimes(0.5) {
			return action{halfBody: true}
		}
		return action{}
	})
	var rules strings.Builder
	for i, s := range []*sink{healthy, timeout, reset, slow, status, half} {
		fmt.Fprintf(&rules, `  - name: %s
    path: %d
    event: "*"
    call:
      url: %s/r/%s?id={{ user.id }}
      extra: '{"bio": "{{ user.bio }}"}'
      timeout: %s
      max_attempts: 2
`, s.name, i+1, s.URL, s.name, map[bool]string{true: "100ms", false: "2s"}[s == timeout])
	}
	yaml := relYAML(relConf{
		brokers:  b.Addr(),
		dispatch: "  max_in_flight: 64\n  host_wait: 200ms\n  breaker: {window: 2s, min_requests: 10, failure_ratio: 0.6, open_timeout: 500ms}\n",
		retry:    "  schedule: [200ms, 400ms, 800ms]\n  max_attempts: 4\n",
		rules:    rules.String(),
	})
	names := []string{"healthy", "timeout", "reset", "slow", "status", "half"}
	bio := strings.Repeat("a fairly long biography line. ", 40) // a body big enough for half to matter
	gen := func(i int, p int32) (*kgo.Record, expect) {
		v := fmt.Sprintf(`{"event":"E","user":{"id":%d,"bio":%q}}`, i, bio)
		return &kgo.Record{Topic: testTopic, Partition: p, Key: []byte(strconv.Itoa(i)), Value: []byte(v)}, expect{rules: names}
	}
	startConsumer(t, loadConfig(t, yaml), nil)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	loaded := ck.load(ctx, pick(150, 300), 3, gen)
	waitFor(t, "events produced", 120*time.Second, func() bool {
		ck.mu.Lock()
		defer ck.mu.Unlock()
		return len(ck.events) >= n
	})
	stopLoad()
	loaded()
	ck.settle(120 * time.Second)
	ck.verify()

	ck.mu.Lock()
	defer ck.mu.Unlock()
	reasons := map[string]map[string]int{}
	for _, rs := range ck.outcomes {
		for _, r := range rs {
			if reasons[r.o.Rule] == nil {
				reasons[r.o.Rule] = map[string]int{}
			}
			reasons[r.o.Rule][r.o.Outcome+"/"+r.o.Reason]++
		}
	}
	for _, name := range names {
		t.Logf("receivers: %-8s outcomes %v", name, reasons[name])
	}
	// Isolation: the healthy host is never held back by the others.
	for k, c := range reasons["healthy"] {
		if k != "delivered/ok" {
			t.Errorf("healthy host: %d outcomes %s, want only delivered/ok", c, k)
		}
	}
	if reasons["reset"]["parked/breaker_open"] == 0 {
		t.Errorf("reset host: no call parked with the breaker open: %v", reasons["reset"])
	}
	if reasons["timeout"]["parked/timeout"] == 0 {
		t.Errorf("timeout host: no call parked on timeout: %v", reasons["timeout"])
	}
	// Retry-After: after a 429 with Retry-After: 1, the same call does not
	// come back within the second.
	byKey := map[string][]sinkCall{}
	for _, c := range status.snapshot() {
		byKey[c.key] = append(byKey[c.key], c)
	}
	early := 0
	for _, cs := range byKey {
		slices.SortFunc(cs, func(a, b sinkCall) int { return a.start.Compare(b.start) })
		for i := 1; i < len(cs); i++ {
			if cs[i-1].status == http.StatusTooManyRequests && cs[i].start.Sub(cs[i-1].end) < 950*time.Millisecond {
				early++
			}
		}
	}
	if early > 0 {
		t.Errorf("%d calls re-sent less than 1s after a 429 with Retry-After: 1", early)
	}
}

// TestReliabilityNetworkCut cuts the network between apicall and the broker
// (a TCP proxy that kfake advertises as its own address, so no connection
// bypasses it) and restores it: apicall reconnects and resumes, commits
// nothing it did not record, and retries the outcome writes that failed
// during the cut instead of skipping them.
func TestReliabilityNetworkCut(t *testing.T) {
	cuts := pick([]time.Duration{2 * time.Second, 4 * time.Second},
		[]time.Duration{time.Second, 3 * time.Second, 12 * time.Second, 2 * time.Second, 15 * time.Second, 500 * time.Millisecond})
	b := startRelBroker(t, relBrokerOptions{partitions: 3, proxied: true})
	ck := newChecker(t, "network-cut", b.direct, "apicall-test", b.opts...)
	// Slow calls keep events in flight, so outcomes are being written
	// when the network goes.
	a := ck.newSink("a", delayed(200*time.Millisecond))
	bs := ck.newSink("b", nil)
	startConsumer(t, loadConfig(t, relYAML(relConf{brokers: b.Addr(), dispatch: "  max_in_flight: 64\n", rules: twoRules(a, bs)})), nil)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	loaded := ck.load(ctx, 300, 3, stdEvent)
	waitProgress(t, ck, "first commits", 60*time.Second)
	type window struct{ from, to time.Time }
	var cutWindows []window
	// Cut while calls are in flight: their outcomes are written during
	// the cut.
	busy := func() { waitFor(t, "calls in flight", 30*time.Second, func() bool { return a.active.Load() >= 5 }) }
	for _, d := range cuts {
		busy()
		b.proxy.Cut()
		ck.mark("network cut")
		from := time.Now()
		time.Sleep(d)
		b.proxy.Restore()
		ck.mark("network cut (restored)")
		restored := time.Now()
		cutWindows = append(cutWindows, window{from, restored})
		waitProgress(t, ck, fmt.Sprintf("commits after a %v cut", d), 90*time.Second)
		t.Logf("network-cut: %v cut; commits resumed %v after the restore", d, time.Since(restored).Round(10*time.Millisecond))
	}
	// A last cut as the load stops: the last calls finish during it, their
	// outcomes wait for the network, and the group still reaches the end.
	stopLoad()
	loaded()
	b.proxy.Cut()
	ck.mark("network cut")
	time.Sleep(2 * time.Second)
	b.proxy.Restore()
	ck.mark("network cut (restored)")
	ck.settle(60 * time.Second)
	ck.verify()

	// Outcomes whose write began while the network was cut (the record's
	// timestamp is taken before the write): they failed, were retried and
	// landed after the restore instead of being skipped.
	ck.mu.Lock()
	defer ck.mu.Unlock()
	during := 0
	for _, rs := range ck.outcomes {
		for _, r := range rs {
			ts, err := time.Parse(time.RFC3339Nano, r.o.Timestamp)
			if err != nil {
				continue
			}
			for _, w := range cutWindows {
				if !ts.Before(w.from) && ts.Before(w.to) {
					during++
				}
			}
		}
	}
	if during == 0 {
		t.Errorf("no outcome was written during a cut: the scenario did not exercise failing outcome writes")
	}
	t.Logf("network-cut: %d outcome records were first attempted while the network was cut, and landed", during)
}

// TestReliabilityBrokerRestart stops the broker (kfake with a data dir, as
// `apicall broker --data-dir`) under load and starts it again on the same
// port: apicall resumes from the committed offsets and loses nothing.
func TestReliabilityBrokerRestart(t *testing.T) {
	restarts := pick(2, 6)
	down := pick(time.Second, 3*time.Second)
	opts := BrokerOptions{
		Listen:     "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Partitions: 3,
		Topics:     []string{testTopic, outTopic, retryTopic, dlTopic},
	}
	first, err := StartBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[Broker]
	cur.Store(first)
	t.Cleanup(func() { cur.Load().Close() })
	opts.Listen = first.Addr()

	ck := newChecker(t, "broker-restart", first.Addr(), "apicall-test")
	a := ck.newSink("a", delayed(time.Millisecond))
	bs := ck.newSink("b", nil)
	startConsumer(t, loadConfig(t, relYAML(relConf{brokers: first.Addr(), rules: twoRules(a, bs)})), nil)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	loaded := ck.load(ctx, 300, 3, stdEvent)
	waitProgress(t, ck, "first commits", 60*time.Second)
	for range restarts {
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		cur.Load().Close()
		ck.mark("broker restart")
		time.Sleep(down)
		var nb *Broker
		waitFor(t, "the broker restarted on its port", 30*time.Second, func() bool {
			nb, err = StartBroker(opts)
			return err == nil
		})
		cur.Store(nb)
		ck.mark("broker restart (up again)")
		restarted := time.Now()
		waitProgress(t, ck, "commits after the restart", 90*time.Second)
		t.Logf("broker-restart: down %v; commits resumed %v after the restart", down, time.Since(restarted).Round(10*time.Millisecond))
	}
	time.Sleep(time.Second)
	stopLoad()
	loaded()
	ck.settle(120 * time.Second)
	ck.verify()
}

// TestReliabilityHostileInput feeds one partition random bytes, records
// over kafka.max_message_bytes (one of 10 MB, which the broker accepts),
// deeply nested JSON, invalid UTF-8, Avro with an unknown schema id, and
// profile values crafted to inject headers (CR/LF in a header template) or
// JSON (quotes and backslashes inside extra), between valid events: each
// is dead-lettered or rendered safely, apicall does not crash, and the
// partition is committed to its end.
func TestReliabilityHostileInput(t *testing.T) {
	rounds := pick(1, 5)
	schema, err := schemas.UserEventSchema()
	if err != nil {
		t.Fatal(err)
	}
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/schemas/ids/1" {
			http.Error(w, `{"error_code":40403,"message":"Schema not found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"schema": schema.String()})
	}))
	t.Cleanup(registry.Close)

	b := startRelBroker(t, relBrokerOptions{partitions: 1, maxMessageBytes: 32 << 20})
	ck := newChecker(t, "hostile-input", b.Addr(), "apicall-test")
	inject := ck.newSink("inject", nil)
	inject.check = checkInjection
	// park fails every call of the big events, so they are parked: one is
	// over the writer's 8 MiB record limit and cannot be.
	park := ck.newSink("park", func(int, *http.Request) action { return action{status: http.StatusServiceUnavailable} })
	yaml := relYAML(relConf{
		brokers: b.Addr(),
		kafka:   "  max_message_bytes: 12582912\n", // 12 MiB: the 10 MB profile is an event
		top:     fmt.Sprintf("schemas:\n  registry_url: %s\n", registry.URL),
		rules: fmt.Sprintf(`  - name: inject
    path: 1
    event: Register_newsletter
    call:
      url: %s/r/inject/{{ user.name }}?q={{ user.name }}
      headers:
        X-Name: "{{ user.name }}"
      extra: '{"name": "{{ user.name }}", "city": "{{ user.city | default \"none\" }}"}'
  - name: park
    path: 2
    event: Register_newsletter
    when: 'user.name startsWith "big"'
    call:
      url: %s/r/park
      max_attempts: 1
`, inject.URL, park.URL),
	})
	// The dead-letter topic takes records of at most about 1 MiB (the
	// source topic 32 MiB): a dead letter of a big event is refused by the
	// broker, not only by the writer.
	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	limit := "1048588"
	if _, err := ck.adm.AlterTopicConfigs(actx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, dlTopic); err != nil {
		t.Fatal(err)
	}
	cancel()
	startConsumer(t, loadConfig(t, yaml), nil)

	ev := func(user string) []byte {
		return []byte(`{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":` + user + `}`)
	}
	name := func(s string) []byte {
		b, _ := json.Marshal(s)
		return ev(`{"id":1,"name":` + string(b) + `}`)
	}
	avroLine := []byte(`{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":{"id":1,"key":"k","name":"Avro","email":"a@example.org","gender":"unknown","status":"visitor","phone_number":null,"first_seen":"2021-01-07T13:33:24.576109Z","last_seen":"2021-01-07T13:33:24.604490Z","page_views":1,"last_ip":"","timezone":"UTC","city":null,"region":null,"country":"USA","emails_enabled":true,"browser_language":"en","score":0,"browser":"Chrome","os_type":"Mac OS X","resolution":"1440x900","created_at":"2021-01-07T13:33:24.585602Z","updated_at":"2021-01-12T15:08:07.917571Z","attributes":[],"gravatar_url":null,"lists":[],"tags":[],"notifications":true,"facebook_url":null,"linkedin_url":null,"twitter_url":null,"google_url":null,"last_contacted":"2021-01-07T13:33:40.598000Z","user_id":"u"},"data":{}}`)
	unknownID, err := schemas.EncodeConfluent(4242, schema, avroLine)
	if err != nil {
		t.Fatal(err)
	}
	known, err := schemas.EncodeConfluent(1, schema, avroLine)
	if err != nil {
		t.Fatal(err)
	}
	deep := func(depth int) []byte {
		return ev(`{"id":1,"name":"deep","nest":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rand.IntN(256))
		}
		if b[0] == '{' {
			b[0] = 0
		}
		return b
	}
	valid := expect{rules: []string{"inject"}}
	dead := expect{deadLetter: true}
	either := expect{rules: []string{"inject"}, either: true}
	bigExp := expect{rules: []string{"inject", "park"}}
	type input struct {
		what string
		v    []byte
		exp  expect
	}
	var inputs []input
	for range rounds {
		inputs = append(inputs,
			input{"valid", name("Plain Name"), valid},
			input{"random bytes", random(1 + rand.IntN(200)), dead},
			input{"confluent magic + random", append([]byte{0, 0, 0, 0, 7}, random(50)...), dead},
			input{"single-object magic + random", append([]byte{0xC3, 0x01}, random(50)...), dead},
			input{"empty value", nil, dead},
			input{"over max_message_bytes (13 MB)", ev(`{"id":1,"name":"` + strings.Repeat("x", 13<<20) + `"}`), dead},
			input{"10 MB profile", ev(`{"id":1,"name":"big","bio":"` + strings.Repeat("y", 10<<20) + `"}`), bigExp},
			input{"2 MB profile", ev(`{"id":1,"name":"big too","bio":"` + strings.Repeat("z", 2<<20) + `"}`), bigExp},
			input{"valid", name("After Big"), valid},
			input{"nested 100000 deep", deep(100000), either},
			input{"nested 5000 deep", deep(5000), either},
			input{"invalid UTF-8", ev(`{"id":1,"name":"bad ` + "\xff\xfe\xc3\x28" + `"}`), either},
			input{"avro, unknown schema id", unknownID, dead},
			input{"avro, known schema", known, valid},
			input{"header injection", name("x\r\nX-Injected: yes\r\n\r\nbody"), valid},
			input{"header injection, bare LF and NUL", name("y\nX-Injected: 1\x00z"), valid},
			input{"JSON injection", name(`a","admin":true,"z":"\`), valid},
			input{"JSON injection, backslashes", name(`\\\"}, {"admin": true}\u0000`), valid},
			input{"query and path injection", name(`../../admin?x=1&admin=true#frag`), valid},
			input{"not an object", []byte(`["Register_newsletter"]`), dead},
			input{"wrong field types", []byte(`{"event":12,"user":"nope"}`), either},
			input{"valid", name("Last"), valid},
		)
	}
	recs := make([]*kgo.Record, len(inputs))
	exps := make([]expect, len(inputs))
	for i, in := range inputs {
		recs[i] = &kgo.Record{Topic: testTopic, Partition: 0, Key: []byte(in.what), Value: in.v}
		exps[i] = in.exp
	}
	if err := ck.produce(context.Background(), recs, exps); err != nil {
		t.Fatal(err)
	}
	ck.settle(120 * time.Second)
	sum := ck.verify()
	if want := 9 * rounds; sum.delivered < want {
		t.Errorf("%d delivered, want at least %d (every valid and injection event)", sum.delivered, want)
	}
	ck.mu.Lock()
	defer ck.mu.Unlock()
	reasons := map[string]int{}
	keyOf := map[pos]string{}
	for _, e := range ck.events {
		keyOf[e.pos] = e.key
	}
	// The big ones are dead-lettered without their value (too large to
	// write whole) but with their position, rule and reason.
	want := map[string]string{
		"over max_message_bytes (13 MB)/": "too_large", // over the writer's 8 MiB: refused before sending
		"10 MB profile/park":              "too_large", // too large to park: dead-lettered at once
		"2 MB profile/park":               "max_attempts",
	}
	for _, d := range ck.dls {
		reasons[d.reason]++
		w, ok := want[keyOf[d.src]+"/"+d.rule]
		if !ok {
			continue
		}
		if d.reason != w || d.valueLen != 0 || d.valueBytes == "" {
			t.Errorf("dead letter of %q rule %q: reason %q, value %d bytes, %s %q; want reason %s, no value, %s set",
				keyOf[d.src], d.rule, d.reason, d.valueLen, hdrValueBytes, d.valueBytes, w, hdrValueBytes)
		}
	}
	t.Logf("hostile-input: dead-letter reasons %v", reasons)
}

// checkInjection is the injection receiver's check: the header value has no
// line break and no header was injected; the query has one parameter; the
// path has its three segments; the body is valid JSON whose extra holds
// exactly name and city, name equal to the profile's name.
func checkInjection(r *http.Request, body []byte) error {
	var errs []error
	if v := r.Header.Get("X-Injected"); v != "" {
		errs = append(errs, fmt.Errorf("header injected: X-Injected: %q", v))
	}
	if v := r.Header.Get("X-Name"); strings.ContainsAny(v, "\r\n\x00") {
		errs = append(errs, fmt.Errorf("X-Name carries a control character: %q", v))
	}
	if q := r.URL.Query(); len(q) != 1 || len(q["q"]) != 1 {
		errs = append(errs, fmt.Errorf("query %q: want the one parameter q", r.URL.RawQuery))
	}
	if segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/"); len(segs) != 3 {
		errs = append(errs, fmt.Errorf("path %q: want /r/inject/NAME", r.URL.EscapedPath()))
	}
	var b struct {
		Extra map[string]any `json:"extra"`
		User  struct {
			Name string `json:"name"`
		} `json:"user"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		errs = append(errs, fmt.Errorf("body is not JSON: %v: %.200q", err, body))
	} else {
		if len(b.Extra) != 2 || b.Extra["name"] != b.User.Name {
			errs = append(errs, fmt.Errorf("extra %v: want exactly name (= %q) and city", b.Extra, b.User.Name))
		}
		if q := r.URL.Query().Get("q"); q != b.User.Name {
			errs = append(errs, fmt.Errorf("query q %q, want the profile's name %q", q, b.User.Name))
		}
	}
	return errors.Join(errs...)
}

// TestReliabilityCommitRetriedWhenIdle makes the coordinator refuse the
// group's commits (COORDINATOR_NOT_AVAILABLE) while the last events are
// handled, then accept them again: the group's offsets must still reach
// the end, although no event moves the commit point any more.
func TestReliabilityCommitRetriedWhenIdle(t *testing.T) {
	b := startRelBroker(t, relBrokerOptions{partitions: 3})
	var refuse atomic.Bool
	b.cluster.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.cluster.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		if !refuse.Load() || r.Group != "apicall-test" {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.CoordinatorNotAvailable.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	ck := newChecker(t, "commit-refused", b.Addr(), "apicall-test")
	a := ck.newSink("a", nil)
	bs := ck.newSink("b", nil)
	startConsumer(t, loadConfig(t, relYAML(relConf{brokers: b.Addr(), rules: twoRules(a, bs)})), nil)
	batch := func(from, n int) {
		recs := make([]*kgo.Record, n)
		exps := make([]expect, n)
		for i := range recs {
			recs[i], exps[i] = stdEvent(from+i, int32(i%3))
		}
		if err := ck.produce(context.Background(), recs, exps); err != nil {
			t.Fatal(err)
		}
	}
	batch(0, 300)
	ck.settle(60 * time.Second)
	refuse.Store(true)
	ck.mark("commits refused")
	batch(300, 300)
	waitFor(t, "every outcome recorded", 60*time.Second, func() bool {
		ck.mu.Lock()
		defer ck.mu.Unlock()
		n, _ := ck.pending()
		return n == 0
	})
	time.Sleep(300 * time.Millisecond) // a few refused commits
	refuse.Store(false)
	ck.settle(30 * time.Second)
	ck.verify()
}
