package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Negative caching of unknown schema ids: a 404 is remembered for a while so
// that a topic full of values with a bad id does not cost one registry call
// per value, but not forever (a registry replica may lag behind the one the
// producer registered with).
const (
	negativeTTL        = 30 * time.Second
	maxNegativeEntries = 1024
)

// registryEntry is one schema id in the cache. ready is closed once schema
// or err is set; until then other goroutines wanting the same id wait for
// the one fetch instead of starting their own (a burst of N values with a
// new id costs one registry call).
type registryEntry struct {
	ready   chan struct{}
	schema  *Schema
	err     error
	expires time.Time // zero: never (a schema, or a permanent failure)
	// leaderCanceled: the fetching caller's context ended; waiters with a
	// live context fetch again rather than report its cancellation.
	leaderCanceled bool
}

func (d *Decoder) decodeConfluent(ctx context.Context, topic string, value []byte) (Event, error) {
	if len(value) < confluentHeaderLen {
		return Event{}, decodeErr(ReasonInvalidAvro, "Confluent wire format needs %d header bytes, value has %d", confluentHeaderLen, len(value))
	}
	id := binary.BigEndian.Uint32(value[1:confluentHeaderLen])
	s, err := d.schemaByID(ctx, id)
	if err != nil {
		return Event{}, err
	}
	return d.decodeAvro(topic, s, value[confluentHeaderLen:])
}

func (d *Decoder) decodeSingleObject(topic string, value []byte) (Event, error) {
	if len(value) < singleObjectHeaderLen {
		return Event{}, decodeErr(ReasonInvalidAvro, "single-object encoding needs %d header bytes, value has %d", singleObjectHeaderLen, len(value))
	}
	fp := binary.LittleEndian.Uint64(value[2:singleObjectHeaderLen])
	s, ok := d.local[fp]
	if !ok {
		return Event{}, decodeErr(ReasonUnknownFingerprint, "no known schema has fingerprint %#016x", fp)
	}
	return d.decodeAvro(topic, s, value[singleObjectHeaderLen:])
}

// decodeAvro decodes with the writer schema into a pooled scratch buffer,
// then copies the natural JSON once into a buffer of exact size, owned by the
// Event.
func (d *Decoder) decodeAvro(topic string, s *Schema, body []byte) (Event, error) {
	bp, _ := d.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 4096)
		bp = &b
	}
	var sp spans
	out, err := s.appendNatural((*bp)[:0], body, &sp)
	if cap(out) <= 1<<20 { // do not pin a huge buffer in the pool
		*bp = out
		defer d.bufs.Put(bp)
	}
	if err != nil {
		return Event{}, &DecodeError{Reason: ReasonInvalidAvro, Err: fmt.Errorf("writer schema %s: %w", s.Name(), err)}
	}
	raw := append(make([]byte, 0, len(out)), out...)
	if s.root.kind != kindRecord {
		// A map at the top is still an object; anything else is not. The
		// spans come from scanning our own (valid) output.
		if err := scanObject(raw, &sp); err != nil {
			return Event{}, err
		}
	}
	return buildEvent(topic, raw, &sp)
}

// schemaByID returns the writer schema for a Confluent id, from the cache or
// the registry.
func (d *Decoder) schemaByID(ctx context.Context, id uint32) (*Schema, error) {
	d.mu.RLock()
	e := d.byID[id]
	d.mu.RUnlock()
	if e != nil {
		select {
		case <-e.ready:
			if e.expires.IsZero() || d.now().Before(e.expires) {
				return e.schema, e.err
			}
		default:
		}
	}
	if d.registry == nil {
		return nil, decodeErr(ReasonUnknownSchema, "schema id %d: no schema registry configured", id)
	}
	for {
		d.mu.Lock()
		e = d.byID[id]
		if e != nil && e.isExpired(d.now()) {
			delete(d.byID, id)
			d.negative--
			e = nil
		}
		if e == nil {
			e = &registryEntry{ready: make(chan struct{})}
			d.byID[id] = e
			d.mu.Unlock()
			d.fetch(ctx, id, e)
			return e.schema, e.err
		}
		d.mu.Unlock()
		select {
		case <-e.ready:
			if e.leaderCanceled && ctx.Err() == nil {
				continue // the fetch was abandoned, not failed: try ourselves
			}
			return e.schema, e.err
		case <-ctx.Done():
			return nil, &DecodeError{Reason: ReasonRegistryUnavailable, Err: fmt.Errorf("schema id %d: %w", id, ctx.Err())}
		}
	}
}

// isExpired reports a finished negative entry past its TTL; the caller holds
// d.mu.
func (e *registryEntry) isExpired(now time.Time) bool {
	select {
	case <-e.ready:
		return !e.expires.IsZero() && !now.Before(e.expires)
	default:
		return false
	}
}

// fetch asks the registry for id and settles e. Transient failures are not
// cached (the entry is removed before waiters wake), 404s are cached for
// negativeTTL, schemas that do not compile are cached for good (the id's
// schema never changes).
func (d *Decoder) fetch(ctx context.Context, id uint32, e *registryEntry) {
	defer close(e.ready)
	rs, err := d.registry.SchemaByID(ctx, id)
	switch {
	case errors.Is(err, ErrSchemaNotFound):
		e.err = &DecodeError{Reason: ReasonUnknownSchema, Err: err}
		d.mu.Lock()
		if d.negative < maxNegativeEntries {
			d.negative++
			e.expires = d.now().Add(negativeTTL)
		} else {
			delete(d.byID, id) // cache full of bad ids: do not remember this one
		}
		d.mu.Unlock()
	case err != nil:
		e.err = &DecodeError{Reason: ReasonRegistryUnavailable, Err: err}
		e.leaderCanceled = ctx.Err() != nil
		d.mu.Lock()
		delete(d.byID, id)
		d.mu.Unlock()
	case rs.SchemaType != "" && rs.SchemaType != "AVRO":
		e.err = decodeErr(ReasonUnknownSchema, "schema id %d is %s, not Avro", id, rs.SchemaType)
	default:
		s, err := compileSchema(rs.Schema)
		if err != nil {
			e.err = decodeErr(ReasonUnknownSchema, "schema id %d: %w", id, err)
			return
		}
		e.schema = s
		d.log.Debug("schema cached", "id", id, "name", s.Name())
	}
}
