package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/schemas"
)

// ErrInvalidReplay marks a replay request that cannot be served as asked: an
// unknown rule, topic or partition, or a range outside the log. Nothing has
// been sent when Replay returns it.
var ErrInvalidReplay = errors.New("invalid replay")

// ReplayOptions choose what Replay reads and which calls it re-runs. The
// source is a range of Topic, or (DeadLetters) the dead-letter topic, or
// (Parked) the retry topic; exactly one.
type ReplayOptions struct {
	// Topic whose range is replayed; "" with DeadLetters or Parked.
	Topic string
	// Partitions of Topic to read; empty means all.
	Partitions []int32
	// From is the first record of the range, inclusive.
	From Bound
	// To is the last record of the range, inclusive; nil means the last
	// record present when the replay starts. An offset beyond it is
	// clamped to it, with a note.
	To *Bound

	// DeadLetters re-drives the calls in outcomes.dead_letter_topic, every
	// partition up to its end when the replay starts; dead letters of
	// undecodable events are counted, not re-sent.
	DeadLetters bool
	// Parked re-attempts now the calls waiting in outcomes.retry_topic:
	// from the retry group's committed offset (earlier records were
	// re-attempted already) to the end when the replay starts.
	Parked bool
	// Since, with DeadLetters or Parked, skips records written before it;
	// zero means no such limit.
	Since time.Time

	// Rules keeps only calls of these rules; empty means every rule.
	Rules []string
	// Hosts keeps only calls whose rendered URL goes to one of these
	// hosts (host or host:port); empty means every host.
	Hosts []string
	// Rate caps events per second across all partitions; 0 means no cap.
	Rate float64

	// DryRun lists on Out what would be sent and sends and writes nothing.
	DryRun bool
	// ShowSecrets prints ${ENV} values in the dry-run listing instead of ****.
	ShowSecrets bool
	// Out receives the dry-run listing; nil discards it.
	Out io.Writer
	// Status receives notes and a progress line every ProgressEvery (for
	// stderr); nil discards them.
	Status io.Writer
	// ProgressEvery is the interval of progress lines; 0 means 1s.
	ProgressEvery time.Duration
}

// Bound is one end of a replay range: Offset, or when Time is set the record
// time. As From, a time picks the first record stamped at or after it; as To,
// the last record before the first one stamped after it.
type Bound struct {
	Offset int64
	Time   time.Time
}

// ReplayReport is what a replay did.
type ReplayReport struct {
	// Topic that was read (the source topic, or the dead-letter or retry topic).
	Topic string
	// DryRun: Calls count the calls that would have been made.
	DryRun bool
	// Total is the number of offsets in the range when the replay started;
	// Events the records read and finished.
	Total, Events int64
	// Rules are the calls per rule, by name.
	Rules []RuleTally
	// Skipped counts records not re-run, by reason: decode reasons of
	// undecodable events, and for re-drives the dead-letter reason of an
	// undecodable event or invalid_parked_record.
	Skipped map[string]int64
	// SkipExample is one record per Skipped reason, with the detail.
	SkipExample map[string]string
	// Partitions say where each partition stands, for resuming.
	Partitions []ReplayPosition
	// Complete is false when the replay stopped before the end of its range.
	Complete bool
}

// RuleTally counts one rule's calls in a replay.
type RuleTally struct {
	Rule                                      string
	Calls                                     int64
	Delivered, Rejected, Parked, DeadLettered int64
}

// Failed is the calls that did not end delivered: rejected (the receiver
// refused it), parked (it failed again and waits on the retry topic) or
// dead-lettered.
func (t RuleTally) Failed() int64 { return t.Rejected + t.Parked + t.DeadLettered }

// Failed sums Failed over the rules.
func (r *ReplayReport) Failed() int64 {
	var n int64
	for _, t := range r.Rules {
		n += t.Failed()
	}
	return n
}

// ReplayPosition is one partition's range and progress.
type ReplayPosition struct {
	Topic     string
	Partition int32
	// First and Last bound the range, inclusive; Last < First when empty.
	First, Last int64
	// Next is the first offset not done: resume from it. Last+1 when the
	// partition is done.
	Next int64
	// NextTime is the record time of the first record not done, when it
	// was read (re-drives resume with --since).
	NextTime time.Time
}

