package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/apicall/apicall/schemas"
)

// Snippet tags ({{ user.name }}, {{ data.plan | default "free" }}) are
// parsed once, at load, into a template: a list of literal and tag segments
// with the escaping their place in the output needs. Rendering only appends.

// source says which part of an event a reference reads.
type source uint8

const (
	srcUser           source = iota + 1 // Event.User
	srcData                             // Event.Data
	srcEvent                            // Event.Raw: any field of the event as sent
	srcEventName                        // Event.Name
	srcEventTimestamp                   // Event.Timestamp
	srcEventTopic                       // Event.Topic
)

// eventFields are the event fields that do not come from Event.Raw.
var eventFields = map[string]source{"name": srcEventName, "timestamp": srcEventTimestamp, "topic": srcEventTopic}

// ref is a parsed reference to a value of an event, such as
// user.tags.0.name. It is comparable so conditions can share lookups.
type ref struct {
	src source
	// path is a gjson path below src with every key escaped, so a key
	// holding '.', '*' or '#' is a key and never a gjson query; "" means
	// the whole source.
	path string
}

// child is the reference one key below r.
func (r ref) child(key string) ref {
	if r.src == srcEvent && r.path == "" {
		if s, ok := eventFields[key]; ok {
			return ref{src: s}
		}
	}
	if r.src >= srcEventName { // event.name.x: keep gjson semantics on Raw
		for k, s := range eventFields {
			if s == r.src {
				r = ref{src: srcEvent, path: k}
			}
		}
	}
	k := gjson.Escape(key)
	if r.path == "" {
		return ref{src: r.src, path: k}
	}
	return ref{src: r.src, path: r.path + "." + k}
}

// result looks r up in ev without decoding it: gjson scans the raw bytes
// for the one value asked for. Strings in the result may point into ev's
// bytes (see view); callers copy what they keep.
func (r ref) result(ev *schemas.Event) gjson.Result {
	var doc []byte
	switch r.src {
	case srcUser:
		doc = ev.User
	case srcData:
		doc = ev.Data
	case srcEvent:
		doc = ev.Raw
	case srcEventName:
		return stringResult(ev.Name)
	case srcEventTimestamp:
		return stringResult(ev.Timestamp)
	case srcEventTopic:
		return stringResult(ev.Topic)
	}
	if len(doc) == 0 {
		return gjson.Result{}
	}
	if r.path == "" {
		return gjson.Parse(view(doc))
	}
	if r.src == srcUser {
		// The first key through the decoder's index of the profile, when
		// it is a plain key (keys are escaped: no backslash, no query).
		key, rest, nested := strings.Cut(r.path, ".")
		if strings.IndexByte(key, '\\') < 0 {
			if res, indexed := userMember(ev, key, rest, nested); indexed {
				return res
			}
		}
	}
	return gjson.Get(view(doc), r.path)
}

// userMember is gjson.Get(User, key[.rest]) through the decoder's index:
// the first member named key, or for a nested path the first one in which
// rest exists (gjson goes on past a repeated key whose value lacks it).
func userMember(ev *schemas.Event, key, rest string, nested bool) (res gjson.Result, indexed bool) {
	for n := 0; ; n++ {
		v, found, indexed := ev.UserMember(key, n)
		switch {
		case !indexed:
			return gjson.Result{}, false
		case !found:
			return gjson.Result{}, true
		case !nested:
			return gjson.Parse(view(v)), true
		}
		if res := gjson.Get(view(v), rest); res.Exists() {
			return res, true
		}
	}
}

// stringResult wraps an event field as a gjson result; "" is missing.
func stringResult(s string) gjson.Result {
	if s == "" {
		return gjson.Result{}
	}
	return gjson.Result{Type: gjson.String, Str: s}
}

