package config

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/apicall/apicall/schemas"
)

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ref
		def     string
		hasDef  bool
		wantErr string
	}{
		{in: "user.name", want: ref{src: srcUser, path: "name"}},
		{in: "  user.tags.0.name  ", want: ref{src: srcUser, path: "tags.0.name"}},
		{in: "user", want: ref{src: srcUser}},
		{in: "data.plan", want: ref{src: srcData, path: "plan"}},
		{in: "event.name", want: ref{src: srcEventName}},
		{in: "event.timestamp", want: ref{src: srcEventTimestamp}},
		{in: "event.topic", want: ref{src: srcEventTopic}},
		{in: "event.campaign.id", want: ref{src: srcEvent, path: "campaign.id"}},
		{in: "user.a*b", want: ref{src: srcUser, path: `a\*b`}},
		{in: "user.@this", want: ref{src: srcUser, path: `\@this`}},
		{in: `user.city | default "unknown"`, want: ref{src: srcUser, path: "city"}, def: "unknown", hasDef: true},
		{in: `user.city|default 'a "b"'`, want: ref{src: srcUser, path: "city"}, def: `a "b"`, hasDef: true},
		{in: `user.city | default "}}\n"`, want: ref{src: srcUser, path: "city"}, def: "}}\n", hasDef: true},
		{in: `user.city | default ""`, want: ref{src: srcUser, path: "city"}, def: "", hasDef: true},
		{in: "", wantErr: "empty snippet tag {{ }}: write e.g. {{ user.email }}"},
		{in: "name", wantErr: "snippet tag {{ name }}: must start with user., data. or event."},
		{in: "user..x", wantErr: `snippet tag {{ user..x }}: "" is not a valid key`},
		{in: "user.a b", wantErr: `snippet tag {{ user.a b }}: "a b" is not a valid key`},
		{in: "user.x | upper", wantErr: `snippet tag {{ user.x | upper }}: unknown filter "upper" (the only filter is default)`},
		{in: "user.x | default unknown", wantErr: `snippet tag {{ user.x | default unknown }}: default needs one quoted value, e.g. default "unknown"`},
		{in: "user.x\n", want: ref{src: srcUser, path: "x"}},
		{in: "user.x\n| default \"a\"", wantErr: "must be on one line"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTag(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ref != tc.want || got.def != tc.def || got.hasDef != tc.hasDef {
				t.Errorf("got %+v, want ref %+v default %q (%v)", got, tc.want, tc.def, tc.hasDef)
			}
		})
	}
}

// hostile is a profile whose values try to break out of every context.
var hostile = &schemas.Event{
	Name:  "E",
	Topic: "t",
	User: json.RawMessage(`{
		"quote": "a\"b\\c",
		"nl": "line1\r\nX-Injected: yes\u0000",
		"script": "</script><script>alert(1)</script>",
		"amp": "a&b=c#d?e/f g+h%",
		"dots": "..",
		"ctl": "\u0001\u001f\u007f",
		"ls": "\u2028\u2029",
		"num": 12.5e3,
		"int": 7,
		"yes": true,
		"nul": null,
		"empty": "",
		"obj": { "k" : [1, "two", {"x": null}] },
		"doc": "a b&c/d\"e",
		"bad": "` + "\xff\xfe" + `"
	}`),
}

func TestRenderEscaping(t *testing.T) {
	for _, tc := range []struct {
		name, tag string
		path      string // rendered as a URL path segment
		query     string // rendered as a query value
		header    string
		json      string // inside a JSON string
	}{
		{"quote", "user.quote", `a%22b%5Cc`, `a%22b%5Cc`, `a"b\c`, `a\"b\\c`},
		{"newlines", "user.nl", `line1%0D%0AX-Injected:%20yes%00`, `line1%0D%0AX-Injected%3A+yes%00`, `line1X-Injected: yes`, `line1\r\nX-Injected: yes\u0000`},
		{"script", "user.script", `%3C%2Fscript%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E`, `%3C%2Fscript%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E`, `</script><script>alert(1)</script>`, `\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e`},
		{"url delimiters", "user.amp", `a&b=c%23d%3Fe%2Ff%20g+h%25`, `a%26b%3Dc%23d%3Fe%2Ff+g%2Bh%25`, `a&b=c#d?e/f g+h%`, `a\u0026b=c#d?e/f g+h%`},
		{"dot dot", "user.dots", `%2E%2E`, `..`, `..`, `..`},
		{"controls", "user.ctl", `%01%1F%7F`, `%01%1F%7F`, ``, `\u0001\u001f` + "\x7f"},
		{"line separators", "user.ls", `%E2%80%A8%E2%80%A9`, `%E2%80%A8%E2%80%A9`, "\u2028\u2029", `\u2028\u2029`},
		{"number", "user.num", `12.5e3`, `12.5e3`, `12.5e3`, `12.5e3`},
		{"integer", "user.int", `7`, `7`, `7`, `7`},
		{"bool", "user.yes", `true`, `true`, `true`, `true`},
		{"null", "user.nul", ``, ``, ``, ``},
		{"missing", "user.nope", ``, ``, ``, ``},
		{"empty", "user.empty", ``, ``, ``, ``},
		{"object", "user.obj", `%7B%22k%22:%5B1%2C%22two%22%2C%7B%22x%22:null%7D%5D%7D`, `%7B%22k%22%3A%5B1%2C%22two%22%2C%7B%22x%22%3Anull%7D%5D%7D`, `{"k":[1,"two",{"x":null}]}`, `{\"k\":[1,\"two\",{\"x\":null}]}`},
		{"invalid utf-8", "user.bad", `%FF%FE`, `%FF%FE`, "\xff\xfe", `\ufffd\ufffd`},
		{"default on null", `user.nul | default "a b"`, `a%20b`, `a+b`, `a b`, `a b`},
		{"default on empty", `user.empty | default "x"`, `x`, `x`, `x`, `x`},
		{"event name", "event.name", `E`, `E`, `E`, `E`},
		{"docs/configuration.md example", "user.doc", `a%20b&c%2Fd%22e`, `a+b%26c%2Fd%22e`, `a b&c/d"e`, `a b\u0026c/d\"e`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := parseTag(tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				esc  escaping
				want string
			}{{escPath, tc.path}, {escQuery, tc.query}, {escHeader, tc.header}, {escJSON, tc.json}} {
				var missing int
				var tmp []byte
				got := string(template{{tag: tg, esc: c.esc}}.render(nil, hostile, &missing, &tmp))
				if got != c.want {
					t.Errorf("escaping %d: got %q, want %q", c.esc, got, c.want)
				}
			}
		})
	}
}

