package schemas

import "strconv"

// The single-object encoding identifies a schema by the CRC-64-AVRO (Rabin)
// fingerprint of its Parsing Canonical Form, so our fingerprint must equal
// the one a Java or Python producer computes. goavro's canonical form does
// not always: it renders logical types as {"type":"int"} instead of "int",
// adds a "bytes.decimal" name to decimals, and writes a recursive reference
// as "Node" or "ns.Node" depending on Go map iteration order. apicall
// therefore derives the canonical form from its compiled tree, following
// the specification ("Parsing Canonical Form for Schemas"): primitives in
// simple form, full names, only name/type/fields/symbols/items/values/size,
// in that order, no whitespace, each named type defined at its first
// occurrence and referenced by full name after.

// canonicalForm renders the Parsing Canonical Form of a compiled schema.
func canonicalForm(n *node) string {
	return string(appendCanonical(nil, n, map[*node]bool{}))
}

func appendCanonical(b []byte, n *node, defined map[*node]bool) []byte {
	if n.name != "" && defined[n] {
		return appendJSONString(b, n.name)
	}
	switch n.kind {
	case kindRecord:
		defined[n] = true
		b = append(b, `{"name":`...)
		b = appendJSONString(b, n.name)
		b = append(b, `,"type":"record","fields":[`...)
		for i, f := range n.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendJSONString(b, f.name)
			b = append(b, `,"type":`...)
			b = appendCanonical(b, f.typ, defined)
			b = append(b, '}')
		}
		return append(b, "]}"...)
	case kindEnum:
		defined[n] = true
		b = append(b, `{"name":`...)
		b = appendJSONString(b, n.name)
		b = append(b, `,"type":"enum","symbols":[`...)
		for i, s := range n.symbolJSON {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, s...)
		}
		return append(b, "]}"...)
	case kindFixed:
		defined[n] = true
		b = append(b, `{"name":`...)
		b = appendJSONString(b, n.name)
		b = append(b, `,"type":"fixed","size":`...)
		b = strconv.AppendInt(b, int64(n.size), 10)
		return append(b, '}')
	case kindArray:
		b = append(b, `{"type":"array","items":`...)
		b = appendCanonical(b, n.items, defined)
		return append(b, '}')
	case kindMap:
		b = append(b, `{"type":"map","values":`...)
		b = appendCanonical(b, n.items, defined)
		return append(b, '}')
	case kindUnion:
		b = append(b, '[')
		for i, br := range n.branches {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, br, defined)
		}
		return append(b, ']')
	}
	return appendJSONString(b, n.kind.String())
}

// rabinEmpty is the CRC-64-AVRO of the empty string (and its polynomial).
const rabinEmpty uint64 = 0xc15d213aa4d7a795

// fingerprint64 computes the CRC-64-AVRO fingerprint of b, bit by bit as in
// the specification's reference code but without its precomputed table: it
// runs once per schema, and a table would be one more package-level value.
func fingerprint64(b []byte) uint64 {
	fp := rabinEmpty
	for _, c := range b {
		fp ^= uint64(c)
		for range 8 {
			fp = (fp >> 1) ^ (rabinEmpty & -(fp & 1))
		}
	}
	return fp
}
