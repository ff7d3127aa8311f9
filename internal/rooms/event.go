package rooms

import (
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

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
		unsigned["membership"] = boxMembership(opts.Membership)
	}
	if len(unsigned) > 0 {
		ce.Unsigned = unsigned
	}
	return ce
}

// boxMembership returns m as an interface value without allocating for
// the spec's memberships, which every timeline event of a sync carries.
func boxMembership(m string) any {
	switch m {
	case "join":
		return "join"
	case "leave":
		return "leave"
	case "invite":
		return "invite"
	case "ban":
		return "ban"
	case "knock":
		return "knock"
	}
	return m
}

// MarshalJSONTo writes ce as its struct tags say, under the encoder's
// options, without reflection: a sync response carries thousands of
// events, and the reflective encoding of each one's unsigned map (every
// key and value copied, then sorted) cost more than the rest of the event.
// The keys of Unsigned come out sorted, as encoding/json sorts map keys.
//
// An event whose strings need no escaping (the usual case: IDs, types and
// keys are plain ASCII) is written as one value put together here, which
// the encoder checks and reformats (compacted, escaped as its options say)
// in one pass: token by token costs several times more.
func (ce *ClientEvent) MarshalJSONTo(enc *jsontext.Encoder) error {
	var buf [1024]byte
	if b, ok := ce.appendPlain(buf[:0]); ok {
		return enc.WriteValue(b)
	}
	w := tokenWriter{enc: enc}
	w.token(jsontext.BeginObject)
	w.member("content")
	w.raw(ce.Content)
	w.member("event_id")
	w.token(jsontext.String(string(ce.EventID)))
	w.member("origin_server_ts")
	w.token(jsontext.Int(ce.OriginServerTS))
	if ce.RoomID != "" {
		w.member("room_id")
		w.token(jsontext.String(string(ce.RoomID)))
	}
	w.member("sender")
	w.token(jsontext.String(string(ce.Sender)))
	if ce.StateKey != nil {
		w.member("state_key")
		w.token(jsontext.String(*ce.StateKey))
	}
	w.member("type")
	w.token(jsontext.String(ce.Type))
	if ce.Redacts != "" {
		w.member("redacts")
		w.token(jsontext.String(string(ce.Redacts)))
	}
	if len(ce.Unsigned) > 0 {
		w.member("unsigned")
		w.unsigned(ce.Unsigned)
	}
	w.token(jsontext.EndObject)
	return w.err
}

// appendPlain appends ce to b as a JSON object, if every string in it
// outside its raw values is plain (see isPlain) and its unsigned values
// are of the usual types; ok is false otherwise.
func (ce *ClientEvent) appendPlain(b []byte) (_ []byte, ok bool) {
	if !isPlain(string(ce.EventID)) || !isPlain(string(ce.RoomID)) || !isPlain(string(ce.Sender)) ||
		!isPlain(ce.Type) || !isPlain(string(ce.Redacts)) || ce.StateKey != nil && !isPlain(*ce.StateKey) {
		return nil, false
	}
	b = append(b, `{"content":`...)
	b = appendRaw(b, ce.Content)
	b = appendMember(b, "event_id", string(ce.EventID))
	b = append(b, `,"origin_server_ts":`...)
	b = strconv.AppendInt(b, ce.OriginServerTS, 10)
	if ce.RoomID != "" {
		b = appendMember(b, "room_id", string(ce.RoomID))
	}
	b = appendMember(b, "sender", string(ce.Sender))
	if ce.StateKey != nil {
		b = appendMember(b, "state_key", *ce.StateKey)
	}
	b = appendMember(b, "type", ce.Type)
	if ce.Redacts != "" {
		b = appendMember(b, "redacts", string(ce.Redacts))
	}
	if len(ce.Unsigned) > 0 {
		var kbuf [8]string
		keys := kbuf[:0]
		for k := range ce.Unsigned {
			if !isPlain(k) {
				return nil, false
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"unsigned":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(append(b, '"'), k...), `":`...)
			switch v := ce.Unsigned[k].(type) {
			case int64:
				b = strconv.AppendInt(b, v, 10)
			case string:
				if !isPlain(v) {
					return nil, false
				}
				b = append(append(append(b, '"'), v...), '"')
			case json.RawMessage:
				b = appendRaw(b, v)
			default:
				return nil, false
			}
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendMember appends a member with a plain string value.
func appendMember(b []byte, name, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, value...)
	return append(b, '"')
}

// appendRaw appends a raw JSON value as encoding/json writes a
// json.RawMessage: null when nil.
func appendRaw(b []byte, v json.RawMessage) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return append(b, v...)
}

// isPlain reports whether s is written the same, between quotes, under
// every encoder option: printable ASCII other than the quote, the
// backslash and the characters HTML escaping changes.
func isPlain(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// tokenWriter writes to an encoder until the first error, which it keeps.
type tokenWriter struct {
	enc *jsontext.Encoder
	err error
}

func (w *tokenWriter) token(t jsontext.Token) {
	if w.err == nil {
		w.err = w.enc.WriteToken(t)
	}
}

func (w *tokenWriter) member(name string) { w.token(jsontext.String(name)) }

// raw writes a raw JSON value as encoding/json writes a json.RawMessage:
// null when nil.
func (w *tokenWriter) raw(v json.RawMessage) {
	switch {
	case w.err != nil:
	case v == nil:
		w.token(jsontext.Null)
	default:
		w.err = w.enc.WriteValue(jsontext.Value(v))
	}
}

// any writes v through encoding/json, under the encoder's options.
func (w *tokenWriter) any(v any) {
	if w.err == nil {
		w.err = jsonv2.MarshalEncode(w.enc, v)
	}
}

// unsigned writes an unsigned map with its keys sorted; the types events
// carry there are written directly, others through encoding/json.
func (w *tokenWriter) unsigned(u map[string]any) {
	var buf [8]string
	keys := buf[:0]
	for k := range u {
		if !isASCII(k) {
			w.any(u) // sorted as encoding/json sorts them
			return
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.token(jsontext.BeginObject)
	for _, k := range keys {
		w.member(k)
		switch v := u[k].(type) {
		case int64:
			w.token(jsontext.Int(v))
		case string:
			w.token(jsontext.String(v))
		case json.RawMessage:
			w.raw(v)
		default:
			w.any(v)
		}
	}
	w.token(jsontext.EndObject)
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

type stateKey struct {
	Type     string
	StateKey string
}
