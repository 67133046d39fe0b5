package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file turns Avro binary into the "natural" JSON a producer would have
// written by hand (docs/schemas.md): unions unwrapped, record fields in the
// writer schema's order, logical time types as strings, bytes and fixed as
// strings of code points 0-255 (Avro's own JSON rule), NaN and infinities as
// the strings "NaN", "Infinity", "-Infinity". It decodes straight from the
// binary into an append buffer, with no intermediate Go values.

// Decoding limits. Avro data comes from producers we do not control; these
// keep a hostile value from exhausting the stack or memory.
const (
	// maxValueDepth bounds nesting (records, arrays, maps) in one datum.
	maxValueDepth = 100
	// The natural JSON of one datum may not exceed this many bytes plus
	// maxExpansion times the Avro size. Field names make JSON larger than Avro
	// (a null field is 1 Avro byte, `"name":null,` in JSON), but an array of
	// a billion empty records must fail, not allocate.
	maxOutputBase = 1 << 20
	maxExpansion  = 64
)

var errTruncated = errors.New("truncated: value ends inside a datum")

// span is where one member's value sits in the natural JSON; end == 0 means
// the member is absent.
type span struct{ start, end int }

// spans records the JSON values of the four event members.
type spans struct {
	event, timestamp, user, data span
	// userMembers indexes the user object when userIndexed (see index.go).
	userMembers []objMember
	userIndexed bool
}

// AppendJSON appends the natural JSON form of one Avro binary datum written
// with s, and returns the extended buffer. The datum must use all of avro.
func (s *Schema) AppendJSON(dst, avro []byte) ([]byte, error) {
	return s.appendNatural(dst, avro, nil)
}

// appendNatural is AppendJSON that also notes the spans of the event members
// when the top level is a record.
func (s *Schema) appendNatural(dst, in []byte, sp *spans) (out []byte, err error) {
	r := avroReader{in: in, out: dst, limit: len(dst) + maxOutputBase + maxExpansion*len(in)}
	// The decoder is written not to panic; this is the last line of defence
	// so that no value can crash the process (design guarantee 7).
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("avro decoder panic: %v", p)
		}
	}()
	if sp != nil && s.root.kind == kindRecord {
		err = r.topRecord(s, sp)
	} else {
		err = r.value(s.root)
	}
	if err != nil {
		return dst, err
	}
	if r.pos != len(in) {
		return dst, fmt.Errorf("%d bytes left after the datum (wrong schema?)", len(in)-r.pos)
	}
	return r.out, nil
}

type avroReader struct {
	in    []byte
	pos   int
	out   []byte
	depth int
	limit int
}

func (r *avroReader) topRecord(s *Schema, sp *spans) error {
	r.out = append(r.out, '{')
	for i := range s.root.fields {
		f := &s.root.fields[i]
		if i > 0 {
			r.out = append(r.out, ',')
		}
		r.out = append(r.out, f.key...)
		start := len(r.out)
		if err := r.value(f.typ); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		sv := span{start, len(r.out)}
		switch i {
		case s.top.event:
			sp.event = sv
		case s.top.timestamp:
			sp.timestamp = sv
		case s.top.user:
			sp.user = sv
		case s.top.data:
			sp.data = sv
		}
	}
	r.out = append(r.out, '}')
	return nil
}

