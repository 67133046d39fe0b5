package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apicall/apicall/config"
)

// The checker is the oracle of the reliability scenarios (reliability_test.go).
// A scenario tells it which events it produced and which rules each one
// matches; the checker watches, independently of apicall, what the receivers
// saw (by Idempotency-Key), what landed on the outcomes, retry and
// dead-letter topics (read with franz-go), and what the consumer groups
// committed (sampled with kadm while the scenario runs). At the end it proves:
//
//   - at least once: every (event, matched rule) was delivered, rejected or
//     dead-lettered (or is parked on the retry topic, when the scenario
//     allows it), and every undecodable event is on the dead-letter topic;
//   - commit safety: no sampled commit ever passed an event whose outcome was
//     not yet recorded. Each sample reads the committed offsets first and the
//     end offsets of the outcome, retry and dead-letter topics second, so a
//     record that was acknowledged before the commit is below those ends;
//     an event under the commit with no record under the ends was recorded
//     (if at all) after the commit: a violation. The same holds for the retry
//     group: a parked record under its commit must have its next step (parked
//     again, or a final outcome) recorded;
//   - commits never go backwards between samples of one group;
//   - duplicates (a key called again after the receiver accepted it) are
//     counted and attributed: redelivery after a disruption the scenario
//     marked (kill, rebalance, cut, restart), or a retry after the client
//     missed a 2xx (timeout, reset).

// expect is what must become of one produced event.
type expect struct {
	// rules the event matches; each must end delivered, rejected or
	// dead-lettered (or parked, when allowed).
	rules []string
	// deadLetter: the event is undecodable and must be on the dead-letter
	// topic.
	deadLetter bool
	// either: hostile input that may be dead-lettered as an event or
	// decoded and matched by rules; one of the two must hold.
	either bool
}

// sent is one produced event.
type sent struct {
	pos
	key string
	exp expect
}

// pos is a record's position.
type pos struct {
	topic     string
	partition int32
	offset    int64
}

type outRec struct {
	o  OutcomeRecord
	at pos
}

type parkRec struct {
	key     string
	retries int
	at      pos
}

type dlRec struct {
	src        pos
	rule       string
	reason     string
	at         pos
	valueLen   int    // length of the record's value
	valueBytes string // apicall-value-bytes: set when the value was dropped
}

type commitSample struct {
	at    time.Time
	live  map[int32]int64 // source partition -> committed offset of the group
	retry map[int32]int64 // retry-topic partition -> committed offset of <group>.retry
	ends  map[topicPartition]int64
}

type mark struct {
	at   time.Time
	kind string
}

const (
	outTopic   = "apicall.outcomes"
	retryTopic = "apicall.retry"
	dlTopic    = "apicall.dead-letter"
)

type checker struct {
	t     testing.TB
	name  string
	group string
	start time.Time
	// allowParked accepts pairs still parked on the retry topic at the end.
	allowParked bool

	prod *kgo.Client
	cl   *kgo.Client // admin requests
	adm  *kadm.Client

	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	events   []sent
	outcomes map[string][]outRec // by idempotency key
	parks    []parkRec
	dls      []dlRec
	read     map[topicPartition]int64 // next offset the record reader will see
	samples  []commitSample
	marks    []mark
	sinks    []*sink
}

