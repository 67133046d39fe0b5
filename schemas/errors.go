package schemas

import (
	"errors"
	"fmt"
)

// Reasons a value could not be decoded. A reason is a metric label
// (apicall_dead_letters_total{reason}) and the dead-letter header value, so
// the set is small, stable and lower_snake_case.
const (
	// ReasonNotJSON: the value is not a JSON text (invalid syntax, empty, or
	// not UTF-8).
	ReasonNotJSON = "not_json"
	// ReasonNotObject: valid JSON (or Avro) whose top level is not an object.
	ReasonNotObject = "not_object"
	// ReasonInvalidField: a known member has the wrong type: `event` or
	// `timestamp` not a string, `user` or `data` not an object (null is
	// accepted as absent).
	ReasonInvalidField = "invalid_field"
	// ReasonInvalidAvro: Avro framing or binary data that does not decode
	// with the writer schema (truncated, garbage, trailing bytes).
	ReasonInvalidAvro = "invalid_avro"
	// ReasonUnknownSchema: the Confluent schema id is not in the registry
	// (404), the registry's schema is not Avro or cannot be compiled, or no
	// registry is configured.
	ReasonUnknownSchema = "unknown_schema"
	// ReasonUnknownFingerprint: an Avro single-object encoding whose
	// fingerprint matches none of the embedded or configured .avsc files.
	ReasonUnknownFingerprint = "unknown_fingerprint"
	// ReasonUnknownFormat: with format auto, the first bytes match none of
	// the wire formats (not JSON, no Avro magic).
	ReasonUnknownFormat = "unknown_format"
	// ReasonRegistryUnavailable is the one transient reason: the schema
	// registry could not be reached (connection error, timeout, 5xx, 429,
	// auth failure) after a few quick retries. The consumer pauses the
	// partition and retries with backoff instead of dead-lettering, because
	// during an outage every Confluent-framed event would otherwise be
	// dead-lettered although nothing is wrong with it.
	ReasonRegistryUnavailable = "registry_unavailable"
	// ReasonTooLarge is set by the consumer (not by decoders) for values over
	// its size limit; declared here so all reasons live in one list.
	ReasonTooLarge = "too_large"
)

// DecodeError reports why a value could not be turned into an Event. Reason
// is one of the Reason* constants; Err carries the detail for logs and the
// dead-letter record.
type DecodeError struct {
	Reason string
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// IsTransient reports whether err is a decode failure that may succeed later
// without any change to the value (today only registry_unavailable). The
// consumer must retry such values rather than dead-letter them.
func IsTransient(err error) bool {
	var de *DecodeError
	return errors.As(err, &de) && de.Reason == ReasonRegistryUnavailable
}

// ReasonOf returns the reason of a *DecodeError in err's chain, or "" when
// err is nil or not a decode error. It saves callers the errors.As dance when
// they only need the metric label.
func ReasonOf(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

// decodeErr builds a *DecodeError with a formatted detail.
func decodeErr(reason, format string, args ...any) *DecodeError {
	return &DecodeError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ErrSchemaNotFound is returned (wrapped) by the registry client when the
// registry answers 404 for a schema id: the id does not exist there, which is
// permanent for that value.
var ErrSchemaNotFound = errors.New("schema not found in registry")
