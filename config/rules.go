package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/apicall/apicall/schemas"
)

// Rules is the compiled, immutable rule set of one config file. It is safe
// for concurrent use by any number of partition workers.
type Rules struct {
	all []*CompiledRule
	// byEvent lists, per event name a rule names, the rules that fire for
	// it (that name or *), in file order; anyEvent is the list for every
	// other name. Match is then one map lookup, not a scan of all rules.
	byEvent  map[string][]*CompiledRule
	anyEvent []*CompiledRule
	byName   map[string]*CompiledRule

	refs   []ref     // lookups shared by the conditions
	envs   sync.Pool // *whenEnv
	bufs   sync.Pool // *renderBuf
	bodies sync.Pool // *[]byte: released call bodies (Call.ReleaseBody)
	boxes  sync.Pool // *callBox: released calls (Call.Release)

	// redact is the Redact of the Config the rules were loaded from: a
	// reloaded rule set brings the secrets of its own file.
	redact func(string) string
}

// CompiledRule is one rule ready to match and render.
type CompiledRule struct {
	rules *Rules
	name  string
	line  int
	path  json.RawMessage
	event string // "*" = any
	topic string // "" = any

	when       *vm.Program // nil: always
	whenFast   *fastCond   // nil: run when on the VM
	whenSrc    string
	whenErrors atomic.Uint64

	method         string
	url            template
	urlLit         string // the URL when it has no tags
	headers        []header
	extra          template
	excludeUser    bool
	bodyHead       string // {"path":P,"timestamp":"
	timeout        time.Duration
	maxAttempts    int
	signingSecrets []string
}

// header is one header of a rule: its canonical name and value template.
type header struct {
	name  string
	value template
	lit   string // the value when it has no tags
	tags  bool
}

// Name is the rule's unique name (metrics, outcomes, idempotency keys).
func (r *CompiledRule) Name() string { return r.name }

// Path is the rule's path as JSON: 6 or "welcome".
func (r *CompiledRule) Path() json.RawMessage { return r.path }

// Line is where the rule starts in the config file.
func (r *CompiledRule) Line() int { return r.line }

// Event is the event name the rule fires on; "*" for any.
func (r *CompiledRule) Event() string { return r.event }

// When is the rule's condition as written; "" for none.
func (r *CompiledRule) When() string { return r.whenSrc }

// WhenErrors counts events for which the condition failed at run time (for
// example comparing a missing field with &&); such events do not match.
func (r *CompiledRule) WhenErrors() uint64 { return r.whenErrors.Load() }

// All returns the rules in file order. The slice is shared: do not modify.
func (rs *Rules) All() []*CompiledRule {
	if rs == nil {
		return nil
	}
	return rs.all
}

// Redact hides in s the ${ENV} values of the config file the rules were
// loaded from, as Config.Redact does. Use it for text about calls of these
// rules (outcome URLs and errors): after a reload, the secrets the rules
// use are the new file's, not the ones the process started with.
func (rs *Rules) Redact(s string) string {
	if rs == nil || rs.redact == nil {
		return s
	}
	return rs.redact(s)
}

// Rules returns the rule set r belongs to.
func (r *CompiledRule) Rules() *Rules { return r.rules }

// Rule returns the rule named name, or nil (for replay --rule).
func (rs *Rules) Rule(name string) *CompiledRule {
	if rs == nil {
		return nil
	}
	return rs.byName[name]
}

// Match appends to dst the rules that fire for ev, in file order: the event
// name matches (or the rule's event is *), the topic matches if the rule
// names one, and the condition, if any, is true. A condition that fails at
// run time counts in WhenErrors and does not match. Match does no I/O and
// allocates nothing when dst has room and conditions read only fields seen
// before with the same values.
func (rs *Rules) Match(dst []*CompiledRule, ev *schemas.Event) []*CompiledRule {
	if rs == nil || ev == nil {
		return dst
	}
	cands, ok := rs.byEvent[ev.Name]
	if !ok {
		cands = rs.anyEvent
	}
	var env *whenEnv
	for _, r := range cands {
		if r.topic != "" && r.topic != ev.Topic {
			continue
		}
		if r.when != nil {
			if env == nil {
				env = rs.envs.Get().(*whenEnv)
				env.ev = ev
			}
			if ok, _ := r.eval(env); !ok {
				continue
			}
		}
		dst = append(dst, r)
	}
	if env != nil {
		env.reset()
		rs.envs.Put(env)
	}
	return dst
}

