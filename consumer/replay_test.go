package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/apicall/apicall/config"
)

// lockedBuffer is a bytes.Buffer safe for Replay writing while a test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// replay runs Replay wired with the real decoder and dispatcher, the way
// cmd/apicall does.
func replay(ctx context.Context, t testing.TB, cfg *config.Config, ro ReplayOptions) (*ReplayReport, error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, disp, err := buildConsumer(cfg, prometheus.NewRegistry(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer disp.Close()
	return Replay(ctx, Options{Config: cfg, Rules: c.rules, Decoder: c.decoder, Dispatcher: disp, Logger: log}, ro)
}

// ids returns the id query value of each call, sorted, and the
// Idempotency-Key sent for each id.
func ids(calls []call) ([]int, map[int]string) {
	var out []int
	keys := map[int]string{}
	for _, c := range calls {
		u, err := url.Parse(c.URL)
		if err != nil {
			continue
		}
		id, err := strconv.Atoi(u.Query().Get("id"))
		if err != nil {
			continue
		}
		out = append(out, id)
		keys[id] = c.Header.Get("Idempotency-Key")
	}
	slices.Sort(out)
	return out, keys
}

// groupState is everything a replay must leave alone: the groups that
// exist and the committed offsets of apicall's groups.
func groupState(t testing.TB, addr string) string {
	t.Helper()
	adm := kadm.NewClient(kclient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{fmt.Sprintf("groups %v", groups.Sorted())}
	for _, g := range []string{"apicall-test", "apicall-test.retry"} {
		resp, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		resp.Each(func(o kadm.OffsetResponse) {
			lines = append(lines, fmt.Sprintf("%s %s/%d at %d epoch %d meta %q err %v", g, o.Topic, o.Partition, o.At, o.LeaderEpoch, o.Metadata, o.Err))
		})
	}
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

func endOffsets(t testing.TB, addr string, topics ...string) map[string]int64 {
	t.Helper()
	adm := kadm.NewClient(kclient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset })
	return out
}

const idRule = `rules:
  - name: all
    path: 1
    event: Register_newsletter
    call:
      url: %s/hooks?id={{ user.id }}
`

// TestReplayRangeKeepsKeysAndGroup runs the live consumer over two
// partitions, stops it, then replays bounded and open-ended ranges: exactly
// the calls of the range are sent, with the live run's Idempotency-Keys,
// outcomes are recorded as replayed, and the group's state is untouched.
func TestReplayRangeKeepsKeysAndGroup(t *testing.T) {
	b := testBroker(t, 2, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(idRule, rc.URL)))
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, event(0, strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i)))
		recs = append(recs, event(1, strconv.Itoa(100+i), fmt.Sprintf(`{"id":%d}`, 100+i)))
	}
	produce(t, b.Addr(), recs...)
	live := startConsumer(t, cfg, nil)
	waitFor(t, "20 live calls", 60*time.Second, func() bool { return rc.count() == 20 })
	waitFor(t, "commits at end offsets", 30*time.Second, func() bool {
		c, e := committed(t, b.Addr(), "apicall-test", testTopic)
		return len(c) == 2 && c[0] == e[0] && c[1] == e[1]
	})
	live.stop(t)
	_, liveKeys := ids(rc.snapshot())
	before := groupState(t, b.Addr())
	liveOutcomes := len(outcomes(t, b.Addr()))

	// Bounded: partition 0, offsets 3 to 6 inclusive.
	n0 := rc.count()
	rep, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, Partitions: []int32{0}, From: Bound{Offset: 3}, To: &Bound{Offset: 6}})
	if err != nil {
		t.Fatal(err)
	}
	got, keys := ids(rc.snapshot()[n0:])
	if want := []int{3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("bounded replay called ids %v, want %v", got, want)
	}
	for id, k := range keys {
		if k == "" || k != liveKeys[id] {
			t.Errorf("id %d: replay Idempotency-Key %q, live %q: want equal", id, k, liveKeys[id])
		}
	}
	if !rep.Complete || rep.Events != 4 || rep.Total != 4 || len(rep.Rules) != 1 || rep.Rules[0].Delivered != 4 || rep.Failed() != 0 {
		t.Errorf("report %+v: want complete, 4 events, 4 delivered", rep)
	}

	// Open-ended: every partition from offset 8 to its end.
	n0 = rc.count()
	rep, err = replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 8}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = ids(rc.snapshot()[n0:])
	if want := []int{8, 9, 108, 109}; !slices.Equal(got, want) {
		t.Errorf("open-ended replay called ids %v, want %v", got, want)
	}
	if len(rep.Partitions) != 2 || rep.Partitions[1].First != 8 || rep.Partitions[1].Last != 9 || rep.Partitions[1].Next != 10 {
		t.Errorf("positions %+v: want 8..9 done on both partitions", rep.Partitions)
	}

	if after := groupState(t, b.Addr()); after != before {
		t.Errorf("replay changed the groups' state\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Outcome records are keyed by event key, so spread over the topic's
	// partitions: tell live and replayed ones apart by the flag.
	var replayed []string
	for _, o := range outcomes(t, b.Addr()) {
		if !o.Replayed {
			continue
		}
		replayed = append(replayed, fmt.Sprintf("%d@%d", o.SourcePartition, o.SourceOffset))
		if o.Outcome != outcomeDelivered || o.IdempotencyKey != config.IdempotencyKey(testTopic, o.SourcePartition, o.SourceOffset, "all") {
			t.Errorf("replayed outcome %+v: want delivered with the original key", o)
		}
	}
	slices.Sort(replayed)
	if want := []string{"0@3", "0@4", "0@5", "0@6", "0@8", "0@9", "1@8", "1@9"}; !slices.Equal(replayed, want) {
		t.Errorf("replayed outcome records for %v, want %v", replayed, want)
	}
	if n := len(outcomes(t, b.Addr())) - len(replayed); n != liveOutcomes {
		t.Errorf("%d live outcome records after the replays, want %d", n, liveOutcomes)
	}
}

// TestReplayFromTime picks the first offset by record time, and reports a
// time or offset before the log start.
func TestReplayFromTime(t *testing.T) {
	b := testBroker(t, 1, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(idRule, rc.URL)))
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for i := range 10 {
		r := event(0, strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i))
		r.Timestamp = base.Add(time.Duration(i) * time.Minute)
		recs = append(recs, r)
	}
	produce(t, b.Addr(), recs...)

	for _, tc := range []struct {
		name     string
		from, to Bound
		want     []int
	}{
		{"between records", Bound{Time: base.Add(3*time.Minute + 30*time.Second)}, Bound{Time: base.Add(6 * time.Minute)}, []int{4, 5, 6}},
		{"exactly at a record", Bound{Time: base.Add(2 * time.Minute)}, Bound{Offset: 3}, []int{2, 3}},
		{"to time before from offset", Bound{Offset: 6}, Bound{Time: base.Add(5 * time.Minute)}, nil},
		{"after the last record", Bound{Time: base.Add(time.Hour)}, Bound{Offset: 9}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n0 := rc.count()
			to := tc.to
			if _, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: tc.from, To: &to}); err != nil {
				t.Fatal(err)
			}
			if got, _ := ids(rc.snapshot()[n0:]); !slices.Equal(got, tc.want) {
				t.Errorf("called ids %v, want %v", got, tc.want)
			}
		})
	}

	// Delete offsets 0-2: the log starts at 3.
	adm := kadm.NewClient(kclient(t, b.Addr()))
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: testTopic, Partition: 0, At: 3})
	if _, err := adm.DeleteRecords(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	var status lockedBuffer
	n0 := rc.count()
	if _, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Time: base.Add(-time.Hour)}, To: &Bound{Offset: 4}, Status: &status}); err != nil {
		t.Fatal(err)
	}
	if got, _ := ids(rc.snapshot()[n0:]); !slices.Equal(got, []int{3, 4}) {
		t.Errorf("from a time before the log start: called ids %v, want [3 4]", got)
	}
	if !strings.Contains(status.String(), "starting from offset 3") {
		t.Errorf("status %q lacks the note about starting from offset 3", status.String())
	}
	_, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 1}})
	if !errors.Is(err, ErrInvalidReplay) || !strings.Contains(fmt.Sprint(err), "valid from offsets are 3 (log start) to 10 (end)") {
		t.Errorf("from offset before the log start: error %v, want ErrInvalidReplay naming 3 to 10", err)
	}
}

