package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// liveHandler is the sarama handler of the main group: one ConsumeClaim per
// assigned partition, a commit loop per session.
type liveHandler struct {
	c *Consumer

	mu       sync.Mutex
	trackers map[topicPartition]*tracker // this session's partitions
	// stopCommits ends the session's commit loop (Cleanup).
	stopCommits func()
}

// Setup starts the session's commit loop; it runs until Cleanup.
func (h *liveHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.c.joined.Store(true)
	h.c.m.rebalances.Inc()
	h.c.log.Info("partitions assigned", "generation", sess.GenerationID(), "claims", sess.Claims())
	h.mu.Lock()
	h.trackers = make(map[topicPartition]*tracker)
	h.mu.Unlock()
	h.stopCommits = every(h.c.cfg.Kafka.CommitInterval, func() { h.commit(sess) })
	return nil
}

// Cleanup runs after every ConsumeClaim returned: final commit of what is
// recorded, before the partitions are released.
func (h *liveHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.stopCommits()
	h.commit(sess)
	h.c.joined.Store(false)
	h.mu.Lock()
	for tp := range h.trackers {
		h.c.partitions.Delete(tp)
	}
	h.trackers = nil
	h.mu.Unlock()
	h.c.log.Info("partitions released", "generation", sess.GenerationID())
	return nil
}

// commit marks every partition's commit point and commits. sarama sends
// only the offsets marked since its last successful commit, and a failed
// commit leaves them marked: committing on every tick, not only when a
// point moved, retries a failed commit even once the partition is idle
// (else the group's offset would stay behind until the next event).
func (h *liveHandler) commit(sess sarama.ConsumerGroupSession) {
	h.mu.Lock()
	moved := false
	var oldest time.Time
	for tp, t := range h.trackers {
		next, changed := t.commitPoint()
		if changed {
			sess.MarkOffset(tp.topic, tp.partition, next, "")
			moved = true
		}
		if n, ts := t.pending(); n > 0 && (oldest.IsZero() || ts.Before(oldest)) {
			oldest = ts
		}
	}
	h.mu.Unlock()
	if oldest.IsZero() {
		h.c.m.oldestInflight.Set(0)
	} else {
		h.c.m.oldestInflight.Set(max(0, h.c.now().Sub(oldest).Seconds()))
	}
	if !moved {
		sess.Commit() // sends nothing unless an earlier commit failed
		return
	}
	start := time.Now()
	sess.Commit()
	h.c.m.commitDuration.Observe(time.Since(start).Seconds())
	h.c.m.commits.WithLabelValues("ok").Inc()
	h.c.brokersOK.Store(h.c.now().UnixNano())
}

// ConsumeClaim reads one partition. Each record becomes an event handled on
// its own goroutine, bounded by the partition and global in-flight caps and
// the tracker window, so a partition runs many calls at once while memory
// stays bounded: at a cap, reading stops.
func (h *liveHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.c
	tp := topicPartition{claim.Topic(), claim.Partition()}
	d := c.cfg.Dispatch
	// The window bounds records read but not committable (done ones waiting
	// behind a slow one); 8 x the in-flight cap keeps a partition flowing
	// past a slow call for a while at a small fixed cost (24 B a slot,
	// allocated when the partition is claimed).
	tr := newTracker(claim.InitialOffset(), 8*d.MaxInFlight)
	h.mu.Lock()
	h.trackers[tp] = tr
	h.mu.Unlock()
	c.partitions.Store(tp, tr)

	// work ends in-flight calls on revoke once the grace period passed.
	work, cancelWork := context.WithCancel(c.hardStop)
	defer cancelWork()
	p := &partitionWorker{
		lane: newLane(tr, d.MaxInFlight, c.global, d.Ordering == "key"),
		c:    c,
		ctx:  work,
	}
	sessCtx := sess.Context()
read:
	for p.waitRoom(sessCtx) {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				p.release()
				break read
			}
			c.brokersOK.Store(c.now().UnixNano())
			p.start(msg)
		case <-sessCtx.Done():
			p.release()
			break read
		}
	}
	// Stop taking records; let in-flight calls finish within the grace
	// period, then cancel them (their events stay uncommitted and are
	// redelivered to the partition's next owner).
	grace := time.AfterFunc(d.ShutdownGrace, cancelWork)
	p.wg.Wait()
	grace.Stop()
	h.commit(sess)
	return nil
}

// partitionWorker runs the events of one claimed partition.
type partitionWorker struct {
	lane
	c   *Consumer
	ctx context.Context
	wg  sync.WaitGroup
}

// start handles one record on a pooled goroutine; the slots acquired by
// waitRoom are released when it ends, which is when the event's outcomes
// are recorded or p.ctx ends.
func (p *partitionWorker) start(msg *sarama.ConsumerMessage) {
	c := p.c
	idx := p.tr.add(msg.Offset, msg.Timestamp)
	src := sourceFromSarama(msg)
	wait, finish := p.order(msg.Key)
	c.inflight.Add(1)
	c.m.inflight.Inc()
	p.wg.Add(1)
	c.pool.submit(func() {
		defer p.wg.Done()
		defer func() {
			p.release()
			c.inflight.Add(-1)
			c.m.inflight.Dec()
		}()
		defer finish()
		if !wait(p.ctx) {
			return
		}
		if err := c.handleEvent(p.ctx, src); err != nil {
			// Only cancellation ends here: the event is not done, so its
			// offset is never committed and it is redelivered.
			return
		}
		p.tr.done(idx)
	})
}
