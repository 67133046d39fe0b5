// Package consumer runs apicall's Kafka side: consumer group membership,
// partition workers with concurrency inside a partition, offset tracking that
// commits only the highest contiguous done offset, the outcome, retry and
// dead-letter producers, delayed retries, lag measurement and the embedded
// broker for local use.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/dispatcher"
	"github.com/apicall/apicall/schemas"
)

// Dispatcher sends one rendered call; *dispatcher.Dispatcher implements it.
type Dispatcher interface {
	Do(ctx context.Context, r *dispatcher.Request) dispatcher.Result
}

// Decoder turns a record value into an Event; *schemas.Decoder implements it.
type Decoder interface {
	Decode(ctx context.Context, topic string, f schemas.Format, value []byte) (schemas.Event, error)
}

// Options wire a Consumer. Config, Rules, Decoder and Dispatcher are required.
type Options struct {
	// Config supplies the kafka, outcomes, dispatch and retry sections.
	// Its Kafka.Brokers must be set (cmd starts the embedded broker first).
	Config *config.Config
	// Rules returns the current rule set; called once per event so a
	// reload takes effect for the next event without a restart.
	Rules func() *config.Rules
	// Decoder decodes record values.
	Decoder Decoder
	// Dispatcher sends calls.
	Dispatcher Dispatcher
	// Registerer receives the consumer's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LagInterval between lag refreshes; 0 means 5s.
	LagInterval time.Duration
	// Replayed marks outcome records written by this consumer as replayed.
	Replayed bool
}

// Consumer is one member of the apicall consumer group.
type Consumer struct {
	cfg     *config.Config
	rules   func() *config.Rules
	decoder Decoder
	disp    Dispatcher
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	formats map[string]schemas.Format

	writer   *writer
	global   chan struct{} // global in-flight cap; see Dispatch.MaxInFlightTotal
	pool     *pool         // goroutines that run events; created and closed by Run
	hardStop context.Context
	redact   atomic.Pointer[urlRedactor] // outcome record URLs, for the current rule set

	joined     atomic.Bool  // a group session is active
	brokersOK  atomic.Int64 // unix nanos of the last successful broker round trip
	inflight   atomic.Int64
	replayed   bool
	lagEvery   time.Duration
	partitions sync.Map // topicPartition -> *tracker, for lag and oldest age

	// Replay hooks: nil in live mode; Replay sets them before it handles
	// the first record. filter drops matched rules a replay leaves out
	// (--rule, --host); recorded sees each outcome record once written.
	filter   func(ev *schemas.Event, r *config.CompiledRule) bool
	recorded func(rec *OutcomeRecord)
}

type topicPartition struct {
	topic     string
	partition int32
}