// Done reports whether every record of the partition's range was handled.
func (p ReplayPosition) Done() bool { return p.Next > p.Last }

// Replay re-runs rules over a range of a source topic, or re-drives dead
// letters or parked calls, through the same decode, match, render and
// dispatch path as Run, and records each outcome marked replayed. It reads
// partitions directly (kafka-go readers on fixed partitions): it never joins
// a consumer group and never commits an offset, so the live group is left
// exactly as it was. Calls keep their Idempotency-Key, which derives from the
// source position and rule.
//
// Undecodable events are counted, not dead-lettered again. When ctx ends,
// Replay stops reading, lets in-flight calls finish for up to
// dispatch.shutdown_grace, and returns a report whose Partitions say where to
// resume. Options is as for New (Replayed is forced on); the report is
// returned with any error once reading started.
func Replay(ctx context.Context, o Options, ro ReplayOptions) (*ReplayReport, error) {
	if err := ro.check(); err != nil {
		return nil, err
	}
	o.Replayed = true
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	rp := &replayer{
		c:       c,
		o:       ro,
		tallies: map[string]*RuleTally{},
		skipped: map[string]int64{},
		example: map[string]string{},
		out:     ro.Out,
		status:  ro.Status,
	}
	if rp.out == nil {
		rp.out = io.Discard
	}
	if rp.status == nil {
		rp.status = io.Discard
	}
	rules := c.rules()
	for _, name := range ro.Rules {
		if rules.Rule(name) == nil {
			names := make([]string, 0, len(rules.All()))
			for _, r := range rules.All() {
				names = append(names, r.Name())
			}
			return nil, fmt.Errorf("%w: rule %q is not in the config (rules: %s)", ErrInvalidReplay, name, strings.Join(names, ", "))
		}
	}
	if len(ro.Rules) > 0 || len(ro.Hosts) > 0 {
		c.filter = rp.keep
	}
	c.recorded = rp.count

	k := c.cfg.Kafka
	clientID := k.ClientID + "-replay"
	sc, err := saramaConfig(k, clientID)
	if err != nil {
		return nil, err
	}
	// A replay reads what exists: asking for a missing topic must not
	// create it (the embedded broker and many clusters auto-create).
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Metadata.Retry.Max = 1
	tr, err := kafkaTransport(k, clientID)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(k.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", k.Brokers, err)
	}
	defer client.Close()
	dialer := &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, TLS: tr.TLS, SASLMechanism: tr.SASL}

	parts, err := rp.plan(ctx, client, dialer)
	defer func() {
		for _, p := range parts {
			p.reader.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	if !ro.DryRun {
		if err := ensureTopics(ctx, client, c.cfg, c.log); err != nil {
			return nil, err
		}
		c.writer = newWriter(k.Brokers, tr, c.log)
		// The writer closes only a transport it made itself.
		defer tr.CloseIdleConnections()
		defer c.writer.Close()
	}
	return rp.run(ctx, parts)
}

// check rejects option combinations that need no broker to be found wrong.
func (ro *ReplayOptions) check() error {
	sources := 0
	for _, on := range []bool{ro.Topic != "", ro.DeadLetters, ro.Parked} {
		if on {
			sources++
		}
	}
	switch {
	case sources != 1:
		return fmt.Errorf("%w: choose one source: a topic range, the dead letters or the parked calls", ErrInvalidReplay)
	case ro.Topic == "" && (len(ro.Partitions) > 0 || ro.To != nil || ro.From != Bound{}):
		return fmt.Errorf("%w: partitions and from/to bounds apply to a topic range only", ErrInvalidReplay)
	case ro.Topic != "" && !ro.Since.IsZero():
		return fmt.Errorf("%w: since applies to dead letters and parked calls only", ErrInvalidReplay)
	case ro.Rate < 0:
		return fmt.Errorf("%w: rate %v is negative", ErrInvalidReplay, ro.Rate)
	case ro.From.Time.IsZero() && ro.From.Offset < 0:
		return fmt.Errorf("%w: from offset %d is negative", ErrInvalidReplay, ro.From.Offset)
	}
	for _, p := range ro.Partitions {
		if p < 0 {
			return fmt.Errorf("%w: partition %d is negative", ErrInvalidReplay, p)
		}
	}
	if to := ro.To; to != nil {
		switch {
		case to.Time.IsZero() && to.Offset < 0:
			return fmt.Errorf("%w: to offset %d is negative", ErrInvalidReplay, to.Offset)
		case to.Time.IsZero() && ro.From.Time.IsZero() && ro.From.Offset > to.Offset:
			return fmt.Errorf("%w: from offset %d is after to offset %d", ErrInvalidReplay, ro.From.Offset, to.Offset)
		case !to.Time.IsZero() && !ro.From.Time.IsZero() && ro.From.Time.After(to.Time):
			return fmt.Errorf("%w: from time %s is after to time %s", ErrInvalidReplay, ro.From.Time.Format(time.RFC3339Nano), to.Time.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// replayer runs one Replay.
type replayer struct {
	c      *Consumer
	o      ReplayOptions
	out    io.Writer
	status io.Writer

	done atomic.Int64 // records read and finished, for progress

	mu      sync.Mutex // guards the tallies and the writers
	tallies map[string]*RuleTally
	skipped map[string]int64
	example map[string]string
}

// replayPart is one partition to read.
type replayPart struct {
	topic       string
	partition   int32
	first, last int64 // inclusive; last < first: nothing to read
	reader      *kafka.Reader
	// fromTime is set when first came from a time, to note a time before
	// the first retained record.
	fromTime time.Time
	start    int64 // log start offset
	tr       *tracker
	lastTime time.Time // time of the last record read
	// readThrough: every record up to last was read (offsets may have
	// gaps, after compaction or transaction markers).
	readThrough bool
}

func (rp *replayer) notef(format string, args ...any) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	fmt.Fprintf(rp.status, "note: "+format+"\n", args...)
}

// plan resolves the partitions and offsets to read and opens a reader per
// partition positioned at its first offset. The readers it returns are the
// caller's to close, also with an error.
func (rp *replayer) plan(ctx context.Context, client sarama.Client, dialer *kafka.Dialer) ([]*replayPart, error) {
	cfg := rp.c.cfg
	topic := rp.o.Topic
	switch {
	case rp.o.DeadLetters:
		topic = cfg.Outcomes.DeadLetterTopic
	case rp.o.Parked:
		topic = cfg.Outcomes.RetryTopic
	}
	if topic == "" {
		return nil, fmt.Errorf("%w: the config names no topic for this (outcomes.dead_letter_topic / outcomes.retry_topic)", ErrInvalidReplay)
	}
	all, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil, fmt.Errorf("%w: topic %s does not exist", ErrInvalidReplay, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	if rp.o.Topic != "" && !slices.ContainsFunc(cfg.Kafka.Topics, func(t config.Topic) bool { return t.Name == topic }) {
		rp.notef("topic %s is not in kafka.topics; its records are decoded with format auto", topic)
	}
	n := int32(len(all))
	var want []int32
	for _, p := range rp.o.Partitions {
		if p >= n {
			return nil, fmt.Errorf("%w: partition %d does not exist: %s has %d partitions (0-%d)", ErrInvalidReplay, p, topic, n, n-1)
		}
		if !slices.Contains(want, p) {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		want = slices.Clone(all)
	}
	slices.Sort(want)

	var committed map[int32]int64
	if rp.o.Parked {
		if committed, err = groupOffsets(client, cfg.Kafka.Group+".retry", topic, want); err != nil {
			return nil, err
		}
	}
	var parts []*replayPart
	for _, p := range want {
		part, err := rp.planPartition(ctx, client, dialer, topic, p, committed)
		if part != nil {
			parts = append(parts, part)
		}
		if err != nil {
			return parts, err
		}
	}
	return parts, nil
}

func (rp *replayer) planPartition(ctx context.Context, client sarama.Client, dialer *kafka.Dialer, topic string, p int32, committed map[int32]int64) (*replayPart, error) {
	start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("start offset of %s/%d: %w", topic, p, err)
	}
	end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("end offset of %s/%d: %w", topic, p, err)
	}
	part := &replayPart{topic: topic, partition: p, first: start, last: end - 1, start: start}
	part.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:   rp.c.cfg.Kafka.Brokers,
		Topic:     topic,
		Partition: int(p),
		Dialer:    dialer,
		MinBytes:  1,
		// Like the live consumer's fetch size; a larger record still
		// comes back whole (the broker returns at least one batch).
		MaxBytes: 4 << 20,
		MaxWait:  500 * time.Millisecond,
		// No lag polling; an offset out of range is an error, not a
		// silent retry loop.
		ReadLagInterval:       -1,
		OffsetOutOfRangeError: true,
	})
	switch from := rp.o.From; {
	case rp.o.DeadLetters || rp.o.Parked:
		if c, ok := committed[p]; ok && c > part.first {
			part.first = c
		}
		if !rp.o.Since.IsZero() {
			o, err := rp.offsetAt(ctx, part, rp.o.Since, end)
			if err != nil {
				return part, err
			}
			part.first = max(part.first, o)
		}
	case !from.Time.IsZero():
		o, err := rp.offsetAt(ctx, part, from.Time, end)
		if err != nil {
			return part, err
		}
		part.first, part.fromTime = o, from.Time
		if o == end {
			rp.notef("%s/%d has no record at or after %s; nothing to replay there", topic, p, from.Time.Format(time.RFC3339Nano))
		}
	default:
		if from.Offset < start || from.Offset > end {
			return part, fmt.Errorf("%w: from offset %d is outside %s/%d: valid from offsets are %d (log start) to %d (end)", ErrInvalidReplay, from.Offset, topic, p, start, end)
		}
		part.first = from.Offset
	}
	if to := rp.o.To; to != nil {
		switch {
		case !to.Time.IsZero():
			// The last record of the range is the one before the first
			// record stamped after To (Kafka times are milliseconds).
			o, err := client.GetOffset(topic, p, to.Time.UnixMilli()+1)
			if err != nil {
				return part, fmt.Errorf("offset of %s/%d at %s: %w", topic, p, to.Time.Format(time.RFC3339Nano), err)
			}
			if o >= 0 && o < end {
				part.last = o - 1
			}
		case to.Offset > end-1:
			rp.notef("to offset %d is beyond the end of %s/%d (last offset %d); replaying up to %d", to.Offset, topic, p, end-1, end-1)
		default:
			part.last = to.Offset
		}
	}
	if part.first > part.last {
		return part, nil
	}
	if err := part.reader.SetOffset(part.first); err != nil {
		return part, fmt.Errorf("position reader on %s/%d: %w", topic, p, err)
	}
	return part, nil
}

// offsetAt resolves the first offset of part stamped at or after t with the
// reader's SetOffsetAt; end when there is none.
func (rp *replayer) offsetAt(ctx context.Context, part *replayPart, t time.Time, end int64) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := part.reader.SetOffsetAt(lctx, t); err != nil {
		return 0, fmt.Errorf("offset of %s/%d at %s: %w", part.topic, part.partition, t.Format(time.RFC3339Nano), err)
	}
	o := part.reader.Offset()
	if o < 0 { // kafka.LastOffset: no record at or after t
		return end, nil
	}
	return o, nil
}

// groupOffsets returns the committed offsets of group on topic (read only:
// an OffsetFetch, the group is not joined).
func groupOffsets(client sarama.Client, group, topic string, parts []int32) (map[int32]int64, error) {
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	// Not admin.Close: that would close the shared client.
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	for p, b := range resp.Blocks[topic] {
		if b.Err == sarama.ErrNoError && b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// run reads every planned partition concurrently and returns the report.
func (rp *replayer) run(ctx context.Context, parts []*replayPart) (*ReplayReport, error) {
	c := rp.c
	// work ends in-flight calls and writes once the grace period after
	// ctx's cancellation has passed; until then they may finish, as in Run.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.Dispatch.ShutdownGrace, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopGrace()

	var total int64
	for _, p := range parts {
		total += max(0, p.last-p.first+1)
		// The window bounds records read but not done, as in live mode.
		p.tr = newTracker(p.first, 64*c.cfg.Dispatch.MaxInFlight)
	}
	var lim *rate.Limiter
	if rp.o.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(rp.o.Rate), max(1, int(rp.o.Rate/10)))
	}

	var wg sync.WaitGroup
	progressCtx, stopProgress := context.WithCancel(ctx)
	wg.Go(func() { rp.progress(progressCtx, total) }) // exits on stopProgress
	g := new(errgroup.Group)
	if rp.o.DryRun {
		g.SetLimit(1) // one partition after the other: an ordered listing
	}
	for _, p := range parts {
		if p.first > p.last {
			continue
		}
		g.Go(func() error { return rp.runPartition(ctx, work, p, lim) })
	}
	err := g.Wait()
	stopProgress()
	wg.Wait()

	rep := rp.report(parts, total)
	rep.Complete = err == nil && ctx.Err() == nil && !slices.ContainsFunc(rep.Partitions, func(p ReplayPosition) bool { return !p.Done() })
	return rep, err
}

// runPartition reads one partition's range and handles each record on its
// own goroutine, bounded like a live partition by the dispatch.max_in_flight
// cap, the global cap and the tracker window. It stops reading when ctx
// ends; records in flight then finish on work (cancelled after the shutdown
// grace). It returns once every goroutine it started has.
func (rp *replayer) runPartition(ctx, work context.Context, p *replayPart, lim *rate.Limiter) error {
	c := rp.c
	w := &replayWorker{lane: newLane(p.tr, c.cfg.Dispatch.MaxInFlight, c.global, c.cfg.Dispatch.Ordering == "key")}
	defer w.wg.Wait()
	each := rp.replayEvent
	if rp.o.DeadLetters || rp.o.Parked {
		each = rp.redrive
	}
	handle := func(ctx context.Context, src source) error {
		defer rp.done.Add(1)
		return each(ctx, src)
	}
	first := true
	for {
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				return nil // ctx ended
			}
		}
		if !w.waitRoom(ctx) {
			return nil
		}
		m, err := fetch(ctx, p)
		if err != nil {
			w.release()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if m.Offset > p.last {
			w.release()
			p.readThrough = true
			return nil
		}
		if first && !p.fromTime.IsZero() && m.Offset == p.start && m.Time.After(p.fromTime) {
			rp.notef("--from-time %s is before the first retained record of %s/%d; starting from offset %d (%s)",
				p.fromTime.Format(time.RFC3339Nano), p.topic, p.partition, m.Offset, m.Time.UTC().Format(time.RFC3339Nano))
		}
		first = false
		p.lastTime = m.Time
		w.start(work, sourceFromKafka(m), handle, rp.o.DryRun)
		if m.Offset >= p.last {
			p.readThrough = true
			return nil
		}
	}
}

