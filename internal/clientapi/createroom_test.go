package clientapi_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestCreateRoomAliasName: createRoom refuses a room_alias_name that makes
// no valid alias (M_INVALID_PARAM) or a taken one (M_ROOM_IN_USE) before
// it creates anything, and PUT /directory/room applies the same rule.
func TestCreateRoomAliasName(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	createRoom := func(body map[string]any) *testnode.Response {
		return testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", body)
	}
	joined := func() int {
		t.Helper()
		rooms, err := alice.JoinedRooms(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(rooms.JoinedRooms)
	}
	taken := createRoom(map[string]any{"room_alias_name": "taken"}).OK(t)
	if joined() != 1 {
		t.Fatalf("alice is in %d rooms after creating one", joined())
	}
	for _, tc := range []struct {
		name, aliasName, code string
	}{
		{"too long", strings.Repeat("a", 300), "M_INVALID_PARAM"},
		{"empty", "", "M_INVALID_PARAM"},
		{"colon", "a:b", "M_INVALID_PARAM"},
		{"hash", "#a", "M_INVALID_PARAM"},
		{"space", "a b", "M_INVALID_PARAM"},
		{"newline", "a\nb", "M_INVALID_PARAM"},
		{"taken", "taken", "M_ROOM_IN_USE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			createRoom(map[string]any{"room_alias_name": tc.aliasName, "name": "not created"}).Want(t, 400, tc.code)
			if got := joined(); got != 1 {
				t.Fatalf("a refused createRoom left alice in %d rooms, want 1", got)
			}
			if tc.code == "M_INVALID_PARAM" && tc.aliasName != "" {
				path := testnode.V3 + "/directory/room/" + url.PathEscape("#"+tc.aliasName+":localhost")
				testnode.Call(t, alice, "PUT", path, map[string]any{"room_id": taken["room_id"]}).Want(t, 400, "M_INVALID_PARAM")
			}
		})
	}
	// The longest alias that fits is accepted.
	longest := strings.Repeat("b", 255-len("#:localhost"))
	createRoom(map[string]any{"room_alias_name": longest}).OK(t)
	if joined() != 2 {
		t.Fatalf("alice is in %d rooms after creating two", joined())
	}
}

// TestCreateRoomConcurrent: a bot creating 20 rooms at once with the same
// request gets 20 rooms, in the default room version (v12, where the room
// ID is the create event's hash) too.
func TestCreateRoomConcurrent(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	const count = 20
	ids := make([]id.RoomID, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() {
			resp, err := alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "same"})
			if err == nil {
				ids[i] = resp.RoomID
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[id.RoomID]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("createRoom %d: %v", i, err)
		}
		seen[ids[i]] = true
	}
	if len(seen) != count {
		t.Fatalf("%d concurrent createRoom calls made %d rooms", count, len(seen))
	}
	rooms, err := alice.JoinedRooms(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms.JoinedRooms) != count {
		t.Errorf("alice is in %d rooms, want %d", len(rooms.JoinedRooms), count)
	}
}

// TestCreateRoomRichTopic: createRoom's topic is written both as topic and
// as the text/plain m.topic representation (spec v1.15), overriding a topic
// in initial_state, which is kept as the client sent it when no topic is
// given. Mirrors Complement's TestRoomCreate topic subtests.
func TestCreateRoomRichTopic(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	initialTopic := []map[string]any{{"type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": "Shenanigans"}}}
	for _, tc := range []struct {
		name string
		req  map[string]any
		want string
		rich bool
	}{
		{"topic", map[string]any{"topic": "Test Room"}, "Test Room", true},
		{"initial_state", map[string]any{"initial_state": initialTopic}, "Shenanigans", false},
		{"topic overrides initial_state", map[string]any{"topic": "Test Room", "initial_state": initialTopic}, "Test Room", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", tc.req).OK(t)["room_id"].(string)
			content := testnode.Call(t, alice, "GET", testnode.V3+"/rooms/"+url.PathEscape(room)+"/state/m.room.topic/", nil).OK(t)
			if content["topic"] != tc.want {
				t.Fatalf("topic = %v, want %q", content["topic"], tc.want)
			}
			rich, ok := content["m.topic"].(map[string]any)
			if !tc.rich {
				if ok {
					t.Fatalf("m.topic = %v, want none", rich)
				}
				return
			}
			texts, _ := rich["m.text"].([]any)
			if len(texts) != 1 {
				t.Fatalf("m.topic = %v, want one m.text representation", content["m.topic"])
			}
			text, _ := texts[0].(map[string]any)
			if text["body"] != tc.want || text["mimetype"] != "text/plain" {
				t.Fatalf("m.text[0] = %v, want text/plain %q", text, tc.want)
			}
		})
	}
}

