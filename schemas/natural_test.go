package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// goavroFixtureNative builds the fixture event as goavro natives by hand,
// wrapping every union the way goavro wants, so the fixture test below does
// not depend on apicall's own encoder.
func goavroFixtureNative(t *testing.T) map[string]any {
	t.Helper()
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(fixtureEvent(t)))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	unionType := map[string]string{
		"id": "", "key": "", "page_views": "long", "emails_enabled": "boolean", "score": "double",
		"notifications": "boolean", "attributes": "array", "lists": "array", "tags": "array",
	}
	user := map[string]any{}
	for k, v := range ev["user"].(map[string]any) {
		typ, ok := unionType[k]
		if !ok {
			typ = "string"
		}
		switch x := v.(type) {
		case nil:
			user[k] = nil
			continue
		case json.Number:
			if typ == "double" {
				f, _ := x.Float64()
				v = f
			} else {
				i, _ := x.Int64()
				v = i
			}
		case []any:
			if k == "tags" {
				for i, tag := range x {
					m := tag.(map[string]any)
					id, _ := m["id"].(json.Number).Int64()
					x[i] = map[string]any{"id": id, "name": m["name"]}
				}
			}
		}
		if typ == "" {
			user[k] = v
		} else {
			user[k] = goavro.Union(typ, v)
		}
	}
	data := map[string]any{}
	for k, v := range ev["data"].(map[string]any) {
		switch x := v.(type) {
		case json.Number:
			i, _ := x.Int64()
			data[k] = goavro.Union("long", i)
		case bool:
			data[k] = goavro.Union("boolean", x)
		case string:
			data[k] = goavro.Union("string", x)
		}
	}
	return map[string]any{
		"event":     goavro.Union("string", ev["event"]),
		"timestamp": goavro.Union("string", ev["timestamp"]),
		"user":      goavro.Union("apicall.UserProfile", user),
		"data":      goavro.Union("map", data),
	}
}

