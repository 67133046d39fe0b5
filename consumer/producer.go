package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
			BatchSize:    500,
			BatchBytes:   8 << 20,
			MaxAttempts:  3,
			// Topics are created up front (ensureTopics); a missing topic is
			// a config error worth retrying loudly, not silently creating.
			AllowAutoTopicCreation: false,
		},
		log: log,
	}
}

// write publishes msgs and returns once all are acknowledged, or ctx ends.
func (w *writer) write(ctx context.Context, msgs ...kafka.Message) error {
	backoff := 50 * time.Millisecond
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
		if w.failed.Add(1) == 1 {
			w.log.Warn("record write failed; retrying until it succeeds", "topic", msgs[0].Topic, "err", err)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("write %d records: %w", len(msgs), errors.Join(err, ctx.Err()))
		case <-time.After(d):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *writer) Close() error { return w.w.Close() }
