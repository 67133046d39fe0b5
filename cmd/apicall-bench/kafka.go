package main

import (
	"context"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apicall/apicall/consumer"
)

// Topics created on the run's broker: the source and apicall's own (the
// defaults apicall writes to).
var benchTopics = []string{benchTopic, "apicall.outcomes", "apicall.retry", "apicall.dead-letter"}

// startBroker starts a fresh in-memory kfake broker on a free port.
func startBroker(partitions int) (*consumer.Broker, error) {
	return consumer.StartBroker(consumer.BrokerOptions{
		Listen:     "127.0.0.1:0",
		Partitions: int32(partitions),
		Topics:     benchTopics,
	})
}

// admin reads offsets and group state with franz-go, independently of the
// clients under test.
type admin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newAdmin(addr string) (*admin, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, err
	}
	return &admin{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (a *admin) Close() { a.cl.Close() }

// endOffsets returns each partition's end offset of topic.
func (a *admin) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	ends, err := a.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	return out, ferr
}

// total sums offsets.
func total(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// lagging returns how many records of topic group has not committed past,
// and the committed and end offsets it compared.
func (a *admin) lagging(ctx context.Context, group, topic string) (int64, map[int32]int64, map[int32]int64, error) {
	ends, err := a.endOffsets(ctx, topic)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := a.adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, nil, nil, err
	}
	committed := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			committed[o.Partition] = o.At
		}
	})
	var lag int64
	for p, end := range ends {
		lag += end - max(0, committed[p]) // no commit yet reads as -1 or absent
	}
	return lag, committed, ends, nil
}

// groupStable reports whether group has members and a settled assignment.
func (a *admin) groupStable(ctx context.Context, group string) (bool, error) {
	gs, err := a.adm.DescribeGroups(ctx, group)
	if err != nil {
		return false, err
	}
	g, ok := gs[group]
	if !ok {
		return false, nil
	}
	if g.Err != nil { // e.g. not created yet
		return false, nil
	}
	return g.State == "Stable" && len(g.Members) > 0, nil
}