// newChecker starts the record reader and the commit sampler; both stop at
// the end of the test.
func newChecker(t testing.TB, name, addr, group string, opts ...kgo.Opt) *checker {
	t.Helper()
	ck := &checker{
		t: t, name: name, group: group, start: time.Now(),
		outcomes: make(map[string][]outRec),
		read:     make(map[topicPartition]int64),
	}
	ck.prod = kclient(t, addr, append([]kgo.Opt{
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(32 << 20),
		kgo.MaxBufferedRecords(100000),
	}, opts...)...)
	ck.cl = kclient(t, addr, opts...)
	ck.adm = kadm.NewClient(ck.cl)
	reader := kclient(t, addr, append([]kgo.Opt{
		kgo.ConsumeTopics(outTopic, retryTopic, dlTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(32 << 20),
	}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	ck.stop = cancel
	ck.wg.Go(func() { ck.readRecords(ctx, reader) })
	ck.wg.Go(func() { ck.sampleCommits(ctx) })
	t.Cleanup(ck.close)
	return ck
}

func (ck *checker) close() {
	ck.stop()
	ck.wg.Wait()
}

// mark notes a disruption, for attributing duplicates.
func (ck *checker) mark(kind string) {
	ck.mu.Lock()
	ck.marks = append(ck.marks, mark{time.Now(), kind})
	ck.mu.Unlock()
}

// produce publishes records (Partition set by the caller) and notes what
// each must become. It retries while the broker is unreachable.
func (ck *checker) produce(ctx context.Context, recs []*kgo.Record, exps []expect) error {
	exp := make(map[*kgo.Record]expect, len(recs))
	for i, r := range recs {
		exp[r] = exps[i]
	}
	for i := 0; i < len(recs); i += 2000 {
		res := ck.prod.ProduceSync(ctx, recs[i:min(i+2000, len(recs))]...)
		ck.mu.Lock()
		for _, r := range res {
			if r.Err != nil {
				continue // not acknowledged: nothing to expect of it
			}
			rec := r.Record
			ck.events = append(ck.events, sent{
				pos: pos{rec.Topic, rec.Partition, rec.Offset},
				key: string(rec.Key),
				exp: exp[rec],
			})
		}
		ck.mu.Unlock()
		if err := res.FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	return nil
}

// load produces gen's events at about rate per second, spread over the
// partitions, until ctx ends; the returned function waits for it to stop
// and returns how many it produced.
func (ck *checker) load(ctx context.Context, rate int, partitions int32, gen func(i int, p int32) (*kgo.Record, expect)) func() int {
	done := make(chan int, 1) // the count; buffered so the goroutine never blocks
	go func() {
		const tick = 50 * time.Millisecond
		per := max(1, rate*int(tick/time.Millisecond)/1000)
		t := time.NewTicker(tick)
		defer t.Stop()
		n := 0
		for ctx.Err() == nil {
			recs := make([]*kgo.Record, per)
			exps := make([]expect, per)
			for j := range recs {
				recs[j], exps[j] = gen(n+j, int32(n+j)%partitions)
			}
			// A failure here is the scenario's disruption (broker down):
			// the unacknowledged records are not expected of apicall.
			_ = ck.produce(ctx, recs, exps)
			n += per
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
		done <- n
	}()
	return func() int { return <-done }
}

// evict removes every member of the groups, as the broker does once their
// session times out. Scenarios that SIGKILL apicall use it to skip the 10s
// session timeout in short runs.
func (ck *checker) evict(ctx context.Context, groups ...string) error {
	described, err := ck.adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return err
	}
	for _, g := range described {
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group = g.Group
		for _, m := range g.Members {
			lm := kmsg.NewLeaveGroupRequestMember()
			lm.MemberID = m.MemberID
			req.Members = append(req.Members, lm)
		}
		if len(req.Members) == 0 {
			continue
		}
		if _, err := req.RequestWith(ctx, ck.cl); err != nil {
			return fmt.Errorf("leave group %s: %w", g.Group, err)
		}
	}
	return nil
}

// callsBetween counts the calls every sink received in (from, to].
func (ck *checker) callsBetween(from, to time.Time) int {
	n := 0
	for _, s := range ck.sinks {
		for _, c := range s.snapshot() {
			if c.start.After(from) && !c.start.After(to) {
				n++
			}
		}
	}
	return n
}

// calls counts every call the sinks received.
func (ck *checker) calls() int {
	n := 0
	ck.mu.Lock()
	sinks := slices.Clone(ck.sinks)
	ck.mu.Unlock()
	for _, s := range sinks {
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// committedTotal sums the live group's committed offsets (-1 when a
// sample fails).
func (ck *checker) committedTotal() int64 {
	s, err := ck.sample(context.Background())
	if err != nil {
		return -1
	}
	var n int64
	for _, o := range s.live {
		n += o
	}
	return n
}

func (ck *checker) readRecords(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		ck.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			at := pos{r.Topic, r.Partition, r.Offset}
			ck.read[topicPartition{r.Topic, r.Partition}] = r.Offset + 1
			switch r.Topic {
			case outTopic:
				var o OutcomeRecord
				if err := json.Unmarshal(r.Value, &o); err != nil {
					ck.t.Errorf("%s: outcome record %s is not JSON: %v", ck.name, at, err)
					return
				}
				ck.outcomes[o.IdempotencyKey] = append(ck.outcomes[o.IdempotencyKey], outRec{o, at})
			case retryTopic:
				h := recHeaders(r)
				p, _ := strconv.ParseInt(h[hdrSourcePart], 10, 32)
				o, _ := strconv.ParseInt(h[hdrSourceOffset], 10, 64)
				n, _ := strconv.Atoi(h[hdrRetries])
				ck.parks = append(ck.parks, parkRec{
					key:     config.IdempotencyKey(h[hdrSourceTopic], int32(p), o, h[hdrRule]),
					retries: n,
					at:      at,
				})
			case dlTopic:
				h := recHeaders(r)
				p, _ := strconv.ParseInt(h[hdrSourcePart], 10, 32)
				o, _ := strconv.ParseInt(h[hdrSourceOffset], 10, 64)
				ck.dls = append(ck.dls, dlRec{
					src: pos{h[hdrSourceTopic], int32(p), o}, rule: h[hdrRule], reason: h[hdrReason], at: at,
					valueLen: len(r.Value), valueBytes: h[hdrValueBytes],
				})
			}
		})
		ck.mu.Unlock()
	}
}

func recHeaders(r *kgo.Record) map[string]string {
	h := make(map[string]string, len(r.Headers))
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

func (p pos) String() string { return fmt.Sprintf("%s/%d@%d", p.topic, p.partition, p.offset) }

// sampleCommits records the groups' committed offsets, then the end offsets
// of the topics apicall writes, every 50ms until ctx ends. A failed sample
// (broker down) is skipped.
func (ck *checker) sampleCommits(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := ck.sample(ctx)
		if err != nil {
			continue
		}
		ck.mu.Lock()
		ck.samples = append(ck.samples, s)
		ck.mu.Unlock()
	}
}

func (ck *checker) sample(ctx context.Context) (commitSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s := commitSample{live: map[int32]int64{}, retry: map[int32]int64{}, ends: map[topicPartition]int64{}}
	resp := ck.adm.FetchManyOffsets(ctx, ck.group, ck.group+".retry")
	if err := resp.Error(); err != nil {
		return s, err
	}
	for _, g := range resp {
		if g.Err != nil {
			return s, g.Err
		}
		g.Fetched.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil || o.At < 0 {
				return
			}
			switch {
			case g.Group == ck.group && o.Topic == testTopic:
				s.live[o.Partition] = o.At
			case g.Group == ck.group+".retry" && o.Topic == retryTopic:
				s.retry[o.Partition] = o.At
			}
		})
	}
	ends, err := ck.adm.ListEndOffsets(ctx, outTopic, retryTopic, dlTopic)
	if err != nil {
		return s, err
	}
	if ends.Error() != nil {
		return s, ends.Error()
	}
	ends.Each(func(o kadm.ListedOffset) { s.ends[topicPartition{o.Topic, o.Partition}] = o.Offset })
	s.at = time.Now()
	return s, nil
}

// endOffsets returns the end offsets of topics.
func (ck *checker) endOffsets(ctx context.Context, topics ...string) (map[topicPartition]int64, error) {
	ends, err := ck.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	m := map[topicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) { m[topicPartition{o.Topic, o.Partition}] = o.Offset })
	return m, nil
}

