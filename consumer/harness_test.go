package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/dispatcher"
	"github.com/apicall/apicall/schemas"
)

// The tests talk to a real Kafka-protocol broker (kfake) over TCP with real
// clients: sarama and kafka-go inside apicall, franz-go's kgo as the
// independent producer and reader, and httptest receivers for the calls.

const testTopic = "user-events"

// testBroker starts an embedded broker on a free port with the apicall topics.
func testBroker(t testing.TB, partitions int32, dir string, extra ...string) *Broker {
	t.Helper()
	topics := append([]string{testTopic, "apicall.outcomes", "apicall.retry", "apicall.dead-letter"}, extra...)
	b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0", Partitions: partitions, Topics: topics, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// kclient is an independent franz-go client for producing and reading.
func kclient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce publishes records and waits for their acks.
func produce(t testing.TB, addr string, recs ...*kgo.Record) {
	t.Helper()
	produceWith(t, addr, nil, recs...)
}

// produceWith is produce with extra client options (TLS, SASL).
func produceWith(t testing.TB, addr string, opts []kgo.Opt, recs ...*kgo.Record) {
	t.Helper()
	cl := kclient(t, addr, append(opts, kgo.ProducerLinger(2*time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < len(recs); i += 5000 {
		if err := cl.ProduceSync(ctx, recs[i:min(i+5000, len(recs))]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// readAll reads every record currently in topic.
func readAll(t testing.TB, addr, topic string) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(kclient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	if want == 0 {
		return nil
	}
	cl := kclient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: got %d of %d records", topic, len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// committed returns the group's committed offsets and the end offsets of topic.
func committed(t testing.TB, addr, group, topic string) (map[int32]int64, map[int32]int64) {
	t.Helper()
	adm := kadm.NewClient(kclient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := map[int32]int64{}
	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil {
				c[o.Partition] = o.At
			}
		})
	}
	e := map[int32]int64{}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) { e[o.Partition] = o.Offset })
	return c, e
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// waitFor polls cond until it holds or the deadline passes. It is not a
// timing assertion: the deadline only bounds a hung test.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call is one request a receiver saw.
type call struct {
	Method, URL string
	Header      http.Header
	Body        []byte
}

// receiver is an httptest server that records calls and answers with
// handle (200 when nil).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []call
	handle func(n int, r *http.Request) int
}

func newReceiver(t testing.TB, handle func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{handle: handle}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.calls = append(rc.calls, call{r.Method, r.URL.String(), r.Header.Clone(), b})
		n := len(rc.calls)
		rc.mu.Unlock()
		status := http.StatusOK
		if rc.handle != nil {
			status = rc.handle(n, r)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) snapshot() []call {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]call(nil), rc.calls...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.calls)
}

// loadConfig writes yaml to a temp file and loads it the way `run` does.
func loadConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apicall.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("load config: %v\n%s", err, yaml)
	}
	return cfg
}

// baseYAML is a config for tests: brokers and receiver URLs filled in.
func baseYAML(broker string, extra string) string {
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  group: apicall-test
  topics: [%s]
  commit_interval: 50ms
admin:
  listen: "-"
dispatch:
  allow_private_networks: true
  shutdown_grace: 5s
retry:
  schedule: [200ms]
  max_attempts: 2
%s`, broker, testTopic, extra)
}

// running is a consumer started by startConsumer.
type running struct {
	c      *Consumer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startConsumer runs a consumer with the real decoder and dispatcher until
// the test ends (or stop is called).
func startConsumer(t testing.TB, cfg *config.Config, now func() time.Time) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, disp, err := buildConsumer(cfg, reg, log, now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t); disp.Close() })
	return r
}

// buildConsumer wires a Consumer with the real decoder and dispatcher, the
// way cmd/apicall does (tests also run it in a child process).
func buildConsumer(cfg *config.Config, reg *prometheus.Registry, log *slog.Logger, now func() time.Time) (*Consumer, *dispatcher.Dispatcher, error) {
	dec, err := schemas.NewDecoder(schemas.DecoderOptions{RegistryURL: cfg.Schemas.RegistryURL})
	if err != nil {
		return nil, nil, err
	}
	disp, err := dispatcher.New(dispatcher.Settings{
		AllowPrivateNetworks: cfg.Dispatch.AllowPrivateNetworks,
		MaxInFlightPerHost:   cfg.Dispatch.MaxInFlightPerHost,
		HostWait:             cfg.Dispatch.HostWait,
		Timeout:              cfg.Dispatch.Timeout,
		MaxAttempts:          cfg.Dispatch.MaxAttempts,
		Breaker: dispatcher.BreakerSettings{
			Window: cfg.Dispatch.Breaker.Window, MinRequests: cfg.Dispatch.Breaker.MinRequests,
			FailureRatio: cfg.Dispatch.Breaker.FailureRatio, OpenTimeout: cfg.Dispatch.Breaker.OpenTimeout,
			HalfOpenRequests: cfg.Dispatch.Breaker.HalfOpenRequests,
		},
		Backoff: dispatcher.BackoffSettings{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond},
	}, reg, log)
	if err != nil {
		return nil, nil, err
	}
	rules := cfg.Compiled()
	c, err := New(Options{
		Config: cfg, Rules: func() *config.Rules { return rules }, Decoder: dec, Dispatcher: disp,
		Registerer: reg, Logger: log, Now: now, LagInterval: 200 * time.Millisecond,
	})
	return c, disp, err
}

// stop shuts the consumer down gracefully and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// event builds a JSON event record for partition p.
func event(p int32, key string, user string) *kgo.Record {
	v := fmt.Sprintf(`{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":%s,"data":{"plan":"pro"}}`, user)
	return &kgo.Record{Topic: testTopic, Partition: p, Key: []byte(key), Value: []byte(v)}
}

// outcomes decodes every outcome record.
func outcomes(t testing.TB, addr string) []OutcomeRecord {
	t.Helper()
	var out []OutcomeRecord
	for _, r := range readAll(t, addr, "apicall.outcomes") {
		var o OutcomeRecord
		if err := json.Unmarshal(r.Value, &o); err != nil {
			t.Fatalf("outcome record %q: %v", r.Value, err)
		}
		out = append(out, o)
	}
	return out
}

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
