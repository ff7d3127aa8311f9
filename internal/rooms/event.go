package rooms

import (
	"encoding/json"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// Event is a stored (or about to be stored) PDU with the facts the server
// keeps beside it.
type Event struct {
	Pos      int64 // stream position; set once persisted
	ID       id.EventID
	RoomID   id.RoomID
	Type     string
	StateKey *string
	Sender   id.UserID
	Depth    int64
	TS       int64

	PDU  *pdu.PDU // as stored: redacted once redacted
	JSON []byte   // the PDU's JSON as stored

	RedactedBy id.EventID
	TxnID      string
	DeviceID   id.DeviceID
	RelType    string
	RelatesTo  id.EventID
	ThreadID   id.EventID
	Rejected   bool
	// Outlier and SoftFailed mark events kept beside the timeline (see
	// the outlier_events table); Pos is 0 for them.
	Outlier    bool
	SoftFailed bool

	// SnapshotBefore is the state snapshot (the position of the room's last
	// state event) before this event; 0 for a backfilled event (Pos < 0),
	// whose state this node does not know.
	SnapshotBefore int64
	// Gap is set on an event accepted while history before it was missing
	// (some prev_events were not known): /sync starts a limited timeline
	// there, and /messages backfills before it.
	Gap bool

	// ReceivedFrom is, for a local user's event this node took from another
	// server's answer (the join send_join returned), that server: it has the
	// event already. Empty for every other event.
	ReceivedFrom string
}

// Backfilled reports whether the event is history fetched from another
// server (/backfill), stored in the timeline at a negative position
// without its state.
func (e *Event) Backfilled() bool { return e.Pos < 0 }

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// Content returns the event content.
func (e *Event) Content() json.RawMessage { return json.RawMessage(e.PDU.Content) }

// Membership returns the membership of an m.room.member event.
func (e *Event) Membership() string {
	var c struct {
		Membership string `json:"membership"`
	}
	json.Unmarshal(e.PDU.Content, &c)
	return c.Membership
}

// ClientEvent is an event in the Client-Server API format.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        id.EventID      `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         id.RoomID       `json:"room_id,omitempty"`
	Sender         id.UserID       `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        id.EventID      `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
}

// ClientOptions tailor an event for one client.
type ClientOptions struct {
	// Device of the requesting client: transaction_id is only shown to the
	// device that sent the event.
	User   id.UserID
	Device id.DeviceID
	// OmitRoomID leaves room_id out (sync timelines).
	OmitRoomID bool
	// Membership is the requesting user's membership at the event
	// (Visibility.MembershipAt), given as unsigned.membership (spec
	// v1.11); empty leaves it out.
	Membership string
}

// Client renders e for a client.
func (e *Event) Client(opts ClientOptions) *ClientEvent {
	ce := &ClientEvent{
		Content:        json.RawMessage(e.PDU.Content),
		EventID:        e.ID,
		OriginServerTS: e.TS,
		Sender:         e.Sender,
		StateKey:       e.StateKey,
		Type:           e.Type,
	}
	if len(ce.Content) == 0 {
		ce.Content = json.RawMessage("{}")
	}
	if !opts.OmitRoomID {
		ce.RoomID = e.RoomID
	}
	if e.PDU.Redacts != nil {
		ce.Redacts = *e.PDU.Redacts
	} else if e.Type == "m.room.redaction" {
		var c struct {
			Redacts id.EventID `json:"redacts"`
		}
		json.Unmarshal(e.PDU.Content, &c)
		ce.Redacts = c.Redacts
	}
	unsigned := map[string]any{}
	if len(e.PDU.Unsigned) > 0 {
		var u map[string]json.RawMessage
		if json.Unmarshal(e.PDU.Unsigned, &u) == nil {
			for _, k := range []string{"prev_content", "replaces_state", "prev_sender", "redacted_because"} {
				if v, ok := u[k]; ok {
					unsigned[k] = v
				}
			}
		}
	}
	if age := time.Now().UnixMilli() - e.TS; age >= 0 {
		unsigned["age"] = age
	}
	if e.TxnID != "" && opts.Device != "" && opts.Device == e.DeviceID && opts.User == e.Sender {
		unsigned["transaction_id"] = e.TxnID
	}
	if opts.Membership != "" {
		unsigned["membership"] = opts.Membership
	}
	if len(unsigned) > 0 {
		ce.Unsigned = unsigned
	}
	return ce
}

type stateKey struct {
	Type     string
	StateKey string
}