// view returns b as a string without copying. gjson's GetBytes copies each
// result to stay safe against later writes to b; events are never written
// after decoding, and every string that outlives a Match or Render call is
// copied into its output first, so the copy would be pure cost on the hot
// path (one allocation per tag).
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// parseRef parses user.x.y, data.x or event.x as written in a tag.
func parseRef(s string) (ref, error) {
	keys := strings.Split(s, ".")
	var r ref
	switch keys[0] {
	case "user":
		r.src = srcUser
	case "data":
		r.src = srcData
	case "event":
		r.src = srcEvent
	default:
		return ref{}, fmt.Errorf("snippet tag {{ %s }}: must start with user., data. or event.", s)
	}
	for _, k := range keys[1:] {
		if k == "" || strings.ContainsFunc(k, func(c rune) bool {
			return c <= ' ' || c == 0x7f || strings.ContainsRune(`{}|"'\`, c)
		}) {
			return ref{}, fmt.Errorf("snippet tag {{ %s }}: %q is not a valid key", s, k)
		}
		r = r.child(k)
	}
	return r, nil
}

// tag is one parsed snippet tag.
type tag struct {
	ref
	text   string // as written, for messages
	def    string // the default "..." value
	hasDef bool
}

// escaping is how a tag's value is made safe for its place in the output.
type escaping uint8

const (
	escPath   escaping = iota + 1 // a URL path segment: url.PathEscape, and "." / ".." encoded
	escQuery                      // a URL query: url.QueryEscape
	escJSON                       // inside a JSON string: JSON string escaping
	escHeader                     // a header value: control characters dropped
)

// segment is a literal or a tag.
type segment struct {
	lit string
	tag *tag
	esc escaping
}

// template is a parsed text with snippet tags.
type template []segment

// hasTags reports whether rendering depends on the event.
func (t template) hasTags() bool {
	for _, s := range t {
		if s.tag != nil {
			return true
		}
	}
	return false
}

// literal returns the text of a template without tags.
func (t template) literal() string {
	var b strings.Builder
	for _, s := range t {
		b.WriteString(s.lit)
	}
	return b.String()
}

// splitTags splits text into literal and tag segments (escaping unset).
func splitTags(text string) (template, error) {
	var t template
	for {
		i := strings.Index(text, "{{")
		if i < 0 {
			if text != "" {
				t = append(t, segment{lit: text})
			}
			return t, nil
		}
		if i > 0 {
			t = append(t, segment{lit: text[:i]})
		}
		end := tagEnd(text, i+2)
		if end < 0 {
			return nil, fmt.Errorf("snippet tag %q is not closed with }}", clip(text[i:]))
		}
		tg, err := parseTag(text[i+2 : end])
		if err != nil {
			return nil, err
		}
		t = append(t, segment{tag: tg})
		text = text[end+2:]
	}
}

// tagEnd returns the index of the "}}" that closes a tag whose content
// starts at i, or -1. Quoted text is skipped so a default may hold "}}".
// Inside JSON a quote may be written escaped (\"), so \" opens and closes a
// quoted run too.
func tagEnd(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == '"' || s[i] == '\'':
			q := s[i]
			j := i + 1
			for j < len(s) && s[j] != q {
				if s[j] == '\\' && q == '"' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return -1
			}
			i = j + 1
		case strings.HasPrefix(s[i:], `\"`):
			j := strings.Index(s[i+2:], `\"`)
			if j < 0 {
				return -1
			}
			i += 2 + j + 2
		case strings.HasPrefix(s[i:], "}}"):
			return i
		default:
			i++
		}
	}
	return -1
}

// parseTag parses the inside of {{ }}: a reference and optionally
// `| default "value"`.
func parseTag(inner string) (*tag, error) {
	text := strings.TrimSpace(inner)
	if strings.ContainsAny(text, "\n\r") {
		return nil, fmt.Errorf("snippet tag {{ %s }} must be on one line", clip(text))
	}
	refText, filter, hasFilter := strings.Cut(text, "|")
	refText = strings.TrimSpace(refText)
	if refText == "" {
		return nil, errors.New("empty snippet tag {{ }}: write e.g. {{ user.email }}")
	}
	r, err := parseRef(refText)
	if err != nil {
		return nil, err
	}
	t := &tag{ref: r, text: "{{ " + text + " }}"}
	if !hasFilter {
		return t, nil
	}
	filter = strings.TrimSpace(filter)
	name, arg, _ := strings.Cut(filter, " ")
	if name != "default" {
		return nil, fmt.Errorf("snippet tag %s: unknown filter %q (the only filter is default)", t.text, name)
	}
	def, err := unquote(strings.TrimSpace(arg))
	if err != nil {
		return nil, fmt.Errorf("snippet tag %s: default needs one quoted value, e.g. default \"unknown\"", t.text)
	}
	t.def, t.hasDef = def, true
	return t, nil
}

// unquote accepts "double" (Go/JSON escapes), 'single' (no escapes) and
// `back` quoted values.
func unquote(s string) (string, error) {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' && !strings.Contains(s[1:len(s)-1], "'") {
		return s[1 : len(s)-1], nil
	}
	return strconv.Unquote(s)
}

// clip shortens text quoted in a message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseURL parses a rule's URL. Tags may appear in the path (path-escaped)
// and in the query (query-escaped), never in the scheme, host or fragment,
// so an event can change what is sent but never where it is sent.
func parseURL(raw string) (template, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("url is required")
	}
	t, err := splitTags(raw)
	if err != nil {
		return nil, err
	}
	if t[0].tag != nil || !strings.Contains(t[0].lit, "://") {
		return nil, fmt.Errorf("%q must start with http:// or https://", raw)
	}
	const (
		inHost = iota
		inPath
		inQuery
		inFragment
	)
	state := inHost
	var sample strings.Builder
	for i := range t {
		s := &t[i]
		if s.tag == nil {
			start := 0
			if i == 0 {
				start = strings.Index(s.lit, "://") + 3
			}
			for _, c := range []byte(s.lit[start:]) {
				switch {
				case c == '#':
					state = inFragment
				case c == '?' && state < inQuery:
					state = inQuery
				case c == '/' && state == inHost:
					state = inPath
				}
			}
			sample.WriteString(s.lit)
			continue
		}
		switch state {
		case inHost:
			return nil, fmt.Errorf("snippet tag %s is in the URL's host; tags may only appear in the path and the query", s.tag.text)
		case inFragment:
			return nil, fmt.Errorf("snippet tag %s is in the URL's #fragment, which is never sent; put it in the path or the query", s.tag.text)
		case inPath:
			s.esc = escPath
		case inQuery:
			s.esc = escQuery
		}
		sample.WriteString("x")
	}
	u, err := url.Parse(sample.String())
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL %q: %v", raw, err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", raw)
	}
	return t, nil
}

