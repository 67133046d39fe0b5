package consumer

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCounterCacheIsTheVecsChild checks that counts made through the cache
// land on the series the registry exposes, concurrently, for each label set.
func TestCounterCacheIsTheVecsChild(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	keys := [][3]string{
		{"newsletter-to-crm", "crm.example.com", "delivered"},
		{"newsletter-to-crm", "crm.example.com", "parked"},
		{"welcome-usa-only", "mail.example.com", "delivered"},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				m.deliveriesBy.with(keys[(g+i)%len(keys)]).Inc()
			}
		})
	}
	wg.Wait()
	m.eventsBy.with([2]string{"user-events", "matched"}).Add(3)
	for _, k := range keys {
		if got := testutil.ToFloat64(m.deliveries.WithLabelValues(k[:]...)); got != 800 {
			t.Errorf("deliveries%v = %v, want 800", k, got)
		}
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues("user-events", "matched")); got != 3 {
		t.Errorf("events = %v, want 3", got)
	}
	if n := testutil.CollectAndCount(m.deliveries); n != len(keys) {
		t.Errorf("%d delivery series, want %d", n, len(keys))
	}
}
