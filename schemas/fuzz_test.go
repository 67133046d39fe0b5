package schemas

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
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

// TestValidJSONMutations compares validJSON with json.Valid on many small
// edits of real documents: bytes replaced (by JSON's own syntax bytes,
// control bytes, escapes), inserted and deleted at every position, so each
// grammar rule is broken at every offset of the eight-byte string scan.
func TestValidJSONMutations(t *testing.T) {
	seeds := [][]byte{
		fixtureEvent(t),
		[]byte(`{"a":[1,-2.5e+3,true,false,null,{"b":"c\"\\\/\b\f\n\r\t\u00e9x"}],"long string value":"0123456789abcdefghij"}`),
		[]byte(` [ {} , [] , "" , 0 , -0.0E-0 ] `),
	}
	alphabet := []byte("{}[]:,\"\\ \t\n\x00\x1f0123456789-+.eEtrufalsn/bu\x7f\xc3\xa9")
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	check := func(b []byte) {
		n++
		if !utf8.Valid(b) {
			return
		}
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	}
	for _, seed := range seeds {
		check(seed)
		for i := range seed {
			for _, c := range alphabet {
				b := bytes.Clone(seed)
				b[i] = c
				check(b)
				check(slices.Insert(bytes.Clone(seed), i, c))
			}
			check(slices.Delete(bytes.Clone(seed), i, i+1))
		}
		for range 20_000 { // a few edits at once
			b := bytes.Clone(seed)
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
			}
			check(b)
		}
	}
	t.Logf("%d documents compared", n)
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

// checkScanValid: scanValid accepts exactly the valid JSON objects, and on
// them notes what scanObject (the walk it replaced on the JSON path, still
// the Avro path's) notes after validation.
func checkScanValid(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) {
		return
	}
	i := skipWS(b, 0)
	if i == len(b) || b[i] != '{' {
		return // decodeJSON does not call it
	}
	var want spans
	got, ok := scanValid(b)
	if valid := json.Valid(b); ok != valid {
		t.Fatalf("scanValid(%q) = %v, json.Valid says %v", b, ok, valid)
	}
	if !ok {
		return
	}
	if err := scanObject(b, &want); err != nil {
		t.Fatalf("scanObject(%q): %v", b, err)
	}
	if got.event != want.event || got.timestamp != want.timestamp || got.user != want.user || got.data != want.data ||
		got.userIndexed != want.userIndexed || !slices.Equal(got.userMembers, want.userMembers) {
		t.Fatalf("scanValid(%q) noted\n%+v\nscanObject\n%+v", b, got, want)
	}
}

func TestScanValidIsScanObject(t *testing.T) {
	many := `{"user":{` + strings.Repeat(`"k":1,`, 64) + `"last":2},"event":"e"}`
	seeds := [][]byte{
		fixtureEvent(t),
		[]byte(`{"event":"a","user":{"id":1,"email":"x@y","nested":{"user":{"id":2}},"list":[{"a":1}]},"data":{"plan":"pro"},"timestamp":"t"}`),
		[]byte(`{"user":null,"user":{"id":1},"event":"dup","event":"second"}`),
		[]byte(`{"user":{},"data":{}}`),
		[]byte(`{"us\u0065r":{"e\u006dail":"x","id":1},"ev\u0065nt":"esc"}`),
		[]byte(`{"data":[{"user":{"a":1}}],"user":{"a":{"b":[1,2,{"c":"}"}]},"b":"]"}}`),
		[]byte(many),
		[]byte(` { "user" : { "a" : 1 , "b" : "2" } , "event" : "ws" } `),
	}
	alphabet := []byte("{}[]:,\"\\ 0u1-etrnl")
	rng := rand.New(rand.NewPCG(3, 4))
	for _, seed := range seeds {
		checkScanValid(t, seed)
		for i := range seed {
			for _, c := range alphabet {
				b := bytes.Clone(seed)
				b[i] = c
				checkScanValid(t, b)
				checkScanValid(t, slices.Insert(bytes.Clone(seed), i, c))
			}
			checkScanValid(t, slices.Delete(bytes.Clone(seed), i, i+1))
		}
		for range 5_000 {
			b := bytes.Clone(seed)
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
			}
			checkScanValid(t, b)
		}
	}
}

func FuzzScanValid(f *testing.F) {
	f.Add(fixtureEvent(f))
	for _, s := range []string{`{"user":{"a":1},"user":{"b":2}}`, `{"user":{}}`, `{"u\u0073er":{"\u0061":1}}`, `{"data":{"x":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScanValid)
}
