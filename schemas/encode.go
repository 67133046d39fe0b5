package schemas

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// This file is the other direction: natural JSON (what a producer writes by
// hand, what AppendJSON returns) to Avro binary, plus the two Avro framings
// and the Encoder behind `apicall produce`. It is not on the consumer's hot
// path; it favours clear errors over speed.

// AppendAvro appends the Avro binary encoding of the natural JSON value js
// under schema s. Union branches are chosen from the JSON value (null, a
// boolean, an integer, a fraction, a string, an object, an array), in the
// order the union declares them; a string is tried against string, enum,
// bytes, fixed and the logical time types. Record members missing from js take
// the field's default; members the schema does not know are an error, because
// Avro has nowhere to keep them and dropping data silently is worse.
func (s *Schema) AppendAvro(dst, js []byte) ([]byte, error) {
	if !json.Valid(js) {
		return dst, errors.New("not valid JSON")
	}
	w := avroWriter{out: dst}
	if err := w.value(s.root, gjson.ParseBytes(js)); err != nil {
		return dst, err
	}
	return w.out, nil
}

// EncodeSingleObject encodes a JSON event line under s in the Avro
// single-object encoding: 0xC3 0x01, the schema's 8-byte little-endian
// CRC-64-AVRO fingerprint, then the Avro binary. Consumers resolve the
// fingerprint against their .avsc files; no registry is involved.
func EncodeSingleObject(s *Schema, jsonLine []byte) ([]byte, error) {
	out := make([]byte, singleObjectHeaderLen, singleObjectHeaderLen+2*len(jsonLine))
	out[0], out[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(out[2:], s.Fingerprint())
	return s.AppendAvro(out, jsonLine)
}

// EncodeConfluent encodes a JSON event line under s in the Confluent wire
// format: 0x00, the registry's schema id (4 bytes, big-endian), then the Avro
// binary. id must be the id the registry gave s (see Registry.RegisterSchema).
func EncodeConfluent(id uint32, s *Schema, jsonLine []byte) ([]byte, error) {
	out := make([]byte, confluentHeaderLen, confluentHeaderLen+2*len(jsonLine))
	binary.BigEndian.PutUint32(out[1:], id)
	return s.AppendAvro(out, jsonLine)
}

// EncoderOptions configures NewEncoder.
type EncoderOptions struct {
	// Format: json (the line is sent as is, after checking it decodes) or
	// avro. "" and auto mean json.
	Format Format
	// Schema for avro; nil means the embedded apicall.UserEvent.
	Schema *Schema
	// Registry, when set with format avro, selects the Confluent wire format:
	// the schema is registered under Subject and values carry its id. Nil
	// selects the single-object encoding.
	Registry *Registry
	// Subject to register under; "" means "<Topic>-value" (Confluent's
	// TopicNameStrategy).
	Subject string
	// Topic the values are produced to (used for the default subject and to
	// check that JSON lines decode as they will be consumed).
	Topic string
}

// Encoder turns JSON event lines into record values in one wire format.
type Encoder struct {
	format Format
	schema *Schema
	id     uint32
	useID  bool
	topic  string
}

// NewEncoder prepares an encoder; with a registry it registers the schema
// (idempotent on the registry side) and remembers the id.
func NewEncoder(ctx context.Context, opts EncoderOptions) (*Encoder, error) {
	e := &Encoder{format: opts.Format, schema: opts.Schema, topic: opts.Topic}
	switch opts.Format {
	case "", FormatAuto, FormatJSON:
		e.format = FormatJSON
		return e, nil
	case FormatAvro:
	default:
		return nil, fmt.Errorf("unknown format %q", opts.Format)
	}
	if e.schema == nil {
		s, err := UserEventSchema()
		if err != nil {
			return nil, err
		}
		e.schema = s
	}
	if opts.Registry != nil {
		subject := opts.Subject
		if subject == "" {
			subject = opts.Topic + "-value"
		}
		id, err := opts.Registry.RegisterSchema(ctx, subject, e.schema.String())
		if err != nil {
			return nil, err
		}
		e.id, e.useID = id, true
	}
	return e, nil
}

// Encode turns one JSON event line into a record value.
func (e *Encoder) Encode(jsonLine []byte) ([]byte, error) {
	switch {
	case e.format == FormatJSON:
		if _, err := DecodeJSON(e.topic, jsonLine); err != nil {
			return nil, err
		}
		return append([]byte(nil), jsonLine...), nil
	case e.useID:
		return EncodeConfluent(e.id, e.schema, jsonLine)
	default:
		return EncodeSingleObject(e.schema, jsonLine)
	}
}

// avroWriter walks a JSON value along a schema, appending Avro binary.
type avroWriter struct {
	out   []byte
	depth int
}

// pathError prefixes an encoding error with where in the value it occurred
// (user.tags[0].id), built only on the error path.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

func atPath(seg string, err error) error {
	var pe *pathError
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.path, "[") {
			pe.path = seg + pe.path
		} else {
			pe.path = seg + "." + pe.path
		}
		return pe
	}
	return &pathError{path: seg, err: err}
}

