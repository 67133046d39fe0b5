package consumer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolRunsEveryJobOnce submits from many goroutines at once and checks
// every job ran exactly once and that close waits for running jobs.
func TestPoolRunsEveryJobOnce(t *testing.T) {
	p := newPool(time.Hour)
	const n = 5000
	var ran [n]atomic.Int32
	var submitters sync.WaitGroup
	for g := range 10 {
		submitters.Go(func() {
			for i := g; i < n; i += 10 {
				p.submit(func() { ran[i].Add(1) })
			}
		})
	}
	submitters.Wait()
	release := make(chan struct{})
	var slowDone atomic.Bool
	p.submit(func() {
		<-release
		slowDone.Store(true)
	})
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	p.close()
	if !slowDone.Load() {
		t.Fatal("close returned before a running job finished")
	}
	for i := range ran {
		if got := ran[i].Load(); got != 1 {
			t.Fatalf("job %d ran %d times", i, got)
		}
	}
	if live := p.live.Load(); live != 0 {
		t.Fatalf("%d workers still running after close", live)
	}
}

// TestPoolReapsIdleWorkers forces many workers at once, lets them go idle
// and waits for the reaper to end them all; the pool still runs jobs after.
func TestPoolReapsIdleWorkers(t *testing.T) {
	p := newPool(20 * time.Millisecond)
	defer p.close()
	const n = 50
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		p.submit(func() {
			started.Done()
			<-block
		})
	}
	started.Wait()
	if live := p.live.Load(); live != n {
		t.Fatalf("%d workers for %d blocked jobs", live, n)
	}
	close(block)
	waitFor(t, "idle workers to exit", 10*time.Second, func() bool { return p.live.Load() == 0 })

	done := make(chan struct{})
	p.submit(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("job submitted after the workers were reaped did not run")
	}
}

// TestPoolUnderChurn submits short jobs while the reaper ends idle workers
// every few ms: every job still runs, and the pool's counts are back to zero
// after close (a stop token that ended a busy worker, or a miscount, would
// show here; run with -race).
func TestPoolUnderChurn(t *testing.T) {
	p := newPool(2 * time.Millisecond)
	var ran, submitted atomic.Int64
	deadline := time.Now().Add(200 * time.Millisecond)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				submitted.Add(1)
				p.submit(func() {
					if g%2 == 0 {
						time.Sleep(100 * time.Microsecond)
					}
					ran.Add(1)
				})
				if w := p.waiting.Load(); w < 0 {
					t.Errorf("waiting count went negative: %d", w)
				}
			}
		})
	}
	wg.Wait()
	p.close()
	if r, s := ran.Load(), submitted.Load(); r != s {
		t.Fatalf("%d of %d jobs ran", r, s)
	}
	if w, l := p.waiting.Load(), p.live.Load(); w != 0 || l != 0 {
		t.Fatalf("after close: %d waiting, %d live", w, l)
	}
}
