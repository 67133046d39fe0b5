package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/apicall/apicall/schemas"
)

func names(rs []*CompiledRule) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Name())
	}
	return out
}

func TestMatch(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [user-events, orders]}
rules:
  - {name: newsletter, event: Register_newsletter, call: {url: "https://h.example/"}}
  - {name: any, event: "*", call: {url: "https://h.example/"}}
  - {name: orders-only, event: "*", topic: orders, call: {url: "https://h.example/"}}
  - {name: usa, event: Register_newsletter, when: user.country == "USA", call: {url: "https://h.example/"}}
  - {name: pro, event: Purchase, when: data.plan == "pro", call: {url: "https://h.example/"}}
  - {name: newsletter-on-orders, event: Register_newsletter, topic: orders, call: {url: "https://h.example/"}}
`)
	rules := cfg.Compiled()
	for _, tc := range []struct {
		name  string
		event schemas.Event
		want  []string
	}{
		{"name, wildcard and condition", schemas.Event{Name: "Register_newsletter", Topic: "user-events", User: json.RawMessage(`{"country":"USA"}`)},
			[]string{"newsletter", "any", "usa"}},
		{"condition false", schemas.Event{Name: "Register_newsletter", Topic: "user-events", User: json.RawMessage(`{"country":"FR"}`)},
			[]string{"newsletter", "any"}},
		{"topic restriction", schemas.Event{Name: "Register_newsletter", Topic: "orders"},
			[]string{"newsletter", "any", "orders-only", "newsletter-on-orders"}},
		{"unknown event: only wildcards", schemas.Event{Name: "Other", Topic: "user-events"},
			[]string{"any"}},
		{"event name is case-sensitive", schemas.Event{Name: "register_newsletter", Topic: "user-events"},
			[]string{"any"}},
		{"data condition", schemas.Event{Name: "Purchase", Topic: "orders", Data: json.RawMessage(`{"plan":"pro"}`)},
			[]string{"any", "orders-only", "pro"}},
		{"no data", schemas.Event{Name: "Purchase", Topic: "orders"},
			[]string{"any", "orders-only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := names(rules.Match(nil, &tc.event))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("matched %v, want %v", got, tc.want)
			}
		})
	}
	if got := rules.Match(nil, nil); got != nil {
		t.Errorf("Match(nil event) = %v", got)
	}
	var none *Rules
	if got := none.Match(nil, &schemas.Event{}); got != nil {
		t.Errorf("nil Rules matched %v", got)
	}
	dst := make([]*CompiledRule, 1, 4)
	if got := rules.Match(dst, &schemas.Event{Name: "x"}); len(got) != 2 || got[0] != nil {
		t.Errorf("Match does not append to dst: %v", got)
	}
}

// TestConditions evaluates conditions against the fixture event.
func TestConditions(t *testing.T) {
	for _, tc := range []struct {
		when      string
		want      bool
		runtimErr bool
	}{
		{`user.country == "USA" && user.emails_enabled`, true, false},
		{`"random_tag" in map(user.tags, .name)`, true, false},
		{`"other_tag" in map(user.tags, .name)`, false, false},
		{`any(user.tags, .id == 16)`, true, false},
		{`user.tags[0].name == "random_tag"`, true, false},
		{`user.tags[-1].id == 16`, true, false},
		{`user["first_seen"] startsWith "2021-01-07"`, true, false},
		{`len(user.tags) == 1 && len(user.lists) == 0`, true, false},
		{`user.id == 7 && user.page_views >= 1 && user.score < 1`, true, false},
		{`user.id + 1 == 8`, true, false},
		{`user.city == nil && user.phone_number == nil`, true, false},
		{`user.nope == nil && user.nope?.deep == nil`, true, false},
		{`user.email endsWith "@example.org"`, true, false},
		{`user.email matches "^[a-z]+@"`, true, false},
		{`data.plan == "pro"`, true, false},
		{`data.plan in ["pro", "team"] and not user.notifications == false`, true, false},
		{`event.name == "Register_newsletter" && event.topic == "user-events"`, true, false},
		{`event.timestamp == "2021-02-01T07:27:44Z" && event.event == "Register_newsletter"`, true, false},
		{`"plan" in data && "country" in user`, true, false},
		{`user.country == "FR"`, false, false},
		{`user.missing_flag`, false, false},                          // a missing result is false
		{`user.country == "USA" && user.missing_flag`, false, false}, // likewise
		{`user.missing_flag && user.emails_enabled`, false, true},    // nil in && fails: counted
		{`user.name`, false, true},                                   // a string is not a bool
		{`user.name > 3`, false, true},                               // string vs int
	} {
		t.Run(tc.when, func(t *testing.T) {
			cfg := mustParse(t, "kafka: {topics: [user-events]}\nrules:\n  - name: r\n    event: Register_newsletter\n    when: '"+
				strings.ReplaceAll(tc.when, "'", "''")+"'\n    call: {url: \"https://h.example/\"}\n")
			rules := cfg.Compiled()
			ev := fixtureEvent(t)
			got := len(rules.Match(nil, ev)) == 1
			if got != tc.want {
				t.Errorf("matched = %v, want %v", got, tc.want)
			}
			if errs := rules.Rule("r").WhenErrors(); (errs > 0) != tc.runtimErr {
				t.Errorf("WhenErrors = %d, runtime error expected: %v", errs, tc.runtimErr)
			}
			// The same lookups again: the interned values must give the same answer.
			if again := len(rules.Match(nil, ev)) == 1; again != got {
				t.Errorf("second Match = %v, first %v", again, got)
			}
		})
	}
}

// TestConditionsShareLookups: rules reading the same field share one
// lookup id, so a Match looks it up once.
func TestConditionsShareLookups(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - {name: a, event: E, when: 'user.country == "USA"', call: {url: "https://h.example/"}}
  - {name: b, event: E, when: 'user.country != "FR" && user.tags[0].name == "x"', call: {url: "https://h.example/"}}
`)
	var paths []string
	for _, r := range cfg.Compiled().refs {
		paths = append(paths, r.path)
	}
	// user, user.country, user.tags, user.tags.0, user.tags.0.name: each once.
	if want := []string{"", "country", "tags", "tags.0", "tags.0.name"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("lookups = %q, want %q", paths, want)
	}
}