// TestReplayRedrivesDeadLetters dead-letters calls to a failing receiver,
// then re-drives them once it recovers: delivered, recorded as replayed,
// with the original keys; the undecodable dead letter is counted, not sent.
func TestReplayRedrivesDeadLetters(t *testing.T) {
	b := testBroker(t, 1, "")
	var healthy atomic.Bool
	rc := newReceiver(t, func(int, *http.Request) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	cfg := loadConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
  group: apicall-test
  topics: [%s]
  commit_interval: 50ms
admin:
  listen: "-"
dispatch:
  allow_private_networks: true
  shutdown_grace: 5s
  max_attempts: 1
retry:
  schedule: [10ms]
  max_attempts: 1
`+idRule, b.Addr(), testTopic, rc.URL))
	produce(t, b.Addr(),
		event(0, "1", `{"id":1}`),
		event(0, "2", `{"id":2}`),
		&kgo.Record{Topic: testTopic, Partition: 0, Value: []byte("not json")},
		event(0, "3", `{"id":3}`),
	)
	live := startConsumer(t, cfg, nil)
	waitFor(t, "4 dead letters", 60*time.Second, func() bool { return len(readAll(t, b.Addr(), "apicall.dead-letter")) == 4 })
	live.stop(t)
	_, failedKeys := ids(rc.snapshot())
	before := len(outcomes(t, b.Addr()))

	healthy.Store(true)
	n0 := rc.count()
	var out lockedBuffer
	rep, err := replay(context.Background(), t, cfg, ReplayOptions{DeadLetters: true, DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rc.count() != n0 || !strings.Contains(out.String(), "skipped (not_json)") || rep.Rules[0].Calls != 3 {
		t.Errorf("dry re-drive: %d calls sent, listing %q, report %+v: want none sent, 3 listed, not_json skipped", rc.count()-n0, out.String(), rep)
	}

	rep, err = replay(context.Background(), t, cfg, ReplayOptions{DeadLetters: true})
	if err != nil {
		t.Fatal(err)
	}
	got, keys := ids(rc.snapshot()[n0:])
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("re-drive called ids %v, want [1 2 3]", got)
	}
	for id, k := range keys {
		if k != failedKeys[id] {
			t.Errorf("id %d: re-drive key %q, original %q", id, k, failedKeys[id])
		}
	}
	if rep.Skipped["not_json"] != 1 || rep.Rules[0].Delivered != 3 || rep.Failed() != 0 || !rep.Complete {
		t.Errorf("report %+v: want 3 delivered, 1 not_json skipped", rep)
	}
	outs := outcomes(t, b.Addr())[before:]
	if len(outs) != 3 {
		t.Fatalf("%d new outcome records, want 3: %+v", len(outs), outs)
	}
	for _, o := range outs {
		if o.Outcome != outcomeDelivered || !o.Replayed || o.SourceTopic != testTopic || o.Attempts != 3 {
			t.Errorf("re-drive outcome %+v: want delivered, replayed, from %s, attempts 3 (2 live + 1)", o, testTopic)
		}
	}

	// Failing again: a re-driven dead letter starts a new retry life, so
	// it is parked on the retry topic, recorded, and counted as failed.
	healthy.Store(false)
	retryEnd := len(readAll(t, b.Addr(), "apicall.retry"))
	rep, err = replay(context.Background(), t, cfg, ReplayOptions{DeadLetters: true, Rules: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 3 || rep.Rules[0].Parked != 3 {
		t.Errorf("re-drive to a failing receiver: report %+v, want 3 parked (failed)", rep)
	}
	if n := len(readAll(t, b.Addr(), "apicall.retry")) - retryEnd; n != 3 {
		t.Errorf("%d calls parked on the retry topic, want 3", n)
	}
}

// TestReplayDryRunAndFilters: a dry run lists the calls and sends and writes
// nothing; --rule and --host narrow the calls.
func TestReplayDryRunAndFilters(t *testing.T) {
	b := testBroker(t, 1, "")
	ra, rb := newReceiver(t, nil), newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: a
    path: 1
    event: "*"
    call:
      url: %s/a?id={{ user.id }}
  - name: b
    path: 2
    event: "*"
    call:
      url: %s/b?id={{ user.id }}
`, ra.URL, rb.URL)))
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, event(0, strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i)))
	}
	produce(t, b.Addr(), recs...)
	own := []string{"apicall.outcomes", "apicall.retry", "apicall.dead-letter"}
	before := endOffsets(t, b.Addr(), own...)

	var out lockedBuffer
	rep, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 0}, DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if ra.count()+rb.count() != 0 {
		t.Errorf("dry run sent %d calls", ra.count()+rb.count())
	}
	if after := endOffsets(t, b.Addr(), own...); !reflect.DeepEqual(after, before) {
		t.Errorf("dry run wrote records: end offsets %v, before %v", after, before)
	}
	wantLine := fmt.Sprintf(`rule "a": POST %s/a?id=0  Idempotency-Key: %s`, ra.URL, config.IdempotencyKey(testTopic, 0, 0, "a"))
	if !strings.Contains(out.String(), wantLine) || strings.Count(out.String(), "\n") != 15 {
		t.Errorf("dry-run listing lacks %q or is not 5 events x (1 + 2 rules) lines:\n%s", wantLine, out.String())
	}
	if len(rep.Rules) != 2 || rep.Rules[0].Calls != 5 || rep.Rules[1].Calls != 5 || rep.Rules[0].Delivered != 0 {
		t.Errorf("dry-run report %+v: want 5 calls listed per rule, none delivered", rep.Rules)
	}

	if _, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 0}, Rules: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	if ra.count() != 0 || rb.count() != 5 {
		t.Errorf("--rule b: %d calls to a, %d to b; want 0 and 5", ra.count(), rb.count())
	}
	u, _ := url.Parse(ra.URL)
	if _, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 0}, Hosts: []string{u.Host}}); err != nil {
		t.Fatal(err)
	}
	if ra.count() != 5 || rb.count() != 5 {
		t.Errorf("--host %s: %d calls to a, %d to b; want 5 and 5", u.Host, ra.count(), rb.count())
	}
	_, err = replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, Rules: []string{"nope"}})
	if !errors.Is(err, ErrInvalidReplay) || !strings.Contains(err.Error(), "rules: a, b") {
		t.Errorf("unknown rule: error %v, want ErrInvalidReplay listing the rules", err)
	}
}

