package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/apicall/apicall/schemas"
)

// Preview writes what `apicall render` prints for ev: for every rule that
// matches, its name, the request line, the headers (sorted, Idempotency-Key
// included), a blank line and the body indented by two spaces; for a rule
// whose event matches but whose condition does not, why it was skipped;
// and `(no rules match event "X")` when nothing matches. It sends nothing.
//
// Unless showSecrets, values that came from ${ENV} and the values of
// credential headers (Authorization, Cookie, X-Api-Key, ...) are shown as
// ****, so the output can be pasted into a ticket.
func Preview(w io.Writer, cfg *Config, ev *schemas.Event, now time.Time, showSecrets bool) error {
	rs := cfg.Compiled()
	if rs == nil {
		return errors.New("preview: config has no compiled rules (use config.Load)")
	}
	if ev == nil {
		return errors.New("preview: no event")
	}
	redact := func(s string) string {
		if showSecrets {
			return s
		}
		return cfg.Redact(s)
	}
	var b bytes.Buffer
	matched := 0
	for _, r := range rs.candidates(ev) {
		if ok, err := rs.check(r, ev); err != nil {
			fmt.Fprintf(&b, "rule %q: skipped: condition failed: %s\n\n", r.name, redact(err.Error()))
			continue
		} else if !ok {
			fmt.Fprintf(&b, "rule %q: skipped: condition is false: %s\n\n", r.name, redact(r.whenSrc))
			continue
		}
		matched++
		call, err := r.Render(ev, now)
		if err != nil {
			return fmt.Errorf("preview: rule %q: %w", r.name, err)
		}
		fmt.Fprintf(&b, "rule %q (path %s)\n", r.name, r.path)
		fmt.Fprintf(&b, "%s %s\n", call.Method, redact(call.URL))
		names := make([]string, 0, len(call.Header)+1)
		for name := range call.Header {
			names = append(names, name)
		}
		names = append(names, "Idempotency-Key")
		slices.Sort(names)
		for _, name := range names {
			vals := call.Header[name]
			if name == "Idempotency-Key" {
				vals = []string{call.IdempotencyKey}
			}
			for _, v := range vals {
				if !showSecrets && credentialHeader(name) {
					v = maskCredential(v)
				}
				fmt.Fprintf(&b, "%s: %s\n", name, redact(v))
			}
		}
		b.WriteByte('\n')
		if call.Body == nil {
			b.WriteString("(no body)\n")
		} else {
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, call.Body, "", "  "); err != nil {
				pretty.Reset()
				pretty.Write(call.Body) // show it as is; the receiver would get it as is
			}
			b.WriteString(redact(pretty.String()))
			b.WriteByte('\n')
		}
		if call.MissingTags > 0 {
			fmt.Fprintf(&b, "(%d snippet tag(s) had no value and rendered empty)\n", call.MissingTags)
		}
		b.WriteByte('\n')
	}
	if matched == 0 {
		fmt.Fprintf(&b, "(no rules match event %q)\n", ev.Name)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// candidates returns the rules whose event and topic match ev, whatever
// their condition says.
func (rs *Rules) candidates(ev *schemas.Event) []*CompiledRule {
	cands, ok := rs.byEvent[ev.Name]
	if !ok {
		cands = rs.anyEvent
	}
	var out []*CompiledRule
	for _, r := range cands {
		if r.topic == "" || r.topic == ev.Topic {
			out = append(out, r)
		}
	}
	return out
}

// check evaluates one rule's condition for ev and reports its error, which
// Match only counts.
func (rs *Rules) check(r *CompiledRule, ev *schemas.Event) (bool, error) {
	if r.when == nil {
		return true, nil
	}
	env := rs.envs.Get().(*whenEnv)
	env.ev = ev
	ok, err := r.eval(env)
	env.reset()
	rs.envs.Put(env)
	return ok, err
}

// credentialHeader reports headers whose values are credentials.
func credentialHeader(name string) bool {
	n := strings.ToLower(name)
	if n == "idempotency-key" {
		return false
	}
	for _, s := range []string{"auth", "cookie", "key", "token", "secret", "pass", "signature", "session", "credential"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// maskCredential hides a credential but keeps its scheme ("Bearer ****"),
// which is often what one wants to check.
func maskCredential(v string) string {
	if scheme, _, ok := strings.Cut(v, " "); ok && scheme != "" {
		return scheme + " " + redacted
	}
	return redacted
}
