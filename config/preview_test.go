package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/apicall/apicall/schemas"
)

// TestPreviewExample pins what `apicall render` prints for the example and
// the fixture event.
func TestPreviewExample(t *testing.T) {
	cfg, err := Load("example.yaml", env(map[string]string{"CRM_TOKEN": "live-token-123"}))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Preview(&b, cfg, fixtureEvent(t), fixtureTime, false); err != nil {
		t.Fatal(err)
	}
	golden(t, "preview-example.golden", b.Bytes())
	if strings.Contains(b.String(), "live-token-123") {
		t.Error("preview shows the token")
	}
}

func TestPreviewCases(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - name: usa
    path: 1
    event: E
    when: user.country == "USA"
    call: {method: GET, url: "https://h.example/?c={{ user.city }}", headers: {X-Api-Key: k1, Cookie: "a=b", Accept: "*/*"}}
  - name: broken
    path: 2
    event: E
    when: user.flag && user.country == "USA"
    call: {url: "https://h.example/"}
`)
	for _, tc := range []struct {
		name string
		ev   schemas.Event
		show bool
		want string
	}{
		{"no match", schemas.Event{Name: "Other"}, false, "(no rules match event \"Other\")\n"},
		{"skipped", schemas.Event{Name: "E", User: json.RawMessage(`{"country":"FR","flag":false}`)}, false,
			"rule \"usa\": skipped: condition is false: user.country == \"USA\"\n\n" +
				"rule \"broken\": skipped: condition is false: user.flag && user.country == \"USA\"\n\n" +
				"(no rules match event \"E\")\n"},
		{"condition error", schemas.Event{Name: "E", User: json.RawMessage(`{"country":"USA"}`)}, false,
			"rule \"usa\" (path 1)\n" +
				"GET https://h.example/?c=\n" +
				"Accept: */*\n" +
				"Cookie: ****\n" +
				"Idempotency-Key: " + IdempotencyKey("", 0, 0, "usa") + "\n" +
				"X-Api-Key: ****\n" +
				"\n" +
				"(no body)\n" +
				"(1 snippet tag(s) had no value and rendered empty)\n" +
				"\n" +
				"rule \"broken\": skipped: condition failed: interface conversion: interface {} is nil, not bool (column 11)\n\n"},
		{"show secrets", schemas.Event{Name: "E", User: json.RawMessage(`{"country":"USA","city":"NYC"}`)}, true,
			"rule \"usa\" (path 1)\n" +
				"GET https://h.example/?c=NYC\n" +
				"Accept: */*\n" +
				"Cookie: a=b\n" +
				"Idempotency-Key: " + IdempotencyKey("", 0, 0, "usa") + "\n" +
				"X-Api-Key: k1\n" +
				"\n" +
				"(no body)\n" +
				"\n" +
				"rule \"broken\": skipped: condition failed: interface conversion: interface {} is nil, not bool (column 11)\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Preview(&b, cfg, &tc.ev, fixtureTime, tc.show); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("preview:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
	if err := Preview(&bytes.Buffer{}, &Config{}, &schemas.Event{}, fixtureTime, false); err == nil {
		t.Error("Preview of a Config not from Load did not fail")
	}
}
