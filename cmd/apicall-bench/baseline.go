package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The baseline is the yardstick apicall is measured against: the least a
// correct at-least-once Kafka-to-HTTP bridge must do, with nothing else.
// A sarama consumer group (configured like apicall's: same version, fetch
// sizes, wait time, channel buffer and assignor) feeds a fixed pool of
// workers; each worker POSTs the raw record value over a pooled keep-alive
// client until it gets a 2xx; a record is marked done when its call
// succeeded, and every commit interval the highest contiguous done offset
// of each partition is committed. No decoding, no rules, no rendering, no
// outcome records, no breakers. It runs as `apicall-bench baseline` in a
// child process so its CPU and memory are measured the same way as apicall's.

// baselineOptions are the baseline subcommand's flags.
type baselineOptions struct {
	brokers        []string
	topic          string
	group          string
	urls           []string
	workers        int
	commitInterval time.Duration
}

func parseBaseline(args []string, stderr io.Writer) (baselineOptions, error) {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma separated")
	topic := fs.String("topic", "user-events", "topic to consume")
	group := fs.String("group", "apicall-bench-baseline", "consumer group")
	urls := fs.String("urls", "", "receiver URLs, comma separated; a record goes to urls[user id % len]")
	workers := fs.Int("workers", 64, "concurrent HTTP calls")
	commit := fs.Duration("commit-interval", 200*time.Millisecond, "time between offset commits (apicall's default)")
	if err := fs.Parse(args); err != nil {
		return baselineOptions{}, err
	}
	o := baselineOptions{
		brokers: splitList(*brokers), topic: *topic, group: *group, urls: splitList(*urls),
		workers: *workers, commitInterval: *commit,
	}
	if len(o.brokers) == 0 || len(o.urls) == 0 || o.workers < 1 {
		return o, errors.New("--brokers, --urls and --workers >= 1 are required")
	}
	return o, nil
}

func baselineSaramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.ClientID = "apicall-bench-baseline"
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Fetch.Default = 4 << 20
	sc.ChannelBufferSize = 256
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	return sc, sc.Validate()
}

// runBaseline consumes until ctx ends, then stops reading, lets in-flight
// calls end (they are cancelled), commits what is done and returns.
func runBaseline(ctx context.Context, o baselineOptions, log *slog.Logger) error {
	sc, err := baselineSaramaConfig()
	if err != nil {
		return err
	}
	cg, err := sarama.NewConsumerGroup(o.brokers, o.group, sc)
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: o.workers,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	// jobs holds one queued record per worker so a worker finishing a call
	// finds the next one without waiting for the partition reader.
	jobs := make(chan job, o.workers)
	b := &baseline{o: o, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, jobs: jobs, log: log}

	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() { b.work(ctx) }) // exits when jobs is closed
	}
	wg.Go(func() { // exits when cg.Close closes the errors channel
		for err := range cg.Errors() {
			log.Warn("consumer group error", "err", err)
		}
	})
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{o.topic}, b); err != nil && ctx.Err() == nil {
			log.Warn("consume failed; rejoining", "err", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Consume has returned: no ConsumeClaim sends any more.
	close(jobs)
	err = cg.Close()
	wg.Wait()
	return err
}

// baseline is the sarama handler and the worker pool.
type baseline struct {
	o      baselineOptions
	client *http.Client
	jobs   chan job
	log    *slog.Logger

	mu     sync.Mutex
	claims map[int32]*doneOffsets // this session's partitions
}

// job is one record to deliver.
type job struct {
	msg  *sarama.ConsumerMessage
	offs *doneOffsets
	wg   *sync.WaitGroup // the claim's in-flight records
}

func (b *baseline) Setup(sess sarama.ConsumerGroupSession) error {
	b.mu.Lock()
	b.claims = make(map[int32]*doneOffsets)
	b.mu.Unlock()
	go func() { // exits when the session ends (after every ConsumeClaim returned)
		t := time.NewTicker(b.o.commitInterval)
		defer t.Stop()
		for {
			select {
			case <-sess.Context().Done():
				return
			case <-t.C:
				b.commit(sess)
			}
		}
	}()
	return nil
}

func (b *baseline) Cleanup(sess sarama.ConsumerGroupSession) error {
	b.commit(sess)
	return nil
}

// commit marks each partition's highest contiguous done offset and commits.
func (b *baseline) commit(sess sarama.ConsumerGroupSession) {
	b.mu.Lock()
	moved := false
	for p, d := range b.claims {
		if next, ok := d.commitPoint(); ok {
			sess.MarkOffset(b.o.topic, p, next, "")
			moved = true
		}
	}
	b.mu.Unlock()
	if moved {
		sess.Commit()
	}
}

func (b *baseline) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	d := &doneOffsets{next: claim.InitialOffset()}
	b.mu.Lock()
	b.claims[claim.Partition()] = d
	b.mu.Unlock()
	var inflight sync.WaitGroup
	ctx := sess.Context()
read:
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				break read
			}
			d.add(msg.Offset)
			inflight.Add(1)
			select {
			case b.jobs <- job{msg: msg, offs: d, wg: &inflight}:
			case <-ctx.Done():
				inflight.Done()
				break read
			}
		case <-ctx.Done():
			break read
		}
	}
	inflight.Wait()
	return nil
}

// work delivers jobs until the channel is closed.
func (b *baseline) work(ctx context.Context) {
	for j := range b.jobs {
		if b.deliver(ctx, j.msg) {
			j.offs.done(j.msg.Offset)
		}
		j.wg.Done()
	}
}

// deliver POSTs the record value until a 2xx or ctx ends.
func (b *baseline) deliver(ctx context.Context, msg *sarama.ConsumerMessage) bool {
	u := b.o.urls[0]
	if n := len(b.o.urls); n > 1 {
		if id := eventUserID(msg.Key); id >= 0 {
			u = b.o.urls[id%int64(n)]
		}
	}
	key := msg.Topic + "-" + strconv.Itoa(int(msg.Partition)) + "-" + strconv.FormatInt(msg.Offset, 10)
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(msg.Value))
		if err != nil {
			b.log.Error("build request", "err", err)
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := b.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
	return false
}

// doneOffsets tracks one partition's records from read to delivered and
// gives the offset to commit: the highest contiguous delivered offset + 1.
type doneOffsets struct {
	mu      sync.Mutex
	base    int64  // offset of pending[0]
	pending []bool // read records from base on; true once delivered
	next    int64  // everything below is delivered
	changed bool   // next moved since the last commitPoint
}

func (d *doneOffsets) add(off int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) == 0 {
		d.base = off
		if off > d.next { // a gap (compaction, markers): nothing below is pending
			d.next, d.changed = off, true
		}
	}
	for d.base+int64(len(d.pending)) < off { // offsets missing inside the range
		d.pending = append(d.pending, true)
	}
	d.pending = append(d.pending, false)
}

func (d *doneOffsets) done(off int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[off-d.base] = true
	for len(d.pending) > 0 && d.pending[0] {
		d.pending = d.pending[1:]
		d.base++
		d.next, d.changed = d.base, true
	}
}

func (d *doneOffsets) commitPoint() (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.changed
	d.changed = false
	return d.next, c
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