// fetch reads the next record of p. The range's records exist (they were
// below the end offset at the start), so a long silence is an error rather
// than a wait for new records.
func fetch(ctx context.Context, p *replayPart) (kafka.Message, error) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := p.reader.FetchMessage(fctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return m, fmt.Errorf("read %s/%d: no record for 30s after offset %d although the range ends at %d", p.topic, p.partition, p.reader.Offset()-1, p.last)
	}
	if err != nil {
		return m, fmt.Errorf("read %s/%d: %w", p.topic, p.partition, err)
	}
	return m, nil
}

func sourceFromKafka(m kafka.Message) source {
	return source{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: m.Headers, Time: m.Time}
}

// replayEvent runs one record of a source topic range: decode, match (less
// the filter), then dispatch as live mode does, or list it in a dry run. An
// undecodable event is counted, not dead-lettered again (the live run did).
func (rp *replayer) replayEvent(ctx context.Context, src source) error {
	c := rp.c
	if max := c.cfg.Kafka.MaxMessageBytes; max > 0 && len(src.Value) > max {
		rp.skip("too_large", src, fmt.Sprintf("record value is %d bytes, over kafka.max_message_bytes %d", len(src.Value), max))
		return nil
	}
	ev, err := c.decode(ctx, src)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rp.skip(decodeReason(err), src, err.Error())
		return nil
	}
	if rp.o.DryRun {
		var buf [8]*config.CompiledRule
		rp.list(src, &ev, c.match(buf[:0], &ev))
		return nil
	}
	return c.dispatchEvent(ctx, src, &ev)
}