// pairState is the best recorded fate of one (event, rule).
type pairState int

const (
	stateNone pairState = iota
	stateParked
	stateDeadLettered
	stateRejected
	stateDelivered
)

// stateOf returns the best recorded fate of a key, under ck.mu.
func (ck *checker) stateOf(key string) pairState {
	st := stateNone
	for _, r := range ck.outcomes[key] {
		s := stateNone
		switch r.o.Outcome {
		case outcomeDelivered:
			s = stateDelivered
		case outcomeRejected:
			s = stateRejected
		case outcomeDeadLettered:
			s = stateDeadLettered
		case outcomeParked:
			s = stateParked
		}
		st = max(st, s)
	}
	return st
}

// summary is what verify found.
type summary struct {
	events, pairs                     int
	delivered, rejected, deadLettered int
	parked, lost                      int
	deadLetteredEvents                int // undecodable events on the dead-letter topic
	duplicates, retries               int
	causes                            map[string]int // repeated calls by cause
	commitSamples                     int
	commitSafetyChecked               int // events checked against the first commit that passed them
}

// pending reports, under ck.mu, how many expected pairs and dead letters
// are not accounted for yet.
func (ck *checker) pending() (n int, first string) {
	dl := make(map[pos]bool, len(ck.dls))
	for _, d := range ck.dls {
		if d.rule == "" {
			dl[d.src] = true
		}
	}
	for _, e := range ck.events {
		if e.exp.deadLetter || e.exp.either {
			if dl[e.pos] {
				continue
			}
			if e.exp.deadLetter {
				n++
				if first == "" {
					first = fmt.Sprintf("event %s (key %q) not dead-lettered", e.pos, e.key)
				}
				continue
			}
		}
		for _, r := range e.exp.rules {
			st := ck.stateOf(config.IdempotencyKey(e.topic, e.partition, e.offset, r))
			if st == stateNone || st == stateParked && !ck.allowParked {
				n++
				if first == "" {
					first = fmt.Sprintf("event %s (key %q) rule %s: no final outcome (state %d)", e.pos, e.key, r, st)
				}
			}
		}
	}
	return n, first
}

