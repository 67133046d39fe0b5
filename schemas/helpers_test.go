package schemas

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
)

// fixtureEvent returns testdata/register_newsletter.json: the event whose
// "user" is the profile documented in /work/shared/api-call-module.md, field
// for field, in its order.
func fixtureEvent(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/register_newsletter.json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func compact(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		tb.Fatalf("compact %q: %v", b, err)
	}
	return buf.Bytes()
}

// member returns the compact JSON of one top-level member of a JSON object.
func member(tb testing.TB, obj []byte, name string) []byte {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		tb.Fatal(err)
	}
	return compact(tb, m[name])
}

// fakeRegistry is a Confluent-compatible schema registry over real HTTP:
// GET /schemas/ids/{id} and POST /subjects/{subject}/versions, optional basic
// auth, a switch to answer 503, and per-id request counts.
type fakeRegistry struct {
	mu       sync.Mutex
	schemas  map[uint32]string
	types    map[uint32]string // schemaType, "" = AVRO
	subjects map[string]uint32 // subject+schema -> id
	gets     map[uint32]int
	requests int
	next     uint32
	failing  bool   // answer 503 to everything
	user     string // required basic auth user, "" = none
	pass     string
	gate     chan struct{} // when set, GETs signal arrived, then wait for gate to close
	arrived  chan struct{}
}

func newFakeRegistry(tb testing.TB) (*fakeRegistry, *httptest.Server) {
	tb.Helper()
	fr, h := newFakeRegistryHandler()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return fr, srv
}

func newFakeRegistryHandler() (*fakeRegistry, http.Handler) {
	fr := &fakeRegistry{
		schemas: map[uint32]string{}, types: map[uint32]string{},
		subjects: map[string]uint32{}, gets: map[uint32]int{}, next: 1,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /schemas/ids/{id}", fr.getSchema)
	mux.HandleFunc("POST /subjects/{subject}/versions", fr.register)
	return fr, fr.auth(mux)
}

func (fr *fakeRegistry) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr.mu.Lock()
		fr.requests++
		failing, user, pass := fr.failing, fr.user, fr.pass
		fr.mu.Unlock()
		if failing {
			http.Error(w, `{"error_code":50301,"message":"down"}`, http.StatusServiceUnavailable)
			return
		}
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				http.Error(w, `{"error_code":401,"message":"Unauthorized"}`, http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (fr *fakeRegistry) getSchema(w http.ResponseWriter, r *http.Request) {
	id64, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	id := uint32(id64)
	fr.mu.Lock()
	fr.gets[id]++
	s, ok := fr.schemas[id]
	st := fr.types[id]
	gate, arrived := fr.gate, fr.arrived
	fr.mu.Unlock()
	if gate != nil {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-gate
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error_code":40403,"message":"Schema not found"}`))
		return
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(map[string]string{"schema": s, "schemaType": st})
}

func (fr *fakeRegistry) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Schema string `json:"schema"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Schema == "" {
		http.Error(w, `{"error_code":42201,"message":"Invalid schema"}`, http.StatusUnprocessableEntity)
		return
	}
	key := r.PathValue("subject") + "\x00" + req.Schema
	fr.mu.Lock()
	id, ok := fr.subjects[key]
	if !ok {
		id = fr.next
		fr.next++
		fr.subjects[key] = id
		fr.schemas[id] = req.Schema
	}
	fr.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]uint32{"id": id})
}

// set changes the fake's behaviour under its lock (handlers run on other
// goroutines).
func (fr *fakeRegistry) set(f func(*fakeRegistry)) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	f(fr)
}

// put stores a schema under a chosen id.
func (fr *fakeRegistry) put(id uint32, schema, schemaType string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.schemas[id] = schema
	fr.types[id] = schemaType
}

func (fr *fakeRegistry) getsFor(id uint32) int {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.gets[id]
}

func (fr *fakeRegistry) requestCount() int {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.requests
}

// mustSchema parses a schema or fails the test.
func mustSchema(tb testing.TB, text string) *Schema {
	tb.Helper()
	s, err := ParseSchema(text)
	if err != nil {
		tb.Fatalf("ParseSchema: %v", err)
	}
	return s
}

// fastDecoder builds a decoder against a registry URL with quick retries, so
// outage tests do not wait out real backoff.
func fastDecoder(tb testing.TB, opts DecoderOptions) *Decoder {
	tb.Helper()
	d, err := NewDecoder(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if d.registry != nil {
		d.registry.backoff = 0
	}
	return d
}
