package schemas

import "fmt"

// Format is the wire format a topic's values are expected in.
type Format string

const (
	// FormatAuto sniffs each value: Confluent wire format (first byte 0x00),
	// Avro single-object encoding (0xC3 0x01), or JSON (anything a JSON text
	// can start with). Mixed topics (a producer migrating from JSON to Avro)
	// therefore keep working.
	FormatAuto Format = "auto"
	// FormatJSON accepts only JSON objects.
	FormatJSON Format = "json"
	// FormatAvro accepts only Avro, Confluent-framed or single-object encoded.
	FormatAvro Format = "avro"
)

// ParseFormat parses a configured format; "" means auto.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatAuto:
		return FormatAuto, nil
	case FormatJSON, FormatAvro:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown format %q (want auto, json or avro)", s)
}

// wire is what the first bytes of a value say it is.
type wire uint8

const (
	wireUnknown wire = iota
	wireJSON
	wireConfluent    // 0x00 + 4-byte big-endian schema id + Avro binary
	wireSingleObject // 0xC3 0x01 + 8-byte little-endian CRC-64-AVRO fingerprint + Avro binary
)

// Header sizes of the two Avro framings.
const (
	confluentHeaderLen    = 5
	singleObjectHeaderLen = 10
)

// sniff classifies a value by its first bytes. The magic bytes cannot start
// a JSON text (0x00 is a control character, 0xC3 is not valid at the start of
// JSON), so detection is unambiguous. Values that look like JSON but are not
// objects are still classified as JSON so they fail with the more precise
// not_object or not_json.
func sniff(value []byte) wire {
	if len(value) == 0 {
		return wireUnknown
	}
	switch c := value[0]; {
	case c == 0x00:
		return wireConfluent
	case c == 0xC3 && len(value) > 1 && value[1] == 0x01:
		return wireSingleObject
	case c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') ||
		c == 't' || c == 'f' || c == 'n' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
		return wireJSON
	}
	return wireUnknown
}