// caughtUp reports whether the record reader has read up to ends.
func (ck *checker) caughtUp(ends map[topicPartition]int64) bool {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	for tp, end := range ends {
		if ck.read[tp] < end {
			return false
		}
	}
	return true
}

// settle waits until the group committed every source partition to its
// end, the reader has read every record apicall wrote, and every expected
// pair has its final outcome. The deadline only bounds a hung scenario.
func (ck *checker) settle(d time.Duration) {
	ck.t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, why := ck.settled()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			ck.t.Fatalf("%s: not settled after %v: %s", ck.name, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ck *checker) settled() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srcEnds, err := ck.endOffsets(ctx, testTopic)
	if err != nil {
		return false, err.Error()
	}
	s, err := ck.sample(ctx)
	if err != nil {
		return false, err.Error()
	}
	for tp, end := range srcEnds {
		if s.live[tp.partition] != end {
			return false, fmt.Sprintf("partition %d committed at %d, end %d", tp.partition, s.live[tp.partition], end)
		}
	}
	if !ck.allowParked {
		for tp, end := range s.ends {
			if tp.topic == retryTopic && end > 0 && s.retry[tp.partition] != end {
				return false, fmt.Sprintf("retry partition %d committed at %d, end %d", tp.partition, s.retry[tp.partition], end)
			}
		}
	}
	if !ck.caughtUp(s.ends) {
		return false, "reader behind"
	}
	ck.mu.Lock()
	n, first := ck.pending()
	ck.mu.Unlock()
	if n > 0 {
		return false, fmt.Sprintf("%d pairs without a final outcome, first: %s", n, first)
	}
	return true, ""
}

