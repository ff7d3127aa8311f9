package node_test

import (
	"context"
	"maps"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestEveryRoomVersion creates a room of each supported version and runs
// the basics through it: join, message, state change, redaction.
func TestEveryRoomVersion(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	for _, v := range rooms.SupportedVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: v, Preset: "public_chat", Name: "v" + string(v)})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatalf("join: %v", err)
			}
			sent, err := bob.SendText(ctx, room.RoomID, "hi")
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			topic, err := alice.SendStateEvent(ctx, room.RoomID, event.StateTopic, "", map[string]string{"topic": "t"})
			if err != nil {
				t.Fatalf("state: %v", err)
			}
			if _, err := alice.RedactEvent(ctx, room.RoomID, topic.EventID); err != nil {
				t.Fatalf("redact state: %v", err)
			}
			var content map[string]any
			if err := bob.StateEvent(ctx, room.RoomID, event.StateTopic, "", &content); err != nil || len(content) != 0 {
				t.Fatalf("redacted state event still has content %v (%v)", content, err)
			}
			if _, err := alice.RedactEvent(ctx, room.RoomID, sent.EventID); err != nil {
				t.Fatalf("redact: %v", err)
			}
			ev, err := bob.GetEvent(ctx, room.RoomID, sent.EventID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if len(ev.Content.Raw) != 0 {
				t.Fatalf("not redacted: %v", ev.Content.Raw)
			}
			var create event.CreateEventContent
			if err := alice.StateEvent(ctx, room.RoomID, event.StateCreate, "", &create); err != nil {
				t.Fatal(err)
			}
			if create.RoomVersion != id.RoomVersion(v) {
				t.Fatalf("room_version %q", create.RoomVersion)
			}
			// Bob may not change the power levels.
			_, err = bob.SendStateEvent(ctx, room.RoomID, event.StatePowerLevels, "", map[string]any{"users": map[string]int{string(bob.UserID): 100}})
			testnode.WantErr(t, err, "M_FORBIDDEN", 403)
		})
	}
}

// TestUnstableFeatures: /versions advertises exactly the unstable feature
// flags of what the node implements (Element sets up cross-signing only
// when it sees org.matrix.e2e_cross_signing), and no other.
func TestUnstableFeatures(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	body := n.Do(t, "GET", "/_matrix/client/versions", "", nil).OK(t)
	want := map[string]any{
		"org.matrix.e2e_cross_signing":  true, // cross-signing keys
		"org.matrix.msc2285.stable":     true, // private read receipts
		"org.matrix.msc3440.stable":     true, // threads
		"org.matrix.msc3391":            true, // deleting account data
		"org.matrix.msc3827.stable":     true, // room_types in /publicRooms
		"org.matrix.msc3874":            true, // rel_types filters
		"org.matrix.msc3890":            true, // local notification settings
		"org.matrix.msc3916.stable":     true, // authenticated media
		"org.matrix.msc4108":            true, // QR code login rendezvous
		"org.matrix.msc4140":            true, // delayed events
		"org.matrix.msc4222":            true, // state_after in /sync
		"org.matrix.msc4306":            true, // thread subscriptions
		"org.matrix.msc4308":            true, // their sliding sync extension
		"org.matrix.simplified_msc3575": true, // simplified sliding sync
	}
	if got, _ := body["unstable_features"].(map[string]any); !maps.Equal(got, want) {
		t.Fatalf("unstable_features = %v, want %v", body["unstable_features"], want)
	}
}

// TestNoServerDelegation: /.well-known/matrix/server is not served while
// the node does not federate (it would send other servers here for
// nothing); /.well-known/matrix/client still is.
func TestNoServerDelegation(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	n.Do(t, "GET", "/.well-known/matrix/server", "", nil).Want(t, 404, "M_NOT_FOUND")
	n.Do(t, "GET", "/.well-known/matrix/client", "", nil).OK(t)
}
