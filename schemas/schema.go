package schemas

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/linkedin/goavro/v2"
	"github.com/tidwall/gjson"
)

// The embedded schemas. These are the only package-level variables: they are
// immutable and parsed on demand (UserEventSchema, NewDecoder), never in init.
var (
	//go:embed user_event.avsc
	userEventAvsc string
	//go:embed delivery_outcome.avsc
	deliveryOutcomeAvsc string
)

// UserEventSchema parses the embedded apicall.UserEvent schema (the Avro form
// of the event JSON). Each call parses afresh; callers keep the result.
func UserEventSchema() (*Schema, error) { return ParseSchema(userEventAvsc) }

// DeliveryOutcomeSchema parses the embedded apicall.DeliveryOutcome schema,
// which documents the records apicall writes to the outcomes topic.
func DeliveryOutcomeSchema() (*Schema, error) { return ParseSchema(deliveryOutcomeAvsc) }

// Schema is a parsed Avro schema, ready to convert Avro binary to the natural
// JSON form and back.
//
// apicall compiles schemas into its own tree (node) instead of decoding
// through goavro's native maps: a record decoded by goavro is a Go map, which
// loses field order (the profile must reach receivers in the writer's field
// order) and costs a map per record and per union value (5x slower on the
// fixture, 149 allocations instead of 3). goavro stays the second opinion on
// local .avsc files (ParseSchema) and the reference implementation in tests.
type Schema struct {
	text        string
	canonical   string
	fingerprint uint64
	root        *node
	top         topIndex
}

// topIndex is where the four event members sit among the root record's
// fields (-1 when the writer schema lacks them), so the decoder can note their
// JSON spans while it writes them instead of searching afterwards.
type topIndex struct{ event, timestamp, user, data int }

// ParseSchema parses an Avro schema (the text of a .avsc file), validates it
// with goavro as well (stricter about defaults, which encoding relies on),
// and compiles it.
func ParseSchema(text string) (*Schema, error) {
	if err := validateWithGoavro(text); err != nil {
		return nil, err
	}
	return compileSchema(text)
}

// validateWithGoavro builds a goavro codec, turning a panic (goavro has
// panicked on malformed schemas, e.g. a non-numeric decimal precision) into
// an error.
func validateWithGoavro(text string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid Avro schema: goavro panic: %v", p)
		}
	}()
	if _, err := goavro.NewCodec(text); err != nil {
		return fmt.Errorf("invalid Avro schema: %w", err)
	}
	return nil
}

// String returns the schema text as given.
func (s *Schema) String() string { return s.text }

// Canonical returns the Parsing Canonical Form (see canonical.go).
func (s *Schema) Canonical() string { return s.canonical }

// Fingerprint returns the CRC-64-AVRO (Rabin) fingerprint of the canonical
// form, the one the single-object encoding carries.
func (s *Schema) Fingerprint() uint64 { return s.fingerprint }

// Name returns the full name of the top-level type ("apicall.UserEvent"), or
// the primitive/complex type name when the top level is not named.
func (s *Schema) Name() string {
	if s.root.name != "" {
		return s.root.name
	}
	return s.root.kind.String()
}

type kind uint8

const (
	kindNull kind = iota
	kindBoolean
	kindInt
	kindLong
	kindFloat
	kindDouble
	kindBytes
	kindString
	kindRecord
	kindEnum
	kindArray
	kindMap
	kindUnion
	kindFixed
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "int", "long", "float", "double", "bytes", "string",
		"record", "enum", "array", "map", "union", "fixed"}[k]
}

// primitiveKind returns the kind of a primitive type name.
func primitiveKind(name string) (kind, bool) {
	switch name {
	case "null":
		return kindNull, true
	case "boolean":
		return kindBoolean, true
	case "int":
		return kindInt, true
	case "long":
		return kindLong, true
	case "float":
		return kindFloat, true
	case "double":
		return kindDouble, true
	case "bytes":
		return kindBytes, true
	case "string":
		return kindString, true
	}
	return 0, false
}

// logical is a logical type apicall renders specially in natural JSON.
// Others (uuid, duration, unknown names) keep their underlying type, as the
// Avro specification asks of readers that do not know them.
type logical uint8