// TestReplayStopsAndResumes cancels a rate-limited replay midway: it stops,
// reports where to resume, and resuming from there covers the rest.
func TestReplayStopsAndResumes(t *testing.T) {
	const n = 30
	b := testBroker(t, 1, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(idRule, rc.URL)))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, event(0, strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i)))
	}
	produce(t, b.Addr(), recs...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // exits when the count is reached or the test ends
		for rc.count() < 8 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	var status lockedBuffer
	rep, err := replay(ctx, t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 0}, Rate: 20, Status: &status, ProgressEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || len(rep.Partitions) != 1 {
		t.Fatalf("report %+v: want incomplete, one partition", rep)
	}
	next := rep.Partitions[0].Next
	first, _ := ids(rc.snapshot())
	if next < 8 || next >= n || len(first) != int(next) {
		t.Fatalf("stopped at next offset %d after calls %v: want every id below it called once", next, first)
	}
	if !strings.Contains(status.String(), "events/s, ETA") {
		t.Errorf("no progress line in %q", status.String())
	}

	rep, err = replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: next}, To: &Bound{Offset: n - 1}})
	if err != nil || !rep.Complete {
		t.Fatalf("resume: %v, report %+v", err, rep)
	}
	all, _ := ids(rc.snapshot())
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(all, want) {
		t.Errorf("after resuming: ids %v, want each of 0..%d once", all, n-1)
	}
}

