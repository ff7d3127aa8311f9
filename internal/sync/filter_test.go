package sync_test

import (
	"encoding/json"
	"encoding/json/jsontext"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/sync"
)

// TestAllowsEventRelTypes: MSC3874's org.matrix.msc3874.rel_types and
// not_rel_types select room events by the rel_type of their m.relates_to;
// not_rel_types wins, and lets events without a relation through.
func TestAllowsEventRelTypes(t *testing.T) {
	plain := &rooms.Event{Type: "m.room.message", Sender: "@a:x"}
	thread := &rooms.Event{Type: "m.room.message", Sender: "@a:x", RelType: "m.thread"}
	reaction := &rooms.Event{Type: "m.reaction", Sender: "@a:x", RelType: "m.annotation"}
	for _, tc := range []struct {
		filter           string
		plain, thr, reac bool
	}{
		{`{}`, true, true, true},
		{`{"org.matrix.msc3874.not_rel_types":["m.thread"]}`, true, false, true},
		{`{"org.matrix.msc3874.rel_types":["m.thread"]}`, false, true, false},
		{`{"org.matrix.msc3874.rel_types":[]}`, false, false, false},
		{`{"org.matrix.msc3874.rel_types":["m.thread","m.annotation"],"org.matrix.msc3874.not_rel_types":["m.thread"]}`, false, false, true},
		{`{"org.matrix.msc3874.not_rel_types":["m.thread"],"types":["m.reaction"]}`, false, false, true},
		// The unprefixed names are not the MSC's until it is in the spec.
		{`{"not_rel_types":["m.thread"]}`, true, true, true},
	} {
		var f sync.RoomEventFilter
		if err := json.Unmarshal([]byte(tc.filter), &f); err != nil {
			t.Fatalf("%s: %v", tc.filter, err)
		}
		for _, c := range []struct {
			name string
			ev   *rooms.Event
			want bool
		}{{"plain", plain, tc.plain}, {"thread", thread, tc.thr}, {"reaction", reaction, tc.reac}} {
			if got := f.AllowsEvent(c.ev); got != c.want {
				t.Errorf("%s: %s event allowed = %v, want %v", tc.filter, c.name, got, c.want)
			}
		}
	}
	var none *sync.RoomEventFilter
	if !none.AllowsEvent(thread) {
		t.Error("no filter refused an event")
	}
}

// TestAllowsEventContainsURL: contains_url true keeps only events whose
// content has a url key, false only those without, and absent ignores it
// (Complement's TestRoomImageRoundtrip filters /messages so).
func TestAllowsEventContainsURL(t *testing.T) {
	withURL := &rooms.Event{Type: "m.room.message", Sender: "@a:x",
		PDU: &pdu.PDU{Content: jsontext.Value(`{"msgtype":"m.file","body":"a.png","url":"mxc://x/a"}`)}}
	without := &rooms.Event{Type: "m.room.message", Sender: "@a:x",
		PDU: &pdu.PDU{Content: jsontext.Value(`{"msgtype":"m.text","body":"see url"}`)}}
	for _, tc := range []struct {
		filter         string
		withURL, noURL bool
	}{
		{`{}`, true, true},
		{`{"contains_url":true}`, true, false},
		{`{"contains_url":false}`, false, true},
	} {
		var f sync.RoomEventFilter
		if err := json.Unmarshal([]byte(tc.filter), &f); err != nil {
			t.Fatalf("%s: %v", tc.filter, err)
		}
		if got := f.AllowsEvent(withURL); got != tc.withURL {
			t.Errorf("%s: event with url allowed = %v, want %v", tc.filter, got, tc.withURL)
		}
		if got := f.AllowsEvent(without); got != tc.noURL {
			t.Errorf("%s: event without url allowed = %v, want %v", tc.filter, got, tc.noURL)
		}
	}
}
