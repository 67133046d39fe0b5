package schemas

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Every JSON event is validated before anything reads it (an invalid one is
// dead-lettered, not half used). gjson's validator, which replaced
// json.Valid for being five times faster, was still about 4% of apicall's
// CPU in make bench: it recurses once per value and tests each string byte
// against several cases. validJSON below is one loop with an explicit
// stack, and it checks strings eight bytes at a time.

// maxJSONDepth is encoding/json's nesting limit: json.Valid refuses a value
// nested deeper, and so does validJSON.
const maxJSONDepth = 10_000

// validJSON reports whether b is one valid JSON value (optionally surrounded
// by whitespace): exactly json.Valid's answer for UTF-8 input (FuzzValidJSON
// compares them; DecodeJSON checks UTF-8 first). Like json.Valid it does not
// check that the bytes of strings are UTF-8.
func validJSON(b []byte) bool {
	w := jsonWalk{b: b}
	return w.run()
}

// scanValid is validJSON for a value whose top level is an object, and
// returns what scanObject notes, found in the same pass: the event members'
// spans and the index of the first user member's object. A valid event is
// walked once instead of twice (validation, then scanObject); the spans are
// meaningful only with true. TestScanValidIsScanObject holds the two equal.
func scanValid(b []byte) (spans, bool) {
	w := jsonWalk{b: b, noting: true}
	ok := w.run()
	return w.sp, ok
}

// jsonWalk is one pass over a JSON value: validation, and when noting, the
// notes scanValid returns. Nothing in it points into it, so it stays on the
// caller's stack.
type jsonWalk struct {
	b      []byte
	noting bool
	sp     spans

	member int // the top-level member whose value is being walked, if noted
	vs     int // where that value starts

	indexing bool // inside the first user member's object
	ustart   int  // where that object starts
	n        int  // its members so far, in members
	uok      bool // false: not indexable (escaped key, too many)
	k0, k1   int  // the current user member's key, relative to ustart
	uvs      int  // where its value starts
	members  [maxIndexed]objMember
}

func (w *jsonWalk) run() bool {
	b := w.b
	// stack holds the open containers, innermost last: '{' or '['. Most
	// events nest a few levels, so the array keeps it off the heap.
	var buf [32]byte
	stack := buf[:0]
	i := 0
	for {
		// A value starts at b[i] (after whitespace).
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		if w.noting {
			w.valueStart(i, len(stack))
		}
		switch c := b[i]; c {
		case '{', '[':
			if len(stack) == maxJSONDepth {
				return false
			}
			start := i
			i = skipWS(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				i++
				if w.noting && c == '{' && len(stack) == 1 && w.member == userMember {
					w.sp.userMembers, w.sp.userIndexed = nil, true
				}
				break // an empty container is a whole value
			}
			stack = append(stack, c)
			if c == '{' {
				if w.noting && len(stack) == 2 && w.member == userMember {
					w.indexing, w.ustart, w.n, w.uok = true, start, 0, true
				}
				if i = w.key(i, len(stack)); i < 0 {
					return false
				}
			}
			continue // its first value
		case '"':
			if i = validString(b, i); i < 0 {
				return false
			}
		case 't':
			if !hasLiteral(b, i, "true") {
				return false
			}
			i += 4
		case 'f':
			if !hasLiteral(b, i, "false") {
				return false
			}
			i += 5
		case 'n':
			if !hasLiteral(b, i, "null") {
				return false
			}
			i += 4
		default:
			if i = validNumber(b, i); i < 0 {
				return false
			}
		}
		// A value ended at b[i]: close containers until one goes on.
		for {
			if len(stack) == 0 {
				return skipWS(b, i) == len(b)
			}
			if w.noting {
				w.valueEnd(i, len(stack))
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return false
			}
			open := stack[len(stack)-1]
			if b[i] == open+2 {
				if w.indexing && len(stack) == 2 {
					w.indexing = false
					if w.uok {
						w.sp.userMembers, w.sp.userIndexed = append([]objMember(nil), w.members[:w.n]...), true
					}
				}
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i++
			if open == '{' {
				if i = w.key(skipWS(b, i), len(stack)); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// key checks a member's key and colon at b[i], in an object at depth, and
// returns the index after the colon, or -1. With sp it notes which member
// of the top level, or of the user object, comes next.
func (w *jsonWalk) key(i, depth int) int {
	b := w.b
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	ks := i
	if i = validString(b, i); i < 0 {
		return -1
	}
	if w.noting {
		switch {
		case depth == 1:
			w.member = memberOf(b[ks+1:i-1], b[ks:i])
			if s := w.sp.of(w.member); s != nil && s.end != 0 {
				w.member = noMember // a repeat: the first one counts
			}
		case depth == 2 && w.indexing:
			w.k0, w.k1 = ks+1-w.ustart, i-1-w.ustart
			if w.uok && bytes.IndexByte(b[ks+1:i-1], '\\') >= 0 {
				w.uok = false
			}
		}
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}

// valueStart notes where a value at depth starts.
func (w *jsonWalk) valueStart(i, depth int) {
	switch {
	case depth == 1:
		w.vs = i
	case depth == 2 && w.indexing:
		w.uvs = i
	}
}

// valueEnd notes where a value at depth ends.
func (w *jsonWalk) valueEnd(i, depth int) {
	switch {
	case depth == 1:
		if s := w.sp.of(w.member); s != nil {
			*s = span{w.vs, i}
			w.member = noMember
		}
	case depth == 2 && w.indexing && w.uok:
		if w.n == maxIndexed {
			w.uok = false
			return
		}
		w.members[w.n] = objMember{int32(w.k0), int32(w.k1), int32(w.uvs - w.ustart), int32(i - w.ustart)}
		w.n++
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// validString checks the string that starts at b[i] == '"' and returns the
// index after its closing quote, or -1. Bytes below 0x20 must be escaped;
// escapes are \" \\ \/ \b \f \n \r \t and \u with four hex digits.
func validString(b []byte, i int) int {
	i++
	for {
		// Eight bytes at a time while none of them is a quote, a
		// backslash or a control byte.
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ ('"' * lsb)
			s := x ^ ('\\' * lsb)
			// A byte is flagged when it is below 0x20 or equals one of the
			// two: (v - 0x01..) & ^v & 0x80.. finds zero bytes of v, and
			// x - 0x20.. & ^x finds bytes below 0x20. Borrows can flag a
			// byte above the first real hit but never one before it.
			m := ((q - lsb) &^ q) | ((s - lsb) &^ s) | ((x - 0x20*lsb) &^ x)
			if m &= msb; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// validNumber checks the number at b[i] (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)
// and returns the index after it, or -1.
func validNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