func TestReplayOptionsCheck(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		o    ReplayOptions
		want string // "" = valid
	}{
		{"topic range", ReplayOptions{Topic: "t", From: Bound{Offset: 3}, To: &Bound{Offset: 3}}, ""},
		{"no source", ReplayOptions{}, "choose one source"},
		{"two sources", ReplayOptions{Topic: "t", DeadLetters: true}, "choose one source"},
		{"bounds on dead letters", ReplayOptions{DeadLetters: true, From: Bound{Offset: 1}}, "topic range only"},
		{"since on a topic", ReplayOptions{Topic: "t", Since: at}, "since applies"},
		{"from after to", ReplayOptions{Topic: "t", From: Bound{Offset: 5}, To: &Bound{Offset: 4}}, "from offset 5 is after to offset 4"},
		{"from time after to time", ReplayOptions{Topic: "t", From: Bound{Time: at.Add(time.Second)}, To: &Bound{Time: at}}, "is after to time"},
		{"negative offset", ReplayOptions{Topic: "t", From: Bound{Offset: -1}}, "negative"},
		{"negative partition", ReplayOptions{Topic: "t", Partitions: []int32{-1}}, "negative"},
		{"negative rate", ReplayOptions{Parked: true, Rate: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("check: %v, want nil", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidReplay) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("check: %v, want ErrInvalidReplay with %q", err, tc.want)
			}
		})
	}
}

