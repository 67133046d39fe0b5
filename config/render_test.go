package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apicall/apicall/schemas"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// golden compares got with testdata/name byte for byte (-update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs\n got: %s\nwant: %s", name, got, want)
	}
}

// compactFile returns testdata/name as compact JSON.
func compactFile(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// renderRule loads a config file and renders its rule named name for ev.
func renderRule(t *testing.T, file, name string, ev *schemas.Event, now time.Time) *Call {
	t.Helper()
	cfg, err := Load(file, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Compiled().Rule(name)
	if r == nil {
		t.Fatalf("no rule %q in %s", name, file)
	}
	call, err := r.Render(ev, now)
	if err != nil {
		t.Fatal(err)
	}
	return call
}

// TestFixtureBody reproduces the body published in api-call-module.md byte
// for byte (as compact JSON): the golden file, the document's fixture and
// the rendered body must all be the same bytes.
func TestFixtureBody(t *testing.T) {
	ev := fixtureEvent(t)
	for _, tc := range []struct {
		rule, doc, golden string
		now               time.Time
	}{
		{"fixture", "api-call-module-body.json", "fixture-body.golden", fixtureTime},
		{"fixture-exclude-user", "api-call-module-exclude-user.json", "fixture-exclude-user-body.golden",
			time.Date(2021, 2, 1, 7, 34, 23, 815674000, time.UTC)},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			call := renderRule(t, "testdata/fixture.yaml", tc.rule, ev, tc.now)
			golden(t, tc.golden, call.Body)
			if doc := compactFile(t, tc.doc); !bytes.Equal(call.Body, doc) {
				t.Errorf("body differs from the documented fixture\n got: %s\nwant: %s", call.Body, doc)
			}
		})
	}
}

// TestExampleBodies pins what the example's rules send for the fixture.
func TestExampleBodies(t *testing.T) {
	ev := fixtureEvent(t)
	call := renderRule(t, "example.yaml", "newsletter-to-crm", ev, fixtureTime)
	golden(t, "example-newsletter-to-crm-body.golden", call.Body)
	if want := "http://127.0.0.1:8080/hooks/newsletter?email=johndoe%40example.org&source=apicall"; call.URL != want {
		t.Errorf("URL = %s, want %s", call.URL, want)
	}
	if got := call.Header.Get("Authorization"); got != "Bearer dev-token" {
		t.Errorf("Authorization = %q, want the ${CRM_TOKEN:-dev-token} default", got)
	}

	get := renderRule(t, "example.yaml", "welcome-usa-only", ev, fixtureTime)
	if get.Method != "GET" || get.Body != nil {
		t.Errorf("welcome: method %s body %q, want GET with no body", get.Method, get.Body)
	}
	if got := get.Header.Get("Content-Type"); got != "" {
		t.Errorf("GET sets Content-Type %q", got)
	}
	if want := "http://127.0.0.1:8080/hooks/welcome?email=johndoe%40example.org&plan=pro"; get.URL != want {
		t.Errorf("URL = %s, want %s", get.URL, want)
	}
	if string(get.Path) != `"welcome"` {
		t.Errorf("Path = %s", get.Path)
	}
}

func TestRenderFields(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [user-events]}
dispatch: {timeout: 3s, max_attempts: 4}
rules:
  - name: put-it
    path: "abc"
    event: Register_newsletter
    call:
      method: put
      url: https://h.example/users/{{ user.id }}/{{ user.name }}?tag={{ user.tags.0.name }}&city={{ user.city | default "unknown" }}&x={{ user.nope }}
      headers:
        content-type: application/vnd.api+json
        X-Event: "{{ event.name }} at {{ event.timestamp }} on {{ event.topic }}"
      extra: '{"plan": "{{ data.plan }}", "tags": "{{ user.tags }}", "ok": "{{ user.emails_enabled }}", "raw": "{{ event.event }}"}'
      signing_secrets: [whsec_abc]
  - name: timed
    event: Register_newsletter
    call: {url: "https://h.example/", timeout: 1s, max_attempts: 9}
