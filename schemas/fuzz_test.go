package schemas

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// checkDecoded is the property every fuzzer checks: a decode never panics
// (the fuzzer reports panics), an error is a *DecodeError, and a success
// yields a non-empty name and valid JSON in Raw, User and Data, with User and
// Data objects.
func checkDecoded(t *testing.T, ev Event, err error) {
	t.Helper()
	if err != nil {
		if ReasonOf(err) == "" {
			t.Fatalf("error without a reason: %v", err)
		}
		return
	}
	if ev.Name == "" {
		t.Fatal("empty name")
	}
	if !json.Valid(ev.Raw) {
		t.Fatalf("raw not valid JSON: %q", ev.Raw)
	}
	for _, m := range []json.RawMessage{ev.User, ev.Data} {
		if m != nil && (!json.Valid(m) || m[0] != '{') {
			t.Fatalf("user/data not a JSON object: %q", m)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add(fixtureEvent(f))
	for _, s := range []string{`{}`, `{"event":"x","user":null}`, `[1]`, `{"event":5}`, `{"ev\u0065nt":"a\"b"}`,
		`{"user":{"a":"}"},"data":{"b":[{"c":"]"}]}}`, " {\"a\" : \"\\\\\" } ", `{"event":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ev, err := DecodeJSON("topic", value)
		checkDecoded(t, ev, err)
		if err == nil {
			// agree with encoding/json on what the members are
			var m map[string]json.RawMessage
			if json.Unmarshal(value, &m) != nil {
				t.Fatalf("decoded what encoding/json rejects: %q", value)
			}
			if u, ok := m["user"]; ok && string(u) != "null" && ev.User == nil {
				t.Fatalf("user lost: %q", value)
			}
		}
	})
}

func FuzzDecodeAvroSingleObject(f *testing.F) {
	ue := mustSchema(f, userEventAvsc)
	d := fastDecoder(f, DecoderOptions{})
	header := make([]byte, singleObjectHeaderLen)
	header[0], header[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(header[2:], ue.Fingerprint())
	for _, line := range [][]byte{fixtureEvent(f), []byte(`{}`), []byte(`{"event":"x","data":{"a":[1,"b",null],"m":{"k":1.5}}}`)} {
		body, err := ue.AppendAvro(nil, line)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
		f.Add(body[:len(body)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		value := append(append([]byte(nil), header...), body...)
		ev, err := d.Decode(context.Background(), "topic", FormatAvro, value)
		checkDecoded(t, ev, err)
		if err == nil {
			// What decodes re-encodes, and the natural JSON is a fixed point
			// of JSON -> Avro -> JSON. (Bytes may differ: Avro allows
			// several encodings of one value, e.g. blocked arrays,
			// non-minimal varints, a double 1.0 in data that reads back as
			// the long 1.)
			again, err := ue.AppendAvro(nil, ev.Raw)
			if err != nil {
				t.Fatalf("re-encoding %s: %v", ev.Raw, err)
			}
			js, err := ue.AppendJSON(nil, again)
			if err != nil || !bytes.Equal(js, ev.Raw) {
				t.Fatalf("not a fixed point (%v):\nfirst  %s\nsecond %s", err, ev.Raw, js)
			}
		}
	})
}

// fuzzRegistry serves ids 1 (UserEvent), 2 (allTypes) and 3 (a recursive
// list) for the Confluent fuzzers.
func fuzzRegistry(f *testing.F) *Decoder {
	fr, srv := newFakeRegistry(f)
	fr.put(1, userEventAvsc, "")
	fr.put(2, allTypes, "")
	fr.put(3, `{"type":"record","name":"L","fields":[{"name":"event","type":"string"},{"name":"next","type":["null","L"]}]}`, "")
	return fastDecoder(f, DecoderOptions{RegistryURL: srv.URL})
}

func confluentSeeds(f *testing.F) [][]byte {
	ue := mustSchema(f, userEventAvsc)
	all := mustSchema(f, allTypes)
	var seeds [][]byte
	for _, c := range []struct {
		id   uint32
		s    *Schema
		line string
	}{
		{1, ue, string(fixtureEvent(f))},
		{1, ue, `{"event":"x"}`},
		{2, all, allTypesValue},
	} {
		v, err := EncodeConfluent(c.id, c.s, []byte(c.line))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, v, v[:len(v)/2])
	}
	seeds = append(seeds, []byte{0, 0, 0, 0, 3, 2, 'e', 2, 2, 'f', 0})
	return seeds
}

func FuzzDecodeConfluent(f *testing.F) {
	d := fuzzRegistry(f)
	for _, s := range confluentSeeds(f) {
		f.Add(s[4], s[5:])
	}
	f.Fuzz(func(t *testing.T, id byte, body []byte) {
		// ids 1-3 exist; others exercise unknown_schema (kept few so the
		// negative cache, not the registry, answers most)
		value := append([]byte{0, 0, 0, 0, id % 5}, body...)
		ev, err := d.Decode(context.Background(), "topic", FormatAvro, value)
		checkDecoded(t, ev, err)
		if IsTransient(err) {
			t.Fatalf("registry is up, yet: %v", err)
		}
	})
}

func FuzzDecodeAuto(f *testing.F) {
	d := fuzzRegistry(f)
	for _, s := range confluentSeeds(f) {
		f.Add(s)
	}
	ue := mustSchema(f, userEventAvsc)
	soe, err := EncodeSingleObject(ue, fixtureEvent(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(soe)
	f.Add(fixtureEvent(f))
	f.Add([]byte(`[{"event":1}]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, value []byte) {
		if len(value) >= 5 && value[0] == 0 {
			value[1], value[2], value[3] = 0, 0, 0 // keep ids small, as above
			value[4] %= 5
		}
		ev, err := d.Decode(context.Background(), "topic", FormatAuto, value)
		checkDecoded(t, ev, err)
		if IsTransient(err) {
			t.Fatalf("registry is up, yet: %v", err)
		}
	})
}

// validJSON must say exactly what json.Valid says, on UTF-8 (DecodeJSON
// refuses the rest first), at every length.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2]`, `"x"`, `01`, `{"a":"\u00"}`, `1e5`, `-0`, `{"a":tru}`, ` {} `,
		"{\"a\":\"\x01\"}", `1.`, `.5`, `{}x`, `{"a":"\ud800"}`, `[-]`, `{"a" 1}`, `{,}`, `[1,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

// Deep nesting is refused as encoding/json refuses it, without recursing
// once per level.
func TestValidJSONDepth(t *testing.T) {
	for _, depth := range []int{4_000, 10_000, 10_001, 1 << 20} {
		b := append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Errorf("depth %d: validJSON %v, json.Valid %v", depth, got, want)
		}
	}
}