// TestReplayLeavesNoGoroutines runs a replay and a dry run with no other
// client alive and checks every goroutine Replay started has ended.
func TestReplayLeavesNoGoroutines(t *testing.T) {
	b := testBroker(t, 2, "")
	rc := newReceiver(t, nil)
	cfg := loadConfig(t, baseYAML(b.Addr(), fmt.Sprintf(idRule, rc.URL)))
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), event(0, "1", `{"id":1}`), event(1, "2", `{"id":2}`)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	// kfake serves each request of a connection on a new goroutine; only
	// connections Replay left open would make new ones.
	before := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1")}
	for _, dry := range []bool{false, true} {
		if _, err := replay(context.Background(), t, cfg, ReplayOptions{Topic: testTopic, From: Bound{Offset: 0}, DryRun: dry}); err != nil {
			t.Fatal(err)
		}
	}
	if rc.count() != 2 {
		t.Errorf("%d calls, want 2", rc.count())
	}
	// sarama closes broker connections asynchronously, and the receiver's
	// connection goroutines end after the dispatcher closed its side:
	// allow them a moment beyond goleak's own short retries.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := goleak.Find(before...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Replay left goroutines behind: %v", err)
		}
	}
}

// TestReplayParkedNow re-attempts parked calls at once, long before their
// next-attempt time, and leaves the retry group's offsets alone.
func TestReplayParkedNow(t *testing.T) {
	b := testBroker(t, 1, "")
	var healthy atomic.Bool
	rc := newReceiver(t, func(int, *http.Request) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	cfg := loadConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
  group: apicall-test
  topics: [%s]
  commit_interval: 50ms
admin:
  listen: "-"
dispatch:
  allow_private_networks: true
  shutdown_grace: 5s
  max_attempts: 1
retry:
  schedule: [1h]
`+idRule, b.Addr(), testTopic, rc.URL))
	produce(t, b.Addr(), event(0, "1", `{"id":1}`), event(0, "2", `{"id":2}`))
	live := startConsumer(t, cfg, nil)
	waitFor(t, "2 parked calls", 60*time.Second, func() bool { return len(readAll(t, b.Addr(), "apicall.retry")) == 2 })
	live.stop(t)
	before := groupState(t, b.Addr())

	healthy.Store(true)
	n0 := rc.count()
	rep, err := replay(context.Background(), t, cfg, ReplayOptions{Parked: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ids(rc.snapshot()[n0:]); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("parked re-drive called ids %v, want [1 2]", got)
	}
	if rep.Topic != "apicall.retry" || len(rep.Rules) != 1 || rep.Rules[0].Delivered != 2 || !rep.Complete {
		t.Errorf("report %+v: want 2 delivered from apicall.retry", rep)
	}
	if after := groupState(t, b.Addr()); after != before {
		t.Errorf("parked re-drive changed the groups' state\nbefore:\n%s\nafter:\n%s", before, after)
	}
	var delivered int
	for _, o := range outcomes(t, b.Addr()) {
		if o.Replayed && o.Outcome == outcomeDelivered && o.Attempts == 2 {
			delivered++
		}
	}
	if delivered != 2 {
		t.Errorf("%d replayed delivered outcomes after 2 attempts, want 2", delivered)
	}
}
