package config

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	cfg, err := Load("example.yaml", env(map[string]string{"CRM_TOKEN": "s3cret-token"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Kafka.Brokers) != 0 || cfg.Kafka.Group != "apicall" || cfg.Admin.Listen != "127.0.0.1:9464" {
		t.Errorf("kafka/admin = %+v %+v", cfg.Kafka, cfg.Admin)
	}
	if want := []Topic{{Name: "user-events", Format: "auto"}}; !reflect.DeepEqual(cfg.Kafka.Topics, want) {
		t.Errorf("topics = %+v, want %+v", cfg.Kafka.Topics, want)
	}
	if o := cfg.Outcomes; o.Topic != "apicall.outcomes" || o.RetryTopic != "apicall.retry" || o.DeadLetterTopic != "apicall.dead-letter" {
		t.Errorf("outcomes = %+v", o)
	}
	if !cfg.Dispatch.AllowPrivateNetworks {
		t.Error("example must allow private networks: it calls 127.0.0.1")
	}
	var names []string
	for _, r := range cfg.Compiled().All() {
		names = append(names, r.Name())
	}
	if want := []string{"newsletter-to-crm", "welcome-usa-only"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rules = %v, want %v", names, want)
	}
	if got := cfg.Rules[0].Call.Headers["Authorization"]; got != "Bearer s3cret-token" {
		t.Errorf("Authorization = %q, want the expanded token", got)
	}
	if got := cfg.Redact("Authorization: Bearer s3cret-token"); got != "Authorization: Bearer ****" {
		t.Errorf("Redact = %q", got)
	}
	if cfg.Rules[0].Line != 40 || cfg.Compiled().Rule("welcome-usa-only").Line() != 54 {
		t.Errorf("rule lines = %d, %d", cfg.Rules[0].Line, cfg.Rules[1].Line)
	}
}

// TestDefaults: every zero value is replaced by what config.go documents.
func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `
kafka:
  format: JSON
  topics: [a, {name: b, format: avro}]
dispatch:
  hosts:
    slow.example: {rate: 2.5}
    other.example: {max_in_flight: 3}
rules:
  - {name: r, event: e, call: {url: "https://h.example/"}}
`)
	want := Config{
		Kafka: Kafka{
			EmbeddedListen: "127.0.0.1:9092", EmbeddedDataDir: ".apicall/kafka", Group: "apicall",
			Topics: []Topic{{Name: "a", Format: "json"}, {Name: "b", Format: "avro"}}, Format: "json",
			ClientID: "apicall", MaxMessageBytes: 1 << 20, InitialOffset: "oldest", CommitInterval: 200 * time.Millisecond,
		},
		Admin:    Admin{Listen: "127.0.0.1:9464"},
		Outcomes: Outcomes{Topic: "apicall.outcomes", RetryTopic: "apicall.retry", DeadLetterTopic: "apicall.dead-letter"},
		Dispatch: Dispatch{
			MaxInFlight: 1024, MaxInFlightTotal: 1024, MaxInFlightPerHost: 512, HostWait: time.Second,
			Timeout: 10 * time.Second, MaxAttempts: 3, Ordering: "none", ShutdownGrace: 30 * time.Second,
			Breaker: Breaker{Window: 30 * time.Second, MinRequests: 20, FailureRatio: 0.5, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1},
			Hosts: map[string]Host{
				"slow.example":  {Rate: 2.5, Burst: 3, MaxInFlight: 512},
				"other.example": {Burst: 1, MaxInFlight: 3},
			},
		},
		Retry: Retry{
			Schedule:    []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 6 * time.Hour},
			MaxAttempts: 6, MaxAge: 24 * time.Hour, MaxPending: 10000,
		},
		Rules: []Rule{{Name: "r", Event: "e", Line: 10, Call: Call{Method: "POST", URL: "https://h.example/", Timeout: 10 * time.Second, MaxAttempts: 3}}},
	}
	got := *cfg
	got.Path, got.compiled, got.secrets = "", nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