// New checks the options and builds a Consumer; Run starts it.
func New(o Options) (*Consumer, error) {
	if o.Config == nil || o.Rules == nil || o.Decoder == nil || o.Dispatcher == nil {
		return nil, errors.New("consumer: Config, Rules, Decoder and Dispatcher are required")
	}
	if len(o.Config.Kafka.Brokers) == 0 {
		return nil, errors.New("consumer: no kafka.brokers (start the embedded broker first)")
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	formats := make(map[string]schemas.Format, len(o.Config.Kafka.Topics))
	for _, t := range o.Config.Kafka.Topics {
		f := t.Format
		if f == "" {
			f = o.Config.Kafka.Format
		}
		pf, err := schemas.ParseFormat(f)
		if err != nil {
			return nil, fmt.Errorf("consumer: topic %s: %w", t.Name, err)
		}
		formats[t.Name] = pf
	}
	m := newMetrics(o.Registerer)
	// Zero series for the bounded label values known up front, so alerts
	// and dashboards see 0 instead of "no data" before the first event.
	for _, t := range o.Config.Kafka.Topics {
		for _, r := range []string{"matched", "unmatched", "undecodable"} {
			m.eventsBy.with([2]string{t.Name, r})
		}
	}
	for _, r := range []string{"max_attempts", "max_age", "too_large", "not_json", "not_object", "invalid_field", "invalid_avro", "unknown_schema", "unknown_fingerprint", "unknown_format"} {
		m.deadLetters.WithLabelValues(r)
	}
	m.commits.WithLabelValues("ok")
	m.commits.WithLabelValues("error")
	return &Consumer{
		cfg:      o.Config,
		rules:    o.Rules,
		decoder:  o.Decoder,
		disp:     o.Dispatcher,
		log:      o.Logger.With("component", "consumer"),
		now:      o.Now,
		m:        m,
		formats:  formats,
		global:   make(chan struct{}, o.Config.Dispatch.MaxInFlightTotal),
		replayed: o.Replayed,
		lagEvery: cmp.Or(o.LagInterval, 5*time.Second),
	}, nil
}

// Ready reports nil when the consumer is in a group session and has reached
// the brokers recently; /readyz serves it.
func (c *Consumer) Ready() error {
	if !c.joined.Load() {
		return errors.New("not in a consumer group session")
	}
	last := c.brokersOK.Load()
	if last == 0 || c.now().Sub(time.Unix(0, last)) > 30*time.Second {
		return errors.New("brokers not reachable for 30s")
	}
	return nil
}

// Run joins the group and processes events until ctx is cancelled, then
// stops taking events, lets in-flight calls finish for up to
// dispatch.shutdown_grace, records their outcomes, commits and leaves.
// Goroutines it starts (group loop, retry loop, lag loop, error drain) all
// exit before it returns.
func (c *Consumer) Run(ctx context.Context) error {
	k := c.cfg.Kafka
	// hardStop ends in-flight calls and writes once the grace period after
	// ctx's cancellation has passed; until then they may finish.
	hardStop, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.Dispatch.ShutdownGrace, cancelHard)
		context.AfterFunc(hardStop, func() { t.Stop() })
	})
	defer stopGrace()
	c.hardStop = hardStop
	// Idle workers linger a few seconds so a steady stream reuses them;
	// close (after every claim has drained) waits for all of them.
	c.pool = newPool(5 * time.Second)
	defer c.pool.close()

	sc, err := saramaConfig(k, k.ClientID)
	if err != nil {
		return err
	}
	tr, err := kafkaTransport(k, k.ClientID)
	if err != nil {
		return err
	}
	client, err := connect(ctx, k.Brokers, sc, c.log)
	if err != nil {
		return err
	}
	defer client.Close()
	c.brokersOK.Store(c.now().UnixNano())
	if err := ensureTopics(ctx, client, c.cfg, c.log); err != nil {
		return err
	}

	c.writer = newWriter(k.Brokers, tr, c.log)
	defer c.writer.Close()
	c.writer.warm(ctx, c.cfg.Outcomes.Topic, c.cfg.Outcomes.RetryTopic, c.cfg.Outcomes.DeadLetterTopic)

	topics := make([]string, 0, len(k.Topics))
	for _, t := range k.Topics {
		topics = append(topics, t.Name)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return c.runGroup(gctx, client, k.Group, topics, &liveHandler{c: c})
	})
	if c.cfg.Outcomes.RetryTopic != "" {
		// The retry group has a client of its own: sarama consumer groups
		// must not share one. A JoinGroup waits on the coordinator's
		// connection for the whole rebalance and a broker answers a
		// connection's requests in order, so on a shared client the live
		// group's heartbeats, commits and fetches would queue behind the
		// retry group's JoinGroup: its session expires, and its partitions
		// go to another member while it still works on them.
		rsc, err := saramaConfig(k, k.ClientID)
		if err != nil {
			return err
		}
		rclient, err := connect(ctx, k.Brokers, rsc, c.log)
		if err != nil {
			return err
		}
		defer rclient.Close()
		g.Go(func() error {
			return c.runGroup(gctx, rclient, k.Group+".retry", []string{c.cfg.Outcomes.RetryTopic}, &retryHandler{c: c})
		})
	}
	g.Go(func() error { return c.runLag(gctx, client, topics) })
	err = g.Wait()
	if err != nil && ctx.Err() != nil {
		return nil // shutdown
	}
	return err
}

// connect builds a sarama client, retrying while the brokers are unreachable
// (a pod may start before Kafka is up) until ctx ends.
func connect(ctx context.Context, brokers []string, sc *sarama.Config, log *slog.Logger) (sarama.Client, error) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		client, err := sarama.NewClient(brokers, sc)
		if err == nil {
			return client, nil
		}
		if attempt == 1 {
			log.Warn("kafka brokers not reachable; retrying", "brokers", brokers, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to kafka %v: %w", brokers, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// runGroup consumes topics as group until ctx ends. Consume returns at every
// rebalance; the loop rejoins.
func (c *Consumer) runGroup(ctx context.Context, client sarama.Client, group string, topics []string, h sarama.ConsumerGroupHandler) error {
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", group, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cg.Close()
	// Exits when cg.Close closes the errors channel. Offset-commit failures
	// arrive here too (sarama's Commit returns nothing): they are logged
	// and counted; the offsets stay marked and the next commit retries.
	wg.Go(func() {
		var last string
		for err := range cg.Errors() {
			var ce *sarama.ConsumerError
			if errors.As(err, &ce) && isCommitError(ce.Err) {
				c.m.commits.WithLabelValues("error").Inc()
				c.log.Warn("offset commit failed; will retry", "group", group, "topic", ce.Topic, "partition", ce.Partition, "err", ce.Err)
				continue
			}
			if s := err.Error(); s != last {
				c.log.Warn("consumer group error", "group", group, "err", err)
				last = s
			}
		}
	})
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, topics, h); err != nil {
			if ctx.Err() != nil {
				break
			}
			c.log.Warn("consume failed; rejoining", "group", group, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
	}
	return nil
}

// isCommitError reports the errors sarama's offset manager reports for a
// failed OffsetCommit.
func isCommitError(err error) bool {
	for _, k := range []sarama.KError{
		sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable,
		sarama.ErrOffsetsLoadInProgress, sarama.ErrIllegalGeneration, sarama.ErrUnknownMemberId,
		sarama.ErrRebalanceInProgress, sarama.ErrOffsetMetadataTooLarge, sarama.ErrInvalidCommitOffsetSize,
		sarama.ErrGroupAuthorizationFailed, sarama.ErrTopicAuthorizationFailed, sarama.ErrFencedInstancedId,
	} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