func (r *avroReader) readLong() (int64, error) {
	var u uint64
	for shift := uint(0); ; shift += 7 {
		if r.pos >= len(r.in) {
			return 0, errTruncated
		}
		b := r.in[r.pos]
		r.pos++
		if shift == 63 && b > 1 {
			return 0, errors.New("varint overflows 64 bits")
		}
		u |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

// readLen reads a byte count and checks that many bytes follow.
func (r *avroReader) readLen() (int, error) {
	n, err := r.readLong()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("negative length %d", n)
	}
	if n > int64(len(r.in)-r.pos) {
		return 0, errTruncated
	}
	return int(n), nil
}

func (r *avroReader) take(n int) ([]byte, error) {
	if n > len(r.in)-r.pos {
		return nil, errTruncated
	}
	b := r.in[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

// blockCount reads an array or map block header: the item count, followed by
// a byte size when the count is negative.
func (r *avroReader) blockCount() (int64, error) {
	n, err := r.readLong()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, errors.New("invalid block count")
		}
		n = -n
		if _, err := r.readLong(); err != nil { // block size in bytes, unused
			return 0, err
		}
	}
	return n, nil
}

func (r *avroReader) value(n *node) error {
	if len(r.out) > r.limit {
		return fmt.Errorf("natural JSON larger than %d bytes", r.limit)
	}
	switch n.kind {
	case kindNull:
		r.out = append(r.out, "null"...)
	case kindBoolean:
		if r.pos >= len(r.in) {
			return errTruncated
		}
		switch r.in[r.pos] {
		case 0:
			r.out = append(r.out, "false"...)
		case 1:
			r.out = append(r.out, "true"...)
		default:
			return fmt.Errorf("invalid boolean byte %#x", r.in[r.pos])
		}
		r.pos++
	case kindInt:
		v, err := r.readLong()
		if err != nil {
			return err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return fmt.Errorf("int %d out of range", v)
		}
		r.out = appendLogicalInt(r.out, n.logical, v)
	case kindLong:
		v, err := r.readLong()
		if err != nil {
			return err
		}
		r.out = appendLogicalInt(r.out, n.logical, v)
	case kindFloat:
		b, err := r.take(4)
		if err != nil {
			return err
		}
		r.out = appendFloat(r.out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32)
	case kindDouble:
		b, err := r.take(8)
		if err != nil {
			return err
		}
		r.out = appendFloat(r.out, math.Float64frombits(binary.LittleEndian.Uint64(b)), 64)
	case kindString, kindBytes:
		l, err := r.readLen()
		if err != nil {
			return err
		}
		b, _ := r.take(l)
		return r.appendBytes(n, b)
	case kindFixed:
		b, err := r.take(n.size)
		if err != nil {
			return err
		}
		return r.appendBytes(n, b)
	case kindEnum:
		i, err := r.readLong()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.symbolJSON)) {
			return fmt.Errorf("enum %s: index %d out of range", n.name, i)
		}
		r.out = append(r.out, n.symbolJSON[i]...)
	case kindUnion:
		i, err := r.readLong()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.branches)) {
			return fmt.Errorf("union index %d out of range", i)
		}
		return r.value(n.branches[i])
	case kindRecord:
		if r.depth++; r.depth > maxValueDepth {
			return fmt.Errorf("nested deeper than %d", maxValueDepth)
		}
		r.out = append(r.out, '{')
		for i := range n.fields {
			f := &n.fields[i]
			if i > 0 {
				r.out = append(r.out, ',')
			}
			r.out = append(r.out, f.key...)
			if err := r.value(f.typ); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
		r.out = append(r.out, '}')
		r.depth--
	case kindArray, kindMap:
		return r.collection(n)
	default:
		return fmt.Errorf("unsupported type %v", n.kind)
	}
	return nil
}

// collection decodes an array or a map: blocks of items until a zero count.
func (r *avroReader) collection(n *node) error {
	if r.depth++; r.depth > maxValueDepth {
		return fmt.Errorf("nested deeper than %d", maxValueDepth)
	}
	opening, closing := byte('['), byte(']')
	if n.kind == kindMap {
		opening, closing = '{', '}'
	}
	r.out = append(r.out, opening)
	first := true
	for {
		count, err := r.blockCount()
		if err != nil {
			return err
		}
		if count == 0 {
			break
		}
		// Items of zero Avro size (null, empty records) still produce output,
		// so the output limit in value bounds any count.
		for ; count > 0; count-- {
			if !first {
				r.out = append(r.out, ',')
			}
			first = false
			if n.kind == kindMap {
				l, err := r.readLen()
				if err != nil {
					return err
				}
				key, _ := r.take(l)
				r.out = appendJSONString(r.out, key)
				r.out = append(r.out, ':')
			}
			if err := r.value(n.items); err != nil {
				return err
			}
		}
	}
	r.out = append(r.out, closing)
	r.depth--
	return nil
}

// appendBytes renders string, bytes and fixed values.
func (r *avroReader) appendBytes(n *node, b []byte) error {
	switch {
	case n.kind == kindString:
		r.out = appendJSONString(r.out, b)
	case n.logical == logicalDecimal:
		if len(b) > 512 {
			return fmt.Errorf("decimal of %d bytes is too large", len(b))
		}
		r.out = appendDecimal(r.out, b, n.scale)
	default:
		r.out = appendByteString(r.out, b)
	}
	return nil
}