// parseHeaderValue parses a header value; tags render with control
// characters removed so a value can never start a new header.
func parseHeaderValue(v string) (template, error) {
	t, err := splitTags(v)
	if err != nil {
		return nil, err
	}
	for i := range t {
		if t[i].tag != nil {
			t[i].esc = escHeader
			continue
		}
		if strings.ContainsFunc(t[i].lit, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) {
			return nil, errors.New("value holds a control character (a newline?)")
		}
	}
	return t, nil
}

// extraError is a problem in a rule's extra JSON, at a line of the extra
// text (1-based) so the caller can point at the file line.
type extraError struct {
	line int
	msg  string
}

// parseExtra parses the "Extra data (JSON)" text: it must be a JSON object
// once tags are taken out, and every tag must sit inside a JSON string
// (the product's rule; a tag outside quotes could inject JSON). The result
// is compacted, so the rendered body is compact JSON.
//
// A default inside extra may be written with plain or escaped quotes:
// "{{ user.city | default "x" }}" and "{{ user.city | default \"x\" }}".
func parseExtra(text string) (template, *extraError) {
	if strings.TrimSpace(text) == "" {
		return template{{lit: "{}"}}, nil
	}
	var (
		t     template
		lit   []byte // compacted literal text since the last tag
		check []byte // text without tags, whitespace kept: for json and line numbers
		inStr bool
	)
	lineAt := func(i int) int { return 1 + strings.Count(text[:i], "\n") }
	for i := 0; i < len(text); {
		c := text[i]
		if strings.HasPrefix(text[i:], "{{") {
			end := tagEnd(text, i+2)
			if end < 0 {
				return nil, &extraError{lineAt(i), fmt.Sprintf("snippet tag %q is not closed with }}", clip(text[i:]))}
			}
			if !inStr {
				return nil, &extraError{lineAt(i), fmt.Sprintf(`snippet tag %s must sit inside quotes, e.g. "%s"`, text[i:end+2], text[i:end+2])}
			}
			tg, err := parseTag(strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(text[i+2 : end]))
			if err != nil {
				return nil, &extraError{lineAt(i), err.Error()}
			}
			if len(lit) > 0 {
				t = append(t, segment{lit: string(lit)})
				lit = lit[:0]
			}
			t = append(t, segment{tag: tg, esc: escJSON})
			i = end + 2
			continue
		}
		check = append(check, c)
		switch {
		case !inStr && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
		case inStr && c == '\\' && i+1 < len(text):
			lit = append(lit, c, text[i+1])
			check = append(check, text[i+1])
			i++
		default:
			if c == '"' {
				inStr = !inStr
			}
			lit = append(lit, c)
		}
		i++
	}
	if len(lit) > 0 {
		t = append(t, segment{lit: string(lit)})
	}
	var v any
	if err := json.Unmarshal(check, &v); err != nil {
		line := 1
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line = 1 + strings.Count(string(check[:min(int(se.Offset), len(check))]), "\n")
		}
		return nil, &extraError{line, strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, &extraError{1, `extra must be a JSON object, e.g. {"key": "value"}`}
	}
	return t, nil
}

// render appends t for ev; tags with no value count in *missing.
func (t template) render(dst []byte, ev *schemas.Event, missing *int, tmp *[]byte) []byte {
	for i := range t {
		s := &t[i]
		if s.tag == nil {
			dst = append(dst, s.lit...)
			continue
		}
		res := s.tag.result(ev)
		var text string
		switch res.Type {
		case gjson.String:
			text = res.Str
		case gjson.Null:
			// missing or null: the default, or nothing.
		case gjson.JSON:
			*tmp = appendCompact((*tmp)[:0], res.Raw)
			text = view(*tmp)
		default: // numbers and booleans as their JSON text
			text = res.Raw
		}
		if text == "" {
			switch {
			case s.tag.hasDef:
				text = s.tag.def
			case res.Type == gjson.Null:
				*missing++
			}
		}
		dst = s.esc.append(dst, text)
	}
	return dst
}

// appendCompact appends JSON text without the whitespace between tokens.
func appendCompact(dst []byte, raw string) []byte {
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inStr:
			if c == '\\' && i+1 < len(raw) {
				dst = append(dst, c)
				i++
				c = raw[i]
			} else if c == '"' {
				inStr = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '"':
			inStr = true
		}
		dst = append(dst, c)
	}
	return dst
}