// base is a valid config the error cases below break one way each.
const base = `kafka:
  topics: [user-events]
rules:
  - name: r1
    path: 1
    event: E
    call:
      url: https://example.com/x
`

// TestLoadErrors pins the exact message of each kind of invalid config.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want string
	}{
		{"unknown top-level key", "kafak: {}\n" + base,
			`test.yaml:1: config: unknown key "kafak" (known keys: kafka, admin, outcomes, dispatch, retry, schemas, rules)`},
		{"unknown rule key", base + "    wen: x\n",
			`test.yaml:9: rule "r1": unknown key "wen" (known keys: name, path, event, topic, when, call)`},
		{"unknown call key", base + "      methd: GET\n",
			`test.yaml:9: rule "r1": call: unknown key "methd" (known keys: method, url, headers, extra, exclude_user, timeout, max_attempts, signing_secrets)`},
		{"unknown nested key", "dispatch:\n  breaker: {windw: 1s}\n" + base,
			`test.yaml:2: dispatch.breaker: unknown key "windw" (known keys: window, min_requests, failure_ratio, open_timeout, half_open_requests)`},
		{"unknown topic key", strings.Replace(base, "[user-events]", "[{name: a, fmt: json}]", 1),
			`test.yaml:2: kafka.topics[0]: unknown key "fmt" (known keys: name, format)`},
		{"duplicate key", base + "    event: F\n",
			`test.yaml:9: rule "r1": key "event" appears twice (first at line 6)`},
		{"tag outside quotes", base + `      extra: '{"name": {{ user.name }}}'` + "\n",
			`test.yaml:9: rule "r1": call.extra: Enter valid JSON: snippet tag {{ user.name }} must sit inside quotes, e.g. "{{ user.name }}"`},
		{"extra syntax error in block", base + "      extra: |\n        {\"a\": \"b\",\n         \"c\": }\n",
			`test.yaml:11: rule "r1": call.extra: Enter valid JSON: invalid character '}' looking for beginning of value`},
		{"extra not an object", base + "      extra: '[1]'\n",
			`test.yaml:9: rule "r1": call.extra: Enter valid JSON: extra must be a JSON object, e.g. {"key": "value"}`},
		{"extra unclosed tag", base + `      extra: '{"a": "{{ user.name"}'` + "\n",
			`test.yaml:9: rule "r1": call.extra: Enter valid JSON: snippet tag "{{ user.name\"}" is not closed with }}`},
		{"extra with GET", strings.Replace(base, "url:", "method: GET\n      extra: '{}'\n      url:", 1),
			`test.yaml:9: rule "r1": call.extra: a GET call has no body, so extra would not be sent; use POST, or put the values in the URL's query`},
		{"bad url scheme", strings.Replace(base, "https://example.com/x", "ftp://example.com/x", 1),
			`test.yaml:8: rule "r1": call.url: "ftp://example.com/x" must start with http:// or https://`},
		{"url not parsable", strings.Replace(base, "https://example.com/x", `"https://exa mple.com/x"`, 1),
			`test.yaml:8: rule "r1": call.url: invalid URL "https://exa mple.com/x": invalid character " " in host name`},
		{"tag in host", strings.Replace(base, "https://example.com/x", "https://{{ user.host }}/x", 1),
			`test.yaml:8: rule "r1": call.url: snippet tag {{ user.host }} is in the URL's host; tags may only appear in the path and the query`},
		{"tag in fragment", strings.Replace(base, "https://example.com/x", "https://example.com/x#{{ user.id }}", 1),
			`test.yaml:8: rule "r1": call.url: snippet tag {{ user.id }} is in the URL's #fragment, which is never sent; put it in the path or the query`},
		{"bad tag root", strings.Replace(base, "https://example.com/x", "https://example.com/{{ profile.id }}", 1),
			`test.yaml:8: rule "r1": call.url: snippet tag {{ profile.id }}: must start with user., data. or event.`},
		{"unknown filter", strings.Replace(base, "https://example.com/x", `https://example.com/{{ user.id | upper }}`, 1),
			`test.yaml:8: rule "r1": call.url: snippet tag {{ user.id | upper }}: unknown filter "upper" (the only filter is default)`},
		{"missing url", strings.Replace(base, "url: https://example.com/x", "timeout: 1s", 1),
			`test.yaml:4: rule "r1": call.url is required`},
		{"unknown method", base + "      method: FETCH\n",
			`test.yaml:9: rule "r1": call.method: unknown method "FETCH" (use GET, POST, PUT, PATCH or DELETE)`},
		{"condition does not compile", base + "    when: user.country ==\n",
			`test.yaml:9: rule "r1": when: condition does not compile: unexpected token EOF (column 15)`},
		{"condition unknown name", base + "    when: country == \"USA\"\n",
			`test.yaml:9: rule "r1": when: condition does not compile: unknown name country (column 1)`},
		{"condition not bool", base + "    when: len(user.tags)\n",
			`test.yaml:9: rule "r1": when: condition does not compile: expected bool, but got int`},
		{"empty rule", base + "  -\n",
			`test.yaml:9: rule #2: empty rule (a "-" with nothing after it)`},
		{"condition $env", base + "    when: $env != nil\n",
			`test.yaml:9: rule "r1": when: condition does not compile: $env is not available in conditions; use user, data or event`},
		{"condition $lookup", base + "    when: $lookup(0) == nil\n",
			`test.yaml:9: rule "r1": when: condition does not compile: $lookup is not available in conditions; use user, data or event`},
		{"condition redeclares user", base + "    when: 'let user = 1; user == 1'\n",
			`test.yaml:9: rule "r1": when: condition does not compile: let user: user, data and event cannot be redeclared`},
		{"duplicate rule name", base + "  - {name: r1, event: E, call: {url: \"https://example.com/\"}}\n",
			`test.yaml:9: rule "r1": name: the name is already used by the rule at line 4; names must be unique`},
		{"missing name", base + "  - {event: E, call: {url: \"https://example.com/\"}}\n",
			`test.yaml:9: rule #2: name is required`},
		{"missing event", strings.Replace(base, "event: E", "topic: user-events", 1),
			`test.yaml:4: rule "r1": event is required (an event name, or "*" for any event)`},
		{"rule topic not consumed", base + "    topic: other\n",
			`test.yaml:9: rule "r1": topic: "other" is not in kafka.topics, so the rule would never fire`},
		{"path not integer or string", strings.Replace(base, "path: 1", "path: [1]", 1),
			`test.yaml:5: rule "r1": path: expected a number or a string, got a list`},
		{"path float", strings.Replace(base, "path: 1", "path: 1.5", 1),
			`test.yaml:5: rule "r1": path: must be an integer or a string, got 1.5`},
		{"Host header", base + "      headers: {Host: a.example}\n",
			`test.yaml:9: rule "r1": call.headers.Host: Host cannot be set: the host comes from the URL`},
		{"Content-Length header", base + "      headers:\n        content-length: \"3\"\n",
			`test.yaml:10: rule "r1": call.headers.content-length: Content-Length cannot be set: it is computed from the body`},
		{"bad header name", base + "      headers: {\"X Y\": a}\n",
			"test.yaml:9: rule \"r1\": call.headers.X Y: \"X Y\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"},
		{"same header twice", base + "      headers: {X-A: a, x-a: b}\n",
			`test.yaml:9: rule "r1": call.headers.x-a: "X-A" and "x-a" are the same header`},
		{"header newline", base + "      headers: {X-A: \"a\\r\\nX-B: b\"}\n",
			`test.yaml:9: rule "r1": call.headers.X-A: value holds a control character (a newline?)`},
		{"bad topic format", strings.Replace(base, "[user-events]", "[{name: user-events, format: xml}]", 1),
			`test.yaml:2: kafka.topics[0].format: must be json, avro or auto, got "xml"`},
		{"bad topic name", strings.Replace(base, "[user-events]", "[user events]", 1),
			`test.yaml:2: kafka.topics[0]: topic name "user events" may only hold letters, digits, '.', '_' and '-'`},
		{"no topics", strings.Replace(base, "  topics: [user-events]\n", "  group: g\n", 1),
			`test.yaml:2: kafka.topics: no topic to consume; list at least one (rules fire on events read from them)`},
		{"bad duration", "kafka:\n  commit_interval: 10\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:2: kafka.commit_interval: invalid duration "10" (write a number with a unit: 500ms, 10s, 1m, 2h)`},
		{"negative duration", base + "      timeout: -1s\n",
			`test.yaml:9: rule "r1": call.timeout: must not be negative, got -1s`},
		{"negative cap", "dispatch:\n  max_in_flight_per_host: -1\n" + base,
			`test.yaml:2: dispatch.max_in_flight_per_host: must not be negative, got -1`},
		{"negative attempts", base + "      max_attempts: -2\n",
			`test.yaml:9: rule "r1": call.max_attempts: must not be negative, got -2`},
		{"not an integer", "retry:\n  max_pending: lots\n" + base,
			`test.yaml:2: retry.max_pending: expected an integer, got "lots"`},
		{"not a bool", base + "      exclude_user: yes please\n",
			`test.yaml:9: rule "r1": call.exclude_user: expected true or false, got "yes please"`},
		{"initial offset", "kafka:\n  initial_offset: latest\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:2: kafka.initial_offset: must be oldest or newest, got "latest"`},
		{"ordering", "dispatch: {ordering: fifo}\n" + base,
			`test.yaml:1: dispatch.ordering: must be none or key, got "fifo"`},
		{"sasl mechanism", "kafka:\n  sasl: {mechanism: md5, username: u, password: p}\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:2: kafka.sasl.mechanism: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "MD5"`},
		{"sasl without password", "kafka:\n  sasl: {mechanism: SCRAM-SHA-512, username: u}\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:2: kafka.sasl: mechanism SCRAM-SHA-512 needs a username and a password`},
		{"tls file missing", "kafka:\n  tls:\n    enabled: true\n    ca_file: /nonexistent/ca.pem\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:4: kafka.tls.ca_file: cannot use "/nonexistent/ca.pem": no such file or directory`},
		{"bad cidr", "dispatch:\n  allow_cidrs: [10.0.0.0/8, 10.0.0.0]\n" + base,
			`test.yaml:2: dispatch.allow_cidrs[1]: "10.0.0.0" is not a CIDR range such as 10.0.0.0/8`},
		{"failure ratio", "dispatch: {breaker: {failure_ratio: 1.5}}\n" + base,
			`test.yaml:1: dispatch.breaker.failure_ratio: must be above 0 and at most 1, got 1.5`},
		{"outcome topic consumed", "outcomes: {topic: user-events}\n" + base,
			`test.yaml:1: outcomes.topic: "user-events" is also in kafka.topics; apicall would consume its own output`},
		{"broker not host:port", "kafka:\n  brokers: [\"kafka://b:9092\"]\n" + strings.TrimPrefix(base, "kafka:\n"),
			`test.yaml:2: kafka.brokers[0]: "kafka://b:9092" is not host:port`},
		{"admin listen", "admin: {listen: localhost}\n" + base,
			`test.yaml:1: admin.listen: "localhost" is not host:port`},
		{"missing env var", strings.Replace(base, "https://example.com/x", "https://example.com/x?k=${API_KEY}", 1),
			`test.yaml:8: environment variable API_KEY is not set (write ${API_KEY:-default} for a default, or $${ for a literal ${)`},
		{"bad env reference", strings.Replace(base, "https://example.com/x", "https://example.com/${1X}", 1),
			`test.yaml:8: invalid environment variable reference ${1X} (names are letters, digits and _, not starting with a digit)`},
		{"unterminated env reference", strings.Replace(base, "https://example.com/x", "https://example.com/${X", 1),
			`test.yaml:8: unterminated ${ (close it with } on the same line, or write $${ for a literal ${)`},
		{"invalid YAML", "kafka: [\n" + base,
			`test.yaml:2: invalid YAML: did not find expected ',' or ']'`},
		{"rule not a mapping", base + "  - just a string\n",
			`test.yaml:9: rule #2: expected a mapping of keys, got "just a string"`},
		{"two documents", base + "---\nkafka: {}\n",
			`test.yaml:9: invalid YAML: a second YAML document (---) is not supported; put everything in one`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tc.yaml), noEnv)
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestLoadErrorsTogether: all problems come back at once, sorted by line,
// one per line of Error().
func TestLoadErrorsTogether(t *testing.T) {
	src := `kafka:
  topics: [user-events]
  initial_offset: latest
dispatch:
  ordering: fifo
rules:
  - name: a
    event: E
    when: nope
    call: {url: "ftp://x", method: FETCH}
  - name: a
    event: E
    call: {url: "https://x.example/", extra: "{oops}"}
`
	_, err := Parse("many.yaml", []byte(src), noEnv)
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not *Errors: %v", err, err)
	}
	var byValue Errors
	if !errors.As(err, &byValue) || len(byValue) != len(*es) {
		t.Errorf("errors.As by value failed")
	}
	want := []string{
		`many.yaml:3: kafka.initial_offset: must be oldest or newest, got "latest"`,
		`many.yaml:5: dispatch.ordering: must be none or key, got "fifo"`,
		`many.yaml:9: rule "a": when: condition does not compile: unknown name nope (column 1)`,
		`many.yaml:10: rule "a": call.method: unknown method "FETCH" (use GET, POST, PUT, PATCH or DELETE)`,
		`many.yaml:10: rule "a": call.url: "ftp://x" must start with http:// or https://`,
		`many.yaml:11: rule "a": name: the name is already used by the rule at line 7; names must be unique`,
		`many.yaml:13: rule "a": call.extra: Enter valid JSON: invalid character 'o' looking for beginning of object key string`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range *es {
		if e.File != "many.yaml" || e.Line == 0 {
			t.Errorf("error without position: %+v", e)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml", nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v is not fs.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "testdata/does-not-exist.yaml: cannot read config: ") {
		t.Errorf("error = %v", err)
	}
}

// TestTLSFilesOnlyWhenEnabled: TLS files are not checked while TLS is off.
func TestTLSFilesOnlyWhenEnabled(t *testing.T) {
	mustParse(t, "kafka:\n  tls: {ca_file: /nonexistent/ca.pem}\n"+strings.TrimPrefix(base, "kafka:\n"))
}

func TestTopicForms(t *testing.T) {
	cfg := mustParse(t, strings.Replace(base, "[user-events]", "[plain, {name: framed, format: avro}, {name: other}]", 1)+
		"    topic: framed\n")
	want := []Topic{{Name: "plain", Format: "auto"}, {Name: "framed", Format: "avro"}, {Name: "other", Format: "auto"}}
	if !reflect.DeepEqual(cfg.Kafka.Topics, want) {
		t.Errorf("topics = %+v, want %+v", cfg.Kafka.Topics, want)
	}
}

func TestMergeKeysAndAnchors(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
x-call: &crm
  url: https://crm.example/hook
  headers: {X-Source: apicall}
rules:
  - name: a
    event: E
    call:
      <<: *crm
      method: PUT
`)
	call := cfg.Rules[0].Call
	if call.URL != "https://crm.example/hook" || call.Headers["X-Source"] != "apicall" || call.Method != "PUT" {
		t.Errorf("merged call = %+v", call)
	}
}

func TestPathForms(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"6", "6"}, {"-1", "-1"}, {`"6"`, `"6"`}, {"welcome", `"welcome"`}, {`"a\"b"`, `"a\"b"`}, {"~", `"r1"`},
	} {
		cfg := mustParse(t, strings.Replace(base, "path: 1", "path: "+tc.path, 1))
		if got := string(cfg.Compiled().Rule("r1").Path()); got != tc.want {
			t.Errorf("path: %s -> %s, want %s", tc.path, got, tc.want)
		}
	}
}
