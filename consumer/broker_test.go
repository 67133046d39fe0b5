package consumer

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMemoryBrokerAcrossSegments writes about 2.5 segments into one
// partition of the in-memory broker and reads them back, from the start and
// from an offset in the last segment: the small in-memory segment size must
// not lose, reorder or corrupt records where one segment ends and the next
// starts.
func TestMemoryBrokerAcrossSegments(t *testing.T) {
	b := testBroker(t, 1, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	adm := kadm.NewClient(kclient(t, b.Addr()))
	cfgs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, rc := range cfgs {
		for _, c := range rc.Configs {
			if c.Key == "log.segment.bytes" && c.Value != nil {
				got = *c.Value
			}
		}
	}
	if got != strconv.Itoa(memSegmentBytes) {
		t.Fatalf("log.segment.bytes = %q, want %d", got, memSegmentBytes)
	}

	const size = 8 << 10
	n := memSegmentBytes * 5 / 2 / size
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := make([]byte, size)
		copy(v, fmt.Sprintf("record %d;", i))
		v[size-1] = byte(i)
		recs[i] = &kgo.Record{Topic: testTopic, Partition: 0, Value: v}
	}
	produce(t, b.Addr(), recs...)

	all := readAll(t, b.Addr(), testTopic)
	if len(all) != n {
		t.Fatalf("read %d records, want %d", len(all), n)
	}
	for i, r := range all {
		if r.Offset != int64(i) || string(r.Value) != string(recs[i].Value) {
			t.Fatalf("record at %d: offset %d, value %.20q..., want offset %d, %.20q...", i, r.Offset, r.Value, i, recs[i].Value)
		}
	}

	from := int64(n - 10)
	cl := kclient(t, b.Addr(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{testTopic: {0: kgo.NewOffset().At(from)}}))
	var tail []*kgo.Record
	for len(tail) < 10 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read from offset %d: got %d of 10 records", from, len(tail))
		}
		fs.EachRecord(func(r *kgo.Record) { tail = append(tail, r) })
	}
	for i, r := range tail {
		if want := from + int64(i); r.Offset != want || string(r.Value) != string(recs[want].Value) {
			t.Fatalf("tail record %d: offset %d, want %d (or value differs)", i, r.Offset, want)
		}
	}
}
