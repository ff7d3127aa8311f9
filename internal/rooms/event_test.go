package rooms

import (
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// testEvent returns an event with the given content, sent a second ago.
func testEvent(typ, content string) *Event {
	return &Event{
		ID: "$ev", RoomID: "!room:test", Type: typ, Sender: "@alice:test",
		TS:  time.Now().UnixMilli() - 1000,
		PDU: &pdu.PDU{Type: typ, Content: []byte(content)},
	}
}

func TestClientRoomID(t *testing.T) {
	ev := testEvent("m.room.message", `{"body":"hi"}`)
	tests := []struct {
		name string
		opts ClientOptions
		want id.RoomID
	}{
		{"included by default", ClientOptions{}, "!room:test"},
		{"omitted for sync", ClientOptions{OmitRoomID: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := ev.Client(tt.opts)
			if ce.RoomID != tt.want {
				t.Errorf("room_id = %q, want %q", ce.RoomID, tt.want)
			}
			b, _ := json.Marshal(ce)
			var m map[string]any
			json.Unmarshal(b, &m)
			if _, has := m["room_id"]; has != (tt.want != "") {
				t.Errorf("room_id present = %v in %s", has, b)
			}
		})
	}
}

func TestClientTransactionID(t *testing.T) {
	ev := testEvent("m.room.message", `{}`)
	ev.TxnID, ev.DeviceID = "txn1", "DEV1"
	noDevice := testEvent("m.room.message", `{}`)
	noDevice.TxnID = "txn1"
	tests := []struct {
		name string
		ev   *Event
		opts ClientOptions
		want bool
	}{
		{"sending device", ev, ClientOptions{User: "@alice:test", Device: "DEV1"}, true},
		{"other device of the sender", ev, ClientOptions{User: "@alice:test", Device: "DEV2"}, false},
		{"other user with the same device ID", ev, ClientOptions{User: "@bob:test", Device: "DEV1"}, false},
		{"no requester", ev, ClientOptions{}, false},
		{"sender without a device on both sides", noDevice, ClientOptions{User: "@alice:test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.ev.Client(tt.opts).Unsigned["transaction_id"]
			if ok != tt.want {
				t.Fatalf("transaction_id present = %v, want %v", ok, tt.want)
			}
			if ok && got != "txn1" {
				t.Errorf("transaction_id = %v, want txn1", got)
			}
		})
	}
}

func TestClientRedacts(t *testing.T) {
	top := id.EventID("$top")
	tests := []struct {
		name    string
		typ     string
		content string
		pduRed  *id.EventID
		want    id.EventID
	}{
		{"top-level redacts (v1-v10)", "m.room.redaction", `{"reason":"spam"}`, &top, "$top"},
		{"content redacts (v11+)", "m.room.redaction", `{"redacts":"$inner"}`, nil, "$inner"},
		{"top-level wins over content", "m.room.redaction", `{"redacts":"$inner"}`, &top, "$top"},
		{"redaction without a target", "m.room.redaction", `{}`, nil, ""},
		{"content redacts on another type is ignored", "m.room.message", `{"redacts":"$inner"}`, nil, ""},
		{"malformed content redacts", "m.room.redaction", `{"redacts":5}`, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := testEvent(tt.typ, tt.content)
			ev.PDU.Redacts = tt.pduRed
			if got := ev.Client(ClientOptions{}).Redacts; got != tt.want {
				t.Errorf("redacts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientUnsigned(t *testing.T) {
	tests := []struct {
		name     string
		unsigned string
		want     map[string]string // key -> JSON value
		absent   []string
	}{
		{
			name:     "state passthrough",
			unsigned: `{"prev_content":{"name":"old"},"replaces_state":"$old","prev_sender":"@bob:test"}`,
			want:     map[string]string{"prev_content": `{"name":"old"}`, "replaces_state": `"$old"`, "prev_sender": `"@bob:test"`},
		},
		{
			name:     "redacted_because passthrough",
			unsigned: `{"redacted_because":{"type":"m.room.redaction"}}`,
			want:     map[string]string{"redacted_because": `{"type":"m.room.redaction"}`},
		},
		{
			name:     "other keys dropped",
			unsigned: `{"age_ts":5,"secret":"x","prev_content":{}}`,
			want:     map[string]string{"prev_content": `{}`},
			absent:   []string{"age_ts", "secret"},
		},
		{name: "malformed unsigned ignored", unsigned: `[1,2]`, absent: []string{"prev_content"}},
		{name: "no unsigned", unsigned: ``, absent: []string{"prev_content", "replaces_state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := testEvent("m.room.name", `{"name":"new"}`)
			ev.StateKey = new("")
			ev.PDU.Unsigned = []byte(tt.unsigned)
			u := ev.Client(ClientOptions{}).Unsigned
			for k, want := range tt.want {
				b, err := json.Marshal(u[k])
				if err != nil || string(b) != want {
					t.Errorf("unsigned.%s = %s (%v), want %s", k, b, err, want)
				}
			}
			for _, k := range tt.absent {
				if _, ok := u[k]; ok {
					t.Errorf("unsigned.%s present: %v", k, u[k])
				}
			}
		})
	}
}

func TestClientAge(t *testing.T) {
	now := time.Now().UnixMilli()
	tests := []struct {
		name    string
		ts      int64
		present bool
		min     int64
	}{
		{"past event", now - 5000, true, 5000},
		{"just sent", now, true, 0},
		{"clock skew: future event has no age", now + 60_000, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := testEvent("m.room.message", `{}`)
			ev.TS = tt.ts
			ce := ev.Client(ClientOptions{})
			age, ok := ce.Unsigned["age"].(int64)
			if ok != tt.present {
				t.Fatalf("age present = %v (unsigned %v), want %v", ok, ce.Unsigned, tt.present)
			}
			if ok && (age < tt.min || age > tt.min+60_000) {
				t.Errorf("age = %d, want about %d", age, tt.min)
			}
			if !ok && ce.Unsigned != nil {
				t.Errorf("unsigned = %v, want it omitted", ce.Unsigned)
			}
		})
	}
}

func TestClientFields(t *testing.T) {
	ev := testEvent("m.room.topic", ``)
	ev.StateKey = new("")
	ce := ev.Client(ClientOptions{})
	if string(ce.Content) != "{}" {
		t.Errorf("empty content rendered as %q, want {}", ce.Content)
	}
	if ce.EventID != "$ev" || ce.Sender != "@alice:test" || ce.Type != "m.room.topic" || ce.OriginServerTS != ev.TS {
		t.Errorf("client event = %+v", ce)
	}
	if ce.StateKey == nil || *ce.StateKey != "" {
		t.Errorf("state_key = %v, want empty string", ce.StateKey)
	}
	b, _ := json.Marshal(testEvent("m.room.message", `{"body":"x"}`).Client(ClientOptions{}))
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	if _, ok := m["state_key"]; ok {
		t.Errorf("message event has a state_key: %s", b)
	}
	if _, ok := m["redacts"]; ok {
		t.Errorf("message event has redacts: %s", b)
	}
}

func TestRelationOf(t *testing.T) {
	tests := []struct {
		name      string
		content   string
		relType   string
		relatesTo id.EventID
		threadID  id.EventID
	}{
		{"thread", `{"m.relates_to":{"rel_type":"m.thread","event_id":"$root","is_falling_back":true,"m.in_reply_to":{"event_id":"$last"}}}`, "m.thread", "$root", "$root"},
		{"edit", `{"m.new_content":{"body":"x"},"m.relates_to":{"rel_type":"m.replace","event_id":"$orig"}}`, "m.replace", "$orig", ""},
		{"annotation", `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$msg","key":"👍"}}`, "m.annotation", "$msg", ""},
		{"reference", `{"m.relates_to":{"rel_type":"m.reference","event_id":"$ref"}}`, "m.reference", "$ref", ""},
		{"reply only", `{"m.relates_to":{"m.in_reply_to":{"event_id":"$q"}}}`, "", "", ""},
		{"no relation", `{"body":"hi"}`, "", "", ""},
		{"null relates_to", `{"m.relates_to":null}`, "", "", ""},
		{"relates_to not an object", `{"m.relates_to":"$x"}`, "", "", ""},
		{"event_id not a string", `{"m.relates_to":{"rel_type":"m.thread","event_id":5}}`, "", "", ""},
		{"content not JSON", `{"m.relates_to":`, "", "", ""},
		{"empty content", ``, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, to, th := relationOf([]byte(tt.content))
			if rt != tt.relType || to != tt.relatesTo || th != tt.threadID {
				t.Errorf("relationOf = (%q, %q, %q), want (%q, %q, %q)", rt, to, th, tt.relType, tt.relatesTo, tt.threadID)
			}
		})
	}
}

// reflectedClientEvent is ClientEvent without its MarshalJSONTo method:
// what encoding/json writes from the struct tags alone.
type reflectedClientEvent ClientEvent

// TestClientEventMarshalMatchesReflection checks that the hand-written
// encoding of a client event is byte for byte encoding/json's (as
// json.Marshal and as the HTTP layer's v1 options write it) for random
// events: HTML and non-ASCII characters, escapes and spaces in content,
// optional fields set or not, and the unsigned value types events carry.
func TestClientEventMarshalMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	strs := []string{"", "a", "<b>&amp;</b>", "é\u2028ü", "\"quoted\\\"", "\x00\x1f", "\xff\xfe", "😀", "@u:example.org"}
	raws := []string{`{}`, `{"body":"<p>hi & bye</p>"}`, `{ "a" : [1, 2.50, true, null] , "b":"\u00e9\u2029"}`, `{"nested":{"k":"v"}}`, `"s"`, `null`}
	plain := []string{"", "a", "@u:example.org", "m.room.message", "$ev_-/+=:x.y"}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	pickStr := func() string {
		if rng.IntN(10) < 8 {
			return pick(plain) // most events take the shortcut for plain strings
		}
		return pick(strs)
	}
	for i := range 2000 {
		ce := &ClientEvent{
			Content:        json.RawMessage(pick(raws)),
			EventID:        id.EventID("$" + pickStr()),
			OriginServerTS: rng.Int64N(1 << 42),
			Sender:         id.UserID(pickStr()),
			Type:           pickStr(),
		}
		if rng.IntN(2) == 0 {
			ce.RoomID = id.RoomID(pickStr())
		}
		if rng.IntN(2) == 0 {
			sk := pickStr()
			ce.StateKey = &sk
		}
		if rng.IntN(3) == 0 {
			ce.Redacts = id.EventID(pickStr())
		}
		if rng.IntN(5) == 0 {
			ce.Content = nil
		}
		if n := rng.IntN(6); n > 0 {
			ce.Unsigned = map[string]any{}
			keys := []string{"age", "membership", "transaction_id", "prev_content", "replaces_state", "prev_sender", "redacted_because", "m.relations", "z<&>", "ünï"}
			for range n {
				switch k := keys[rng.IntN(len(keys))]; rng.IntN(6) {
				case 0:
					ce.Unsigned[k] = rng.Int64N(1<<40) - 5
				case 1:
					ce.Unsigned[k] = pickStr()
				case 2:
					ce.Unsigned[k] = json.RawMessage(pick(raws))
				case 3:
					ce.Unsigned[k] = map[string]any{"m.replace": &ClientEvent{Content: json.RawMessage(pick(raws)), EventID: "$e", Unsigned: map[string]any{"age": int64(3)}}}
				case 4:
					ce.Unsigned[k] = id.EventID(pickStr())
				default:
					ce.Unsigned[k] = json.RawMessage(nil)
				}
			}
		}
		got, err := json.Marshal(ce)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		want, err := json.Marshal((*reflectedClientEvent)(ce))
		if err != nil {
			t.Fatalf("event %d (reflection): %v", i, err)
		}
		if string(got) != string(want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
		got2, err := jsonv2.Marshal([]any{ce}, json.DefaultOptionsV1())
		if err != nil {
			t.Fatalf("event %d (v2): %v", i, err)
		}
		if want := "[" + string(want) + "]"; string(got2) != want {
			t.Fatalf("event %d (v2 with v1 options):\n got %s\nwant %s", i, got2, want)
		}
	}
}

// BenchmarkClientEventMarshal encodes the client events of a sync
// timeline under the HTTP layer's options.
func BenchmarkClientEventMarshal(b *testing.B) {
	sk := ""
	evs := make([]any, 100)
	for i := range evs {
		ce := &ClientEvent{
			Content: json.RawMessage(`{"msgtype":"m.text","body":"message ` + strconv.Itoa(i) + `"}`),
			EventID: "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", OriginServerTS: 1700000000000 + int64(i),
			Sender: "@bench:localhost", Type: "m.room.message",
			Unsigned: map[string]any{"age": int64(1234), "membership": "join"},
		}
		if i%2 == 0 {
			ce.StateKey, ce.Type = &sk, "m.room.name"
		}
		evs[i] = ce
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jsonv2.Marshal(evs, json.DefaultOptionsV1()); err != nil {
			b.Fatal(err)
		}
	}
}
