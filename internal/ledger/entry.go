package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Entry is one leaf of the events log: what the log proves about an event.
type Entry struct {
	ContentHash string `json:"content_hash"`
	EventID     string `json:"event_id"`
	RoomID      string `json:"room_id"`
}

// Marshal returns the entry's bytes as stored in the log (the leaf data):
// a JSON object with its keys in sorted order.
func (e Entry) Marshal() []byte {
	b, _ := json.Marshal(e) // strings only: cannot fail
	return b
}

// ParseEntry reads a leaf of the events log, refusing anything that is not
// exactly what Marshal writes.
func ParseEntry(b []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("ledger entry: %w", err)
	}
	if e.EventID == "" || e.RoomID == "" || e.ContentHash == "" {
		return Entry{}, errors.New("ledger entry: room_id, event_id and content_hash are required")
	}
	if !bytes.Equal(e.Marshal(), b) {
		return Entry{}, errors.New("ledger entry: not in canonical form")
	}
	return e, nil
}