`)
	ev := fixtureEvent(t)
	r := cfg.Compiled().Rule("put-it")
	call, err := r.Render(ev, fixtureTime.In(time.FixedZone("X", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"Method", call.Method, "PUT"},
		{"URL", call.URL, "https://h.example/users/7/John%20Doe?tag=random_tag&city=unknown&x="},
		{"Content-Type", call.Header.Get("Content-Type"), "application/vnd.api+json"},
		{"X-Event", call.Header.Get("X-Event"), "Register_newsletter at 2021-02-01T07:27:44Z on user-events"},
		{"Rule", call.Rule, "put-it"},
		{"Path", string(call.Path), `"abc"`},
		{"IdempotencyKey", call.IdempotencyKey, IdempotencyKey("user-events", 3, 42, "put-it")},
		{"Body", string(call.Body), `{"path":"abc","timestamp":"2021-02-01T07:27:44.469241+00:00","extra":{"plan":"pro","tags":"[{\"id\":16,\"name\":\"random_tag\"}]","ok":"true","raw":"Register_newsletter"},"user":` + string(ev.User) + `}`},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if len(call.Header) != 2 {
		t.Errorf("headers = %v, want Content-Type and X-Event only", call.Header)
	}
	if call.MissingTags != 1 {
		t.Errorf("MissingTags = %d, want 1 (user.nope)", call.MissingTags)
	}
	if call.Timeout != 3*time.Second || call.MaxAttempts != 4 || len(call.SigningSecrets) != 1 {
		t.Errorf("Timeout %s MaxAttempts %d SigningSecrets %v: want dispatch defaults and the secret", call.Timeout, call.MaxAttempts, call.SigningSecrets)
	}
	timed, _ := cfg.Compiled().Rule("timed").Render(ev, fixtureTime)
	if timed.Timeout != time.Second || timed.MaxAttempts != 9 {
		t.Errorf("rule overrides: Timeout %s MaxAttempts %d", timed.Timeout, timed.MaxAttempts)
	}
	if string(timed.Path) != `"timed"` {
		t.Errorf("default path = %s, want the rule name", timed.Path)
	}
}

func TestRenderUserEdgeCases(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - {name: r, path: 1, event: "*", call: {url: "https://h.example/"}}
`)
	r := cfg.Compiled().Rule("r")
	for _, tc := range []struct {
		name string
		user string
		want string
	}{
		{"absent", "", `"user":{}}`},
		{"null", "null", `"user":{}}`},
		{"kept as is", "{ \"a\" : [1, null] }", `"user":{ "a" : [1, null] }}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &schemas.Event{Name: "x", User: json.RawMessage(tc.user)}
			call, err := r.Render(ev, fixtureTime)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(call.Body), tc.want) {
				t.Errorf("body %s, want it to end with %s", call.Body, tc.want)
			}
			if !json.Valid(call.Body) {
				t.Errorf("invalid JSON body %s", call.Body)
			}
		})
	}
	if _, err := r.Render(nil, fixtureTime); err == nil {
		t.Error("Render(nil) did not fail")
	}
}

// TestRenderHeaderIsolation: callers may add to a call's headers (the
// dispatcher adds Idempotency-Key and signatures) without touching another
// header or another call.
func TestRenderHeaderIsolation(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - name: r
    event: "*"
    call: {url: "https://h.example/", headers: {A: "{{ user.a }}", B: "b"}}
`)
	r := cfg.Compiled().Rule("r")
	ev := &schemas.Event{Name: "x", User: json.RawMessage(`{"a":"1"}`)}
	c1, _ := r.Render(ev, fixtureTime)
	c2, _ := r.Render(ev, fixtureTime)
	c1.Header.Add("A", "2")
	c1.Header.Set("Idempotency-Key", c1.IdempotencyKey)
	if got := c1.Header.Values("B"); len(got) != 1 || got[0] != "b" {
		t.Errorf("B = %v after adding to A", got)
	}
	if got := c2.Header.Values("A"); len(got) != 1 || got[0] != "1" {
		t.Errorf("other call's A = %v", got)
	}
}

func TestIdempotencyKey(t *testing.T) {
	k := IdempotencyKey("user-events", 3, 42, "newsletter-to-crm")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(k) {
		t.Fatalf("key %q is not 32 lowercase hex characters", k)
	}
	// A pinned value: changing the construction would re-send every call
	// of a replay with new keys, defeating receivers' deduplication.
	if want := "6895e05635062d23a3694d7d414fc14b"; k != want {
		t.Errorf("key = %s, want %s", k, want)
	}
	if k != IdempotencyKey("user-events", 3, 42, "newsletter-to-crm") {
		t.Error("key is not stable")
	}
	seen := map[string]string{k: "base"}
	for name, other := range map[string]string{
		"topic":     IdempotencyKey("user-event", 3, 42, "newsletter-to-crm"),
		"partition": IdempotencyKey("user-events", 4, 42, "newsletter-to-crm"),
		"offset":    IdempotencyKey("user-events", 3, 43, "newsletter-to-crm"),
		"rule":      IdempotencyKey("user-events", 3, 42, "newsletter-to-crn"),
		"boundary":  IdempotencyKey("user-events3", 4, 2, "newsletter-to-crm"),
	} {
		if prev, dup := seen[other]; dup {
			t.Errorf("changing %s gives the key of %s", name, prev)
		}
		seen[other] = name
	}
}