// redrive re-attempts one dead-lettered or parked call from the source
// position, retry state and rule its headers carry. A dead letter starts a
// new retry life (so failing again parks it, as a fresh call would); a parked
// call continues its own, as when the retry topic's consumer takes it.
func (rp *replayer) redrive(ctx context.Context, in source) error {
	c := rp.c
	if _, ok := header(in.Headers, hdrRule); !ok {
		reason, _ := header(in.Headers, hdrReason)
		detail, _ := header(in.Headers, hdrError)
		rp.skip(cmp.Or(reason, "unknown"), in, detail)
		return nil
	}
	src, st, rule, err := c.parseParked(in)
	if err != nil {
		rp.skip("invalid_parked_record", in, err.Error())
		return nil
	}
	if len(src.Value) == 0 {
		// A dead letter too large to keep whole holds no event; the event
		// is still in its source topic.
		rp.skip("no_value", in, fmt.Sprintf("the event is not in the record; replay it with --topic %s --partition %d --from-offset %d --to-offset %d", src.Topic, src.Partition, src.Offset, src.Offset))
		return nil
	}
	ev, err := c.decode(ctx, src)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rp.skip(decodeReason(err), in, err.Error())
		return nil
	}
	if c.filter != nil && !c.filter(&ev, rule) {
		return nil
	}
	if rp.o.DryRun {
		rp.list(src, &ev, []*config.CompiledRule{rule})
		return nil
	}
	if rp.o.Parked {
		st.retries++
	} else {
		st = retryState{attempts: st.attempts}
	}
	return c.deliver(ctx, src, &ev, rule, st)
}