// verify checks every property and logs the SOAK line. Call it after settle.
func (ck *checker) verify() summary {
	ck.t.Helper()
	ck.close()
	elapsed := time.Since(ck.start)
	ck.mu.Lock()
	defer ck.mu.Unlock()
	t := ck.t
	sum := summary{causes: map[string]int{}, events: len(ck.events), commitSamples: len(ck.samples)}

	// At least once.
	dlEvent := make(map[pos]bool)
	for _, d := range ck.dls {
		if d.rule == "" {
			dlEvent[d.src] = true
		}
	}
	var lost []string
	seen := ck.sinkKeys()
	for _, e := range ck.events {
		if (e.exp.deadLetter || e.exp.either) && dlEvent[e.pos] {
			sum.deadLetteredEvents++
			continue
		}
		if e.exp.deadLetter {
			sum.lost++
			lost = append(lost, fmt.Sprintf("event %s (key %q): not dead-lettered", e.pos, e.key))
			continue
		}
		for _, r := range e.exp.rules {
			sum.pairs++
			key := config.IdempotencyKey(e.topic, e.partition, e.offset, r)
			switch ck.stateOf(key) {
			case stateDelivered:
				sum.delivered++
				if seen[key] == 0 {
					t.Errorf("%s: event %s rule %s: outcome delivered but no receiver answered 2xx for key %s", ck.name, e.pos, r, key)
				}
			case stateRejected:
				sum.rejected++
			case stateDeadLettered:
				sum.deadLettered++
				if !slices.ContainsFunc(ck.dls, func(d dlRec) bool { return d.src == e.pos && d.rule == r }) {
					t.Errorf("%s: event %s rule %s: outcome dead_lettered but no dead-letter record", ck.name, e.pos, r)
				}
			case stateParked:
				sum.parked++
				if !ck.allowParked {
					sum.lost++
					lost = append(lost, fmt.Sprintf("event %s rule %s: still parked", e.pos, r))
				}
			default:
				sum.lost++
				lost = append(lost, fmt.Sprintf("event %s (key %q) rule %s: no outcome", e.pos, e.key, r))
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%s: %d lost; first ones:\n  %s", ck.name, len(lost), strings.Join(lost[:min(10, len(lost))], "\n  "))
	}

	ck.checkCommits(&sum)
	ck.countDuplicates(&sum)
	for _, s := range ck.sinks {
		s.mu.Lock()
		for i, f := range s.failed {
			if i < 10 {
				t.Errorf("%s: receiver %s: %s", ck.name, s.name, f)
			}
		}
		s.mu.Unlock()
	}

	t.Logf("%s: %d events, %d pairs: %d delivered, %d rejected, %d dead-lettered (+%d undecodable events), %d parked, %d lost; %d duplicate calls, %d retries after failures; %d commit samples, %d events checked against the first commit past them",
		ck.name, sum.events, sum.pairs, sum.delivered, sum.rejected, sum.deadLettered, sum.deadLetteredEvents, sum.parked, sum.lost, sum.duplicates, sum.retries, sum.commitSamples, sum.commitSafetyChecked)
	if len(sum.causes) > 0 {
		keys := make([]string, 0, len(sum.causes))
		for k := range sum.causes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "\n  %5d  %s", sum.causes[k], k)
		}
		t.Logf("%s: calls repeated per Idempotency-Key, by cause:%s", ck.name, b.String())
	}
	t.Logf("SOAK| %s | %d | %d | %d | %d | %d | %.1fs", ck.name, sum.events, sum.delivered, sum.duplicates, sum.deadLettered+sum.deadLetteredEvents, sum.lost, elapsed.Seconds())
	return sum
}

