package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder fills a Config from a yaml.Node tree, strictly: an unknown key
// anywhere is an error, every problem is collected with its line, and
// decoding goes on after a problem so that one run reports them all.
//
// yaml.v3's own strict mode (Decoder.KnownFields) is not used: it is not
// available on Node.Decode, and its messages name Go types
// ("field x not found in type config.Call") instead of config keys.
type decoder struct {
	errs *errorList
	// line maps a node's line in the expanded text to the original file.
	line func(int) int
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	ruleType        = reflect.TypeFor[Rule]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// decode stores n into v. where names the value in messages ("kafka.group",
// `rule "x": call.url`).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, where string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return // "key:" with no value keeps the zero value (then the default)
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			if e, ok := asConfigError(err); ok {
				d.errs.addErr(d.line(e.Line), err, "%s: %s", where, e.Msg)
			} else {
				d.errs.addErr(d.line(n.Line), err, "%s: %v", where, err)
			}
		}
		return
	}
	if v.Type() == durationType {
		d.duration(n, v, where)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, where)
	case reflect.Slice:
		d.sequence(n, v, where)
	case reflect.Map:
		d.mapping(n, v, where)
	case reflect.Interface:
		if n.Kind != yaml.ScalarNode {
			d.errs.add(d.line(n.Line), "%s: expected a number or a string, got %s", where, kindName(n))
			return
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.errs.addErr(d.line(n.Line), err, "%s: %v", where, err)
			return
		}
		v.Set(reflect.ValueOf(x))
	default:
		d.scalar(n, v, where)
	}
}

// structure decodes a mapping into a struct by yaml tags.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, where string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.line(n.Line), "%s: expected a mapping of keys, got %s", orTop(where), kindName(n))
		return
	}
	if v.Type() == ruleType {
		v.FieldByName("Line").SetInt(int64(d.line(n.Line)))
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" || k.Value == "<<" && k.Kind == yaml.ScalarNode && k.Style == 0 {
			d.merge(val, v, where)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errs.add(d.line(k.Line), "%s: keys must be plain names, got %s", orTop(where), kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errs.add(d.line(k.Line), "%s: key %q appears twice (first at line %d)", orTop(where), k.Value, first)
			continue
		}
		seen[k.Value] = d.line(k.Line)
		idx, ok := fields[k.Value]
		if !ok && where == "" && strings.HasPrefix(k.Value, "x-") {
			continue // extension key: a place for &anchors shared by rules
		}
		if !ok {
			d.errs.add(d.line(k.Line), "%s: unknown key %q (known keys: %s)", orTop(where), k.Value, knownKeys(fields))
			continue
		}
		d.decode(val, v.Field(idx), join(where, k.Value))
	}
}

// merge applies a YAML merge key (<<: *anchor) so shared rule settings can
// be written once.
func (d *decoder) merge(n *yaml.Node, v reflect.Value, where string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.SequenceNode {
		for _, m := range n.Content {
			d.merge(m, v, where)
		}
		return
	}
	d.structure(n, v, where)
}

// sequence decodes a YAML list into a slice.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, where string) {
	if n.Kind != yaml.SequenceNode {
		d.errs.add(d.line(n.Line), "%s: expected a list, got %s", where, kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		label := fmt.Sprintf("%s[%d]", where, i)
		if v.Type().Elem() == ruleType {
			label = ruleLabel(item, i)
		}
		d.decode(item, s.Index(i), label)
	}
	v.Set(s)
}

// mapping decodes a YAML mapping into a Go map with string keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, where string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.line(n.Line), "%s: expected a mapping, got %s", where, kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errs.add(d.line(k.Line), "%s: keys must be plain names, got %s", where, kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errs.add(d.line(k.Line), "%s: key %q appears twice (first at line %d)", where, k.Value, first)
			continue
		}
		seen[k.Value] = d.line(k.Line)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, join(where, k.Value))
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

// duration parses Go duration syntax ("500ms", "10s", "1h30m"). A bare
// number is refused: "10" could mean seconds or milliseconds.
func (d *decoder) duration(n *yaml.Node, v reflect.Value, where string) {
	if n.Kind != yaml.ScalarNode {
		d.errs.add(d.line(n.Line), "%s: expected a duration such as 10s, got %s", where, kindName(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errs.addErr(d.line(n.Line), err, "%s: invalid duration %q (write a number with a unit: 500ms, 10s, 1m, 2h)", where, n.Value)
		return
	}
	if dur < 0 {
		d.errs.add(d.line(n.Line), "%s: must not be negative, got %s", where, n.Value)
		return
	}
	v.SetInt(int64(dur))
}

// scalar decodes strings, numbers and booleans with messages that say what
// was expected.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, where string) {
	if n.Kind != yaml.ScalarNode {
		d.errs.add(d.line(n.Line), "%s: expected %s, got %s", where, typeName(v.Kind()), kindName(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.errs.addErr(d.line(n.Line), err, "%s: expected %s, got %q", where, typeName(v.Kind()), n.Value)
	}
}

// UnmarshalYAML lets a topic be written as a bare name or as {name, format},
// so the common case stays one word per topic.
func (t *Topic) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		t.Name = n.Value
		return nil
	case yaml.MappingNode:
		var out Topic
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return &Error{Line: v.Line, Msg: fmt.Sprintf("%s: expected a string, got %s", k.Value, kindName(v))}
			}
			switch k.Value {
			case "name":
				out.Name = v.Value
			case "format":
				out.Format = v.Value
			default:
				return &Error{Line: k.Line, Msg: fmt.Sprintf("unknown key %q (known keys: name, format)", k.Value)}
			}
		}
		*t = out
		return nil
	}
	return &Error{Line: n.Line, Msg: "expected a topic name or {name, format}, got " + kindName(n)}
}

// yamlFields maps yaml keys to field indexes of struct type t.
func yamlFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		out[name] = i
	}
	return out
}

// knownKeys lists the keys of a section for "unknown key" messages, so a
// typo's fix is on the same line.
func knownKeys(fields map[string]int) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return fields[a] - fields[b] })
	return strings.Join(keys, ", ")
}

// ruleLabel names a rule in messages by its name when it has one. The
// trailing colon tells join that keys below it read `rule "x": call.url`.
func ruleLabel(n *yaml.Node, i int) string {
	if v := child(n, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
		return "rule " + strconv.Quote(v.Value) + ":"
	}
	return fmt.Sprintf("rule #%d:", i+1)
}

// child returns the value node of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// nodeAt follows keys from n and returns the deepest node found, so a
// message about a missing value can point at its parent.
func nodeAt(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		c := child(n, k)
		if c == nil {
			return n
		}
		n = c
	}
	return n
}

// join appends key to a message path: "kafka" + "tls" = "kafka.tls";
// `rule "x":` + "call" = `rule "x": call`.
func join(where, key string) string {
	switch {
	case where == "":
		return key
	case strings.HasSuffix(where, ":"):
		return where + " " + key
	}
	return where + "." + key
}

// orTop names a section in messages: the top level is "config" and a
// rule's label loses the colon join needs.
func orTop(where string) string {
	if where == "" {
		return "config"
	}
	return strings.TrimSuffix(where, ":")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

func typeName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return k.String()
}
