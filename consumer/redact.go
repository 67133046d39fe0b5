package consumer

import (
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/apicall/apicall/config"
)

// maxRedactShapes bounds the URL redaction cache: a rule with a tag in its
// path has a new shape per event, and those are computed, not kept.
const maxRedactShapes = 4096

// urlRedactor turns a called URL into the one written in outcome records:
// scheme, host and path kept, user info and fragment dropped, every query
// value replaced by REDACTED (keys sorted, repeated keys once), config
// secrets masked. Parsing each URL cost about 4% of apicall's CPU (make
// bench profile), yet the result depends only on the URL with its query
// values removed, its shape, which is the same for every call of a rule
// whose path has no tag: so results are cached by shape.
type urlRedactor struct {
	rules   *config.Rules       // the rule set whose URLs these are
	secrets func(string) string // their config's Redact

	mu     sync.RWMutex
	shapes map[string]string
}

func newURLRedactor(secrets func(string) string) *urlRedactor {
	return &urlRedactor{secrets: secrets, shapes: make(map[string]string)}
}

// redactorFor returns the URL redactor for rule set rs, made anew when the
// rules were reloaded: a reload may bring new secrets, and cached results
// masked with the old ones.
func (c *Consumer) redactorFor(rs *config.Rules) *urlRedactor {
	if r := c.redact.Load(); r != nil && r.rules == rs {
		return r
	}
	r := newURLRedactor(func(s string) string { return c.cfg.Redact(rs.Redact(s)) })
	r.rules = rs
	c.redact.Store(r)
	return r
}

func (r *urlRedactor) url(raw string) string {
	var scratch [256]byte
	shape, ok := appendShape(scratch[:0], raw)
	if !ok {
		return r.compute(raw)
	}
	r.mu.RLock()
	out, hit := r.shapes[string(shape)] // no allocation for the lookup
	r.mu.RUnlock()
	if hit {
		return out
	}
	out = r.compute(raw)
	r.mu.Lock()
	if len(r.shapes) < maxRedactShapes {
		r.shapes[string(shape)] = out
	}
	r.mu.Unlock()
	return out
}

// appendShape appends raw less its query values (the fragment stays: a bad
// escape there makes url.Parse fail). It reports
// false when a value could change what compute makes of the URL (a control
// character makes url.Parse fail; a bad escape or a ';' makes Query drop the
// key), so that such URLs are never answered from the cache.
func appendShape(dst []byte, raw string) ([]byte, bool) {
	raw, fragment, hasFragment := strings.Cut(raw, "#")
	base, query, hasQuery := strings.Cut(raw, "?")
	dst = append(dst, base...)
	if hasQuery {
		dst = append(dst, '?')
		var ok bool
		if dst, ok = appendQueryKeys(dst, query); !ok {
			return dst, false
		}
	}
	if hasFragment {
		dst = append(dst, '#')
		dst = append(dst, fragment...)
	}
	return dst, true
}

// appendQueryKeys appends the keys of query, each followed by '&'.
func appendQueryKeys(dst []byte, query string) ([]byte, bool) {
	for query != "" {
		var part string
		part, query, _ = strings.Cut(query, "&")
		key, value, _ := strings.Cut(part, "=")
		if !plainValue(value) {
			return dst, false
		}
		dst = append(dst, key...)
		dst = append(dst, '&')
	}
	return dst, true
}

// plainValue reports whether a query value has only characters and escapes
// url.Parse and url.ParseQuery accept.
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c == 0x7f || c == ';':
			return false
		case c == '%':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// compute redacts raw the long way.
func (r *urlRedactor) compute(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	u.Fragment = ""
	if u.RawQuery != "" {
		q := u.Query()
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, url.QueryEscape(k)+"=REDACTED")
		}
		slices.Sort(keys)
		u.RawQuery = strings.Join(keys, "&")
	}
	return r.secrets(u.String())
}