// checkCommits proves commit safety and monotonicity from the samples.
func (ck *checker) checkCommits(sum *summary) {
	t := ck.t
	samples := ck.samples
	if len(samples) == 0 {
		t.Errorf("%s: no commit samples", ck.name)
		return
	}
	// Monotonic, per group and partition.
	back := 0
	lastLive, lastRetry := map[int32]int64{}, map[int32]int64{}
	var lastAt time.Time
	for _, s := range samples {
		for p, o := range s.live {
			if prev, ok := lastLive[p]; ok && o < prev {
				back++
				if back <= 5 {
					t.Errorf("%s: group %s partition %d committed offset went back from %d (%s) to %d (%s)", ck.name, ck.group, p, prev, lastAt.Format(time.TimeOnly+".000"), o, s.at.Format(time.TimeOnly+".000"))
				}
			}
			lastLive[p] = o
		}
		for p, o := range s.retry {
			if prev, ok := lastRetry[p]; ok && o < prev {
				back++
				if back <= 5 {
					t.Errorf("%s: group %s.retry partition %d committed offset went back from %d to %d (%s)", ck.name, ck.group, p, prev, o, s.at.Format(time.TimeOnly+".000"))
				}
			}
			lastRetry[p] = o
		}
		lastAt = s.at
	}

	// Records before a sample: offset below that sample's end offsets.
	before := func(at pos, s *commitSample) bool {
		return at.offset < s.ends[topicPartition{at.topic, at.partition}]
	}
	// firstCovering returns the first sample whose commit of partition p
	// (per get) passed offset o, or nil.
	firstCovering := func(o int64, get func(*commitSample) (int64, bool)) *commitSample {
		// Commits only move forward (checked above; a partition is absent
		// until its first commit), so the predicate is monotonic.
		i := sort.Search(len(samples), func(i int) bool {
			c, ok := get(&samples[i])
			return ok && c > o
		})
		if i < len(samples) {
			return &samples[i]
		}
		return nil
	}
	violations := 0
	report := func(format string, args ...any) {
		violations++
		if violations <= 10 {
			t.Errorf(ck.name+": commit safety: "+format, args...)
		}
	}
	for _, e := range ck.events {
		p := e.partition
		s := firstCovering(e.offset, func(s *commitSample) (int64, bool) { c, ok := s.live[p]; return c, ok })
		if s == nil {
			continue
		}
		sum.commitSafetyChecked++
		dl := false
		for _, d := range ck.dls {
			if d.src == e.pos && d.rule == "" && before(d.at, s) {
				dl = true
				break
			}
		}
		if e.exp.deadLetter {
			if !dl {
				report("committed %d on partition %d at %s passed undecodable event %s before its dead letter was recorded", s.live[p], p, s.at.Format(time.TimeOnly+".000"), e.pos)
			}
			continue
		}
		if e.exp.either && dl {
			continue
		}
		for _, r := range e.exp.rules {
			key := config.IdempotencyKey(e.topic, e.partition, e.offset, r)
			ok := false
			for _, o := range ck.outcomes[key] {
				if before(o.at, s) {
					ok = true
					break
				}
			}
			if !ok {
				first := "never"
				if rs := ck.outcomes[key]; len(rs) > 0 {
					first = rs[0].at.String() + " (" + rs[0].o.Outcome + ", written " + rs[0].o.Timestamp + ")"
				}
				report("committed %d on partition %d at %s passed event %s rule %s whose outcome was not recorded; first outcome record: %s",
					s.live[p], p, s.at.Format(time.TimeOnly+".000"), e.pos, r, first)
			}
		}
	}
	// The retry group: a parked record under its commit has its next step
	// recorded (parked again with one more retry, or a final outcome, or
	// dead-lettered as an invalid parked record).
	for _, pk := range ck.parks {
		q := pk.at.partition
		s := firstCovering(pk.at.offset, func(s *commitSample) (int64, bool) { c, ok := s.retry[q]; return c, ok })
		if s == nil {
			continue
		}
		ok := false
		for _, o := range ck.outcomes[pk.key] {
			if o.o.Outcome != outcomeParked && before(o.at, s) {
				ok = true
				break
			}
		}
		for _, n := range ck.parks {
			if ok {
				break
			}
			ok = n.key == pk.key && n.retries > pk.retries && before(n.at, s)
		}
		for _, d := range ck.dls {
			if ok {
				break
			}
			ok = d.reason == "invalid_parked_record" && before(d.at, s)
		}
		if !ok {
			report("retry group committed %d on %s/%d at %s passed parked record %s (retries %d) whose next attempt was not recorded",
				s.retry[q], retryTopic, q, s.at.Format(time.TimeOnly+".000"), pk.at, pk.retries)
		}
	}
	if violations > 10 {
		t.Errorf("%s: %d commit safety violations in all", ck.name, violations)
	}
}

// countDuplicates attributes every repeated call of a key.
func (ck *checker) countDuplicates(sum *summary) {
	byKey := map[string][]sinkCall{}
	sinks := map[string]*sink{}
	for _, s := range ck.sinks {
		sinks[s.name] = s
		s.mu.Lock()
		for _, c := range s.calls {
			byKey[c.key] = append(byKey[c.key], c)
		}
		s.mu.Unlock()
	}
	for _, calls := range byKey {
		slices.SortFunc(calls, func(a, b sinkCall) int { return a.start.Compare(b.start) })
		for i := 1; i < len(calls); i++ {
			prev, cur := calls[i-1], calls[i]
			accepted := prev.status >= 200 && prev.status < 300
			// A disruption shortly before the key's first call, or since,
			// explains a redelivery: the event, or its parked copy, was
			// handled again by whoever took over. Shortly: a member learns
			// of a rebalance at its next heartbeat (3s) and drains within
			// the grace; a cut lasts up to the session timeout (10s).
			m := ck.disruptionBetween(calls[0].start.Add(-15*time.Second), cur.start)
			switch {
			case accepted && m == "" && !prev.gone && sinks[prev.sink].shortTimeout:
				// The 2xx came after the client's deadline (answered in
				// time by the handler, but the request or the response
				// was slow on a loaded machine).
				sum.duplicates++
				sum.causes["duplicate: retried after the client's timeout (the 2xx arrived too late)"]++
			case accepted && (m != "" || !prev.gone && !prev.lossy):
				sum.duplicates++
				if m == "" {
					m = "with no disruption marked"
					ck.t.Errorf("%s: receiver %s: key %s called again at %s after a 2xx at %s (answered %s) with no disruption in between",
						ck.name, cur.sink, cur.key, cur.start.Format(time.TimeOnly+".000"), prev.start.Format(time.TimeOnly+".000"), prev.end.Format(time.TimeOnly+".000"))
				}
				sum.causes["duplicate: redelivered "+m]++
			case accepted && prev.gone:
				sum.duplicates++
				sum.causes["duplicate: retried after the client gave up on a slow 2xx (timeout)"]++
			case accepted && prev.lossy:
				sum.duplicates++
				sum.causes["duplicate: retried after a 2xx the client may not have read (answered before the body was read, then closed)"]++
			case prev.status == 0:
				sum.retries++
				sum.causes["retry: after a connection reset"]++
			default:
				sum.retries++
				sum.causes[fmt.Sprintf("retry: after status %d", prev.status)]++
			}
		}
	}
}