// eval runs the condition; an error (or a non-bool) is counted and false.
func (r *CompiledRule) eval(env *whenEnv) (bool, error) {
	if r.whenFast != nil {
		if b, ok := r.whenFast.run(env); ok {
			return b, nil
		}
	}
	out, err := env.vm.Run(r.when, env.env)
	if err != nil {
		r.whenErrors.Add(1)
		return false, oneLine(err)
	}
	b, ok := out.(bool)
	if !ok {
		r.whenErrors.Add(1)
		return false, fmt.Errorf("condition returned %T, not a bool", out)
	}
	return b, nil
}

// forbiddenHeaders are set by the HTTP client or by apicall itself; a rule
// setting them would break the request or its idempotency.
var forbiddenHeaders = map[string]string{
	"Host":              "the host comes from the URL",
	"Content-Length":    "it is computed from the body",
	"Transfer-Encoding": "it is managed by the HTTP client",
	"Connection":        "it is managed by the HTTP client",
	"Idempotency-Key":   "apicall sets it from the event's position",
}

var validMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// compileRules validates and compiles c.Rules, recording problems in l.
func (l *loader) compileRules(c *Config) *Rules {
	rs := &Rules{byEvent: map[string][]*CompiledRule{}, byName: map[string]*CompiledRule{}, redact: c.Redact}
	conds := &conditions{ids: map[ref]int{}}
	consumed := map[string]bool{}
	for _, t := range c.Kafka.Topics {
		consumed[t.Name] = true
	}
	if len(c.Rules) > 0 && len(c.Kafka.Topics) == 0 {
		l.errs.add(l.lineOf("kafka", "topics"), "kafka.topics: no topic to consume; list at least one (rules fire on events read from them)")
	}
	firstLine := map[string]int{}
	for i := range c.Rules {
		rule := &c.Rules[i]
		n := l.ruleNode(i)
		if n != nil && n.Kind != yaml.MappingNode && n.Kind != yaml.AliasNode {
			if isNull(n) {
				l.errs.add(l.line(n.Line), "rule #%d: empty rule (a \"-\" with nothing after it)", i+1)
			}
			continue // a scalar or a list was reported while decoding
		}
		at := func(keys ...string) int {
			if n == nil {
				return rule.Line
			}
			return l.line(nodeAt(n, keys...).Line)
		}
		label := fmt.Sprintf("rule #%d", i+1)
		if rule.Name != "" {
			label = "rule " + strconv.Quote(rule.Name)
		}
		bad := func(keys []string, format string, args ...any) {
			where := label
			if len(keys) > 0 {
				where += ": " + strings.Join(keys, ".")
			}
			l.errs.add(at(keys...), "%s: %s", where, fmt.Sprintf(format, args...))
		}
		r := &CompiledRule{
			rules:          rs,
			name:           rule.Name,
			line:           rule.Line,
			event:          rule.Event,
			topic:          rule.Topic,
			method:         rule.Call.Method,
			excludeUser:    rule.Call.ExcludeUser,
			timeout:        rule.Call.Timeout,
			maxAttempts:    rule.Call.MaxAttempts,
			signingSecrets: slices.Clone(rule.Call.SigningSecrets),
		}

		switch {
		case rule.Name == "":
			bad(nil, "name is required")
		case strings.ContainsFunc(rule.Name, unicode.IsControl):
			bad([]string{"name"}, "must not hold control characters")
		case firstLine[rule.Name] != 0:
			bad([]string{"name"}, "the name is already used by the rule at line %d; names must be unique", firstLine[rule.Name])
		default:
			firstLine[rule.Name] = at()
		}
		if rule.Event == "" {
			bad(nil, "event is required (an event name, or \"*\" for any event)")
		}
		if rule.Topic != "" && len(consumed) > 0 && !consumed[rule.Topic] {
			bad([]string{"topic"}, "%q is not in kafka.topics, so the rule would never fire", rule.Topic)
		}

		switch p := rule.Path.(type) {
		case nil:
			r.path = jsonString(rule.Name) // documented default: the rule's name
		case int:
			r.path = json.RawMessage(strconv.Itoa(p))
		case uint64:
			r.path = json.RawMessage(strconv.FormatUint(p, 10))
		case string:
			r.path = jsonString(p)
		case float64:
			if p == math.Trunc(p) && math.Abs(p) < 1<<53 {
				r.path = json.RawMessage(strconv.FormatFloat(p, 'f', -1, 64))
			} else {
				bad([]string{"path"}, "must be an integer or a string, got %v", p)
			}
		default:
			bad([]string{"path"}, "must be an integer or a string, got %v", p)
		}
		r.bodyHead = `{"path":` + string(r.path) + `,"timestamp":"`

		if w := strings.TrimSpace(rule.When); w != "" {
			prog, err := conds.compile(w)
			if err != nil {
				bad([]string{"when"}, "condition does not compile: %v", err)
			}
			r.when, r.whenSrc = prog, w
			if prog != nil {
				r.whenFast = compileFast(prog)
			}
		}

		if !slices.Contains(validMethods, r.method) {
			bad([]string{"call", "method"}, "unknown method %q (use GET, POST, PUT, PATCH or DELETE)", rule.Call.Method)
		}
		if strings.TrimSpace(rule.Call.URL) == "" {
			bad(nil, "call.url is required")
		} else if t, err := parseURL(rule.Call.URL); err != nil {
			bad([]string{"call", "url"}, "%v", err)
		} else {
			r.url = t
			if !t.hasTags() {
				r.urlLit = t.literal()
			}
		}
		l.compileHeaders(r, rule, bad)
		if r.method == http.MethodGet && strings.TrimSpace(rule.Call.Extra) != "" {
			bad([]string{"call", "extra"}, "a GET call has no body, so extra would not be sent; use POST, or put the values in the URL's query")
		}
		if t, xe := parseExtra(rule.Call.Extra); xe != nil {
			line := at("call", "extra")
			if en := nodeAt(n, "call", "extra"); en != nil && en.Kind == yaml.ScalarNode {
				line += xe.line - 1
				if en.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
					line++ // block scalar: the text starts below the "|"
				}
			}
			l.errs.add(line, "%s: call.extra: Enter valid JSON: %s", label, xe.msg)
		} else {
			r.extra = t
		}
		if rule.Call.Timeout < 0 {
			bad([]string{"call", "timeout"}, "must not be negative")
		}
		if rule.Call.MaxAttempts < 0 {
			bad([]string{"call", "max_attempts"}, "must not be negative, got %d", rule.Call.MaxAttempts)
		}
		for j, s := range rule.Call.SigningSecrets {
			if strings.TrimSpace(s) == "" {
				bad([]string{"call", "signing_secrets"}, "secret #%d is empty", j+1)
			}
		}
		rs.all = append(rs.all, r)
		if r.name != "" && rs.byName[r.name] == nil {
			rs.byName[r.name] = r
		}
	}

	for _, r := range rs.all {
		if r.event == "*" {
			rs.anyEvent = append(rs.anyEvent, r)
		} else if _, ok := rs.byEvent[r.event]; !ok {
			rs.byEvent[r.event] = nil
		}
	}
	for name := range rs.byEvent {
		for _, r := range rs.all {
			if r.event == name || r.event == "*" {
				rs.byEvent[name] = append(rs.byEvent[name], r)
			}
		}
	}
	rs.refs = conds.refs
	rs.envs.New = func() any { return newWhenEnv(rs.refs) }
	rs.bufs.New = func() any { return new(renderBuf) }
	return rs
}