const (
	logicalNone           logical = iota
	logicalDate                   // int: days since epoch -> "2006-01-02"
	logicalTimeMillis             // int -> "15:04:05.000"
	logicalTimeMicros             // long -> "15:04:05.000000"
	logicalTimestampMilli         // long -> RFC 3339, UTC
	logicalTimestampMicro         // long -> RFC 3339, UTC
	logicalTimestampNano          // long -> RFC 3339, UTC
	logicalLocalMilli             // long -> "2006-01-02T15:04:05.000" (no zone)
	logicalLocalMicro             // long
	logicalLocalNano              // long
	logicalDecimal                // bytes/fixed: two's complement unscaled -> JSON number
)

// node is one compiled Avro type. Nodes form a graph (named types may be
// recursive) and are immutable after compilation, so one Schema serves any
// number of goroutines.
type node struct {
	kind    kind
	logical logical
	scale   int    // decimal
	size    int    // fixed
	name    string // full name of a record, enum or fixed

	fields     []field        // record
	fieldIndex map[string]int // record: field name -> index (encoder)

	symbols     []string       // enum
	symbolJSON  [][]byte       // enum: symbols as quoted JSON strings
	symbolIndex map[string]int // enum

	items    *node   // array items, map values
	branches []*node // union
}

type field struct {
	name       string
	key        []byte // `"name":` pre-rendered for the natural JSON
	typ        *node
	hasDefault bool
	def        gjson.Result // the default value as JSON (encoder)
}

// Limits on schemas, which may come from a registry that is not ours to trust.
const (
	maxSchemaDepth = 64
	maxSchemaNodes = 100_000
)

type compiler struct {
	named map[string]*node
	nodes int
}

// compileSchema compiles schema text without goavro. The decoder uses it
// alone for registry schemas: the producer's schema is what it is (being
// lenient costs nothing when only decoding), and goavro's codec builder
// writes a package-level map unsynchronised (validated-string patterns),
// which concurrent fetches must not reach.
func compileSchema(text string) (*Schema, error) {
	if !json.Valid([]byte(text)) {
		return nil, errors.New("invalid Avro schema: not JSON")
	}
	c := &compiler{named: map[string]*node{}}
	root, err := c.compile(gjson.Parse(text), "", 0)
	if err != nil {
		return nil, fmt.Errorf("invalid Avro schema: %w", err)
	}
	canonical := canonicalForm(root)
	s := &Schema{
		text: text, root: root, top: topIndex{-1, -1, -1, -1},
		canonical: canonical, fingerprint: fingerprint64([]byte(canonical)),
	}
	if root.kind == kindRecord {
		for i, f := range root.fields {
			switch f.name {
			case "event":
				s.top.event = i
			case "timestamp":
				s.top.timestamp = i
			case "user":
				s.top.user = i
			case "data":
				s.top.data = i
			}
		}
	}
	return s, nil
}

// members returns an object's members by name (first occurrence wins). It
// avoids gjson paths, whose syntax gives '.', '*' and '?' special meaning.
func members(v gjson.Result) map[string]gjson.Result {
	m := map[string]gjson.Result{}
	v.ForEach(func(k, val gjson.Result) bool {
		if _, dup := m[k.Str]; !dup {
			m[k.Str] = val
		}
		return true
	})
	return m
}

func (c *compiler) compile(v gjson.Result, ns string, depth int) (*node, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxSchemaDepth)
	}
	if c.nodes++; c.nodes > maxSchemaNodes {
		return nil, fmt.Errorf("more than %d types", maxSchemaNodes)
	}
	switch {
	case v.Type == gjson.String:
		return c.reference(v.Str, ns)
	case v.IsArray():
		return c.union(v, ns, depth)
	case v.IsObject():
		return c.object(v, ns, depth)
	}
	return nil, fmt.Errorf("a type must be a string, an array or an object, not %s", v.Raw)
}

