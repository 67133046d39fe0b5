package config

import "unicode/utf8"

// The escapers append s made safe for one place in a call. They are
// append-style (no intermediate strings) because they run for every tag of
// every call. escape_test.go checks the URL ones against net/url.

const (
	upperhex = "0123456789ABCDEF" // percent-encoding, as net/url
	lowerhex = "0123456789abcdef" // \u escapes, as encoding/json
)

// append escapes s for e.
func (e escaping) append(dst []byte, s string) []byte {
	switch e {
	case escPath:
		return appendPathEscaped(dst, s)
	case escQuery:
		return appendQueryEscaped(dst, s)
	case escJSON:
		return appendJSONStringContent(dst, s)
	case escHeader:
		return appendHeaderValue(dst, s)
	}
	return append(dst, s...)
}

// unreserved reports RFC 3986 unreserved characters, never escaped.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// appendQueryEscaped is url.QueryEscape: a value cannot add a parameter
// (&, =) or end the query (#).
func appendQueryEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case unreserved(c):
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return dst
}

// appendPathEscaped is url.PathEscape: a value cannot add a path segment
// (/) or start the query (?). On top of that a value that is exactly "." or
// ".." is percent-encoded, so a profile value cannot walk up the path.
func appendPathEscaped(dst []byte, s string) []byte {
	if s == "." || s == ".." {
		for range s {
			dst = append(dst, "%2E"...)
		}
		return dst
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case unreserved(c), c == '$', c == '&', c == '+', c == ':', c == '=', c == '@':
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return dst
}

// AppendJSONString appends s as a quoted JSON string, escaped exactly as
// encoding/json escapes it (see appendJSONStringContent). The consumer
// writes outcome records with it, byte for byte what json.Marshal gave.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringContent(dst, s)
	return append(dst, '"')
}

// appendJSONStringContent appends s escaped to sit between the quotes of a
// JSON string, exactly as encoding/json does: it escapes <, > and & (a body
// may end up in an HTML page: "</script>" stays inert), U+2028/U+2029 (they
// end JavaScript lines), control characters, and turns invalid UTF-8 into
// U+FFFD, so the body is always valid JSON whatever the profile holds.
func appendJSONStringContent(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerhex[c>>4], lowerhex[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			switch r {
			case utf8.RuneError:
				dst = append(dst, `\ufffd`...)
			default:
				dst = append(dst, '\\', 'u', '2', '0', '2', lowerhex[r&15])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// appendHeaderValue drops control characters (CR, LF, NUL and the rest but
// tab) so a value can never end the header or start another one.
func appendHeaderValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= ' ' && c != 0x7f || c == '\t' {
			dst = append(dst, c)
		}
	}
	return dst
}
