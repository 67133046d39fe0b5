package consumer

import (
	"context"
	"sync"
	"time"
)

// lane holds what bounds and orders the events of one partition, live or
// replayed: the tracker window, the partition and global in-flight caps, and
// per-key order (dispatch.ordering: key).
type lane struct {
	tr     *tracker
	sem    chan struct{} // per-partition in-flight cap (dispatch.max_in_flight)
	global chan struct{} // shared by every lane (dispatch.max_in_flight_total)
	keyed  bool

	mu   sync.Mutex
	keys map[string]chan struct{} // key -> done channel of its latest event
}

func newLane(tr *tracker, maxInFlight int, global chan struct{}, keyed bool) lane {
	return lane{tr: tr, sem: make(chan struct{}, maxInFlight), global: global, keyed: keyed, keys: make(map[string]chan struct{})}
}

// waitRoom blocks until the tracker window, the partition cap and the global
// cap all have room, or ctx ends. It acquires one slot of each semaphore.
func (l *lane) waitRoom(ctx context.Context) bool {
	for l.tr.full() {
		select {
		case <-l.tr.space:
		case <-ctx.Done():
			return false
		}
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	select {
	case l.global <- struct{}{}:
		return true
	case <-ctx.Done():
		<-l.sem
		return false
	}
}

// release gives back the slots one waitRoom acquired.
func (l *lane) release() {
	<-l.global
	<-l.sem
}

// order queues an event with key behind the previous event of the same key.
// The event's goroutine calls wait (false: ctx ended first) before its calls
// and finish when it is over, whatever happened. Without keyed order or a
// key, wait returns true at once.
func (l *lane) order(key []byte) (wait func(ctx context.Context) bool, finish func()) {
	if !l.keyed || key == nil {
		return func(context.Context) bool { return true }, func() {}
	}
	k := string(key)
	mine := make(chan struct{})
	l.mu.Lock()
	prev := l.keys[k]
	l.keys[k] = mine
	l.mu.Unlock()
	wait = func(ctx context.Context) bool {
		if prev == nil {
			return true
		}
		select {
		case <-prev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	finish = func() {
		close(mine)
		l.mu.Lock()
		if l.keys[k] == mine {
			delete(l.keys, k)
		}
		l.mu.Unlock()
	}
	return wait, finish
}

// every calls f every interval on a goroutine of its own until the returned
// stop is called; stop returns once that goroutine has exited. Group
// sessions use it for their commit loop (Setup starts it, Cleanup stops it).
func every(interval time.Duration, f func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(quit); <-done }
}