// TestInternedValuesFollowEvents: a remembered value is reused only when the
// next event holds the same bytes.
func TestInternedValuesFollowEvents(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - {name: a, event: E, when: 'user.country == "USA" && user.n == 1 && "x" in user.tags', call: {url: "https://h.example/"}}
`)
	rules := cfg.Compiled()
	for i, tc := range []struct {
		user string
		want bool
	}{
		{`{"country":"USA","n":1,"tags":["x"]}`, true},
		{`{"country":"USA","n":1,"tags":["x"]}`, true},
		{`{"country":"USB","n":1,"tags":["x"]}`, false},
		{`{"country":"USA","n":2,"tags":["x"]}`, false},
		{`{"country":"USA","n":1,"tags":["y"]}`, false},
		{`{"country":"USA","n":1,"tags":["x"]}`, true},
		{`{"country":"USA","n":"1","tags":["x"]}`, false}, // "1" is not 1
	} {
		buf := []byte(tc.user) // a fresh buffer each time, as the consumer gives
		got := len(rules.Match(nil, &schemas.Event{Name: "E", User: buf})) == 1
		for j := range buf {
			buf[j] = 'z' // the event's bytes are reused: nothing may point into them
		}
		if got != tc.want {
			t.Errorf("event %d: matched %v, want %v", i, got, tc.want)
		}
	}
}

func TestMatchAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	rules := exampleRules(t)
	ev := fixtureEvent(t)
	dst := make([]*CompiledRule, 0, 4)
	rules.Match(dst, ev) // warm the pool and the remembered values
	if n := testing.AllocsPerRun(100, func() { dst = rules.Match(dst[:0], ev) }); n != 0 {
		t.Errorf("Match allocates %.1f times per event, want 0", n)
	}
}
