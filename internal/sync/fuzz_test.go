package sync_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/sync"
)

// FuzzParseToken checks that ParseToken never panics and that every token
// it accepts is non-negative and survives a String round trip.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"", "s0_0", "s12_3", "s12", "s12_", "s-1_0", "s1_-1", "t1_1", "s", "s_1", "s01_02",
		"s9223372036854775807_9223372036854775807", "s9223372036854775808_0", "s1_2_3", "s+1_0", "s 1_0", "s1e3_0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := sync.ParseToken(s)
		if err != nil {
			return
		}
		if tok.Pos < 0 || tok.Eph < 0 {
			t.Fatalf("ParseToken(%q) = %+v: negative", s, tok)
		}
		back, err := sync.ParseToken(tok.String())
		if err != nil || back.Pos != tok.Pos || back.Eph != tok.Eph {
			t.Fatalf("ParseToken(%q) = %+v, but its String %q parses as %+v, %v", s, tok, tok.String(), back, err)
		}
	})
}

// FuzzFilter decodes filters the way /sync and /filter do and uses them:
// nothing may panic, and an accepted filter survives a JSON round trip.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"room":{"timeline":{"limit":5,"types":["m.room.*"],"not_senders":["@a:b"]},"include_leave":true}}`,
		`{"room":{"state":{"lazy_load_members":true},"rooms":["!a:b"],"not_rooms":["!c:d"]}}`,
		`{"presence":{"types":["*"]},"account_data":{"not_types":["[","\\"]}}`,
		`{"room":{"timeline":{"limit":-5}}}`, `{"room":{"timeline":{"limit":1e10}}}`,
		`{"event_fields":["content.body"],"event_format":"client"}`, `{"room":{"timeline":{"types":null}}}`,
		`{"room":1}`, `[`, `{"room":{"timeline":{"senders":[1]}}}`,
	} {
		f.Add(s, "m.room.message", "@alice:example.org", "!room:example.org")
	}
	f.Fuzz(func(t *testing.T, raw, typ, sender, room string) {
		var filter sync.Filter
		if err := mxhttp.Unmarshal([]byte(raw), &filter); err != nil {
			return
		}
		if n := filter.TimelineLimit(); n < 0 || n > 1000 {
			t.Fatalf("TimelineLimit = %d out of range for %s", n, raw)
		}
		filter.LazyLoadMembers()
		filter.Presence.Allows(typ, id.UserID(sender))
		filter.AccountData.Allows(typ, id.UserID(sender))
		if r := filter.Room; r != nil {
			r.AllowsRoom(id.RoomID(room))
			for _, ef := range []*sync.RoomEventFilter{r.Timeline, r.State, r.Ephemeral, r.AccountData} {
				ef.AllowsRoom(id.RoomID(room))
				if ef != nil {
					ef.Allows(typ, id.UserID(sender))
				}
			}
		}
		b, err := json.Marshal(filter)
		if err != nil {
			t.Fatalf("marshal accepted filter %s: %v", raw, err)
		}
		var again sync.Filter
		if err := mxhttp.Unmarshal(b, &again); err != nil {
			t.Fatalf("stored filter %s does not decode: %v", b, err)
		}
		if !reflect.DeepEqual(filter, again) {
			t.Fatalf("filter changed in a round trip:\n%#v\n%#v", filter, again)
		}
	})
}
