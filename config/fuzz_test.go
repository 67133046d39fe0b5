package config

import (
	"encoding/json"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apicall/apicall/schemas"
)

// FuzzTemplateParse: any text, in any place a template can be, never
// panics; when it parses, rendering it for a hostile event stays safe.
func FuzzTemplateParse(f *testing.F) {
	for _, s := range []string{
		"https://h.example/a/{{ user.name }}?q={{ user.email }}&r=1#top",
		`{"a": "{{ user.city | default "x" }}", "b": [1, {"c": "{{ data.plan }}"}]}`,
		`{"a": "{{ user.city | default \"}}\" }}"}`,
		"Bearer {{ user.token }}",
		"{{", "}}", "{{}}", "{{ user. }}", "{{ user.a | default '}} }}",
		`{"a": "\"{{ user.quote }}\\"}`,
		"http://[::1]:80/{{user.x}}",
		"https://h.example/{{ event.topic }}/{{ event.name }}?t={{ event.timestamp }}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if tmpl, err := splitTags(text); err == nil {
			for _, s := range tmpl {
				if s.tag == nil && s.lit == "" {
					t.Fatalf("empty literal segment in %q", text)
				}
			}
		}
		if tmpl, err := parseURL(text); err == nil {
			checkURLTemplate(t, text, tmpl)
		}
		if tmpl, err := parseHeaderValue(text); err == nil {
			got := renderFor(tmpl, hostile)
			if strings.ContainsAny(got, "\r\n\x00") {
				t.Fatalf("header %q renders %q", text, got)
			}
		}
		if tmpl, xe := parseExtra(text); xe == nil {
			if got := renderFor(tmpl, hostile); !json.Valid([]byte(got)) {
				t.Fatalf("extra %q renders invalid JSON %q", text, got)
			}
		}
	})
}

// checkURLTemplate: the rendered URL parses, and its scheme and host are
// those written in the config whatever the event holds.
func checkURLTemplate(t *testing.T, text string, tmpl template) {
	t.Helper()
	var sample strings.Builder
	for _, s := range tmpl {
		if s.tag == nil {
			sample.WriteString(s.lit)
		} else {
			sample.WriteString("x")
		}
	}
	want, err := url.Parse(sample.String())
	if err != nil {
		t.Fatalf("accepted %q whose sample %q does not parse: %v", text, sample.String(), err)
	}
	got := renderFor(tmpl, hostile)
	u, err := url.Parse(got)
	if err != nil {
		t.Fatalf("URL %q renders %q, which does not parse: %v", text, got, err)
	}
	if u.Scheme != want.Scheme || u.Host != want.Host {
		t.Fatalf("URL %q renders %q: host %q, want %q", text, got, u.Host, want.Host)
	}
}

func renderFor(tmpl template, ev *schemas.Event) string {
	var missing int
	var tmp []byte
	return string(tmpl.render(nil, ev, &missing, &tmp))
}

// fuzzRules puts a profile value in every context a tag can be in.
const fuzzRules = `
kafka: {topics: [t]}
rules:
  - name: all-places
    path: 1
    event: "*"
    call:
      url: https://h.example/p/{{ user.v }}/{{ user.raw }}/end?q={{ user.v }}&r={{ user.raw }}&d={{ user.nope | default "d" }}
      headers:
        X-V: "v={{ user.v }}"
        X-Raw: "{{ user.raw }}"
      extra: '{"v": "{{ user.v }}", "raw": "{{ user.raw }}", "all": "{{ user }}", "e": "{{ event.name }}"}'
`

// FuzzRender: whatever string a profile holds (quotes, newlines, invalid
// UTF-8, "</script>") and whatever JSON value, the body is valid JSON, the
// URL parses with its host unchanged and each value round-trips, and no
// header holds CR, LF or NUL.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"John Doe", `a"b\c`, "line\r\nX-Evil: 1", "</script>", "\xff\xfe", "..", "a/b?c#d&e=f", "\u2028", ""} {
		f.Add(s, `{"k": [1, "two", null]}`)
	}
	f.Add("x", "12.5e3")
	f.Add("x", "not json")
	cfg, err := Parse("fuzz.yaml", []byte(fuzzRules), noEnv)
	if err != nil {
		f.Fatal(err)
	}
	rule := cfg.Compiled().Rule("all-places")
	f.Fuzz(func(t *testing.T, v, raw string) {
		if !json.Valid([]byte(raw)) {
			raw = "null"
		}
		user := `{"v":"` + rawJSONString(v) + `","raw":` + raw + `}`
		ev := &schemas.Event{Name: v, Topic: "t", User: json.RawMessage(user)}
		call, err := rule.Render(ev, fixtureTime)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(call.Body) {
			t.Fatalf("invalid body for %q: %s", v, call.Body)
		}
		var body struct {
			Extra map[string]string `json:"extra"`
		}
		if err := json.Unmarshal(call.Body, &body); err != nil {
			t.Fatalf("body %s: %v", call.Body, err)
		}
		u, err := url.Parse(call.URL)
		if err != nil {
			t.Fatalf("URL %q does not parse: %v", call.URL, err)
		}
		if u.Host != "h.example" || !strings.HasSuffix(u.EscapedPath(), "/end") {
			t.Fatalf("URL %q escaped its place", call.URL)
		}
		for name, vals := range call.Header {
			for _, hv := range vals {
				if strings.ContainsAny(hv, "\r\n\x00") {
					t.Fatalf("header %s: %q", name, hv)
				}
			}
		}
		if !utf8.ValidString(v) {
			return // invalid UTF-8 is replaced in JSON: no exact round trip
		}
		if got := u.Query().Get("q"); got != v {
			t.Fatalf("query value %q, want %q", got, v)
		}
		if body.Extra["v"] != v {
			t.Fatalf("extra value %q, want %q", body.Extra["v"], v)
		}
		if seg := strings.Split(u.EscapedPath(), "/")[2]; v != "." && v != ".." {
			if got, err := url.PathUnescape(seg); err != nil || got != v {
				t.Fatalf("path segment %q unescapes to %q (%v), want %q", seg, got, err, v)
			}
		}
	})
}

// rawJSONString escapes s for a JSON string the way a lax producer would:
// quotes, backslashes and control characters only, so invalid UTF-8 reaches
// the renderer as is.
func rawJSONString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(lowerhex[c>>4])
			b.WriteByte(lowerhex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParse: no config text makes Load panic, and whatever loads renders
// valid calls for the fixture event.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"example.yaml", "testdata/fixture.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base))
	f.Add([]byte("kafka: [\n"))
	f.Add([]byte("rules:\n  - *x\n"))
	f.Add([]byte("a: &a\n  b: *a\n"))
	ev := fixtureEvent(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, noEnv)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, r := range cfg.Compiled().Match(nil, ev) {
			call, err := r.Render(ev, fixtureTime)
			if err != nil {
				t.Fatal(err)
			}
			if call.Body != nil && !json.Valid(call.Body) {
				t.Fatalf("invalid body %s", call.Body)
			}
		}
		if err := Preview(io.Discard, cfg, ev, fixtureTime, false); err != nil {
			t.Fatal(err)
		}
	})
}
