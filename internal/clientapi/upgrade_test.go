package clientapi_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func upgrade(t *testing.T, c *mautrix.Client, room id.RoomID, body map[string]any) *testnode.Response {
	t.Helper()
	return testnode.Call(t, c, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/upgrade", body)
}

// upgraded upgrades the room, which must succeed, and returns the new one.
func upgraded(t *testing.T, c *mautrix.Client, room id.RoomID, body map[string]any) id.RoomID {
	t.Helper()
	return testnode.Decode[struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}](t, upgrade(t, c, room, body).Want(t, 200, "").Body).ReplacementRoom
}

func state(t *testing.T, c *mautrix.Client, room id.RoomID, typ event.Type) map[string]any {
	t.Helper()
	var out map[string]any
	if err := c.StateEvent(context.Background(), room, typ, "", &out); err != nil {
		t.Fatalf("%s in %s: %v", typ.Type, room, err)
	}
	return out
}

func TestUpgrade(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", Visibility: "public", RoomVersion: id.RoomV10,
			Name: "Old", Topic: "old topic", RoomAliasName: "upgrade-me",
		})
		if err != nil {
			t.Fatal(err)
		}
		old := created.RoomID
		if _, err := bob.JoinRoomByID(ctx, old); err != nil {
			t.Fatal(err)
		}
		pl := state(t, alice, old, event.StatePowerLevels)
		pl["users"].(map[string]any)[bob.UserID.String()] = 50
		if _, err := alice.SendStateEvent(ctx, old, event.StatePowerLevels, "", pl); err != nil {
			t.Fatal(err)
		}
		pinned := send(t, alice, old, event.EventMessage, text("pin me"))
		if _, err := alice.SendStateEvent(ctx, old, event.StatePinnedEvents, "", map[string]any{"pinned": []id.EventID{pinned}}); err != nil {
			t.Fatal(err)
		}

		// Refusals.
		upgrade(t, bob, old, map[string]any{"new_version": "11"}).Want(t, 403, "M_FORBIDDEN")
		upgrade(t, alice, old, map[string]any{"new_version": "999"}).Want(t, 400, "M_UNSUPPORTED_ROOM_VERSION")
		upgrade(t, alice, old, map[string]any{}).Want(t, 400, "M_MISSING_PARAM")

		newRoom := upgraded(t, alice, old, map[string]any{"new_version": "11"})

		create := state(t, alice, newRoom, event.StateCreate)
		pred, _ := create["predecessor"].(map[string]any)
		if create["room_version"] != "11" || pred["room_id"] != old.String() || pred["event_id"] == nil {
			t.Fatalf("create content: %v", create)
		}
		for typ, want := range map[event.Type][2]string{
			event.StateRoomName:          {"name", "Old"},
			event.StateTopic:             {"topic", "old topic"},
			event.StateJoinRules:         {"join_rule", "public"},
			event.StateCanonicalAlias:    {"alias", "#upgrade-me:localhost"},
			event.StateHistoryVisibility: {"history_visibility", "shared"},
		} {
			if got := state(t, alice, newRoom, typ); got[want[0]] != want[1] {
				t.Errorf("%s in the new room: %v, want %s=%s", typ.Type, got, want[0], want[1])
			}
		}
		newPL := state(t, alice, newRoom, event.StatePowerLevels)["users"].(map[string]any)
		if newPL[alice.UserID.String()] != float64(100) || newPL[bob.UserID.String()] != float64(50) {
			t.Fatalf("users in the new power levels: %v", newPL)
		}
		if got := state(t, alice, newRoom, event.StatePinnedEvents)["pinned"]; len(got.([]any)) != 1 {
			t.Fatalf("pinned events not copied: %v", got)
		}
		// The alias and the directory listing moved.
		resolved, err := bob.ResolveAlias(ctx, "#upgrade-me:localhost")
		if err != nil || resolved.RoomID != newRoom {
			t.Fatalf("alias resolves to %v (%v), want %s", resolved, err, newRoom)
		}
		dir, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{})
		if err != nil {
			t.Fatal(err)
		}
		var listed []id.RoomID
		for _, r := range dir.Chunk {
			listed = append(listed, r.RoomID)
		}
		if !slices.Contains(listed, newRoom) || slices.Contains(listed, old) {
			t.Fatalf("directory lists %v; want %s and not %s", listed, newRoom, old)
		}
		// The old room is tombstoned and muted.
		if got := state(t, bob, old, event.StateTombstone); got["replacement_room"] != newRoom.String() {
			t.Fatalf("tombstone: %v", got)
		}
		oldPL := state(t, bob, old, event.StatePowerLevels)
		if oldPL["events_default"].(float64) < 50 || oldPL["invite"].(float64) < 50 {
			t.Fatalf("old room's power levels not restricted: %v", oldPL)
		}
		if got := state(t, bob, old, event.StateCanonicalAlias); got["alias"] != nil {
			t.Fatalf("old room keeps its canonical alias: %v", got)
		}

		// To v12: no predecessor event, additional creators, no creators
		// in the power levels.
		if _, err := bob.JoinRoomByID(ctx, newRoom); err != nil {
			t.Fatal(err)
		}
		v12 := upgraded(t, alice, newRoom, map[string]any{"new_version": "12", "additional_creators": []id.UserID{bob.UserID}})
		create = state(t, alice, v12, event.StateCreate)
		pred, _ = create["predecessor"].(map[string]any)
		if pred["room_id"] != newRoom.String() || pred["event_id"] != nil {
			t.Fatalf("v12 predecessor: %v", create)
		}
		if ac, _ := create["additional_creators"].([]any); len(ac) != 1 || ac[0] != bob.UserID.String() {
			t.Fatalf("additional_creators: %v", create)
		}
		users := state(t, alice, v12, event.StatePowerLevels)["users"].(map[string]any)
		if _, ok := users[alice.UserID.String()]; ok {
			t.Fatalf("creators must not be in v12 power levels: %v", users)
		}
		if _, ok := users[bob.UserID.String()]; ok {
			t.Fatalf("additional creators must not be in v12 power levels: %v", users)
		}
		// Bob, an additional creator, may upgrade the room in turn (once
		// joined), back to a version without privileged creators.
		if _, err := bob.JoinRoomByID(ctx, v12); err != nil {
			t.Fatal(err)
		}
		v11 := upgraded(t, bob, v12, map[string]any{"new_version": "11"})
		users = state(t, bob, v11, event.StatePowerLevels)["users"].(map[string]any)
		if users[alice.UserID.String()] != float64(100) || users[bob.UserID.String()] != float64(100) {
			t.Fatalf("v12 creators keep their power as levels: %v", users)
		}
	})
}