// TestJoinCustomContent: keys of the /join body beyond the spec's are
// copied into the member event, whether the room is named by ID or alias,
// while membership stays join. Mirrors Complement's TestRoomMembers
// "can join a room with custom content" subtests.
func TestJoinCustomContent(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom",
		map[string]any{"preset": "public_chat", "room_alias_name": "custom"}).OK(t)["room_id"].(string)
	for _, target := range []string{room, "#custom:localhost"} {
		testnode.Call(t, bob, "POST", testnode.V3+"/join/"+url.PathEscape(target),
			map[string]any{"foo": "bar", "membership": "leave", "reason": "hi"}).OK(t)
		member := testnode.Call(t, alice, "GET", testnode.V3+"/rooms/"+url.PathEscape(room)+"/state/m.room.member/"+url.PathEscape(bob.UserID.String()), nil).OK(t)
		if member["foo"] != "bar" || member["membership"] != "join" || member["reason"] != "hi" {
			t.Fatalf("joining %s: member content = %v, want foo bar, membership join, reason hi", target, member)
		}
		testnode.Leave(t, bob, id.RoomID(room))
	}
	testnode.Call(t, bob, "POST", testnode.V3+"/join/"+url.PathEscape(room), map[string]any{"reason": 1}).Want(t, 400, "M_BAD_JSON")
}

// TestCreateRoomInvitePowerLevel: the power levels createRoom gives a
// public room (and so a restricted one, made from the public preset) need
// 50 to invite, so a member cannot invite anyone in, while the creator can;
// in a private chat, as in Synapse's presets, every member may invite
// (Complement's TestRestrictedRoomsRemoteJoinLocalUser and
// TestFederationRoomsInvite rely on both).
func TestCreateRoomInvitePowerLevel(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	for _, tc := range []struct {
		preset, version string
		invite          string
	}{
		{"public_chat", "", "50"},
		{"public_chat", "11", "50"},
		{"private_chat", "", "0"},
		{"trusted_private_chat", "11", "0"},
		{"trusted_private_chat", "12", "0"},
	} {
		t.Run(tc.preset+"/v"+tc.version, func(t *testing.T) {
			body := map[string]any{"preset": tc.preset, "invite": []id.UserID{bob.UserID}}
			if tc.version != "" {
				body["room_version"] = tc.version
			}
			roomID := id.RoomID(testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", body).OK(t)["room_id"].(string))
			if _, err := bob.JoinRoomByID(t.Context(), roomID); err != nil {
				t.Fatalf("bob joins: %v", err)
			}
			var pl struct {
				Invite json.RawMessage `json:"invite"`
			}
			if err := alice.StateEvent(t.Context(), roomID, event.StatePowerLevels, "", &pl); err != nil {
				t.Fatalf("power levels: %v", err)
			}
			if string(pl.Invite) != tc.invite {
				t.Errorf("the power levels' invite = %s, want %s", pl.Invite, tc.invite)
			}
			_, err := bob.InviteUser(t.Context(), roomID, &mautrix.ReqInviteUser{UserID: carol.UserID})
			if tc.invite == "0" && err != nil {
				t.Errorf("bob, a member of a private chat, cannot invite: %v", err)
			}
			if tc.invite == "50" {
				testnode.WantErr(t, err, "M_FORBIDDEN", 403)
				if _, err := alice.InviteUser(t.Context(), roomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
					t.Errorf("the creator cannot invite: %v", err)
				}
			}
		})
	}
}
