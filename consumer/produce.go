package consumer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"

	"github.com/apicall/apicall/schemas"
)

// ProduceOptions configure Produce.
type ProduceOptions struct {
	Brokers []string
	Topic   string
	// Format is "json" (the line as is) or "avro" (Confluent wire format
	// when RegistryURL is set, single-object encoding otherwise).
	Format string
	// KeyField is a path into the event (e.g. "user.id") whose value keys
	// the record; "" leaves records unkeyed.
	KeyField    string
	RegistryURL string
	// Wait is how long to wait for the brokers to accept connections
	// before giving up (a broker that is still starting); 0 means no wait.
	Wait time.Duration
	// In holds one JSON event per line; blank lines are skipped.
	In io.Reader
}

// Produce publishes the events read from o.In and returns how many were
// acknowledged. A line that is not a JSON object stops it with an error
// naming the line.
func Produce(ctx context.Context, o ProduceOptions) (int, error) {
	enc, err := newLineEncoder(ctx, o)
	if err != nil {
		return 0, err
	}
	if err := waitForBrokers(ctx, o.Brokers, o.Wait); err != nil {
		return 0, err
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(o.Brokers...),
		Topic:                  o.Topic,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		BatchSize:              1000,
		AllowAutoTopicCreation: true,
	}
	defer w.Close()
	sc := bufio.NewScanner(o.In)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var batch []kafka.Message
	sent := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("publish to %s: %w", o.Topic, err)
		}
		sent += len(batch)
		batch = batch[:0]
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
			_ = flush()
			return sent, fmt.Errorf("line %d: not a JSON object", line)
		}
		var key []byte
		if o.KeyField != "" {
			if v := gjson.GetBytes(b, o.KeyField); v.Exists() {
				key = []byte(v.String())
			}
		}
		val, err := enc(b)
		if err != nil {
			_ = flush()
			return sent, fmt.Errorf("line %d: %w", line, err)
		}
		batch = append(batch, kafka.Message{Key: key, Value: val})
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return sent, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		_ = flush()
		return sent, fmt.Errorf("read input: %w", err)
	}
	return sent, flush()
}

// waitForBrokers dials the brokers until one answers a metadata request or
// wait has passed.
func waitForBrokers(ctx context.Context, brokers []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var last error
		for _, b := range brokers {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err := kafka.DialContext(dctx, "tcp", b)
			cancel()
			if err == nil {
				_, err = conn.Brokers()
				conn.Close()
				if err == nil {
					return nil
				}
			}
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("brokers %v not reachable: %w", brokers, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newLineEncoder returns the function that turns one JSON line into the
// record value for the chosen format.
func newLineEncoder(ctx context.Context, o ProduceOptions) (func([]byte) ([]byte, error), error) {
	f, err := schemas.ParseFormat(strings.ToLower(o.Format))
	if err != nil {
		return nil, err
	}
	opts := schemas.EncoderOptions{Format: f, Topic: o.Topic}
	if f == schemas.FormatAvro && o.RegistryURL != "" {
		reg, err := schemas.NewRegistry(schemas.RegistryOptions{URL: o.RegistryURL})
		if err != nil {
			return nil, err
		}
		opts.Registry = reg
	}
	enc, err := schemas.NewEncoder(ctx, opts)
	if err != nil {
		return nil, err
	}
	return enc.Encode, nil
}