func TestMissingTags(t *testing.T) {
	tmpl, err := splitTags(`{{ user.nope }}-{{ user.nul }}-{{ user.empty }}-{{ user.nope | default "d" }}-{{ data.x }}-{{ event.timestamp }}`)
	if err != nil {
		t.Fatal(err)
	}
	var missing int
	var tmp []byte
	got := string(tmpl.render(nil, hostile, &missing, &tmp))
	// nope, nul, data.x, event.timestamp: missing; empty is a value; a default covers nope.
	if got != "---d--" || missing != 4 {
		t.Errorf("got %q with %d missing, want %q with 4", got, missing, "---d--")
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"https://h.example/a/{{ user.id }}/b?x={{ user.email }}&y=1", ""},
		{"HTTP://h.example:8080", ""},
		{"http://user:pw@h.example/{{ user.id }}", ""},
		{"https://h.example/x#frag", ""},
		{"https://h.example?q={{ user.id }}", ""},
		{"h.example/x", `"h.example/x" must start with http:// or https://`},
		{"{{ user.url }}", `"{{ user.url }}" must start with http:// or https://`},
		{"https://h{{ user.id }}.example/", "is in the URL's host"},
		{"https://h.example:{{ user.port }}/", "is in the URL's host"},
		{"https:///path", `URL "https:///path" has no host`},
		{"https://h.example/%zz", `invalid URL "https://h.example/%zz": invalid URL escape "%zz"`},
		{"https://h.example/{{ user.id", "is not closed with }}"},
	} {
		_, err := parseURL(tc.in)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseURL(%q) error = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestParseExtra(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "{}", ""},
		{"  ", "{}", ""},
		{`{"a": 1, "b": [true, null], "c": {"d": "e f"}}`, `{"a":1,"b":[true,null],"c":{"d":"e f"}}`, ""},
		{"{\n  \"name\": \"{{ user.name }}\",\n  \"esc\": \"q\\\" {{ user.int }}\"\n}", `{"name":"7","esc":"q\" 7"}`, ""},
		{`{"city": "{{ user.nul | default "none" }}"}`, `{"city":"none"}`, ""},
		{`{"city": "{{ user.nul | default \"none\" }}"}`, `{"city":"none"}`, ""},
		{`{"a": "{{ user.quote }}"}`, `{"a":"a\"b\\c"}`, ""},
		{`{"a": {{ user.name }}}`, "", `snippet tag {{ user.name }} must sit inside quotes, e.g. "{{ user.name }}"`},
		{`{"a": "x"`, "", "unexpected end of JSON input"},
		{`{"a": "x",}`, "", "invalid character '}' looking for beginning of object key string"},
		{`"just a string"`, "", "extra must be a JSON object"},
		{`{"a": "{{ nope }}"}`, "", "must start with user., data. or event."},
	} {
		tmpl, xe := parseExtra(tc.in)
		if tc.err != "" {
			if xe == nil || !strings.Contains(xe.msg, tc.err) {
				t.Errorf("parseExtra(%q) error = %v, want %q", tc.in, xe, tc.err)
			}
			continue
		}
		if xe != nil {
			t.Errorf("parseExtra(%q): %s", tc.in, xe.msg)
			continue
		}
		var missing int
		var tmp []byte
		ev := *hostile
		ev.User = json.RawMessage(`{"name":"7","int":7,"nul":null,"quote":"a\"b\\c"}`)
		if got := string(tmpl.render(nil, &ev, &missing, &tmp)); got != tc.want {
			t.Errorf("parseExtra(%q) renders %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestEscapersMatchNetURL: the append-style escapers are url.PathEscape and
// url.QueryEscape (but for the documented "." and ".." rule).
func TestEscapersMatchNetURL(t *testing.T) {
	for _, s := range []string{"", "abc", "a b", "a/b?c#d&e=f+g", "ü€😀", "\x00\xff", "~-._", "$&+,:;=@", "%41", "..."} {
		checkEscapers(t, s)
	}
}

func checkEscapers(t *testing.T, s string) {
	t.Helper()
	if got, want := string(appendQueryEscaped(nil, s)), url.QueryEscape(s); got != want {
		t.Errorf("query %q: got %q, want %q", s, got, want)
	}
	if s == "." || s == ".." {
		return
	}
	if got, want := string(appendPathEscaped(nil, s)), url.PathEscape(s); got != want {
		t.Errorf("path %q: got %q, want %q", s, got, want)
	}
}
