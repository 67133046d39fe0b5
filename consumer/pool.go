package consumer

import (
	"sync"
	"sync/atomic"
	"time"
)

// pool runs event handlers on reused goroutines. A goroutine per event
// grew a fresh stack for every event (runtime.newstack and copystack were
// ~6% of CPU in the end-to-end profile); pooled workers keep their grown
// stacks. The pool does not bound concurrency itself: callers submit only
// after taking a slot of the in-flight caps, so there are never more workers
// than dispatch.max_in_flight_total (plus idle ones about to exit).
//
// Idle workers exit when the pool had more of them than it needed for a
// whole idle period. One reaper measures that, instead of a timer per
// worker: re-arming a timer after every job and selecting on it cost about
// 2% of apicall's CPU in the make bench profile (timer heap insert and
// removal on every wait).
type pool struct {
	jobs chan func()   // unbuffered: a send succeeds only when a worker is idle
	stop chan struct{} // each value sent ends one idle worker; closed by close
	quit chan struct{} // closed by close: ends the reaper
	wg   sync.WaitGroup
	reap sync.WaitGroup
	idle time.Duration

	waiting atomic.Int64 // workers waiting for a job
	low     atomic.Int64 // fewest waiting since the reaper last looked
	live    atomic.Int64 // workers running
}

func newPool(idle time.Duration) *pool {
	p := &pool{jobs: make(chan func()), stop: make(chan struct{}), quit: make(chan struct{}), idle: idle}
	p.reap.Go(p.reaper)
	return p
}

// submit runs f on an idle worker, or on a new one when none is idle.
func (p *pool) submit(f func()) {
	select {
	case p.jobs <- f:
	default:
		p.live.Add(1)
		p.wg.Go(func() { p.work(f) })
	}
}

// work runs f and then further jobs, until asked to stop.
func (p *pool) work(f func()) {
	defer p.live.Add(-1)
	for {
		f()
		p.waiting.Add(1)
		select {
		case f = <-p.jobs:
			p.lower(p.waiting.Add(-1))
		case <-p.stop:
			p.lower(p.waiting.Add(-1))
			return
		}
	}
}

// lower records n waiting workers in low if it is the fewest yet.
func (p *pool) lower(n int64) {
	for {
		l := p.low.Load()
		if n >= l || p.low.CompareAndSwap(l, n) {
			return
		}
	}
}

// reaper ends, every idle period, as many workers as were waiting during
// all of it: those were not needed.
func (p *pool) reaper() {
	t := time.NewTicker(p.idle)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		surplus := p.low.Swap(p.waiting.Load())
		for range surplus {
			select {
			case p.stop <- struct{}{}:
			default: // none waiting any more
			}
		}
	}
}

// close stops idle workers and waits for every worker to exit; running jobs
// finish first. No submit may follow.
func (p *pool) close() {
	close(p.quit)
	p.reap.Wait()
	close(p.stop)
	p.wg.Wait()
}
