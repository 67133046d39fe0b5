package schemas

import "testing"

// Vectors from the Avro project (share/test/data/schema-tests.txt), which
// the Java implementation cross-checks: our fingerprints must match what
// producers in other languages put in the single-object header.
func TestCanonicalFormAndFingerprint(t *testing.T) {
	tests := []struct {
		in, canonical string
		fingerprint   int64 // as the vectors give it (signed); 0 = not given
	}{
		{`"null"`, `"null"`, 7195948357588979594},
		{`{"type":"null"}`, `"null"`, 0},
		{`"boolean"`, `"boolean"`, -6970731678124411036},
		{`"int"`, `"int"`, 8247732601305521295},
		{`{"type":"int"}`, `"int"`, 0},
		{`"long"`, `"long"`, -3434872931120570953},
		{`"float"`, `"float"`, 5583340709985441680},
		{`"double"`, `"double"`, -8181574048448539266},
		{`"bytes"`, `"bytes"`, 5746618253357095269},
		{`"string"`, `"string"`, -8142146995180207161},
		{`[ "int"  ]`, `["int"]`, -5232228896498058493},
		{`[ "int" , {"type":"boolean"} ]`, `["int","boolean"]`, 5392556393470105090},
		{`{"fields":[], "type":"record", "name":"foo"}`, `{"name":"foo","type":"record","fields":[]}`, -4824392279771201922},
		{`{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}`, `{"name":"x.y.foo","type":"record","fields":[]}`, 5916914534497305771},
		{`{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}`, `{"name":"a.b.foo","type":"record","fields":[]}`, -4616218487480524110},
		{`{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}`, `{"name":"foo","type":"record","fields":[]}`, -4824392279771201922},
		{`{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}`,
			`{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}`, 7843277075252814651},
		{`{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},
		    {"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo"}`,
			`{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}`, -4860222112080293046},
		{`{"type":"enum", "name":"foo", "symbols":["A1"]}`, `{"name":"foo","type":"enum","symbols":["A1"]}`, -6342190197741309591},
		{`{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}`,
			`{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}`, -4448647247586288245},
		{`{"name":"foo","type":"fixed","size":15}`, `{"name":"foo","type":"fixed","size":15}`, 1756455273707447556},
		{`{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}`,
			`{"name":"x.y.z.foo","type":"fixed","size":32}`, -3064184465700546786},
		{`{ "items":{"type":"null"}, "type":"array"}`, `{"type":"array","items":"null"}`, -589620603366471059},
		{`{ "values":"string", "type":"map"}`, `{"type":"map","values":"string"}`, -8732877298790414990},
		{`{"name":"PigValue","type":"record","fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}`,
			`{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}`, -1759257747318642341},
		// beyond the vectors: logical types and recursion inside a namespace
		{`{"type":"long","logicalType":"timestamp-micros"}`, `"long"`, 0},
		{`{"type":"record","name":"N","namespace":"t","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4}},{"name":"next","type":["null","N"]}]}`,
			`{"name":"t.N","type":"record","fields":[{"name":"d","type":"bytes"},{"name":"next","type":["null","t.N"]}]}`, 0},
	}
	for _, tt := range tests {
		s, err := compileSchema(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if s.Canonical() != tt.canonical {
			t.Errorf("%s:\ncanonical %s\nwant      %s", tt.in, s.Canonical(), tt.canonical)
		}
		if tt.fingerprint != 0 && int64(s.Fingerprint()) != tt.fingerprint {
			t.Errorf("%s: fingerprint %d, want %d", tt.in, int64(s.Fingerprint()), tt.fingerprint)
		}
	}
}

// goavro's canonical form is right for schemas without logical types or
// recursion, like the embedded UserEvent; check we agree there, and that
// ours is stable where goavro's is not.
func TestCanonicalFormStable(t *testing.T) {
	first := mustSchema(t, allTypes).Fingerprint()
	for range 50 {
		if fp := mustSchema(t, allTypes).Fingerprint(); fp != first {
			t.Fatalf("fingerprint changed: %x then %x", first, fp)
		}
	}
}