// The acceptance test of issue 4: the documented profile, encoded in Avro
// by goavro, comes back as the documented profile JSON byte for byte
// (compact form, field order of the doc, nulls null, integers integers,
// score 0 not 0.0).
func TestFixtureProfileAvroByteForByte(t *testing.T) {
	ue := mustSchema(t, userEventAvsc)
	codec, err := goavro.NewCodec(ue.String())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := codec.BinaryFromNative(nil, goavroFixtureNative(t))
	if err != nil {
		t.Fatal(err)
	}

	got, err := ue.AppendJSON(nil, bin)
	if err != nil {
		t.Fatal(err)
	}
	wantUser := member(t, fixtureEvent(t), "user")
	if gotUser := member(t, got, "user"); !bytes.Equal(gotUser, wantUser) {
		t.Fatalf("user:\ngot  %s\nwant %s", gotUser, wantUser)
	}
	// The user member is emitted compact by the decoder itself, not only
	// after re-compaction: check the raw bytes too.
	if !bytes.Contains(got, wantUser) {
		t.Fatalf("natural JSON does not contain the fixture profile verbatim:\n%s", got)
	}
	// goavro writes map entries in Go map order, so compare data as a set.
	var gotData, wantData map[string]any
	_ = json.Unmarshal(member(t, got, "data"), &gotData)
	_ = json.Unmarshal(member(t, fixtureEvent(t), "data"), &wantData)
	if !jsonEqual(gotData, wantData) {
		t.Fatalf("data: got %v, want %v", gotData, wantData)
	}

	// apicall's own encoder produces the same bytes as goavro (data aside:
	// it keeps the JSON order, goavro does not, so compare without data).
	noData := bytes.Replace(compact(t, fixtureEvent(t)), member(t, fixtureEvent(t), "data"), []byte("null"), 1)
	mine, err := ue.AppendAvro(nil, noData)
	if err != nil {
		t.Fatal(err)
	}
	native := goavroFixtureNative(t)
	native["data"] = nil
	theirs, err := codec.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine, theirs) {
		t.Fatalf("AppendAvro differs from goavro:\nmine   %x\ntheirs %x", mine, theirs)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// The whole fixture event survives JSON -> Avro -> natural JSON unchanged.
func TestFixtureEventRoundTrip(t *testing.T) {
	ue := mustSchema(t, userEventAvsc)
	want := compact(t, fixtureEvent(t))
	bin, err := ue.AppendAvro(nil, fixtureEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ue.AppendJSON(nil, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip:\ngot  %s\nwant %s", got, want)
	}
}

// allTypes exercises every Avro type and the logical types apicall renders.
const allTypes = `{
  "type": "record", "name": "All", "namespace": "test",
  "fields": [
    {"name": "n", "type": "null"},
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "by", "type": "bytes"},
    {"name": "s", "type": "string"},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "arr", "type": {"type": "array", "items": "long"}},
    {"name": "m", "type": {"type": "map", "values": "string"}},
    {"name": "u", "type": ["null", "string", "long", "double", "Color"]},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tmil", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tsmil", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsmic", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "list", "type": ["null", {"type": "record", "name": "Node", "fields": [
      {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}]},
    {"name": "dflt", "type": "string", "default": "x"}
  ]}`

const allTypesValue = `{"n":null,"b":true,"i":-42,"l":9007199254740993,"f":1.5,"d":-0.25,` +
	// bytes and strings with escapes and non-ASCII, written as the decoder
	// renders them (non-ASCII as UTF-8, not \u escapes)
	"\"by\":\"a\\u0000\u00ff\\\"\",\"s\":\"h\u00e9llo \\\"q\\\" \\\\ \\n\u2028\",\"e\":\"GREEN\",\"fx\":\"abcd\"," +
	`"arr":[1,-2,3],"m":{"k":"v"},"u":"RED","date":"2021-02-01","tmil":"07:27:44.469",` +
	`"tsmil":"2021-02-01T07:27:44.469Z","tsmic":"2021-02-01T07:27:44.469241Z","dec":-123.45,` +
	`"uuid":"7e8f3b5c-0000-4000-8000-000000000000","list":{"v":1,"next":{"v":2,"next":null}},"dflt":"y"}`

// Every type survives natural JSON -> Avro -> natural JSON, and goavro, the
// reference implementation here, reads apicall's bytes and writes the same
// bytes back.
func TestAllTypesRoundTripAgainstGoavro(t *testing.T) {
	s := mustSchema(t, allTypes)
	bin, err := s.AppendAvro(nil, []byte(allTypesValue))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AppendJSON(nil, bin)
	if err != nil {
		t.Fatal(err)
	}
	if want := compact(t, []byte(allTypesValue)); !bytes.Equal(got, want) {
		t.Fatalf("round trip:\ngot  %s\nwant %s", got, want)
	}
	codec, err := goavro.NewCodec(allTypes)
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := codec.NativeFromBinary(bin)
	if err != nil || len(rest) != 0 {
		t.Fatalf("goavro cannot read apicall's Avro: %v (rest %d)", err, len(rest))
	}
	again, err := codec.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	// (the map has one entry: goavro writes maps in Go map order)
	if !bytes.Equal(bin, again) {
		t.Fatalf("goavro re-encodes differently:\nmine   %x\ngoavro %x", bin, again)
	}
}

func TestAppendAvroErrors(t *testing.T) {
	ue := mustSchema(t, userEventAvsc)
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{`, "not valid JSON"},
		{"unknown top field", `{"event":"x","plan":"pro"}`, "plan: not a field of apicall.UserEvent"},
		{"unknown profile field", `{"user":{"id":1,"key":"k","plan":"pro"}}`, "user.plan: not a field of apicall.UserProfile"},
		{"missing required", `{"user":{"key":"k"}}`, "user.id: missing"},
		{"wrong type", `{"user":{"id":"seven","key":"k"}}`, "user.id: want long, got a string"},
		{"tag wrong", `{"user":{"id":1,"key":"k","tags":[{"id":1,"name":2}]}}`, "user.tags[0].name: want string, got a number"},
		{"too deep data", `{"data":{"a":{"b":{"c":1}}}}`, "data.a.b"},
		{"event number", `{"event":5}`, "matches no branch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ue.AppendAvro(nil, []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAppendJSONRendering(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		json   string // natural JSON in
		want   string // natural JSON out (defaults to json)
	}{
		{"double zero is 0", `"double"`, `0`, ``},
		{"double integral", `"double"`, `3.0`, `3`},
		{"double large", `"double"`, `1e21`, `1e+21`},
		{"double small", `"double"`, `0.0000001`, `1e-7`},
		{"double NaN", `"double"`, `"NaN"`, ``},
		{"double -Inf", `"double"`, `"-Infinity"`, ``},
		{"float", `"float"`, `0.1`, ``},
		{"long min", `"long"`, `-9223372036854775808`, ``},
		{"int max", `"int"`, `2147483647`, ``},
		{"timestamp-micros zero fraction", `{"type":"long","logicalType":"timestamp-micros"}`, `"2021-02-01T07:27:44Z"`, ``},
		{"timestamp-micros offset normalised", `{"type":"long","logicalType":"timestamp-micros"}`, `"2021-02-01T08:27:44.5+01:00"`, `"2021-02-01T07:27:44.5Z"`},
		{"timestamp-nanos", `{"type":"long","logicalType":"timestamp-nanos"}`, `"2021-02-01T07:27:44.000000001Z"`, ``},
		{"timestamp out of range stays a number", `{"type":"long","logicalType":"timestamp-micros"}`, `9223372036854775807`, ``},
		{"local-timestamp-millis", `{"type":"long","logicalType":"local-timestamp-millis"}`, `"2021-02-01T07:27:44.469"`, ``},
		{"time-micros", `{"type":"long","logicalType":"time-micros"}`, `"23:59:59.999999"`, ``},
		{"date before epoch", `{"type":"int","logicalType":"date"}`, `"1969-12-31"`, ``},
		{"decimal fixed", `{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":18,"scale":4}`, `-0.0001`, ``},
		{"decimal bytes integer", `{"type":"bytes","logicalType":"decimal","precision":30}`, `123456789012345678901234567890`, ``},
		{"decimal bad precision is bytes", `{"type":"bytes","logicalType":"decimal","precision":0}`, `"\u0001"`, ``},
		{"string escapes", `"string"`, `"tab\t nul\u0000 \u001f é 😀"`, `"tab\t nul\u0000 \u001f é 😀"`},
		{"map order kept", `{"type":"map","values":"long"}`, `{"b":1,"a":2,"c":3}`, ``},
		{"union unwrapped", `["null","string",{"type":"map","values":"long"}]`, `{"x":1}`, ``},
		{"enum", `{"type":"enum","name":"E","symbols":["A","B"]}`, `"B"`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := compileSchema(tt.schema) // lenient, as for registry schemas
			if err != nil {
				t.Fatal(err)
			}
			bin, err := s.AppendAvro(nil, []byte(tt.json))
			if err != nil {
				t.Fatalf("AppendAvro: %v", err)
			}
			got, err := s.AppendJSON(nil, bin)
			if err != nil {
				t.Fatalf("AppendJSON: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.json
			}
			if string(got) != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendJSONHostile(t *testing.T) {
	ue := mustSchema(t, userEventAvsc)
	good, err := ue.AppendAvro(nil, fixtureEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	nullArray := mustSchema(t, `{"type":"array","items":"null"}`)
	recursive := mustSchema(t, `{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}`)
	tests := []struct {
		name string
		s    *Schema
		in   []byte
		want string
	}{
		{"empty", ue, nil, "truncated"},
		{"truncated", ue, good[:len(good)-3], "truncated"},
		{"trailing", ue, append(append([]byte(nil), good...), 0), "bytes left"},
		{"union index", ue, []byte{0x08}, "union index 4 out of range"},
		{"negative length", ue, []byte{0x02, 0x01}, "negative length"},
		{"length past end", ue, []byte{0x02, 0x7e, 'a'}, "truncated"},
		{"varint overflow", ue, bytes.Repeat([]byte{0xff}, 11), "overflows"},
		{"huge null array", nullArray, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00}, "larger than"},
		{"min block count", nullArray, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "invalid block count"},
		{"deep recursion", recursive, append(bytes.Repeat([]byte{0x02}, 500), 0x00), "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s.AppendJSON(nil, tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAppendFloatLikeEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f, 64); string(got) != string(want) {
			t.Errorf("appendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestSchemaFingerprintMatchesGoavro(t *testing.T) {
	// UserEvent has no logical types and no recursion, where goavro's
	// canonical form is correct: both must agree.
	ue := mustSchema(t, userEventAvsc)
	codec, _ := goavro.NewCodec(userEventAvsc)
	if ue.Fingerprint() != codec.Rabin || ue.Canonical() != codec.CanonicalSchema() {
		t.Fatalf("fingerprint %x, goavro %x\nours   %s\ngoavro %s", ue.Fingerprint(), codec.Rabin, ue.Canonical(), codec.CanonicalSchema())
	}
	if ue.Name() != "apicall.UserEvent" {
		t.Fatalf("name %q", ue.Name())
	}
	if _, err := DeliveryOutcomeSchema(); err != nil {
		t.Fatal(err)
	}
}

func TestCompileSchemaErrors(t *testing.T) {
	tests := []struct{ name, schema, want string }{
		{"not json", `{`, "not JSON"},
		{"unknown type", `"nope"`, `unknown type "nope"`},
		{"union in union", `["null",["string"]]`, "union may not contain a union"},
		{"duplicate branch", `["string","string"]`, "twice"},
		{"record without fields", `{"type":"record","name":"R"}`, "fields"},
		{"duplicate name", `{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"record","name":"R","fields":[]}}]}`, "defined twice"},
		{"deep", strings.Repeat(`{"type":"array","items":`, 100) + `"long"` + strings.Repeat(`}`, 100), "nested deeper"},
		{"namespace reference", `{"type":"record","name":"a.R","fields":[{"name":"x","type":{"type":"enum","name":"E","symbols":["A"]}},{"name":"y","type":"E"},{"name":"z","type":"a.E"}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileSchema(tt.schema)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
