package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/apicall/apicall/config"
)

// PartitionLag is how far the group is behind on one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is the group's committed offset; -1 when none.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
	// LagSeconds is the age of the oldest event not yet committed (0 when
	// caught up): it keeps growing while a partition is stuck.
	LagSeconds float64 `json:"lag_seconds"`
	// Owner is the group member that owns the partition ("" when none).
	Owner string `json:"owner"`
}

// lagMeter measures the group's lag from the brokers: end offsets, committed
// offsets and, for a lagging partition, the timestamp of the first
// uncommitted record (fetched once per committed offset and cached).
type lagMeter struct {
	client sarama.Client
	admin  sarama.ClusterAdmin
	group  string
	topics []string
	now    func() time.Time
	// ts caches the timestamp of the record at a committed offset.
	ts map[topicPartition]offsetTime
}

type offsetTime struct {
	offset int64
	ts     time.Time
}

func newLagMeter(client sarama.Client, group string, topics []string, now func() time.Time) (*lagMeter, error) {
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	return &lagMeter{client: client, admin: admin, group: group, topics: topics, now: now, ts: make(map[topicPartition]offsetTime)}, nil
}

// measure returns the lag of every partition of the topics, sorted.
func (l *lagMeter) measure(ctx context.Context, withOwners bool) ([]PartitionLag, error) {
	if err := l.client.RefreshMetadata(l.topics...); err != nil {
		return nil, fmt.Errorf("refresh metadata: %w", err)
	}
	parts := make(map[string][]int32, len(l.topics))
	for _, t := range l.topics {
		ps, err := l.client.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		parts[t] = ps
	}
	committed := make(map[topicPartition]int64)
	resp, err := l.admin.ListConsumerGroupOffsets(l.group, parts)
	switch {
	case err == nil:
		for t, m := range resp.Blocks {
			for p, b := range m {
				if b.Err == sarama.ErrNoError {
					committed[topicPartition{t, p}] = b.Offset
				}
			}
		}
	case errors.Is(err, sarama.ErrGroupIDNotFound):
		// An unknown group has committed nothing.
	default:
		return nil, fmt.Errorf("committed offsets of group %s: %w", l.group, err)
	}
	owners := map[topicPartition]string{}
	if withOwners {
		owners = l.owners()
	}
	var out []PartitionLag
	for _, t := range l.topics {
		for _, p := range parts[t] {
			tp := topicPartition{t, p}
			end, err := l.client.GetOffset(t, p, sarama.OffsetNewest)
			if err != nil {
				return nil, fmt.Errorf("end offset of %s/%d: %w", t, p, err)
			}
			c, ok := committed[tp]
			if !ok {
				c = -1
			}
			from := c
			if from < 0 {
				if from, err = l.client.GetOffset(t, p, sarama.OffsetOldest); err != nil {
					return nil, fmt.Errorf("start offset of %s/%d: %w", t, p, err)
				}
			}
			pl := PartitionLag{Topic: t, Partition: p, Committed: c, End: end, Lag: max(0, end-from), Owner: owners[tp]}
			if pl.Lag > 0 {
				if ts, ok := l.recordTime(ctx, tp, from); ok {
					pl.LagSeconds = max(0, l.now().Sub(ts).Seconds())
				}
			}
			out = append(out, pl)
		}
	}
	slices.SortFunc(out, func(a, b PartitionLag) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return out, nil
}

// recordTime returns the timestamp of the record at offset, from the cache
// or by fetching that one record.
func (l *lagMeter) recordTime(ctx context.Context, tp topicPartition, offset int64) (time.Time, bool) {
	if c, ok := l.ts[tp]; ok && c.offset == offset {
		return c.ts, true
	}
	cons, err := sarama.NewConsumerFromClient(l.client)
	if err != nil {
		return time.Time{}, false
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(tp.topic, tp.partition, offset)
	if err != nil {
		return time.Time{}, false
	}
	defer pc.AsyncClose()
	select {
	case m := <-pc.Messages():
		if m == nil {
			return time.Time{}, false
		}
		l.ts[tp] = offsetTime{offset, m.Timestamp}
		return m.Timestamp, true
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
	}
	return time.Time{}, false
}

// owners maps partitions to the member (client id/host) that owns them.
func (l *lagMeter) owners() map[topicPartition]string {
	out := map[topicPartition]string{}
	descs, err := l.admin.DescribeConsumerGroups([]string{l.group})
	if err != nil || len(descs) == 0 {
		return out
	}
	for _, m := range descs[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil || a == nil {
			continue
		}
		for t, ps := range a.Topics {
			for _, p := range ps {
				out[topicPartition{t, p}] = m.ClientId + "@" + m.ClientHost
			}
		}
	}
	return out
}

// runLag refreshes the lag gauges every few seconds until ctx ends.
func (c *Consumer) runLag(ctx context.Context, client sarama.Client, topics []string) error {
	lm, err := newLagMeter(client, c.cfg.Kafka.Group, topics, c.now)
	if err != nil {
		return err
	}
	t := time.NewTicker(c.lagEvery)
	defer t.Stop()
	failing := false
	for {
		lags, err := lm.measure(ctx, false)
		if err != nil {
			if !failing {
				c.log.Warn("lag measurement failed", "err", err)
			}
			failing = true
		} else {
			failing = false
			c.brokersOK.Store(c.now().UnixNano())
			for _, l := range lags {
				p := strconv.Itoa(int(l.Partition))
				c.m.lagMessages.WithLabelValues(l.Topic, p).Set(float64(l.Lag))
				c.m.lagSeconds.WithLabelValues(l.Topic, p).Set(l.LagSeconds)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Lag reports the group's lag per partition of the configured topics; it
// works whether apicall runs or not (it reads only broker state).
func Lag(ctx context.Context, cfg *config.Config, log *slog.Logger) ([]PartitionLag, error) {
	sc, err := saramaConfig(cfg.Kafka, cfg.Kafka.ClientID+"-lag")
	if err != nil {
		return nil, err
	}
	sc.Metadata.Retry.Max = 1
	client, err := sarama.NewClient(cfg.Kafka.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", cfg.Kafka.Brokers, err)
	}
	defer client.Close()
	topics := make([]string, 0, len(cfg.Kafka.Topics))
	for _, t := range cfg.Kafka.Topics {
		topics = append(topics, t.Name)
	}
	lm, err := newLagMeter(client, cfg.Kafka.Group, topics, time.Now)
	if err != nil {
		return nil, err
	}
	return lm.measure(ctx, true)
}