// reference resolves a type name: a primitive, or a named type defined
// earlier, by full name or by name relative to the enclosing namespace.
func (c *compiler) reference(name, ns string) (*node, error) {
	if k, ok := primitiveKind(name); ok {
		return &node{kind: k}, nil
	}
	if !strings.Contains(name, ".") && ns != "" {
		if n, ok := c.named[ns+"."+name]; ok {
			return n, nil
		}
	}
	if n, ok := c.named[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("unknown type %q", name)
}

func (c *compiler) union(v gjson.Result, ns string, depth int) (*node, error) {
	n := &node{kind: kindUnion}
	seen := map[string]bool{}
	var err error
	v.ForEach(func(_, b gjson.Result) bool {
		var bn *node
		if bn, err = c.compile(b, ns, depth+1); err != nil {
			return false
		}
		if bn.kind == kindUnion {
			err = errors.New("a union may not contain a union")
			return false
		}
		id := bn.name
		if id == "" {
			id = bn.kind.String()
		}
		if seen[id] {
			err = fmt.Errorf("union contains %s twice", id)
			return false
		}
		seen[id] = true
		n.branches = append(n.branches, bn)
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(n.branches) == 0 {
		return nil, errors.New("empty union")
	}
	return n, nil
}

func (c *compiler) object(v gjson.Result, ns string, depth int) (*node, error) {
	m := members(v)
	t, ok := m["type"]
	if !ok {
		return nil, fmt.Errorf("missing \"type\" in %.80s", v.Raw)
	}
	if t.Type != gjson.String {
		// {"type": {...}} or {"type": [...]}: the type is the nested schema.
		return c.compile(t, ns, depth+1)
	}
	switch t.Str {
	case "record", "error":
		return c.record(m, ns, depth)
	case "enum":
		return c.enum(m, ns)
	case "fixed":
		return c.fixed(m, ns)
	case "array", "map":
		key := "items"
		k := kindArray
		if t.Str == "map" {
			key, k = "values", kindMap
		}
		sub, ok := m[key]
		if !ok {
			return nil, fmt.Errorf("%s without %q", t.Str, key)
		}
		items, err := c.compile(sub, ns, depth+1)
		if err != nil {
			return nil, err
		}
		return &node{kind: k, items: items}, nil
	}
	n, err := c.reference(t.Str, ns)
	if err != nil {
		return nil, err
	}
	if lt := m["logicalType"]; lt.Type == gjson.String && n.name == "" {
		n.logical, n.scale = logicalFor(n.kind, lt.Str, m, 0)
	}
	return n, nil
}

// logicalFor maps a logicalType annotation to what apicall renders. An
// annotation that does not fit its underlying type is ignored, as the
// specification requires.
func logicalFor(k kind, name string, m map[string]gjson.Result, fixedSize int) (logical, int) {
	switch {
	case k == kindInt && name == "date":
		return logicalDate, 0
	case k == kindInt && name == "time-millis":
		return logicalTimeMillis, 0
	case k == kindLong && name == "time-micros":
		return logicalTimeMicros, 0
	case k == kindLong && name == "timestamp-millis":
		return logicalTimestampMilli, 0
	case k == kindLong && name == "timestamp-micros":
		return logicalTimestampMicro, 0
	case k == kindLong && name == "timestamp-nanos":
		return logicalTimestampNano, 0
	case k == kindLong && name == "local-timestamp-millis":
		return logicalLocalMilli, 0
	case k == kindLong && name == "local-timestamp-micros":
		return logicalLocalMicro, 0
	case k == kindLong && name == "local-timestamp-nanos":
		return logicalLocalNano, 0
	case (k == kindBytes || k == kindFixed) && name == "decimal":
		p, s := m["precision"], m["scale"]
		if p.Type != gjson.Number || (s.Exists() && s.Type != gjson.Number) {
			return logicalNone, 0
		}
		prec, err1 := strconv.Atoi(p.Raw)
		scale := 0
		var err2 error
		if s.Exists() {
			scale, err2 = strconv.Atoi(s.Raw)
		}
		if err1 != nil || err2 != nil || prec <= 0 || scale < 0 || scale > prec || scale > 1000 {
			return logicalNone, 0
		}
		if k == kindFixed && fixedSize > 64 {
			return logicalNone, 0 // keep big.Int work bounded
		}
		return logicalDecimal, scale
	}
	return logicalNone, 0
}

// define registers a named type and returns its full name and the namespace
// its children are resolved in.
func (c *compiler) define(m map[string]gjson.Result, ns string, n *node) (string, error) {
	nm := m["name"]
	if nm.Type != gjson.String || nm.Str == "" {
		return "", errors.New("named type without a name")
	}
	full := nm.Str
	switch {
	case strings.Contains(full, "."):
		ns = full[:strings.LastIndexByte(full, '.')]
	default:
		if space, ok := m["namespace"]; ok && space.Type == gjson.String {
			ns = space.Str
		}
		if ns != "" {
			full = ns + "." + full
		}
	}
	if _, prim := primitiveKind(full); prim {
		return "", fmt.Errorf("%q redefines a primitive type", full)
	}
	if _, dup := c.named[full]; dup {
		return "", fmt.Errorf("%q defined twice", full)
	}
	n.name = full
	c.named[full] = n
	return ns, nil
}

func (c *compiler) record(m map[string]gjson.Result, ns string, depth int) (*node, error) {
	n := &node{kind: kindRecord, fieldIndex: map[string]int{}}
	ns, err := c.define(m, ns, n)
	if err != nil {
		return nil, err
	}
	fs, ok := m["fields"]
	if !ok || !fs.IsArray() {
		return nil, fmt.Errorf("record %q without a fields array", n.name)
	}
	fs.ForEach(func(_, f gjson.Result) bool {
		if !f.IsObject() {
			err = fmt.Errorf("record %q: field is not an object", n.name)
			return false
		}
		fm := members(f)
		name := fm["name"]
		if name.Type != gjson.String || name.Str == "" {
			err = fmt.Errorf("record %q: field without a name", n.name)
			return false
		}
		if _, dup := n.fieldIndex[name.Str]; dup {
			err = fmt.Errorf("record %q: field %q twice", n.name, name.Str)
			return false
		}
		t, ok := fm["type"]
		if !ok {
			err = fmt.Errorf("record %q: field %q without a type", n.name, name.Str)
			return false
		}
		var ft *node
		if ft, err = c.compile(t, ns, depth+1); err != nil {
			err = fmt.Errorf("record %q field %q: %w", n.name, name.Str, err)
			return false
		}
		def, hasDef := fm["default"]
		key := appendJSONString(nil, []byte(name.Str))
		n.fieldIndex[name.Str] = len(n.fields)
		n.fields = append(n.fields, field{
			name: name.Str, key: append(key, ':'), typ: ft, hasDefault: hasDef, def: def,
		})
		return true
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (c *compiler) enum(m map[string]gjson.Result, ns string) (*node, error) {
	n := &node{kind: kindEnum, symbolIndex: map[string]int{}}
	if _, err := c.define(m, ns, n); err != nil {
		return nil, err
	}
	var err error
	m["symbols"].ForEach(func(_, s gjson.Result) bool {
		if s.Type != gjson.String {
			err = fmt.Errorf("enum %q: symbol %s is not a string", n.name, s.Raw)
			return false
		}
		if _, dup := n.symbolIndex[s.Str]; dup {
			err = fmt.Errorf("enum %q: symbol %q twice", n.name, s.Str)
			return false
		}
		n.symbolIndex[s.Str] = len(n.symbols)
		n.symbols = append(n.symbols, s.Str)
		n.symbolJSON = append(n.symbolJSON, appendJSONString(nil, []byte(s.Str)))
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(n.symbols) == 0 {
		return nil, fmt.Errorf("enum %q without symbols", n.name)
	}
	return n, nil
}

func (c *compiler) fixed(m map[string]gjson.Result, ns string) (*node, error) {
	n := &node{kind: kindFixed}
	if _, err := c.define(m, ns, n); err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(m["size"].Raw)
	if err != nil || size < 0 || size > 1<<20 {
		return nil, fmt.Errorf("fixed %q: invalid size %s", n.name, m["size"].Raw)
	}
	n.size = size
	if lt := m["logicalType"]; lt.Type == gjson.String {
		n.logical, n.scale = logicalFor(kindFixed, lt.Str, m, size)
	}
	return n, nil
}
