package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

// writer publishes outcome, retry and dead-letter records with acks from all
// in-sync replicas. One kafka-go Writer carries every topic; concurrent
// callers are batched together (BatchTimeout), which is what makes an outcome
// record per call affordable.
//
// write blocks until the broker acknowledged the records, retrying failures
// with backoff for as long as ctx lives: an outcome that cannot be recorded
// must hold back the commit, never be skipped.
type writer struct {
	w      *kafka.Writer
	log    *slog.Logger
	failed atomic.Int64 // consecutive failures, to log the first of a run only

	// Group commit of outcome records (writeOutcome): the first caller to
	// find no open batch opens one and leads it; it waits for one of
	// maxFlushes write slots, meanwhile concurrent callers append to its
	// batch, then it writes the batch for everyone in it. One
	// WriteMessages call per record cost about as much as the rest of
	// kafka-go's work (make bench profile); one per batch of dozens does
	// not. Every batch is written by one of its own callers: no goroutine
	// of the writer's own, and none left waiting for a writer.
	mu    sync.Mutex
	open  *outcomeBatch
	slots chan struct{}

	bufs sync.Pool // *[]byte for outcome record values; see buffer
	// msgs recycles batches' message slices (*[]kafka.Message): a fresh
	// slice per batch, grown by appends to a few hundred records, was
	// about 8% of the bytes apicall allocated (make bench profile).
	msgs sync.Pool
}

// maxPooledRecord keeps a record with a huge error text from pinning its
// buffer in the pool.
const maxPooledRecord = 4 << 10

// buffer returns an empty buffer for an outcome record's value. Give it back
// with release once writeOutcome returned nil for it, and only then: until
// the write is acknowledged kafka-go may still read it.
func (w *writer) buffer() *[]byte {
	if b, ok := w.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (w *writer) release(b *[]byte) {
	if cap(*b) <= maxPooledRecord {
		w.bufs.Put(b)
	}
}

// maxPooledBatch keeps one huge batch from pinning its slice in the pool.
const maxPooledBatch = 2048

// maxFlushes is how many outcome batches may be written at once. kafka-go
// holds each for up to BatchTimeout, so a few in parallel keep records
// flowing while the next batch fills.
const maxFlushes = 4

// outcomeBatch is records of concurrent callers written in one call.
type outcomeBatch struct {
	msgs []kafka.Message
	done chan struct{} // closed once written (err set)
	err  error
}

func newWriter(brokers []string, tr *kafka.Transport, log *slog.Logger) *writer {
	return &writer{
		w: &kafka.Writer{
			Addr:         kafka.TCP(brokers...),
			Transport:    tr,
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			// A few ms lets the records of concurrent calls share a batch
			// without adding visible latency.
			BatchTimeout: 3 * time.Millisecond,
			// kafka-go preallocates BatchSize messages per batch; batches
			// average a few dozen records, so 500 wasted a quarter of all
			// allocated bytes (make bench profile).
			BatchSize:   128,
			BatchBytes:  8 << 20,
			MaxAttempts: 3,
			// Topics are created up front (ensureTopics); a missing topic is
			// a config error worth retrying loudly, not silently creating.
			AllowAutoTopicCreation: false,
		},
		log:   log,
		slots: make(chan struct{}, maxFlushes),
	}
}

// writeOutcome writes one outcome record, batched with those of concurrent
// callers, and returns once it is acknowledged or ctx ends. A record whose
// batch failed is written again on its own by write, which retries.
func (w *writer) writeOutcome(ctx context.Context, msg kafka.Message) error {
	w.mu.Lock()
	b := w.open
	lead := b == nil
	if lead {
		b = &outcomeBatch{done: make(chan struct{})}
		if p, ok := w.msgs.Get().(*[]kafka.Message); ok {
			b.msgs = *p
		} else {
			b.msgs = make([]kafka.Message, 0, 32)
		}
		w.open = b
	}
	i := len(b.msgs)
	b.msgs = append(b.msgs, msg)
	w.mu.Unlock()
	if lead {
		// The leader writes even when its own ctx has ended: the batch
		// holds other callers' records. Waiting for a slot is bounded by
		// the writes in progress, which kafka-go bounds (MaxAttempts).
		w.slots <- struct{}{}
		w.mu.Lock()
		w.open = nil // later callers start the next batch
		w.mu.Unlock()
		b.err = w.w.WriteMessages(context.Background(), b.msgs...)
		<-w.slots
		// kafka-go copied the messages into its own batches; the values
		// stay with their writers (released once acknowledged). Nobody
		// reads b.msgs after this.
		if msgs := b.msgs; cap(msgs) <= maxPooledBatch {
			clear(msgs)
			msgs = msgs[:0]
			w.msgs.Put(&msgs)
		}
		b.msgs = nil
		close(b.done)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return fmt.Errorf("write outcome record: %w", ctx.Err())
	}
	if b.err == nil || batchWrote(b.err, i) {
		if b.err == nil && w.failed.Swap(0) > 0 {
			w.log.Info("record writes recovered")
		}
		return nil
	}
	return w.write(ctx, msg)
}

// batchWrote reports whether record i of a batch whose write returned err
// was written anyway (kafka-go reports per record when it can).
func batchWrote(err error, i int) bool {
	var we kafka.WriteErrors
	return errors.As(err, &we) && i < len(we) && we[i] == nil
}

// warm connects the writer's transport to the cluster and loads the
// metadata of topics, so that the first records written do not wait for
// it (kafka-go dials and discovers the cluster on first use, while the
// calls of the first events hold their in-flight slots). A failure is only
// logged: writes connect on their own, and retry.
func (w *writer) warm(ctx context.Context, topics ...string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topics = slices.DeleteFunc(topics, func(t string) bool { return t == "" })
	cl := &kafka.Client{Addr: w.w.Addr, Transport: w.w.Transport}
	if _, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics}); err != nil && ctx.Err() == nil {
		w.log.Warn("could not load record topics' metadata before consuming; writes will retry", "err", err)
	}
}