func appendLong(out []byte, v int64) []byte {
	return binary.AppendUvarint(out, uint64(v<<1)^uint64(v>>63))
}

func describe(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	case v.Type == gjson.Null:
		return "null"
	}
	return "nothing"
}

func mismatch(n *node, v gjson.Result) error {
	want := n.kind.String()
	if n.name != "" {
		want += " " + n.name
	}
	return fmt.Errorf("want %s, got %s", want, describe(v))
}

func (w *avroWriter) value(n *node, v gjson.Result) error {
	switch n.kind {
	case kindNull:
		if v.Type != gjson.Null {
			return mismatch(n, v)
		}
	case kindBoolean:
		switch v.Type {
		case gjson.True:
			w.out = append(w.out, 1)
		case gjson.False:
			w.out = append(w.out, 0)
		default:
			return mismatch(n, v)
		}
	case kindInt, kindLong:
		i, err := integerFor(n, v)
		if err != nil {
			return err
		}
		w.out = appendLong(w.out, i)
	case kindFloat, kindDouble:
		f, err := floatFor(n, v)
		if err != nil {
			return err
		}
		if n.kind == kindFloat {
			w.out = binary.LittleEndian.AppendUint32(w.out, math.Float32bits(float32(f)))
		} else {
			w.out = binary.LittleEndian.AppendUint64(w.out, math.Float64bits(f))
		}
	case kindString:
		if v.Type != gjson.String {
			return mismatch(n, v)
		}
		w.out = appendLong(w.out, int64(len(v.Str)))
		w.out = append(w.out, v.Str...)
	case kindBytes, kindFixed:
		b, err := bytesFor(n, v)
		if err != nil {
			return err
		}
		if n.kind == kindBytes {
			w.out = appendLong(w.out, int64(len(b)))
		}
		w.out = append(w.out, b...)
	case kindEnum:
		if v.Type != gjson.String {
			return mismatch(n, v)
		}
		i, ok := n.symbolIndex[v.Str]
		if !ok {
			return fmt.Errorf("%q is not a symbol of enum %s %v", v.Str, n.name, n.symbols)
		}
		w.out = appendLong(w.out, int64(i))
	case kindUnion:
		return w.union(n, v)
	case kindRecord:
		return w.record(n, v)
	case kindArray, kindMap:
		return w.collection(n, v)
	default:
		return fmt.Errorf("unsupported type %v", n.kind)
	}
	return nil
}

// accepts says whether a union branch is a candidate for a JSON value.
// Pass 0 takes exact matches; pass 1 adds conversions (an integer into a
// float or double, a number into a logical time type).
func accepts(n *node, v gjson.Result, pass int) bool {
	switch v.Type {
	case gjson.Null:
		return pass == 0 && n.kind == kindNull
	case gjson.True, gjson.False:
		return pass == 0 && n.kind == kindBoolean
	case gjson.Number:
		integral := !strings.ContainsAny(v.Raw, ".eE")
		switch n.kind {
		case kindInt, kindLong:
			if n.logical == logicalNone {
				return pass == 0 && integral || pass == 1
			}
			return pass == 1
		case kindFloat, kindDouble:
			return pass == 0 && !integral || pass == 1
		case kindBytes, kindFixed:
			return pass == 0 && n.logical == logicalDecimal
		}
	case gjson.String:
		if pass != 0 {
			return false
		}
		switch n.kind {
		case kindString, kindEnum, kindBytes, kindFixed, kindFloat, kindDouble:
			return true
		case kindInt, kindLong:
			return n.logical != logicalNone
		}
	case gjson.JSON:
		if pass != 0 {
			return false
		}
		if v.IsArray() {
			return n.kind == kindArray
		}
		return n.kind == kindRecord || n.kind == kindMap
	}
	return false
}

