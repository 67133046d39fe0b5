package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// BenchmarkMatchRender is the hot path for one event: match the example's
// rules against the fixture event (both match; one has a condition) and
// render every matching call.
func BenchmarkMatchRender(b *testing.B) {
	rules := exampleRules(b)
	ev := fixtureEvent(b)
	dst := make([]*CompiledRule, 0, 8)
	if got := len(rules.Match(dst, ev)); got != 2 {
		b.Fatalf("%d rules match the fixture, want 2", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		dst = rules.Match(dst[:0], ev)
		for _, r := range dst {
			if _, err := r.Render(ev, fixtureTime); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestMatchRenderAllocations keeps the hot path's allocation budget: the
// two example calls cost 8 allocations (per call: the Call with its header
// values, the body, the rendered strings, the header map).
func TestMatchRenderAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	rules := exampleRules(t)
	ev := fixtureEvent(t)
	dst := make([]*CompiledRule, 0, 4)
	run := func() {
		dst = rules.Match(dst[:0], ev)
		for _, r := range dst {
			if _, err := r.Render(ev, fixtureTime); err != nil {
				t.Fatal(err)
			}
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n >= 10 {
		t.Errorf("match + render allocates %.1f times per event, want under 10", n)
	}
}

// BenchmarkMatch50 matches the fixture event against the example rules
// plus the 50 rules that never fire which cmd/apicall-bench adds (half for
// other event names, half with a false condition evaluated on every event).
func BenchmarkMatch50(b *testing.B) {
	src, err := os.ReadFile("example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.Write(src)
	for i := range 50 {
		if i%2 == 0 {
			fmt.Fprintf(&sb, "  - name: other-%d\n    path: %d\n    event: Other_%d\n    call: {url: \"http://h/x\"}\n", i, 1000+i, i)
		} else {
			fmt.Fprintf(&sb, "  - name: false-%d\n    path: %d\n    event: Register_newsletter\n    when: 'user.score > %d || user.country == \"Atlantis-%d\"'\n    call: {url: \"http://h/x\"}\n", i, 1000+i, 1000+i, i)
		}
	}
	cfg, err := Parse("bench.yaml", []byte(sb.String()), noEnv)
	if err != nil {
		b.Fatal(err)
	}
	rules := cfg.Compiled()
	ev := fixtureEvent(b)
	dst := make([]*CompiledRule, 0, 8)
	b.Logf("%d rules match", len(rules.Match(dst, ev)))
	b.ReportAllocs()
	for b.Loop() {
		dst = rules.Match(dst[:0], ev)
	}
}