// TestRenderConcurrent renders from many goroutines at once (run with -race).
func TestRenderConcurrent(t *testing.T) {
	rules := exampleRules(t)
	ev := fixtureEvent(t)
	want, _ := rules.Rule("newsletter-to-crm").Render(ev, fixtureTime)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var dst []*CompiledRule
			for range 200 {
				dst = rules.Match(dst[:0], ev)
				if len(dst) != 2 {
					t.Errorf("%d rules matched", len(dst))
					return
				}
				c, err := dst[0].Render(ev, fixtureTime)
				if err != nil || !bytes.Equal(c.Body, want.Body) || c.URL != want.URL {
					t.Errorf("concurrent render differs: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestContentTypeDefault(t *testing.T) {
	cfg := mustParse(t, `
kafka: {topics: [t]}
rules:
  - {name: post, event: "*", call: {url: "https://h.example/"}}
  - {name: delete, event: "*", call: {method: DELETE, url: "https://h.example/"}}
  - {name: get, event: "*", call: {method: GET, url: "https://h.example/", headers: {Accept: application/json}}}
  - {name: get-ct, event: "*", call: {method: GET, url: "https://h.example/", headers: {CONTENT-TYPE: text/plain}}}
`)
	ev := &schemas.Event{Name: "x"}
	for name, want := range map[string]string{"post": "application/json", "delete": "application/json", "get": "", "get-ct": "text/plain"} {
		c, _ := cfg.Compiled().Rule(name).Render(ev, fixtureTime)
		if got := c.Header.Get("Content-Type"); got != want {
			t.Errorf("%s: Content-Type = %q, want %q", name, got, want)
		}
		if (c.Method == http.MethodGet) != (c.Body == nil) {
			t.Errorf("%s: method %s with body %q", name, c.Method, c.Body)
		}
	}
}

// TestReleaseBody: a released body's memory serves a later call, whose body
// is still exactly its own; releasing twice or a GET's nil body is harmless.
func TestReleaseBody(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	rules := exampleRules(t)
	post, get := rules.Rule("newsletter-to-crm"), rules.Rule("welcome-usa-only")
	ev := fixtureEvent(t)
	want, err := post.Render(ev, fixtureTime)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := string(want.Body)

	first, _ := post.Render(ev, fixtureTime)
	mem := &first.Body[0]
	first.ReleaseBody()
	first.ReleaseBody()
	if first.Body != nil {
		t.Fatal("Body kept after ReleaseBody")
	}
	g, _ := get.Render(ev, fixtureTime)
	g.ReleaseBody() // GET: no body

	second, _ := post.Render(ev, fixtureTime)
	if &second.Body[0] != mem {
		t.Error("the released body's memory was not reused")
	}
	if string(second.Body) != wantBody {
		t.Errorf("body after reuse:\n%s\nwant\n%s", second.Body, wantBody)
	}
	third, _ := post.Render(ev, fixtureTime)
	if &third.Body[0] == &second.Body[0] {
		t.Error("two live calls share a body")
	}
}

// TestRelease: a released call's memory (the Call, its header map) serves a
// later call, which is exactly what a fresh render gives: no header the
// dispatcher added to the old one, no old value.
func TestRelease(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	rules := exampleRules(t)
	post, get := rules.Rule("newsletter-to-crm"), rules.Rule("welcome-usa-only")
	ev := fixtureEvent(t)
	for _, r := range []*CompiledRule{post, get} {
		want, err := r.Render(ev, fixtureTime)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := r.Render(ev, fixtureTime)
		first.Header.Set("Idempotency-Key", "added by the dispatcher")
		first.Header.Set("Webhook-Signature", "v1,old")
		first.Release()

		second, _ := r.Render(ev, fixtureTime)
		if second != first {
			t.Errorf("%s: the released Call was not reused", r.Name())
		}
		if !reflect.DeepEqual(second.Header, want.Header) {
			t.Errorf("%s: headers after reuse %v, want %v", r.Name(), second.Header, want.Header)
		}
		if second.URL != want.URL || second.IdempotencyKey != want.IdempotencyKey || string(second.Body) != string(want.Body) || second.Method != want.Method {
			t.Errorf("%s: call after reuse differs from a fresh render", r.Name())
		}
		third, _ := r.Render(ev, fixtureTime)
		if third == second {
			t.Errorf("%s: two live calls share a Call", r.Name())
		}
		var notRendered Call
		notRendered.Release() // a Call Render did not make: nothing happens
	}
}
