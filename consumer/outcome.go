package consumer

import "encoding/json"

// marshalOutcome encodes an outcome record as JSON.
func marshalOutcome(r *OutcomeRecord) ([]byte, error) {
	if len(r.Path) == 0 {
		r.Path = json.RawMessage("null")
	}
	return json.Marshal(r)
}
