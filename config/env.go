package config

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
)

// expanded is a config file after ${NAME} expansion.
type expanded struct {
	text []byte
	// lines maps a line of text (index = line-1) to the line of the original
	// file. A value holding newlines adds lines to text; without this map
	// every message after it would point at the wrong line.
	lines []int
	// secrets are the values substituted; Redact hides them.
	secrets []string
}

// origLine maps a line of the expanded text back to the original file.
func (x *expanded) origLine(line int) int {
	if line >= 1 && line <= len(x.lines) {
		return x.lines[line-1]
	}
	if n := len(x.lines); n > 0 && line > n {
		// yaml reports "end of file" one past the last line.
		return x.lines[n-1] + (line - n)
	}
	return line
}

// expandEnv replaces ${NAME} and ${NAME:-default} in src with values from
// lookupEnv, before the YAML is parsed, so a reference works anywhere a
// value can be written (a port, a header, a list item). $${ is a literal ${.
// Lines whose first non-blank character is # are comments and are copied
// unchanged, so a commented-out ${OLD_TOKEN} is not an error.
//
// A reference must close on its own line. A variable that is not set and
// has no default is an error at its line: silently sending "Bearer " to a
// receiver is worse than refusing to start.
func expandEnv(src []byte, lookupEnv func(string) (string, bool), errs *errorList) expanded {
	x := expanded{text: make([]byte, 0, len(src))}
	seen := map[string]bool{}
	line := 0
	for len(src) > 0 {
		line++
		var raw []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			raw, src = src[:i+1], src[i+1:]
		} else {
			raw, src = src, nil
		}
		x.lines = append(x.lines, line)
		if t := bytes.TrimLeft(raw, " \t"); len(t) > 0 && t[0] == '#' || bytes.IndexByte(raw, '$') < 0 {
			x.text = append(x.text, raw...)
			continue
		}
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c != '$' {
				x.text = append(x.text, c)
				continue
			}
			if bytes.HasPrefix(raw[i:], []byte("$${")) {
				x.text = append(x.text, '$', '{')
				i += 2
				continue
			}
			if i+1 >= len(raw) || raw[i+1] != '{' {
				x.text = append(x.text, c)
				continue
			}
			end := bytes.IndexByte(raw[i:], '}')
			if end < 0 {
				errs.add(line, "unterminated ${ (close it with } on the same line, or write $${ for a literal ${)")
				x.text = append(x.text, raw[i:]...)
				break
			}
			ref := string(raw[i+2 : i+end])
			i += end
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validEnvName(name) {
				errs.add(line, "invalid environment variable reference ${%s} (names are letters, digits and _, not starting with a digit)", ref)
				continue
			}
			val, ok := "", false
			if lookupEnv != nil {
				val, ok = lookupEnv(name)
			}
			switch {
			case hasDef && (!ok || val == ""):
				val = def
			case !ok:
				errs.add(line, "environment variable %s is not set (write ${%s:-default} for a default, or $${ for a literal ${)", name, name)
				continue
			}
			if val != "" && !seen[val] {
				seen[val] = true
				x.secrets = append(x.secrets, val)
			}
			x.text = append(x.text, val...)
			for range strings.Count(val, "\n") {
				x.lines = append(x.lines, line)
			}
		}
	}
	// Longest first, so that a secret containing another is hidden whole.
	slices.SortFunc(x.secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return x
}

// validEnvName reports whether s is a POSIX-style variable name.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// redacted replaces a secret in output meant for people.
const redacted = "****"

// Redact hides every value that came from ${ENV} expansion (defaults
// included) in s, for logs and `apicall render` output. Every such value is
// treated as a secret because the loader cannot tell a token from a port;
// hiding a port number is a small price for never printing a token.
func (c *Config) Redact(s string) string {
	if c == nil {
		return s
	}
	for _, sec := range c.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}
