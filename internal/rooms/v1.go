package rooms

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// Room versions 1 and 2 use the original event format: the event ID is
// chosen by the sending server and is part of the event, and prev_events
// and auth_events are [event_id, hashes] pairs. The engine keeps a
// pdu.PDU view of such events (for the auth rules and the client format)
// and stores the original JSON.

func usesV1Format(v id.RoomVersion) bool { return v == id.RoomV1 || v == id.RoomV2 }

// buildV1 signs p in the v1 format and returns the event ID and JSON.
func (e *Engine) buildV1(r *room, st *roomState, pd *pdu.PDU) (id.EventID, []byte, error) {
	b := make([]byte, 18)
	rand.Read(b)
	evID := id.EventID("$" + base64.RawURLEncoding.EncodeToString(b) + ":" + e.signer.ServerName)
	ref := func(ids []id.EventID) []pdu.V1EventReference {
		out := make([]pdu.V1EventReference, 0, len(ids))
		for _, eid := range ids {
			var h pdu.Hashes
			if ev := st.byID[eid]; ev != nil && ev.PDU.Hashes != nil {
				h = *ev.PDU.Hashes
			} else if ev := e.cache.get(eid); ev != nil && ev.PDU.Hashes != nil {
				h = *ev.PDU.Hashes
			}
			out = append(out, pdu.V1EventReference{ID: eid, Hashes: h})
		}
		return out
	}
	v1 := &pdu.RoomV1PDU{
		AuthEvents: ref(pd.AuthEvents), Content: pd.Content, Depth: pd.Depth, EventID: evID,
		OriginServerTS: pd.OriginServerTS, PrevEvents: ref(pd.PrevEvents), Redacts: pd.Redacts,
		RoomID: pd.RoomID, Sender: pd.Sender, StateKey: pd.StateKey, Type: pd.Type, Unsigned: pd.Unsigned,
	}
	if err := v1.Sign(r.version, e.signer.ServerName, e.signer.KeyID, e.signer.Key); err != nil {
		return "", nil, fmt.Errorf("sign v1 event: %w", err)
	}
	pd.Hashes = v1.Hashes
	pd.Signatures = v1.Signatures
	raw, err := json.Marshal(v1)
	if err != nil {
		return "", nil, err
	}
	return evID, raw, nil
}

// parsePDU decodes stored event JSON of either format into the pdu.PDU view.
func parsePDU(raw []byte) (*pdu.PDU, error) {
	if !isV1Format(raw) {
		p := &pdu.PDU{}
		return p, json.Unmarshal(raw, p)
	}
	var v1 pdu.RoomV1PDU
	if err := json.Unmarshal(raw, &v1); err != nil {
		return nil, err
	}
	return v1ToPDU(&v1), nil
}

// isV1Format reports whether raw, a stored event, is in the format of
// room versions 1 and 2, which name the event in it (event_id).
func isV1Format(raw []byte) bool {
	return gjson.GetBytes(raw, "event_id").Exists()
}

func v1ToPDU(v1 *pdu.RoomV1PDU) *pdu.PDU {
	ids := func(refs []pdu.V1EventReference) []id.EventID {
		out := make([]id.EventID, len(refs))
		for i, r := range refs {
			out[i] = r.ID
		}
		return out
	}
	return &pdu.PDU{
		AuthEvents: ids(v1.AuthEvents), Content: v1.Content, Depth: v1.Depth, Hashes: v1.Hashes,
		OriginServerTS: v1.OriginServerTS, PrevEvents: ids(v1.PrevEvents), Redacts: v1.Redacts,
		RoomID: v1.RoomID, Sender: v1.Sender, Signatures: v1.Signatures, StateKey: v1.StateKey,
		Type: v1.Type, Unsigned: v1.Unsigned,
	}
}

// redactStored applies the room version's redaction algorithm to stored
// event JSON, keeping its format.
func redactStored(raw []byte, version id.RoomVersion, unsigned []byte) ([]byte, error) {
	if gjson.GetBytes(raw, "event_id").Exists() {
		var v1 pdu.RoomV1PDU
		if err := json.Unmarshal(raw, &v1); err != nil {
			return nil, err
		}
		red := v1.Redact(version)
		red.Unsigned = unsigned
		return json.Marshal(red)
	}
	var p pdu.PDU
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	red := p.Redact(version)
	red.Unsigned = unsigned
	return json.Marshal(red)
}
