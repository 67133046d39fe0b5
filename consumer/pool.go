package consumer

import (
	"sync"
	"time"
)

// pool runs event handlers on reused goroutines. A goroutine per event
// grew a fresh stack for every event (runtime.newstack and copystack were
// ~6% of CPU in the end-to-end profile); pooled workers keep their grown
// stacks. The pool does not bound concurrency itself: callers submit only
// after taking a slot of the in-flight caps, so there are never more workers
// than dispatch.max_in_flight_total (plus idle ones about to exit).
type pool struct {
	jobs chan func() // unbuffered: a send succeeds only when a worker is idle
	quit chan struct{}
	wg   sync.WaitGroup
	idle time.Duration
}

func newPool(idle time.Duration) *pool {
	return &pool{jobs: make(chan func()), quit: make(chan struct{}), idle: idle}
}

// submit runs f on an idle worker, or on a new one when none is idle.
func (p *pool) submit(f func()) {
	select {
	case p.jobs <- f:
	default:
		p.wg.Go(func() { p.work(f) })
	}
}

// work runs f and then further jobs; it exits after idle without a job, or
// when close is called.
func (p *pool) work(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.jobs:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// close stops idle workers and waits for every worker to exit; running jobs
// finish first. No submit may follow.
func (p *pool) close() {
	close(p.quit)
	p.wg.Wait()
}