// disruptionBetween names the last disruption marked in [from, to], or "".
func (ck *checker) disruptionBetween(from, to time.Time) string {
	for i := len(ck.marks) - 1; i >= 0; i-- {
		if at := ck.marks[i].at; !at.After(to) && !at.Before(from) {
			return "after " + ck.marks[i].kind
		}
	}
	return ""
}

// sinkKeys counts 2xx answers per key, under ck.mu.
func (ck *checker) sinkKeys() map[string]int {
	m := map[string]int{}
	for _, s := range ck.sinks {
		s.mu.Lock()
		for _, c := range s.calls {
			if c.status >= 200 && c.status < 300 {
				m[c.key]++
			}
		}
		s.mu.Unlock()
	}
	return m
}

// action is how a sink answers one call.
type action struct {
	status     int           // 0 means 200
	delay      time.Duration // before answering
	retryAfter string        // Retry-After header value
	reset      bool          // hijack the connection and reset it without answering
	halfBody   bool          // read half the body, answer 200 and close
}

// sinkCall is one call a sink saw.
type sinkCall struct {
	sink       string
	key, rule  string
	start, end time.Time
	status     int  // status answered; 0 when reset
	gone       bool // the client went away before the answer (timeout)
	lossy      bool // answered before the body was read, then closed
}

// sink is an httptest receiver that records every call by Idempotency-Key
// and answers as act says.
type sink struct {
	*httptest.Server
	name  string
	act   func(n int, r *http.Request) action
	check func(r *http.Request, body []byte) error
	// shortTimeout: the rule calling this sink has a timeout short enough
	// that a prompt 2xx can still reach the client too late.
	shortTimeout bool

	active atomic.Int64 // calls being answered now

	mu     sync.Mutex
	n      int
	calls  []sinkCall
	failed []string // check failures, reported by verify
}

// newSink starts a receiver registered with ck. act nil answers 200.
func (ck *checker) newSink(name string, act func(n int, r *http.Request) action) *sink {
	s := &sink{name: name, act: act}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	ck.t.Cleanup(s.Close)
	ck.mu.Lock()
	ck.sinks = append(ck.sinks, s)
	ck.mu.Unlock()
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	c := sinkCall{sink: s.name, key: r.Header.Get("Idempotency-Key"), rule: strings.TrimPrefix(r.URL.Path, "/r/"), start: time.Now()}
	s.active.Add(1)
	defer s.active.Add(-1)
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	a := action{}
	if s.act != nil {
		a = s.act(n, r)
	}
	if a.status == 0 {
		a.status = http.StatusOK
	}
	defer func() {
		c.end = time.Now()
		s.mu.Lock()
		s.calls = append(s.calls, c)
		s.mu.Unlock()
	}()
	switch {
	case a.reset:
		_, _ = io.Copy(io.Discard, r.Body)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			conn.Close()
		}
		return
	case a.halfBody:
		half := r.ContentLength / 2
		_, _ = io.CopyN(io.Discard, r.Body, half)
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		c.status, c.lossy = http.StatusOK, true
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		_ = bw.Flush()
		conn.Close()
		return
	}
	body, _ := io.ReadAll(r.Body)
	if s.check != nil {
		if err := s.check(r, body); err != nil {
			s.mu.Lock()
			s.failed = append(s.failed, err.Error())
			s.mu.Unlock()
		}
	}
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-r.Context().Done():
			c.status, c.gone = a.status, true
			return
		}
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	c.status = a.status
	w.WriteHeader(a.status)
}

// snapshot returns the sink's calls.
func (s *sink) snapshot() []sinkCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}
