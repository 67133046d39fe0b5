package consumer

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagMatchesKnownBacklog checks Lag against a backlog of known size and
// age before any consumer ran, while none runs.
func TestLagMatchesKnownBacklog(t *testing.T) {
	b := testBroker(t, 3, "")
	cfg := loadConfig(t, baseYAML(b.Addr(), "rules: []\n"))
	age := 90 * time.Second
	old := time.Now().Add(-age)
	var recs []*kgo.Record
	for i := range 300 {
		r := event(int32(i%3), strconv.Itoa(i), `{"id":1}`)
		r.Timestamp = old
		recs = append(recs, r)
	}
	produce(t, b.Addr(), recs...)
	lags, err := Lag(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 3 {
		t.Fatalf("%d partitions, want 3: %+v", len(lags), lags)
	}
	for _, l := range lags {
		if l.Lag != 100 || l.End != 100 || l.Committed != -1 {
			t.Errorf("%+v: want lag 100, end 100, nothing committed", l)
		}
		// The age comes from the record timestamp; allow for the time the
		// test itself took.
		if math.Abs(l.LagSeconds-age.Seconds()) > 30 {
			t.Errorf("%+v: lag seconds want about %v", l, age.Seconds())
		}
	}
}

// TestThreeConsumersShareTheGroup runs three consumers in one group over a
// backlog: every partition is owned by exactly one, every event delivered,
// and the lag gauges return to 0.
func TestThreeConsumersShareTheGroup(t *testing.T) {
	const n = 6000
	b := testBroker(t, 6, "")
	rc := newReceiver(t, func(int, *http.Request) int { time.Sleep(time.Millisecond); return http.StatusOK })
	yaml := baseYAML(b.Addr(), fmt.Sprintf(`rules:
  - name: all
    path: 1
    event: "*"
    call:
      url: %s/x?id={{ user.id }}
`, rc.URL))
	var members []*running
	for range 3 {
		members = append(members, startConsumer(t, loadConfig(t, yaml), nil))
	}
	// Ownership: once the group settled, each partition has one owner and
	// every member has some.
	waitFor(t, "all 6 partitions owned, each by exactly one member", 60*time.Second, func() bool {
		owners := map[topicPartition]int{}
		busy := 0
		for _, m := range members {
			mine := 0
			m.c.partitions.Range(func(k, _ any) bool { owners[k.(topicPartition)]++; mine++; return true })
			if mine > 0 {
				busy++
			}
		}
		for _, n := range owners {
			if n > 1 {
				// A transient overlap is legal only inside a rebalance; a
				// settled group never has one, so only count settled views.
				return false
			}
		}
		return len(owners) == 6 && busy == 3
	})
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = event(int32(i%6), strconv.Itoa(i), fmt.Sprintf(`{"id":%d}`, i))
	}
	produce(t, b.Addr(), recs...)
	waitFor(t, "every event delivered", 120*time.Second, func() bool {
		seen := map[string]bool{}
		for _, c := range rc.snapshot() {
			seen[c.URL] = true
		}
		return len(seen) == n
	})
	waitFor(t, "lag gauges back to 0 on every member", 60*time.Second, func() bool {
		for _, m := range members {
			for p := range 6 {
				g := m.c.m.lagMessages.WithLabelValues(testTopic, strconv.Itoa(p))
				if testutil.ToFloat64(g) != 0 || testutil.ToFloat64(m.c.m.lagSeconds.WithLabelValues(testTopic, strconv.Itoa(p))) != 0 {
					return false
				}
			}
		}
		return true
	})
	worked := 0
	for _, m := range members {
		if testutil.ToFloat64(m.c.m.events.WithLabelValues(testTopic, "matched")) > 0 {
			worked++
		}
	}
	if worked != 3 {
		t.Errorf("only %d of 3 members handled events: the group did not share the work", worked)
	}
}
