package consumer

import (
	"sync"
	"time"
)

// tracker follows the offsets of one partition from the moment a record is
// read until its outcome is durably recorded, and says which offset may be
// committed: the highest contiguous done offset + 1. Records complete out of
// order (calls run concurrently inside a partition), so a done record behind
// a pending one must wait; committing past the pending one would lose it on
// a crash.
//
// Entries live in a ring buffer in offset order. Its size is bounded by the
// caller (the window cap): when full, the partition stops reading.
type tracker struct {
	mu      sync.Mutex
	entries []trackEntry // ring buffer
	head    int          // index of the oldest entry
	n       int          // entries in use
	next    int64        // offset to commit: everything below is done
	changed bool         // next moved since the last takeCommit
	space   chan struct{}
}

// trackEntry is 24 bytes: the timestamp is kept as Unix nanoseconds, not a
// time.Time (24 bytes on its own), since windows hold thousands of entries.
type trackEntry struct {
	offset int64
	ts     int64 // Kafka record time, Unix nanoseconds
	done   bool
}

func newTracker(start int64, window int) *tracker {
	return &tracker{
		entries: make([]trackEntry, window),
		next:    start,
		// space is signalled when the head advances; capacity 1 because one
		// reader waits at a time and a pending signal is enough to wake it.
		space: make(chan struct{}, 1),
	}
}

// full reports whether the window is at its cap.
func (t *tracker) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n == len(t.entries)
}

// add registers a newly read record. The caller checks full first; add on a
// full tracker panics because it would mean the window cap was bypassed.
func (t *tracker) add(offset int64, ts time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == len(t.entries) {
		panic("consumer: tracker window overflow")
	}
	if t.n == 0 && offset > t.next {
		// A gap (compaction, transaction markers): nothing below offset is
		// pending, so the commit point may jump to it once it is done.
		t.next = offset
	}
	i := (t.head + t.n) % len(t.entries)
	t.entries[i] = trackEntry{offset: offset, ts: ts.UnixNano()}
	t.n++
	return i
}

// done marks the record at ring index i (returned by add) as recorded and
// advances the commit point over every contiguous done record.
func (t *tracker) done(i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries[i].done = true
	advanced := false
	for t.n > 0 && t.entries[t.head].done {
		t.next = t.entries[t.head].offset + 1
		t.entries[t.head] = trackEntry{}
		t.head = (t.head + 1) % len(t.entries)
		t.n--
		advanced = true
	}
	if advanced {
		t.changed = true
		select {
		case t.space <- struct{}{}:
		default:
		}
	}
}

// commitPoint returns the offset to commit and whether it moved since the
// last call.
func (t *tracker) commitPoint() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.changed
	t.changed = false
	return t.next, c
}

// pending returns how many records are read but not yet committable and the
// Kafka timestamp of the oldest of them (zero when none).
func (t *tracker) pending() (int, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return 0, time.Time{}
	}
	return t.n, time.Unix(0, t.entries[t.head].ts)
}
