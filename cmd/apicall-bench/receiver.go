package main

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// receivers are the benchmark's API endpoints: K HTTP/1.1 servers on
// 127.0.0.1 (one per "host"), sharing one tally. Each answers 200 after the
// configured latency, counts calls by Idempotency-Key (a key seen twice is a
// duplicate), and takes the event-to-call latency from the send time the
// event carries: the bench_sent_ns query parameter apicall's rules add, or
// "sent_at_ns" in a body holding the raw event (the baseline's calls).
//
// The servers share the machine with the system measured, so by default
// they are fasthttp servers: about a third of net/http's CPU per request,
// which leaves more of the 2 cores to the system under test, whichever it
// is. --receiver net/http switches them back, for comparison.
type receivers struct {
	tally   *tally
	servers []*http.Server
	fast    []*fasthttp.Server
	urls    []string // base URLs, http://127.0.0.1:port
	errs    chan error
}

// Receiver kinds (--receiver).
const (
	receiverFast    = "fasthttp"
	receiverNetHTTP = "net/http"
)

// startReceivers starts k servers of kind answering after latency.
func startReceivers(k int, latency time.Duration, kind string) (*receivers, error) {
	rs := &receivers{tally: newTally(), errs: make(chan error, k)} // one Serve result per server
	h := &handler{t: rs.tally, latency: latency}
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("receiver: %w", err)
		}
		rs.urls = append(rs.urls, "http://"+ln.Addr().String())
		if kind == receiverFast {
			srv := &fasthttp.Server{
				Handler:               h.serveFast,
				ReadTimeout:           10 * time.Second,
				NoDefaultDate:         true,
				NoDefaultServerHeader: true,
				ConnState: func(_ net.Conn, s fasthttp.ConnState) {
					if s == fasthttp.StateNew {
						rs.tally.conns.Add(1)
					}
				},
			}
			rs.fast = append(rs.fast, srv)
			go func() { rs.errs <- srv.Serve(ln) }() // exits on Shutdown
			continue
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					rs.tally.conns.Add(1)
				}
			},
		}
		rs.servers = append(rs.servers, srv)
		go func() { rs.errs <- srv.Serve(ln) }() // exits on Close
	}
	return rs, nil
}

// Close stops the servers and waits for their Serve loops.
func (rs *receivers) Close() error {
	var errs []error
	for _, s := range rs.servers {
		_ = s.Close()
	}
	for _, s := range rs.fast {
		// Shutdown closes the listener and idle connections, then waits
		// for calls being answered (at most the receiver latency).
		if err := s.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	for range len(rs.servers) + len(rs.fast) {
		if err := <-rs.errs; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	rs.servers, rs.fast = nil, nil
	return errors.Join(errs...)
}

type handler struct {
	t       *tally
	latency time.Duration
}

// bufs holds request-body buffers; bodies are about 1 KB.
var bufs = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4096)) }}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	buf := bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(r.Body)
	if err != nil {
		bufs.Put(buf)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sent, ok := sentAt(r.URL.RawQuery, buf.Bytes())
	bufs.Put(buf)
	h.t.observe(r.Header.Get("Idempotency-Key"), now, sent, ok)
	if h.latency > 0 {
		time.Sleep(h.latency)
	}
	w.WriteHeader(http.StatusOK)
}

// serveFast is ServeHTTP for the fasthttp servers.
func (h *handler) serveFast(ctx *fasthttp.RequestCtx) {
	now := time.Now()
	sent, ok := sentAt(string(ctx.URI().QueryString()), ctx.PostBody())
	h.t.observe(string(ctx.Request.Header.Peek("Idempotency-Key")), now, sent, ok)
	if h.latency > 0 {
		time.Sleep(h.latency)
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
}

// sentAt finds the send time: bench_sent_ns=N in the query, else
// "sent_at_ns":N in the body. A cheap scan, no JSON decoding.
func sentAt(query string, body []byte) (int64, bool) {
	const q = "bench_sent_ns="
	if i := strings.Index(query, q); i >= 0 {
		return leadingInt(query[i+len(q):])
	}
	const b = `"sent_at_ns":`
	if i := bytes.Index(body, []byte(b)); i >= 0 {
		return leadingInt(string(body[i+len(b):]))
	}
	return 0, false
}

// leadingInt parses the decimal digits at the start of s.
func leadingInt(s string) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(s) && i < 19 && '0' <= s[i] && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n, i > 0
}

// tally is what the receivers saw. Keys are sharded to keep the lock
// contention of thousands of concurrent calls low.
type tally struct {
	seed   maphash.Seed
	shards [64]shard

	calls    atomic.Int64 // every call
	distinct atomic.Int64 // calls with a key not seen before
	dups     atomic.Int64 // calls with a key seen before
	noKey    atomic.Int64 // calls without Idempotency-Key
	noSent   atomic.Int64 // first calls without a send time
	conns    atomic.Int64 // TCP connections accepted
	firstNS  atomic.Int64 // arrival of the first call
	lastNew  atomic.Int64 // arrival of the latest first-time call
}

type shard struct {
	mu   sync.Mutex
	seen map[string]struct{}
	lat  []int64  // event-to-call latency of first-time calls, ns
	_    [24]byte // pad to a cache line: shards are hit concurrently
}

func newTally() *tally {
	t := &tally{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].seen = make(map[string]struct{}, 4096)
	}
	return t
}

func (t *tally) observe(key string, now time.Time, sent int64, hasSent bool) {
	t.calls.Add(1)
	ns := now.UnixNano()
	t.firstNS.CompareAndSwap(0, ns)
	if key == "" {
		t.noKey.Add(1)
		return
	}
	s := &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
	s.mu.Lock()
	if _, dup := s.seen[key]; dup {
		s.mu.Unlock()
		t.dups.Add(1)
		return
	}
	s.seen[key] = struct{}{}
	if hasSent {
		s.lat = append(s.lat, ns-sent)
	}
	s.mu.Unlock()
	if !hasSent {
		t.noSent.Add(1)
	}
	t.distinct.Add(1)
	for {
		last := t.lastNew.Load()
		if ns <= last || t.lastNew.CompareAndSwap(last, ns) {
			break
		}
	}
}

// latencies returns every recorded latency, sorted.
func (t *tally) latencies() []int64 {
	var all []int64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		all = append(all, s.lat...)
		s.mu.Unlock()
	}
	slices.Sort(all)
	return all
}
