package ledger_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/testnode"
)

func adminRoomPath(room id.RoomID) string {
	return strings.Replace(ledger.AdminRoomPath, "{roomId}", url.PathEscape(string(room)), 1)
}

// TestAdminSetsRoomLedger: a server admin who is not in the room turns its
// ledger on through the admin API; the node sends the state event as the
// local member with the most power, and the room's messages are logged
// from then on. Asking again sends nothing; turning it off works the same
// way. The room's power levels decide: naming a member without the power,
// or a room where no local member has it, is refused with a reason; a
// caller who is not a server admin, an unknown room and a body without
// "enabled" get the spec's errors.
func TestAdminSetsRoomLedger(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.Join(t, bob, room)
	put := func(c *mautrix.Client, room id.RoomID, body any) *testnode.Response {
		return testnode.Call(t, c, "PUT", adminRoomPath(room), body, testnode.NoSpecCheck())
	}

	got := testnode.Decode[ledger.RoomLedger](t, put(admin, room, map[string]any{"enabled": true}).Want(t, http.StatusOK, "").Body)
	if !got.Enabled || got.Sender != alice.UserID || got.EventID == "" || got.Unchanged {
		t.Fatalf("turned on: %+v, want sent as %s", got, alice.UserID)
	}
	wantLogged(t, n, alice, room, got.EventID)
	msg := testnode.SendText(t, bob, room, "logged")
	wantLogged(t, n, alice, room, msg)
	status := testnode.Decode[ledger.RoomLedger](t, testnode.Call(t, admin, "GET", adminRoomPath(room), nil, testnode.NoSpecCheck()).Want(t, http.StatusOK, "").Body)
	if !status.Enabled || status.EventID != got.EventID {
		t.Fatalf("status: %+v, want on by %s", status, got.EventID)
	}
	again := testnode.Decode[ledger.RoomLedger](t, put(admin, room, map[string]any{"enabled": true}).Want(t, http.StatusOK, "").Body)
	if !again.Unchanged || again.EventID != got.EventID {
		t.Fatalf("asked again: %+v, want unchanged", again)
	}

	refused := put(admin, room, map[string]any{"enabled": false, "sender": bob.UserID}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	if !strings.Contains(string(refused.Body), "has power 0") {
		t.Fatalf("refusal for bob: %s", refused.Body)
	}
	off := testnode.Decode[ledger.RoomLedger](t, put(admin, room, map[string]any{"enabled": false, "sender": alice.UserID}).Want(t, http.StatusOK, "").Body)
	if off.Enabled || off.Sender != alice.UserID {
		t.Fatalf("turned off: %+v", off)
	}
	wantLogged(t, n, alice, room, off.EventID)
	wantNotLogged(t, n, alice, room, testnode.SendText(t, bob, room, "not logged"))

	// Alice leaves: bob, with power 0, is the only local member.
	testnode.Leave(t, alice, room)
	refused = put(admin, room, map[string]any{"enabled": true}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	if !strings.Contains(string(refused.Body), "no user of this server may set") {
		t.Fatalf("refusal without a local member with power: %s", refused.Body)
	}

	put(bob, room, map[string]any{"enabled": true}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	put(admin, "!unknown:"+id.RoomID(n.Config.ServerName), map[string]any{"enabled": true}).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	put(admin, room, map[string]any{}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
}