// errTooLarge: a record is over the size the writer (BatchBytes) or the
// broker (message.max.bytes) accepts; writing it again cannot succeed.
var errTooLarge = errors.New("record too large to write")

// write publishes msgs and returns once all are acknowledged, or ctx ends.
func (w *writer) write(ctx context.Context, msgs ...kafka.Message) error {
	return w.publish(ctx, false, msgs)
}

// writeOrTooLarge is write, except that it gives up with errTooLarge when
// the records are refused as too large, so that the caller can write them
// without the event's value instead of retrying forever (a stuck partition).
func (w *writer) writeOrTooLarge(ctx context.Context, msgs ...kafka.Message) error {
	return w.publish(ctx, true, msgs)
}

func (w *writer) publish(ctx context.Context, giveUpTooLarge bool, msgs []kafka.Message) error {
	backoff := 50 * time.Millisecond
	refused := 0 // consecutive refusals by the broker as too large
	for {
		err := w.w.WriteMessages(ctx, msgs...)
		if err == nil {
			if w.failed.Swap(0) > 0 {
				w.log.Info("record writes recovered")
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("write %d records: %w", len(msgs), errors.Join(err, ctx.Err()))
		}
		if giveUpTooLarge {
			var mtl kafka.MessageTooLargeError
			if errors.As(err, &mtl) {
				// Over BatchBytes: refused before sending, every time.
				return fmt.Errorf("write %d records: %w: %w", len(msgs), errTooLarge, err)
			}
			// The broker refuses a whole batch, and a batch holds the
			// records of concurrent callers: this call may only have
			// shared one with the offender. Three refusals in a row
			// (the offender gives up after as many) are its own.
			if !refusedAsTooLarge(err) {
				refused = 0
			} else if refused++; refused >= 3 {
				return fmt.Errorf("write %d records: %w: %w", len(msgs), errTooLarge, err)
			}
		}
		if w.failed.Add(1) == 1 {
			w.log.Warn("record write failed; retrying until it succeeds", "topic", msgs[0].Topic, "err", err)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("write %d records: %w", len(msgs), errors.Join(err, ctx.Err()))
		case <-time.After(d):
		}
		// At most 1s: every in-flight event waits on its write, so the
		// whole pipeline resumes only when the writes do. A 5s cap kept
		// apicall idle for up to 10s after a 2s network cut; retrying
		// sooner is cheap (concurrent writes share batches).
		backoff = min(backoff*2, time.Second)
	}
}

// refusedAsTooLarge reports whether the broker refused records as over
// its size limit. WriteErrors does not unwrap, so look inside.
func refusedAsTooLarge(err error) bool {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && refusedAsTooLarge(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

func (w *writer) Close() error { return w.w.Close() }
