package node_test

import (
	"net/url"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestUnsignedMembership: events served to a user carry unsigned.membership,
// the user's membership at the event including its own change (spec v1.11):
// leave before bob joined, join from his join on, in /sync, /messages,
// /context and /event. After bob leaves, the left room's timeline shows the
// leave. Mirrors Complement's TestMembershipOnEvents.
func TestUnsignedMembership(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	pre := testnode.SendText(t, alice, room, "prejoin")
	testnode.Join(t, bob, room)
	post := testnode.SendText(t, alice, room, "postjoin")

	// check walks events oldest first: leave until bob's join, join after.
	check := func(where string, evs []any, wantAfter string) {
		t.Helper()
		if len(evs) < 4 {
			t.Fatalf("%s: only %d events", where, len(evs))
		}
		want := "leave"
		for _, e := range evs {
			ev := e.(map[string]any)
			if ev["type"] == "m.room.member" && ev["state_key"] == bob.UserID.String() {
				want = wantAfter
			}
			unsigned, _ := ev["unsigned"].(map[string]any)
			if got := unsigned["membership"]; got != want {
				t.Fatalf("%s: event %v %v has unsigned.membership %v, want %s", where, ev["type"], ev["event_id"], got, want)
			}
		}
		if want != wantAfter {
			t.Fatalf("%s: bob's membership event not seen", where)
		}
	}

	filter := url.QueryEscape(`{"room":{"include_leave":true,"timeline":{"limit":50}}}`)
	sync := testnode.Call(t, bob, "GET", testnode.V3+"/sync?filter="+filter, nil).OK(t)
	joined := sync["rooms"].(map[string]any)["join"].(map[string]any)[room.String()].(map[string]any)
	check("sync", joined["timeline"].(map[string]any)["events"].([]any), "join")

	roomPath := testnode.V3 + "/rooms/" + url.PathEscape(room.String())
	chunk := testnode.Call(t, bob, "GET", roomPath+"/messages?dir=f&limit=50", nil).OK(t)["chunk"].([]any)
	check("messages", chunk, "join")

	for ev, want := range map[string]string{pre.String(): "leave", post.String(): "join"} {
		got := testnode.Call(t, bob, "GET", roomPath+"/event/"+url.PathEscape(ev), nil).OK(t)
		if m := got["unsigned"].(map[string]any)["membership"]; m != want {
			t.Fatalf("/event %s: unsigned.membership %v, want %s", ev, m, want)
		}
		ctx := testnode.Call(t, bob, "GET", roomPath+"/context/"+url.PathEscape(ev)+"?limit=0", nil).OK(t)
		if m := ctx["event"].(map[string]any)["unsigned"].(map[string]any)["membership"]; m != want {
			t.Fatalf("/context %s: unsigned.membership %v, want %s", ev, m, want)
		}
	}

	testnode.Leave(t, bob, room)
	sync = testnode.Call(t, bob, "GET", testnode.V3+"/sync?filter="+filter, nil).OK(t)
	left := sync["rooms"].(map[string]any)["leave"].(map[string]any)[room.String()].(map[string]any)
	evs := left["timeline"].(map[string]any)["events"].([]any)
	last := evs[len(evs)-1].(map[string]any)
	if last["state_key"] != bob.UserID.String() || last["unsigned"].(map[string]any)["membership"] != "leave" {
		t.Fatalf("left room's last event %v, want bob's leave with unsigned.membership leave", last)
	}
}