// keep is the Consumer's filter during a replay: the rule is among
// ReplayOptions.Rules and its rendered URL goes to one of Hosts. A call
// that cannot be rendered has no host, so a host filter leaves it out.
func (rp *replayer) keep(ev *schemas.Event, r *config.CompiledRule) bool {
	if len(rp.o.Rules) > 0 && !slices.Contains(rp.o.Rules, r.Name()) {
		return false
	}
	if len(rp.o.Hosts) == 0 {
		return true
	}
	call, err := r.Render(ev, rp.c.now())
	if err != nil {
		return false
	}
	u, err := url.Parse(call.URL)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rp.o.Hosts, func(h string) bool {
		return strings.EqualFold(h, u.Host) || strings.EqualFold(strings.Trim(h, "[]"), u.Hostname())
	})
}

// count is the Consumer's recorded hook: one outcome record written.
func (rp *replayer) count(rec *OutcomeRecord) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	t := rp.tally(rec.Rule)
	t.Calls++
	switch rec.Outcome {
	case outcomeDelivered:
		t.Delivered++
	case outcomeRejected:
		t.Rejected++
	case outcomeParked:
		t.Parked++
	case outcomeDeadLettered:
		t.DeadLettered++
	}
}

// tally returns rule's counts; rp.mu is held.
func (rp *replayer) tally(rule string) *RuleTally {
	t := rp.tallies[rule]
	if t == nil {
		t = &RuleTally{Rule: rule}
		rp.tallies[rule] = t
	}
	return t
}

