package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/apicall/apicall/schemas"
)

// timestampLayout is the body's timestamp: microseconds, then a literal
// +00:00 (the product sends +00:00, not Z; receivers parse it as is).
const timestampLayout = "2006-01-02T15:04:05.000000"

// headerRoom is spare room in a call's header map for what the dispatcher
// adds (Idempotency-Key, User-Agent, webhook-id, -timestamp, -signature), so
// adding them does not grow the map.
const headerRoom = 5

// maxPooledBuf keeps one huge profile from pinning memory in the pool.
const maxPooledBuf = 1 << 20

// renderBuf is scratch space for one Render call, pooled per Rules.
type renderBuf struct {
	body []byte
	strs []byte
	tmp  []byte
	ends []int
}

// callBox allocates a Call together with room for its header values, so a
// typical call (up to four headers) costs one allocation for both. Released
// calls' boxes (Call.Release) are reused with their header maps: a box and
// a map per call were about a tenth of the bytes apicall allocated (make
// bench profile).
type callBox struct {
	call  Call
	vals  [4]string
	rules *Rules // whose pool the box returns to
}

var errNilEvent = errors.New("config: render: nil event")

// Render builds the API call rule r makes for ev, with the body timestamp
// from now. The body is exactly
//
//	{"path":P,"timestamp":"2021-02-01T07:27:44.469241+00:00","extra":{...},"user":{...}}
//
// with user the event's profile bytes unchanged ({} when the event has
// none), and no "user" key when the rule excludes it. GET calls have no body
// and no Content-Type. Render reads the event's raw JSON for the tags it
// has and decodes nothing; the returned Call owns all its memory except
// Path and SigningSecrets, which are shared with the rule.
func (r *CompiledRule) Render(ev *schemas.Event, now time.Time) (*Call, error) {
	if ev == nil {
		return nil, errNilEvent
	}
	rb := r.rules.bufs.Get().(*renderBuf)
	missing := 0

	var body []byte
	var bodyBuf *[]byte
	if r.method != http.MethodGet {
		b := append(rb.body[:0], r.bodyHead...)
		b = now.UTC().AppendFormat(b, timestampLayout)
		b = append(b, `+00:00","extra":`...)
		b = r.extra.render(b, ev, &missing, &rb.tmp)
		if !r.excludeUser {
			b = append(b, `,"user":`...)
			b = appendUser(b, ev.User)
		}
		b = append(b, '}')
		bodyBuf = r.rules.body(len(b))
		body = append((*bodyBuf)[:0], b...)
		rb.body = b
	}

	// The URL, the templated header values and the idempotency key are
	// rendered back to back and become one string, sliced.
	s := rb.strs[:0]
	if r.urlLit == "" {
		s = r.url.render(s, ev, &missing, &rb.tmp)
	}
	urlEnd := len(s)
	ends := rb.ends[:0]
	for i := range r.headers {
		if h := &r.headers[i]; h.tags {
			s = h.value.render(s, ev, &missing, &rb.tmp)
		}
		ends = append(ends, len(s))
	}
	s = appendIdempotencyKey(s, ev.Topic, ev.Partition, ev.Offset, r.name)
	all := string(s)
	rb.strs, rb.ends = s, ends

	box, _ := r.rules.boxes.Get().(*callBox)
	if box == nil {
		box = new(callBox)
	}
	c := &box.call
	c.box, box.rules = box, r.rules
	vals := box.vals[:]
	if len(r.headers) > len(vals) {
		vals = make([]string, len(r.headers))
	}
	if c.Header == nil { // a fresh box; a released one keeps its emptied map
		c.Header = make(http.Header, len(r.headers)+headerRoom)
	}
	start := urlEnd
	for i := range r.headers {
		h := &r.headers[i]
		if h.tags {
			vals[i] = all[start:ends[i]]
		} else {
			vals[i] = h.lit
		}
		start = ends[i]
		// Capacity 1: an Add by the caller copies instead of writing
		// into the neighbouring header's value.
		c.Header[h.name] = vals[i : i+1 : i+1]
	}
	c.URL = r.urlLit
	if c.URL == "" {
		c.URL = all[:urlEnd]
	}
	c.IdempotencyKey = all[start:]
	c.Rule = r.name
	c.Path = r.path
	c.Method = r.method
	c.Body, c.bodyBuf = body, bodyBuf
	c.ExcludeUser = r.excludeUser
	c.Timeout = r.timeout
	c.MaxAttempts = r.maxAttempts
	c.SigningSecrets = r.signingSecrets
	c.MissingTags = missing

	if cap(rb.body)+cap(rb.strs)+cap(rb.tmp) <= maxPooledBuf {
		r.rules.bufs.Put(rb)
	}
	return c, nil
}

