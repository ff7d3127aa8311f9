package rooms

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// A valid unpadded base64 SHA-256 (of the empty string).
const testHash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"

// v1Event is a room v1/v2 format event: event_id inside, references as
// [event_id, hashes] pairs.
func v1Event(typ, stateKey, content string) string {
	sk := ""
	if stateKey != "-" {
		sk = `"state_key":"` + stateKey + `",`
	}
	return `{"auth_events":[["$create:test",{"sha256":"` + testHash + `"}],["$pl:test",{"sha256":"` + testHash + `"}]],` +
		`"content":` + content + `,"depth":7,"event_id":"$v1event:test","hashes":{"sha256":"` + testHash + `"},` +
		`"origin_server_ts":1700000000000,"prev_events":[["$prev:test",{"sha256":"` + testHash + `"}]],` +
		`"room_id":"!room:test","sender":"@alice:test","signatures":{"test":{"ed25519:t":"c2ln"}},` + sk +
		`"type":"` + typ + `","unsigned":{"age_ts":1}}`
}

// v3Event is a room v3+ format event: no event_id, references as IDs.
func v3Event(typ, stateKey, content string) string {
	sk := ""
	if stateKey != "-" {
		sk = `"state_key":"` + stateKey + `",`
	}
	return `{"auth_events":["$create","$pl"],"content":` + content + `,"depth":7,` +
		`"hashes":{"sha256":"` + testHash + `"},"origin_server_ts":1700000000000,"prev_events":["$prev"],` +
		`"room_id":"!room:test","sender":"@alice:test","signatures":{"test":{"ed25519:t":"c2ln"}},` + sk +
		`"type":"` + typ + `","unsigned":{"age_ts":1}}`
}

func TestParsePDU(t *testing.T) {
	tests := []struct {
		name       string
		raw        string
		prevEvents []id.EventID
		authEvents []id.EventID
		stateKey   *string
	}{
		{"v1 message", v1Event("m.room.message", "-", `{"body":"hi"}`), []id.EventID{"$prev:test"}, []id.EventID{"$create:test", "$pl:test"}, nil},
		{"v1 state", v1Event("m.room.member", "@bob:test", `{"membership":"join"}`), []id.EventID{"$prev:test"}, []id.EventID{"$create:test", "$pl:test"}, new("@bob:test")},
		{"v3 message", v3Event("m.room.message", "-", `{"body":"hi"}`), []id.EventID{"$prev"}, []id.EventID{"$create", "$pl"}, nil},
		{"v3 state", v3Event("m.room.topic", "", `{"topic":"t"}`), []id.EventID{"$prev"}, []id.EventID{"$create", "$pl"}, new("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePDU([]byte(tt.raw))
			if err != nil {
				t.Fatalf("parsePDU: %v", err)
			}
			if !slices.Equal(p.PrevEvents, tt.prevEvents) {
				t.Errorf("prev_events = %v, want %v", p.PrevEvents, tt.prevEvents)
			}
			if !slices.Equal(p.AuthEvents, tt.authEvents) {
				t.Errorf("auth_events = %v, want %v", p.AuthEvents, tt.authEvents)
			}
			if (p.StateKey == nil) != (tt.stateKey == nil) || (p.StateKey != nil && *p.StateKey != *tt.stateKey) {
				t.Errorf("state_key = %v, want %v", p.StateKey, tt.stateKey)
			}
			if p.Depth != 7 || p.OriginServerTS != 1700000000000 || p.RoomID != "!room:test" || p.Sender != "@alice:test" {
				t.Errorf("parsed = %+v", p)
			}
			if p.Hashes == nil || len(p.Hashes.SHA256) != 32 {
				t.Errorf("hashes = %+v", p.Hashes)
			}
			if p.Signatures["test"]["ed25519:t"] != "c2ln" {
				t.Errorf("signatures = %v", p.Signatures)
			}
			if gjson.GetBytes(p.Content, "body").Str == "" && gjson.GetBytes(p.Content, "membership").Str == "" && gjson.GetBytes(p.Content, "topic").Str == "" {
				t.Errorf("content lost: %s", p.Content)
			}
		})
	}
}

func TestParsePDUErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"not JSON", `{"type":`},
		{"v1 reference not a pair", `{"event_id":"$e","prev_events":[["$p"]],"content":{},"type":"m.room.message"}`},
		{"v1 reference hashes not an object", `{"event_id":"$e","prev_events":[["$p","x"]],"content":{},"type":"m.room.message"}`},
		{"v3 prev_events as pairs", `{"prev_events":[["$p",{}]],"content":{},"type":"m.room.message"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := parsePDU([]byte(tt.raw)); err == nil {
				t.Errorf("parsePDU(%s) = %+v, want an error", tt.raw, p)
			}
		})
	}
}

func TestRedactStored(t *testing.T) {
	unsigned := []byte(`{"redacted_because":{"event_id":"$red"}}`)
	tests := []struct {
		name    string
		raw     string
		version id.RoomVersion
		content string // the redacted content, compared as JSON
	}{
		{"v1 message", v1Event("m.room.message", "-", `{"body":"secret","msgtype":"m.text"}`), id.RoomV1, `{}`},
		{"v1 member", v1Event("m.room.member", "@bob:test", `{"membership":"join","displayname":"Bob"}`), id.RoomV1, `{"membership":"join"}`},
		{"v2 create keeps only creator", v1Event("m.room.create", "", `{"creator":"@alice:test","room_version":"2","m.federate":true}`), id.RoomV2, `{"creator":"@alice:test"}`},
		{"v3 message", v3Event("m.room.message", "-", `{"body":"secret"}`), id.RoomV3, `{}`},
		{"v10 member", v3Event("m.room.member", "@bob:test", `{"membership":"join","displayname":"Bob","avatar_url":"mxc://a/b"}`), id.RoomV10, `{"membership":"join"}`},
		{"v10 create keeps only creator", v3Event("m.room.create", "", `{"creator":"@alice:test","room_version":"10","m.federate":true}`), id.RoomV10, `{"creator":"@alice:test"}`},
		{"v11 create keeps everything", v3Event("m.room.create", "", `{"room_version":"11","m.federate":true}`), id.RoomV11, `{"room_version":"11","m.federate":true}`},
		{"v10 power levels drop invite", v3Event("m.room.power_levels", "", `{"users":{"@alice:test":100},"invite":50,"notifications":{"room":50}}`), id.RoomV10, `{"users":{"@alice:test":100}}`},
		{"v11 power levels keep invite", v3Event("m.room.power_levels", "", `{"users":{"@alice:test":100},"invite":50,"notifications":{"room":50}}`), id.RoomV11, `{"users":{"@alice:test":100},"invite":50}`},
		{"v10 redaction content emptied", v3Event("m.room.redaction", "-", `{"redacts":"$x","reason":"r"}`), id.RoomV10, `{}`},
		{"v11 redaction keeps redacts", v3Event("m.room.redaction", "-", `{"redacts":"$x","reason":"r"}`), id.RoomV11, `{"redacts":"$x"}`},
		{"v12 join rules keep allow", v3Event("m.room.join_rules", "", `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!s:test"}],"x":1}`), id.RoomV12, `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!s:test"}]}`},
		{"v12 history visibility kept", v3Event("m.room.history_visibility", "", `{"history_visibility":"joined","x":1}`), id.RoomV12, `{"history_visibility":"joined"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := redactStored([]byte(tt.raw), tt.version, unsigned)
			if err != nil {
				t.Fatalf("redactStored: %v", err)
			}
			if !jsonEqual(t, []byte(gjson.GetBytes(out, "content").Raw), []byte(tt.content)) {
				t.Errorf("content = %s, want %s", gjson.GetBytes(out, "content").Raw, tt.content)
			}
			if !jsonEqual(t, []byte(gjson.GetBytes(out, "unsigned").Raw), unsigned) {
				t.Errorf("unsigned = %s, want %s", gjson.GetBytes(out, "unsigned").Raw, unsigned)
			}
			// The format is kept: v1 events keep event_id and pair
			// references, v3+ events have neither.
			v1 := usesV1Format(tt.version)
			if got := gjson.GetBytes(out, "event_id").Exists(); got != v1 {
				t.Errorf("event_id present = %v, want %v: %s", got, v1, out)
			}
			if got := gjson.GetBytes(out, "prev_events.0").IsArray(); got != v1 {
				t.Errorf("prev_events as pairs = %v, want %v: %s", got, v1, out)
			}
			// Everything outside content survives, and the result parses.
			for _, k := range []string{"sender", "room_id", "type", "depth", "hashes", "signatures", "auth_events", "origin_server_ts"} {
				if gjson.GetBytes(out, k).Raw != gjson.Get(tt.raw, k).Raw {
					t.Errorf("%s changed: %s -> %s", k, gjson.Get(tt.raw, k).Raw, gjson.GetBytes(out, k).Raw)
				}
			}
			if gjson.GetBytes(out, "redacts").Exists() {
				t.Errorf("top-level redacts survived: %s", out)
			}
			if _, err := parsePDU(out); err != nil {
				t.Errorf("redacted event does not parse: %v", err)
			}
		})
	}
}

func TestRedactStoredTopLevelRedacts(t *testing.T) {
	// Before v11 a redaction names its target at the top level; redacting
	// the redaction drops it.
	raw := `{"auth_events":[],"content":{"reason":"r"},"depth":3,"event_id":"$r:test","origin_server_ts":1,` +
		`"prev_events":[],"redacts":"$target:test","room_id":"!room:test","sender":"@alice:test","type":"m.room.redaction"}`
	out, err := redactStored([]byte(raw), id.RoomV1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(out, "redacts").Exists() || gjson.GetBytes(out, "content.reason").Exists() {
		t.Errorf("redacted redaction = %s", out)
	}
	if gjson.GetBytes(out, "unsigned").Exists() {
		t.Errorf("nil unsigned rendered: %s", out)
	}
}

func TestRedactStoredErrors(t *testing.T) {
	for _, raw := range []string{`{"content":`, `{"event_id":"$e","prev_events":[1]}`} {
		if out, err := redactStored([]byte(raw), id.RoomV10, nil); err == nil {
			t.Errorf("redactStored(%s) = %s, want an error", raw, out)
		}
	}
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Errorf("bad JSON %q: %v", a, err)
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Errorf("bad JSON %q: %v", b, err)
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