func (rp *replayer) skip(reason string, src source, detail string) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.skipped[reason]++
	if _, ok := rp.example[reason]; !ok {
		rp.example[reason] = fmt.Sprintf("%s/%d@%d: %s", src.Topic, src.Partition, src.Offset, truncate(detail, 200))
	}
	if rp.o.DryRun {
		fmt.Fprintf(rp.out, "%s/%d@%d: skipped (%s): %s\n", src.Topic, src.Partition, src.Offset, reason, truncate(detail, 200))
	}
}

// list prints what a dry run would send for one event: per call the rule,
// the request line and the Idempotency-Key (`apicall render` shows the whole
// request).
func (rp *replayer) list(src source, ev *schemas.Event, rules []*config.CompiledRule) {
	if len(rules) == 0 {
		return
	}
	cfg := rp.c.cfg
	redact := cfg.Redact
	if rp.o.ShowSecrets {
		redact = func(s string) string { return s }
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d@%d event %q", src.Topic, src.Partition, src.Offset, ev.Name)
	if len(src.Key) > 0 {
		fmt.Fprintf(&b, " key %q", src.Key)
	}
	b.WriteByte('\n')
	now := rp.c.now()
	for _, r := range rules {
		call, err := r.Render(ev, now)
		if err != nil {
			fmt.Fprintf(&b, "  rule %q: would be rejected: %s\n", r.Name(), redact(err.Error()))
			continue
		}
		fmt.Fprintf(&b, "  rule %q: %s %s  Idempotency-Key: %s\n", r.Name(), call.Method, redact(call.URL), call.IdempotencyKey)
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for _, r := range rules {
		rp.tally(r.Name()).Calls++
	}
	io.WriteString(rp.out, b.String())
}

// progress writes a progress line every interval until ctx ends.
func (rp *replayer) progress(ctx context.Context, total int64) {
	every := rp.o.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := rp.done.Load()
		elapsed := time.Since(start)
		perSec := float64(done) / elapsed.Seconds()
		eta := "-"
		if perSec > 0 && total > done {
			eta = (time.Duration(float64(total-done)/perSec) * time.Second).Round(time.Second).String()
		}
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		rp.mu.Lock()
		fmt.Fprintf(rp.status, "replay: %d/%d events (%.1f%%), %.0f events/s, ETA %s\n", done, total, pct, perSec, eta)
		rp.mu.Unlock()
	}
}

func (rp *replayer) report(parts []*replayPart, total int64) *ReplayReport {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rep := &ReplayReport{
		Topic:       rp.o.Topic,
		DryRun:      rp.o.DryRun,
		Total:       total,
		Events:      rp.done.Load(),
		Skipped:     maps.Clone(rp.skipped),
		SkipExample: maps.Clone(rp.example),
	}
	switch {
	case rp.o.DeadLetters:
		rep.Topic = rp.c.cfg.Outcomes.DeadLetterTopic
	case rp.o.Parked:
		rep.Topic = rp.c.cfg.Outcomes.RetryTopic
	}
	for _, t := range rp.tallies {
		rep.Rules = append(rep.Rules, *t)
	}
	slices.SortFunc(rep.Rules, func(a, b RuleTally) int { return strings.Compare(a.Rule, b.Rule) })
	for _, p := range parts {
		pos := ReplayPosition{Topic: p.topic, Partition: p.partition, First: p.first, Last: p.last, Next: p.first}
		if p.tr != nil {
			pos.Next, _ = p.tr.commitPoint()
			n, ts := p.tr.pending()
			switch {
			case n > 0:
				pos.NextTime = ts
			case p.readThrough:
				pos.Next = p.last + 1
			case !pos.Done():
				pos.NextTime = p.lastTime
			}
		}
		rep.Partitions = append(rep.Partitions, pos)
	}
	return rep
}

// replayWorker runs the records of one replayed partition, bounded like a
// live partitionWorker.
type replayWorker struct {
	lane
	wg sync.WaitGroup
}

// start handles src with handle, inline when inline is set (dry runs, to keep the
// listing in offset order), else on a goroutine that exits when handle
// returns; the slots waitRoom took are released then. A record is done
// (may be resumed past) only when handle returned nil.
func (w *replayWorker) start(ctx context.Context, src source, handle func(context.Context, source) error, inline bool) {
	idx := w.tr.add(src.Offset, src.Time)
	if inline {
		defer w.release()
		if err := handle(ctx, src); err == nil {
			w.tr.done(idx)
		}
		return
	}
	wait, finish := w.order(src.Key)
	w.wg.Go(func() {
		defer w.release()
		defer finish()
		if !wait(ctx) {
			return
		}
		if err := handle(ctx, src); err == nil {
			w.tr.done(idx)
		}
	})
}