// body returns a buffer with room for n bytes: a released body's, or a
// new one of exactly n.
func (rs *Rules) body(n int) *[]byte {
	if b, ok := rs.bodies.Get().(*[]byte); ok {
		if cap(*b) >= n {
			return b
		}
		rs.bodies.Put(b) // right for a smaller body
	}
	b := make([]byte, 0, n)
	return &b
}

// ReleaseBody hands c.Body's memory back for the bodies of later calls and
// sets c.Body to nil. Call it only once nothing reads Body any more: the
// consumer does when the dispatcher says the call's last attempt is over
// and no copy of the body is in use (dispatcher.Result.BodyReleased). A
// rendered body is about a third of the bytes apicall allocates per call
// (make bench profile), so reusing it saves garbage collection work.
// Calling it twice, or on a Call Render did not make, does nothing;
// releasing a copy of the Call as well would hand the buffer out twice.
func (c *Call) ReleaseBody() {
	if c.bodyBuf == nil {
		return
	}
	if cap(c.Body) <= maxPooledBuf {
		*c.bodyBuf = c.Body[:0]
		c.box.rules.bodies.Put(c.bodyBuf)
	}
	c.Body, c.bodyBuf = nil, nil
}

// Release hands all of c's memory back for later calls: its body (as
// ReleaseBody), and the Call itself with its header map. c must not be used
// at all afterwards, nor any Header value slice taken from it; strings read
// from it before (URL, IdempotencyKey, Method) stay valid. Call it, like
// ReleaseBody, only once nothing reads the call any more: the consumer does
// after the dispatcher said no copy of the request is in use
// (dispatcher.Result.BodyReleased) and the outcome record took what it
// needs. A Call Render did not make is left alone.
func (c *Call) Release() {
	box := c.box
	if box == nil {
		return
	}
	c.ReleaseBody()
	h := c.Header
	clear(h)
	box.call = Call{Header: h}
	box.vals = [len(box.vals)]string{}
	box.rules.boxes.Put(box)
}

// appendUser appends the profile as the event carried it. An event without
// a profile (or with null) sends {}: receivers written for the product
// always get an object and can read user.email without a null check.
func appendUser(dst, user []byte) []byte {
	if t := bytes.TrimSpace(user); len(t) == 0 || string(t) == "null" {
		return append(dst, "{}"...)
	}
	return append(dst, user...)
}

// IdempotencyKey returns the Idempotency-Key of the call rule makes for the
// record at (topic, partition, offset): the first 16 bytes of
// SHA-256(topic NUL partition NUL offset NUL rule), partition and offset in
// decimal, as 32 lowercase hex characters. It is the same on every
// redelivery and replay of the record and differs between rules; NUL cannot
// occur in a topic or a rule name, so the fields cannot run into each other.
func IdempotencyKey(topic string, partition int32, offset int64, rule string) string {
	return string(appendIdempotencyKey(make([]byte, 0, 32), topic, partition, offset, rule))
}

func appendIdempotencyKey(dst []byte, topic string, partition int32, offset int64, rule string) []byte {
	var in [256]byte
	b := append(in[:0], topic...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, offset, 10)
	b = append(b, 0)
	b = append(b, rule...)
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:16])
}