// appendLogicalInt renders an int or long, as a time string when its
// logical type says so and the value is representable; otherwise as the
// number, so that no value is rejected for an odd logical value.
func appendLogicalInt(out []byte, l logical, v int64) []byte {
	var t time.Time
	var layout string
	switch l {
	case logicalNone:
		return strconv.AppendInt(out, v, 10)
	case logicalDate:
		t, layout = time.Unix(v*86400, 0).UTC(), time.DateOnly
	case logicalTimeMillis:
		if v < 0 || v >= 86_400_000 {
			return strconv.AppendInt(out, v, 10)
		}
		t, layout = time.UnixMilli(v).UTC(), "15:04:05.000"
	case logicalTimeMicros:
		if v < 0 || v >= 86_400_000_000 {
			return strconv.AppendInt(out, v, 10)
		}
		t, layout = time.UnixMicro(v).UTC(), "15:04:05.000000"
	case logicalTimestampMilli:
		t, layout = time.UnixMilli(v).UTC(), time.RFC3339Nano
	case logicalTimestampMicro:
		t, layout = time.UnixMicro(v).UTC(), time.RFC3339Nano
	case logicalTimestampNano:
		t, layout = time.Unix(0, v).UTC(), time.RFC3339Nano
	case logicalLocalMilli:
		t, layout = time.UnixMilli(v).UTC(), localLayout
	case logicalLocalMicro:
		t, layout = time.UnixMicro(v).UTC(), localLayout
	case logicalLocalNano:
		t, layout = time.Unix(0, v).UTC(), localLayout
	default:
		return strconv.AppendInt(out, v, 10)
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return strconv.AppendInt(out, v, 10)
	}
	out = append(out, '"')
	out = t.AppendFormat(out, layout)
	return append(out, '"')
}

// localLayout renders local-timestamp-* values: a wall-clock time, no zone.
const localLayout = "2006-01-02T15:04:05.999999999"

// appendFloat renders a float like encoding/json does (shortest form that
// round-trips, exponent only for very large or small magnitudes), so 0.0 is
// `0` and an integer-valued double looks like the integer a producer wrote.
func appendFloat(out []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	out = strconv.AppendFloat(out, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if n := len(out); n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}

// appendDecimal renders a two's-complement big-endian unscaled integer with
// the given scale as an exact JSON number.
func appendDecimal(out []byte, b []byte, scale int) []byte {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.Sign() < 0 {
		out = append(out, '-')
		n.Neg(n)
	}
	digits := n.Text(10)
	if scale == 0 {
		return append(out, digits...)
	}
	for len(digits) <= scale {
		digits = "0" + digits
	}
	out = append(out, digits[:len(digits)-scale]...)
	out = append(out, '.')
	return append(out, digits[len(digits)-scale:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends b as a JSON string. Invalid UTF-8 becomes U+FFFD
// (as with encoding/json), so the output is always valid JSON.
func appendJSONString[T string | []byte](out []byte, b T) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, b[start:i]...)
			out = appendEscape(out, c)
			i++
			start = i
			continue
		}
		// at most UTFMax bytes are converted, so the []byte instance copies
		// a few bytes on the stack instead of allocating
		r, size := utf8.DecodeRuneInString(string(b[i:min(i+utf8.UTFMax, len(b))]))
		if r == utf8.RuneError && size == 1 {
			// written as the character, not as \ufffd, so that decoding the
			// JSON and rendering it again gives the same text
			out = append(out, b[start:i]...)
			out = append(out, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	out = append(out, b[start:]...)
	return append(out, '"')
}

// appendByteString appends Avro bytes as a JSON string of code points 0-255,
// the representation the Avro specification uses for bytes in JSON.
func appendByteString(out, b []byte) []byte {
	out = append(out, '"')
	for _, c := range b {
		switch {
		case c >= utf8.RuneSelf:
			out = utf8.AppendRune(out, rune(c))
		case c < 0x20 || c == '"' || c == '\\':
			out = appendEscape(out, c)
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

func appendEscape(out []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(out, '\\', c)
	case '\n':
		return append(out, '\\', 'n')
	case '\r':
		return append(out, '\\', 'r')
	case '\t':
		return append(out, '\\', 't')
	}
	return append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
