package consumer

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/apicall/apicall/config"
)

// retryHandler consumes the retry topic (its own consumer group,
// "<group>.retry"). Each parked record waits in a timer heap until its next
// attempt time, so a call due in an hour never holds back one due in ten
// seconds, and nothing spins: the loop sleeps until the earliest due time or
// the next record. At retry.max_pending held records it stops reading (the
// partition pauses) until some are re-attempted.
//
// Offsets are committed like the live topic's: the highest contiguous done
// record. A record held for hours therefore holds the commit point, and a
// crash re-attempts the records after it: duplicates, never loss, and the
// Idempotency-Key lets receivers drop them.
type retryHandler struct {
	c *Consumer

	mu       sync.Mutex
	trackers map[topicPartition]*tracker
	// stopCommits ends the session's commit loop (Cleanup).
	stopCommits func()
}

func (h *retryHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	h.trackers = make(map[topicPartition]*tracker)
	h.mu.Unlock()
	h.stopCommits = every(h.c.cfg.Kafka.CommitInterval, func() { h.commit(sess) })
	return nil
}

func (h *retryHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.stopCommits()
	h.commit(sess)
	return nil
}

// commit commits every tick, not only when a point moved: a failed commit
// stays marked in sarama and is retried (see liveHandler.commit).
func (h *retryHandler) commit(sess sarama.ConsumerGroupSession) {
	h.mu.Lock()
	for tp, t := range h.trackers {
		if next, changed := t.commitPoint(); changed {
			sess.MarkOffset(tp.topic, tp.partition, next, "")
		}
	}
	h.mu.Unlock()
	sess.Commit()
}

// parked is one record of the retry topic waiting for its time.
type parked struct {
	due  time.Time
	idx  int // tracker slot
	msg  *sarama.ConsumerMessage
	heap int
}

type dueHeap []*parked

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].heap = i; h[j].heap = j }
func (h *dueHeap) Push(x any)        { p := x.(*parked); p.heap = len(*h); *h = append(*h, p) }
func (h *dueHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

func (h *retryHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.c
	tp := topicPartition{claim.Topic(), claim.Partition()}
	maxPending := c.cfg.Retry.MaxPending
	tr := newTracker(claim.InitialOffset(), maxPending)
	h.mu.Lock()
	h.trackers[tp] = tr
	h.mu.Unlock()
	work, cancelWork := context.WithCancel(c.hardStop)
	defer cancelWork()

	var (
		wg    sync.WaitGroup
		due   dueHeap
		timer = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	sessCtx := sess.Context()
	for {
		// Read only while there is room: at the cap the partition pauses.
		msgs := claim.Messages()
		if tr.full() {
			msgs = nil
		}
		var wake <-chan time.Time
		if len(due) > 0 {
			timer.Reset(max(0, due[0].due.Sub(c.now())))
			wake = timer.C
		}
		select {
		case msg, ok := <-msgs:
			if !ok {
				goto drain
			}
			p := &parked{idx: tr.add(msg.Offset, msg.Timestamp), msg: msg}
			p.due = parseTime(headerOf(msg, hdrNextAttempt))
			heap.Push(&due, p)
			c.m.retryPending.Inc()
		case <-wake:
			now := c.now()
			for len(due) > 0 && !due[0].due.After(now) {
				p := heap.Pop(&due).(*parked)
				c.m.retryPending.Dec()
				// Bounded by the global in-flight cap shared with live
				// events, so retries cannot starve fresh traffic of memory.
				select {
				case c.global <- struct{}{}:
				case <-sessCtx.Done():
					goto drain
				}
				wg.Add(1)
				c.pool.submit(func() {
					defer wg.Done()
					defer func() { <-c.global }()
					if err := c.retryOne(work, p.msg); err == nil {
						tr.done(p.idx)
					}
				})
			}
		case <-tr.space:
			// room again: loop to read
		case <-sessCtx.Done():
			goto drain
		}
	}
drain:
	c.m.retryPending.Sub(float64(len(due)))
	grace := time.AfterFunc(c.cfg.Dispatch.ShutdownGrace, cancelWork)
	wg.Wait()
	grace.Stop()
	h.commit(sess)
	return nil
}

// retryOne re-attempts one parked call.
func (c *Consumer) retryOne(ctx context.Context, msg *sarama.ConsumerMessage) error {
	in := sourceFromSarama(msg)
	src, st, rule, err := c.parseParked(in)
	if err != nil {
		// Not a record apicall parked (or parked by a rule since removed):
		// keep it, with the reason, instead of dropping it.
		return c.deadLetterEvent(ctx, src, "invalid_parked_record", err)
	}
	ev, err := c.decode(ctx, src)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.deadLetterEvent(ctx, src, decodeReason(err), err)
	}
	st.retries++
	return c.deliver(ctx, src, &ev, rule, st)
}

// parseParked rebuilds the original source position, retry state and rule of
// a parked record from its headers.
func (c *Consumer) parseParked(in source) (source, retryState, *config.CompiledRule, error) {
	src := in
	var st retryState
	topic, ok1 := header(in.Headers, hdrSourceTopic)
	part, ok2 := header(in.Headers, hdrSourcePart)
	off, ok3 := header(in.Headers, hdrSourceOffset)
	name, ok4 := header(in.Headers, hdrRule)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return src, st, nil, errors.New("parked record lacks apicall source or rule headers")
	}
	p, err1 := strconv.ParseInt(part, 10, 32)
	o, err2 := strconv.ParseInt(off, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return src, st, nil, fmt.Errorf("parked record source position: %w", err)
	}
	src.Topic, src.Partition, src.Offset = topic, int32(p), o
	if ts, ok := header(in.Headers, hdrSourceTime); ok {
		src.Time = parseTime(ts)
	}
	if v, ok := header(in.Headers, hdrRetries); ok {
		st.retries, _ = strconv.Atoi(v)
	}
	if v, ok := header(in.Headers, hdrAttempts); ok {
		st.attempts, _ = strconv.Atoi(v)
	}
	if v, ok := header(in.Headers, hdrFirstAttempt); ok {
		st.first = parseTime(v)
	}
	rule := c.rules().Rule(name)
	if rule == nil {
		return src, st, nil, fmt.Errorf("rule %q no longer exists", name)
	}
	return src, st, rule, nil
}

func headerOf(m *sarama.ConsumerMessage, k string) string {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if h := m.Headers[i]; h != nil && string(h.Key) == k {
			return string(h.Value)
		}
	}
	return ""
}

// parseTime parses apicall's header timestamps; a missing or bad one is
// the zero time (due now).
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
