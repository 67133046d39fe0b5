package config

import (
	"os"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/apicall/apicall/schemas"
)

// fixtureTime is the timestamp of the body in api-call-module.md.
var fixtureTime = time.Date(2021, 2, 1, 7, 27, 44, 469241000, time.UTC)

// eventFromJSON decodes raw with the schemas JSON decoder, as the consumer
// does (so lookups go through its index of the profile, see
// schemas.Event.UserMember). Events the decoder refuses (a user that is not
// an object, say) are built the way it would, without the index.
func eventFromJSON(t testing.TB, topic string, raw []byte) *schemas.Event {
	t.Helper()
	if !gjson.ValidBytes(raw) {
		t.Fatalf("event is not valid JSON: %s", raw)
	}
	if ev, err := schemas.DecodeJSON(topic, raw); err == nil {
		ev.Topic = topic
		return &ev
	}
	ev := &schemas.Event{Raw: raw, Topic: topic, Name: topic}
	if n := gjson.GetBytes(raw, "event"); n.Exists() {
		ev.Name = n.String()
	}
	ev.Timestamp = gjson.GetBytes(raw, "timestamp").String()
	if u := gjson.GetBytes(raw, "user"); u.Exists() {
		ev.User = []byte(u.Raw)
	}
	if d := gjson.GetBytes(raw, "data"); d.Exists() {
		ev.Data = []byte(d.Raw)
	}
	return ev
}

// fixtureEvent is testdata/fixture-event.json as read from user-events.
func fixtureEvent(t testing.TB) *schemas.Event {
	t.Helper()
	raw, err := os.ReadFile("testdata/fixture-event.json")
	if err != nil {
		t.Fatal(err)
	}
	ev := eventFromJSON(t, "user-events", raw)
	ev.Partition, ev.Offset = 3, 42
	return ev
}

// exampleRules is config/example.yaml compiled.
func exampleRules(t testing.TB) *Rules {
	t.Helper()
	cfg, err := Load("example.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Compiled()
}

// noEnv is a lookupEnv with nothing set.
func noEnv(string) (string, bool) { return "", false }

// env returns a lookupEnv over m.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// mustParse parses a config from text or fails the test.
func mustParse(t testing.TB, text string) *Config {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(text), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}