// TestUpgradeCopiesPushRules checks that local users' room push rules follow
// a room upgrade when they join the new room: the upgrader's at once, another
// member's on joining, each with its actions and enabled flag; a membership
// change that is no join (a new display name) does not bring back a rule the
// user deleted; a room created by hand with a predecessor copies the
// creator's rule too (Complement's TestPushRuleRoomUpgrade).
func TestUpgradeCopiesPushRules(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		old := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: id.RoomV10})
		if _, err := bob.JoinRoomByID(ctx, old); err != nil {
			t.Fatal(err)
		}
		rule := func(room id.RoomID) string {
			return "/_matrix/client/v3/pushrules/global/room/" + url.PathEscape(string(room))
		}
		testnode.Call(t, alice, "PUT", rule(old), map[string]any{"actions": []string{}}).Want(t, 200, "")
		testnode.Call(t, bob, "PUT", rule(old), map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "ping"}}}).Want(t, 200, "")
		testnode.Call(t, bob, "PUT", rule(old)+"/enabled", map[string]any{"enabled": false}).Want(t, 200, "")

		repl := upgraded(t, alice, old, map[string]any{"new_version": "11"})
		got := testnode.Call(t, alice, "GET", rule(repl), nil).Want(t, 200, "").JSON(t)
		if actions, _ := got["actions"].([]any); len(actions) != 0 || got["enabled"] != true {
			t.Fatalf("alice's copied rule: %v", got)
		}
		testnode.Call(t, bob, "GET", rule(repl), nil).Want(t, 404, "M_NOT_FOUND")
		if _, err := bob.JoinRoomByID(ctx, repl); err != nil {
			t.Fatal(err)
		}
		got = testnode.Call(t, bob, "GET", rule(repl), nil).Want(t, 200, "").JSON(t)
		if actions, _ := got["actions"].([]any); len(actions) != 2 || actions[0] != "notify" || got["enabled"] != false {
			t.Fatalf("bob's copied rule: %v", got)
		}
		// The old rules stay.
		testnode.Call(t, bob, "GET", rule(old), nil).Want(t, 200, "")

		// A new display name is a join on a join, not a join: no copy.
		testnode.Call(t, bob, "DELETE", rule(repl), nil).Want(t, 200, "")
		testnode.SendState(t, bob, repl, event.StateMember, bob.UserID.String(), map[string]any{"membership": "join", "displayname": "Bobby"})
		testnode.Call(t, bob, "GET", rule(repl), nil).Want(t, 404, "M_NOT_FOUND")

		// An upgrade by hand: a room whose create event names a predecessor.
		manual := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{RoomVersion: id.RoomV11,
			CreationContent: map[string]any{"predecessor": map[string]any{"room_id": old}}})
		testnode.Call(t, bob, "GET", rule(manual), nil).Want(t, 200, "")
	})
}
