package contracts

import "encoding/json"

// CanonicalResult is a result's JSON with its keys sorted (encoding/json
// sorts map keys), as results are compared on replay; "" for none.
func CanonicalResult(result map[string]any) string {
	if result == nil {
		return ""
	}
	b, err := json.Marshal(result)
	if err != nil {
		return ""
	}
	return string(b)
}