// compileHeaders validates a rule's headers and adds Content-Type when a
// body is sent and the rule sets none.
func (l *loader) compileHeaders(r *CompiledRule, rule *Rule, bad func([]string, string, ...any)) {
	hasContentType := false
	seen := map[string]string{}
	for _, name := range sortedKeys(rule.Call.Headers) {
		keys := []string{"call", "headers", name}
		if !validHeaderName(name) {
			bad(keys, "%q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
			continue
		}
		canon := http.CanonicalHeaderKey(name)
		if why, ok := forbiddenHeaders[canon]; ok {
			bad(keys, "%s cannot be set: %s", canon, why)
			continue
		}
		if prev, dup := seen[canon]; dup {
			bad(keys, "%q and %q are the same header", prev, name)
			continue
		}
		seen[canon] = name
		t, err := parseHeaderValue(rule.Call.Headers[name])
		if err != nil {
			bad(keys, "%v", err)
			continue
		}
		h := header{name: canon, value: t, tags: t.hasTags()}
		if !h.tags {
			h.lit = t.literal()
		}
		hasContentType = hasContentType || canon == "Content-Type"
		r.headers = append(r.headers, h)
	}
	if r.method != http.MethodGet && !hasContentType {
		r.headers = append(r.headers, header{name: "Content-Type", lit: "application/json"})
	}
	slices.SortFunc(r.headers, func(a, b header) int { return strings.Compare(a.name, b.name) })
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !unreserved(c) && strings.IndexByte("!#$%&'*+^`|", c) < 0 {
			return false
		}
	}
	return true
}

// jsonString returns s as a JSON string.
func jsonString(s string) json.RawMessage {
	return json.RawMessage(`"` + string(appendJSONStringContent(nil, s)) + `"`)
}
