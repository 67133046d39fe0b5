package dispatcher

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// inflightShards is how many independently locked parts the registry of
// calls in flight has: with ~1000 concurrent calls on a few cores, two calls
// rarely need the same lock at the same moment.
const inflightShards = 32

// registry tracks the calls in flight so that Close can refuse new ones,
// cancel the running ones and wait for them.
//
// It replaces a context.AfterFunc registration per call on one shared
// "closing" context, which cost a derived context and two allocations per
// call and made every call take that context's single mutex twice. Here a
// call takes a slot in a randomly chosen shard (no allocation once the
// shard has grown to its peak concurrency, no hashing) under a lock it
// shares with 1/32 of the calls.
type registry struct {
	closed atomic.Bool
	shards [inflightShards]inflightShard
}

// inflightShard is one lock's worth of calls. Each has its own WaitGroup so
// calls do not all update one shared counter either.
type inflightShard struct {
	mu sync.Mutex
	// cancel holds, per slot, what Close must call to end the slot's
	// call: the cancel of its current attempt or of its wait context; nil
	// while it has neither (it then checks registry.closed before
	// starting one) and for free slots.
	cancel []context.CancelFunc
	free   []int // slots of cancel not in use
	wg     sync.WaitGroup
	_      [64]byte // keeps the next shard's lock off this cache line
}

// ticket identifies a call registered by add, until remove.
type ticket struct {
	s    *inflightShard
	slot int
}

// add registers a new call. It reports false once Close has begun: the call
// must then not start.
func (r *registry) add() (ticket, bool) {
	s := &r.shards[rand.Uint32()%inflightShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked under the shard's lock: close sets closed before it walks
	// the shards, so either it finds this call here or we see closed.
	if r.closed.Load() {
		return ticket{}, false
	}
	var slot int
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
	} else {
		slot = len(s.cancel)
		s.cancel = append(s.cancel, nil)
	}
	s.wg.Add(1)
	return ticket{s: s, slot: slot}, true
}

// setCancel makes cancel what Close calls to end t's call. If Close has
// already begun it calls cancel at once, so that nothing started after
// Close walked past the call outlives it.
func (r *registry) setCancel(t ticket, cancel context.CancelFunc) {
	t.s.mu.Lock()
	t.s.cancel[t.slot] = cancel
	closed := r.closed.Load()
	t.s.mu.Unlock()
	if closed {
		cancel()
	}
}

// clearCancel forgets t's cancel func once its attempt is over, so that
// Close does not call it later (the fast path's func touches a connection
// that may by then serve another call).
func (r *registry) clearCancel(t ticket) {
	t.s.mu.Lock()
	t.s.cancel[t.slot] = nil
	t.s.mu.Unlock()
}

// remove unregisters t's call once it has returned.
func (r *registry) remove(t ticket) {
	t.s.mu.Lock()
	t.s.cancel[t.slot] = nil
	t.s.free = append(t.s.free, t.slot)
	t.s.mu.Unlock()
	t.s.wg.Done()
}

// stopping reports whether Close has begun.
func (r *registry) stopping() bool { return r.closed.Load() }

// close refuses new calls, cancels the calls in flight and waits for them to
// return. It reports false, without waiting, if close had already begun.
func (r *registry) close() bool {
	if r.closed.Swap(true) {
		return false
	}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for _, cancel := range s.cancel {
			if cancel != nil {
				cancel()
			}
		}
		s.mu.Unlock()
	}
	for i := range r.shards {
		r.shards[i].wg.Wait()
	}
	return true
}
