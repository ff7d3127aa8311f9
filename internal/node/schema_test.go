package node_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// specCall makes a request that must succeed with 200 and whose operation
// must be in the spec (Do checks the body against its schema).
func specCall(t *testing.T, n *testnode.Node, method, path, token string, body any) map[string]any {
	t.Helper()
	res := n.Do(t, method, path, token, body).Want(t, 200, "")
	p, _, _ := strings.Cut(path, "?")
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, res.Status, res.Body); errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v", method, path, err)
	}
	if len(res.Body) > 0 && res.Body[0] != '{' {
		return nil
	}
	return res.JSON(t)
}

// rooms returns the room IDs in a sync response's section ("join", ...).
func syncRooms(m map[string]any, section string) map[string]any {
	r, _ := m["rooms"].(map[string]any)
	s, _ := r[section].(map[string]any)
	return s
}

// TestResponsesMatchSpec validates the bodies of the main Client-Server
// endpoints against the spec's response schemas.
func TestResponsesMatchSpec(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		const v3 = "/_matrix/client/v3"
		specCall(t, n, "GET", "/_matrix/client/versions", "", nil)
		specCall(t, n, "GET", v3+"/login", "", nil)

		// Registration (both UIA steps) and login.
		uia := n.Do(t, "POST", v3+"/register", "", map[string]any{"username": "schema", "password": testnode.Password}).JSON(t)
		sess, _ := uia["session"].(string)
		reg := specCall(t, n, "POST", v3+"/register", "", map[string]any{
			"username": "schema", "password": testnode.Password, "auth": map[string]any{"type": "m.login.dummy", "session": sess}})
		tok := reg["access_token"].(string)
		specCall(t, n, "POST", v3+"/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "schema"}, "password": testnode.Password, "refresh_token": true})
		specCall(t, n, "GET", v3+"/capabilities", tok, nil)
		specCall(t, n, "GET", v3+"/account/whoami", tok, nil)
		specCall(t, n, "GET", v3+"/devices", tok, nil)
		specCall(t, n, "GET", v3+"/profile/@schema:localhost", tok, nil)

		// Rooms: one joined (with another member and messages), one
		// invited, one left.
		alice, bob := n.Register("alice"), n.Register("bob")
		a := alice.AccessToken
		created := specCall(t, n, "POST", v3+"/createRoom", a, map[string]any{
			"name": "Schema", "topic": "checking", "preset": "public_chat", "room_alias_name": "schema",
			"initial_state": []any{map[string]any{"type": "m.room.guest_access", "content": map[string]any{"guest_access": "can_join"}}},
		})
		roomID := id.RoomID(created["room_id"].(string))
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{"one", "two", "three"} {
			if _, err := bob.SendText(ctx, roomID, text); err != nil {
				t.Fatal(err)
			}
		}
		invite, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Invite", Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		left, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.JoinRoomByID(ctx, left.RoomID); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.LeaveRoom(ctx, left.RoomID); err != nil {
			t.Fatal(err)
		}

		// Initial sync, with left rooms included.
		includeLeave := url.QueryEscape(`{"room":{"include_leave":true,"timeline":{"limit":2}}}`)
		first := specCall(t, n, "GET", v3+"/sync?filter="+includeLeave, a, nil)
		if syncRooms(first, "join")[string(roomID)] == nil || syncRooms(first, "invite")[string(invite.RoomID)] == nil || syncRooms(first, "leave")[string(left.RoomID)] == nil {
			t.Fatalf("initial sync lacks a room section: %v", first["rooms"])
		}
		specCall(t, n, "GET", v3+"/sync", a, nil)
		lazy := url.QueryEscape(`{"room":{"state":{"lazy_load_members":true}}}`)
		specCall(t, n, "GET", v3+"/sync?full_state=true&filter="+lazy, a, nil)

		// Incremental sync with new messages, a new invite, a new leave and
		// a newly joined room.
		since := first["next_batch"].(string)
		testnode.SendText(t, bob, roomID, "four")
		invite2, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		left2, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		testnode.Join(t, alice, left2.RoomID)
		testnode.Leave(t, alice, left2.RoomID)
		if _, err := alice.JoinRoomByID(ctx, invite.RoomID); err != nil {
			t.Fatal(err)
		}
		next := specCall(t, n, "GET", v3+"/sync?timeout=0&since="+url.QueryEscape(since), a, nil)
		if syncRooms(next, "join")[string(roomID)] == nil || syncRooms(next, "invite")[string(invite2.RoomID)] == nil ||
			syncRooms(next, "leave")[string(left2.RoomID)] == nil || syncRooms(next, "join")[string(invite.RoomID)] == nil {
			t.Fatalf("incremental sync lacks a room section: %v", next["rooms"])
		}
		// A limited incremental timeline.
		for range 3 {
			testnode.SendText(t, bob, roomID, "more")
		}
		limit1 := url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`)
		specCall(t, n, "GET", v3+"/sync?timeout=0&filter="+limit1+"&since="+url.QueryEscape(next["next_batch"].(string)), a, nil)

		// Room reads.
		r := v3 + "/rooms/" + string(roomID)
		msgs := specCall(t, n, "GET", r+"/messages?dir=b&limit=2", a, nil)
		specCall(t, n, "GET", r+"/messages?dir=b&limit=2&from="+url.QueryEscape(msgs["end"].(string)), a, nil)
		specCall(t, n, "GET", r+"/messages?dir=f&limit=100", a, nil)
		specCall(t, n, "GET", r+"/messages?dir=b&filter="+url.QueryEscape(`{"lazy_load_members":true,"types":["m.room.message"]}`), a, nil)
		// Complement's TestRoomState: the profile keys are present, null
		// when the member has no avatar.
		jm := specCall(t, n, "GET", r+"/joined_members", a, nil)
		if me, _ := jm["joined"].(map[string]any)[string(alice.UserID)].(map[string]any); me == nil {
			t.Errorf("joined_members lacks alice: %v", jm)
		} else if avatar, ok := me["avatar_url"]; !ok || avatar != nil {
			t.Errorf("joined_members: alice's avatar_url = %v (present %v), want null", avatar, ok)
		}
		specCall(t, n, "GET", r+"/members", a, nil)
		specCall(t, n, "GET", r+"/members?membership=join&at="+url.QueryEscape(since), a, nil)
		specCall(t, n, "GET", r+"/state", a, nil)
		specCall(t, n, "GET", r+"/state/m.room.name/", a, nil)
		specCall(t, n, "GET", v3+"/joined_rooms", a, nil)
		specCall(t, n, "GET", v3+"/directory/room/"+url.PathEscape("#schema:localhost"), a, nil)
		specCall(t, n, "GET", v3+"/rooms/"+string(left.RoomID)+"/messages?dir=b", a, nil)
		sent := specCall(t, n, "PUT", r+"/send/m.room.message/schema1", a, map[string]any{"msgtype": "m.text", "body": "hi"})
		specCall(t, n, "GET", r+"/event/"+sent["event_id"].(string), a, nil)
		specCall(t, n, "PUT", r+"/state/m.room.topic/", a, map[string]any{"topic": "new"})
		specCall(t, n, "PUT", r+"/redact/"+sent["event_id"].(string)+"/schema2", a, map[string]any{"reason": "test"})
		filt := specCall(t, n, "POST", v3+"/user/"+string(alice.UserID)+"/filter", a, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}})
		specCall(t, n, "GET", v3+"/user/"+string(alice.UserID)+"/filter/"+filt["filter_id"].(string), a, nil)
	})
}