func (w *avroWriter) union(n *node, v gjson.Result) error {
	var firstErr error
	for pass := range 2 {
		for i, b := range n.branches {
			if !accepts(b, v, pass) {
				continue
			}
			mark := len(w.out)
			w.out = appendLong(w.out, int64(i))
			err := w.value(b, v)
			if err == nil {
				return nil
			}
			w.out = w.out[:mark]
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return firstErr
	}
	names := make([]string, len(n.branches))
	for i, b := range n.branches {
		names[i] = b.kind.String()
		if b.name != "" {
			names[i] = b.name
		}
	}
	return fmt.Errorf("%s matches no branch of union %v", describe(v), names)
}

func (w *avroWriter) enter() error {
	if w.depth++; w.depth > maxValueDepth {
		return fmt.Errorf("nested deeper than %d", maxValueDepth)
	}
	return nil
}

func (w *avroWriter) record(n *node, v gjson.Result) error {
	if !v.IsObject() {
		return mismatch(n, v)
	}
	if err := w.enter(); err != nil {
		return err
	}
	vals := make([]gjson.Result, len(n.fields))
	var err error
	v.ForEach(func(k, val gjson.Result) bool {
		i, ok := n.fieldIndex[k.Str]
		if !ok {
			err = atPath(k.Str, fmt.Errorf("not a field of %s", n.name))
			return false
		}
		if !vals[i].Exists() { // first occurrence wins, as in the decoder
			vals[i] = val
		}
		return true
	})
	if err != nil {
		return err
	}
	for i := range n.fields {
		f := &n.fields[i]
		switch {
		case vals[i].Exists():
			err = w.value(f.typ, vals[i])
		case f.hasDefault:
			err = w.defaultValue(f)
		default:
			err = errors.New("missing, and the schema gives no default")
		}
		if err != nil {
			return atPath(f.name, err)
		}
	}
	w.depth--
	return nil
}

// defaultValue encodes a field's default. A union's default belongs to its
// first branch (Avro specification); schemas that break that rule are still
// served by trying the union as for any value.
func (w *avroWriter) defaultValue(f *field) error {
	if f.typ.kind == kindUnion {
		mark := len(w.out)
		w.out = appendLong(w.out, 0)
		if err := w.value(f.typ.branches[0], f.def); err == nil {
			return nil
		}
		w.out = w.out[:mark]
	}
	if err := w.value(f.typ, f.def); err != nil {
		return fmt.Errorf("default: %w", err)
	}
	return nil
}

func (w *avroWriter) collection(n *node, v gjson.Result) error {
	if n.kind == kindArray && !v.IsArray() || n.kind == kindMap && !v.IsObject() {
		return mismatch(n, v)
	}
	if err := w.enter(); err != nil {
		return err
	}
	count := 0
	v.ForEach(func(_, _ gjson.Result) bool { count++; return true })
	if count > 0 {
		w.out = appendLong(w.out, int64(count))
		var err error
		i := 0
		v.ForEach(func(k, item gjson.Result) bool {
			if n.kind == kindMap {
				w.out = appendLong(w.out, int64(len(k.Str)))
				w.out = append(w.out, k.Str...)
				if err = w.value(n.items, item); err != nil {
					err = atPath(k.Str, err)
				}
			} else if err = w.value(n.items, item); err != nil {
				err = atPath("["+strconv.Itoa(i)+"]", err)
			}
			i++
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	w.out = appendLong(w.out, 0)
	w.depth--
	return nil
}

// integerFor converts a JSON value to an int or long, including the time
// strings AppendJSON renders for logical types.
func integerFor(n *node, v gjson.Result) (int64, error) {
	var i int64
	switch v.Type {
	case gjson.Number:
		var err error
		if i, err = strconv.ParseInt(v.Raw, 10, 64); err != nil {
			f, ferr := strconv.ParseFloat(v.Raw, 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return 0, fmt.Errorf("%s is not a %s", v.Raw, n.kind)
			}
			i = int64(f)
		}
	case gjson.String:
		if n.logical == logicalNone {
			return 0, mismatch(n, v)
		}
		var err error
		if i, err = parseLogical(n.logical, v.Str); err != nil {
			return 0, err
		}
	default:
		return 0, mismatch(n, v)
	}
	if n.kind == kindInt && (i < math.MinInt32 || i > math.MaxInt32) {
		return 0, fmt.Errorf("%d does not fit an int", i)
	}
	return i, nil
}

// parseLogical parses the string forms of the logical time types.
func parseLogical(l logical, s string) (int64, error) {
	var layout string
	switch l {
	case logicalDate:
		layout = time.DateOnly
	case logicalTimeMillis, logicalTimeMicros:
		layout = "15:04:05.999999999"
	case logicalTimestampMilli, logicalTimestampMicro, logicalTimestampNano:
		layout = time.RFC3339Nano
	case logicalLocalMilli, logicalLocalMicro, logicalLocalNano:
		layout = localLayout
	default:
		return 0, fmt.Errorf("string %q where a number is expected", s)
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	switch l {
	case logicalDate:
		return t.Unix() / 86400, nil
	case logicalTimeMillis:
		return int64(t.Hour()*3600+t.Minute()*60+t.Second())*1000 + int64(t.Nanosecond()/1e6), nil
	case logicalTimeMicros:
		return int64(t.Hour()*3600+t.Minute()*60+t.Second())*1e6 + int64(t.Nanosecond()/1e3), nil
	case logicalTimestampMilli, logicalLocalMilli:
		return t.UnixMilli(), nil
	case logicalTimestampMicro, logicalLocalMicro:
		return t.UnixMicro(), nil
	default:
		return t.UnixNano(), nil
	}
}

func floatFor(n *node, v gjson.Result) (float64, error) {
	switch v.Type {
	case gjson.Number:
		bits := 64
		if n.kind == kindFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(v.Raw, bits)
		if err != nil {
			return 0, fmt.Errorf("%s does not fit a %s", v.Raw, n.kind)
		}
		return f, nil
	case gjson.String:
		switch v.Str {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
	}
	return 0, mismatch(n, v)
}

// bytesFor converts a JSON value to bytes/fixed content: a string of code
// points 0-255, or a number for the decimal logical type.
func bytesFor(n *node, v gjson.Result) ([]byte, error) {
	var b []byte
	switch {
	case v.Type == gjson.Number && n.logical == logicalDecimal:
		var err error
		if b, err = decimalBytes(v.Raw, n); err != nil {
			return nil, err
		}
	case v.Type == gjson.String:
		b = make([]byte, 0, len(v.Str))
		for _, r := range v.Str {
			if r > 0xFF || r == utf8.RuneError {
				return nil, fmt.Errorf("%s: bytes are written as a string of code points 0-255", n.kind)
			}
			b = append(b, byte(r))
		}
	default:
		return nil, mismatch(n, v)
	}
	if n.kind == kindFixed && len(b) != n.size {
		return nil, fmt.Errorf("fixed %s wants %d bytes, got %d", n.name, n.size, len(b))
	}
	return b, nil
}

// decimalBytes turns a JSON number into the two's-complement unscaled
// integer the decimal logical type stores.
func decimalBytes(raw string, n *node) ([]byte, error) {
	if len(raw) > 1000 {
		return nil, errors.New("decimal literal too long")
	}
	if e := strings.IndexAny(raw, "eE"); e >= 0 {
		// big.Rat would expand 1e999999999 digit by digit
		if x, err := strconv.Atoi(strings.TrimPrefix(raw[e+1:], "+")); err != nil || x > 1000 || x < -1000 {
			return nil, fmt.Errorf("%s: exponent out of range", raw)
		}
	}
	r, ok := new(big.Rat).SetString(raw)
	if !ok {
		return nil, fmt.Errorf("%s is not a decimal", raw)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n.scale)), nil)))
	if !r.IsInt() {
		return nil, fmt.Errorf("%s has more than %d decimal places", raw, n.scale)
	}
	i := r.Num()
	if n.kind == kindFixed {
		return twosComplement(i, n.size, raw)
	}
	// bytes: the shortest two's complement that holds i (one more byte than
	// its magnitude needs only when the sign bit would be wrong)
	size := max(1, len(i.Bytes()))
	if b, err := twosComplement(i, size, raw); err == nil {
		return b, nil
	}
	return twosComplement(i, size+1, raw)
}

// twosComplement writes i in size bytes, failing when it does not fit.
func twosComplement(i *big.Int, size int, raw string) ([]byte, error) {
	mod := new(big.Int).Lsh(big.NewInt(1), uint(8*size))
	b := new(big.Int).Mod(i, mod).FillBytes(make([]byte, size))
	back := new(big.Int).SetBytes(b)
	if size > 0 && b[0]&0x80 != 0 {
		back.Sub(back, mod)
	}
	if back.Cmp(i) != 0 {
		return nil, fmt.Errorf("%s does not fit %d bytes", raw, size)
	}
	return b, nil
}
