package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The benchmark's events are Register_newsletter user events shaped like
// config/testdata/fixture-event.json (about 1 KB of JSON), one distinct user
// per event: user.id is the event's sequence number + 1 and the record key.
// Names, emails, country, emails_enabled, score and plan vary with the id,
// so the example's conditional rule (welcome-usa-only: USA and emails
// enabled) matches one event in four. data.sent_at_ns is the wall-clock
// time the record was handed to the producer; the receiver reads it back to
// measure event-to-call latency.

var (
	firstNames = []string{"John", "Mary", "Ahmed", "Li", "Sofia", "Kwame", "Olga", "Diego", "Aiko", "Noah", "Fatima", "Lukas"}
	lastNames  = []string{"Doe", "Smith", "Haddad", "Wei", "Rossi", "Mensah", "Ivanova", "Garcia", "Sato", "Brown", "Khan", "Müller"}
	// countries[id%4]: USA exactly when id%4 == 0.
	countries = []string{"USA", "France", "Brazil", "Japan"}
)

// appendEvent appends the JSON value of event i (0-based) with sentNS as
// data.sent_at_ns.
func appendEvent(b []byte, i int, sentNS int64) []byte {
	id := i + 1
	first := firstNames[id%len(firstNames)]
	last := lastNames[(id/len(firstNames))%len(lastNames)]
	b = append(b, `{"event":"Register_newsletter","timestamp":"2021-02-01T07:27:44Z","user":{"id":`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `,"key":"k`...)
	b = strconv.AppendInt(b, int64(id)*2654435761%(1<<40), 36)
	b = append(b, `","name":"`...)
	b = append(b, first...)
	b = append(b, ' ')
	b = append(b, last...)
	b = append(b, `","email":"`...)
	b = appendLower(b, first)
	b = append(b, '.')
	b = appendLower(b, last)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `@example.org","gender":"unknown","status":"visitor","phone_number":null,"first_seen":"2021-01-07T13:33:24.576109Z","last_seen":"2021-01-07T13:33:24.604490Z","page_views":`...)
	b = strconv.AppendInt(b, int64(id%97), 10)
	b = append(b, `,"last_ip":"","timezone":"USA/DC","city":null,"region":null,"country":"`...)
	b = append(b, countries[id%len(countries)]...)
	b = append(b, `","emails_enabled":`...)
	b = strconv.AppendBool(b, id%2 == 0)
	b = append(b, `,"browser_language":"en","score":`...)
	b = strconv.AppendInt(b, int64(id%100), 10)
	b = append(b, `,"browser":"Chrome","os_type":"Mac OS X","resolution":"1440x900","created_at":"2021-01-07T13:33:24.585602Z","updated_at":"2021-01-12T15:08:07.917571Z","attributes":[{"name":"plan_interest","value":"annual"},{"name":"referrer","value":"https://www.example.org/blog/launch"}],"gravatar_url":null,"lists":["newsletter"],"tags":[{"id":16,"name":"random_tag"}],"notifications":true,"facebook_url":null,"linkedin_url":null,"twitter_url":null,"google_url":null,"last_contacted":"2021-01-07T13:33:40.598000Z","user_id":"u`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `"},"data":{"plan":"`...)
	if id%3 == 0 {
		b = append(b, "free"...)
	} else {
		b = append(b, "pro"...)
	}
	b = append(b, `","sent_at_ns":`...)
	b = strconv.AppendInt(b, sentNS, 10)
	b = append(b, "}}"...)
	return b
}

// eventKey is the record key of event i: its user id.
func eventKey(i int) []byte { return strconv.AppendInt(nil, int64(i+1), 10) }

// eventUserID is the user id carried by a record key (for the baseline's
// choice of host); -1 when the key is not a number.
func eventUserID(key []byte) int64 {
	n, err := strconv.ParseInt(string(key), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// producer publishes the benchmark's events with franz-go.
type producer struct {
	cl     *kgo.Client
	failed atomic.Int64
	first  atomic.Value // error
}

// compressions are the --compression values.
var compressions = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

// newProducer connects to addr. linger trades latency for batching: the
// backlog uses a few ms, the paced producer none. compression is a key of
// compressions.
func newProducer(addr, topic string, linger time.Duration, compression string) (*producer, error) {
	codec, ok := compressions[compression]
	if !ok {
		return nil, fmt.Errorf("unknown compression %q", compression)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(20000),
	)
	if err != nil {
		return nil, err
	}
	return &producer{cl: cl}, nil
}

func (p *producer) Close() { p.cl.Close() }

// produce publishes event i asynchronously, stamped with the current time.
func (p *producer) produce(ctx context.Context, i int) {
	r := &kgo.Record{Key: eventKey(i), Value: appendEvent(make([]byte, 0, 1200), i, time.Now().UnixNano())}
	p.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
		if err != nil && p.failed.Add(1) == 1 {
			p.first.Store(err)
		}
	})
}

// wait flushes and reports the first produce error.
func (p *producer) wait(ctx context.Context) error {
	if err := p.cl.Flush(ctx); err != nil {
		return err
	}
	if n := p.failed.Load(); n > 0 {
		return fmt.Errorf("%d records failed, first: %v", n, p.first.Load())
	}
	return nil
}

// backlog publishes events [0, n) as fast as the broker takes them.
func (p *producer) backlog(ctx context.Context, n int) error {
	for i := 0; i < n && ctx.Err() == nil; i++ {
		p.produce(ctx, i)
	}
	return p.wait(ctx)
}

// paced publishes events [0, n) at rate events per second, spread evenly:
// every millisecond it publishes the events that are due by then.
func (p *producer) paced(ctx context.Context, n int, rate float64) error {
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for i := 0; i < n; {
		due := min(n, int(time.Since(start).Seconds()*rate)+1)
		for ; i < due; i++ {
			p.produce(ctx, i)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return p.wait(ctx)
}
