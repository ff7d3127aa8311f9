package node_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestR0Aliases: the r0.6.1 paths that /versions advertises are served as
// their v3 endpoints (login, joined_members with its 403 after leaving,
// join by alias), while an endpoint added after r0.6.1 has no r0 path.
// Mirrors Complement's TestKeyChangesLocal, TestRoomState/..._is_forbidden_
// after_leaving_room and TestRoomMembers/POST_/join/:room_alias_... which
// call /_matrix/client/r0.
func TestR0Aliases(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	const r0 = "/_matrix/client/r0"

	login := n.Do(t, "POST", r0+"/login", "", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": alice.UserID.String()},
		"password":   testnode.Password,
	}).OK(t)
	if login["user_id"] != alice.UserID.String() || login["access_token"] == nil {
		t.Fatalf("r0 login = %v, want alice's session", login)
	}

	room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom",
		map[string]any{"preset": "public_chat", "room_alias_name": "old"}).OK(t)["room_id"].(string)
	joined := testnode.Call(t, bob, "POST", r0+"/join/"+url.PathEscape("#old:localhost"), map[string]any{}).OK(t)
	if joined["room_id"] != room {
		t.Fatalf("r0 join = %v, want room %s", joined, room)
	}
	members := r0 + "/rooms/" + url.PathEscape(room) + "/joined_members"
	if got := testnode.Call(t, bob, "GET", members, nil).OK(t)["joined"].(map[string]any); len(got) != 2 {
		t.Fatalf("r0 joined_members = %v, want alice and bob", got)
	}
	testnode.Leave(t, bob, id.RoomID(room))
	testnode.Call(t, bob, "GET", members, nil).Want(t, 403, "M_FORBIDDEN")

	// State with an empty state key, written without the trailing slash.
	state := r0 + "/rooms/" + url.PathEscape(room) + "/state/m.room.topic"
	testnode.Call(t, alice, "PUT", state, map[string]any{"topic": "old paths"}).OK(t)
	if got := testnode.Call(t, alice, "GET", state, nil).OK(t); got["topic"] != "old paths" {
		t.Fatalf("r0 state topic = %v", got)
	}

	// Relations came with v1.x: no r0 path.
	testnode.Call(t, alice, "GET", r0+"/rooms/"+url.PathEscape(room)+"/relations/$x", nil).Want(t, 404, "M_UNRECOGNIZED")
}

// TestStateEmptyKeyWithoutSlash: PUT and GET of a state event with the
// empty state key are answered without the trailing slash too, not
// redirected.
func TestStateEmptyKeyWithoutSlash(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{}).OK(t)["room_id"].(string)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, body string) (int, string) {
		req, err := http.NewRequest(method, alice.HomeserverURL.String()+testnode.V3+"/rooms/"+url.PathEscape(room)+"/state/m.room.topic", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, body := do("PUT", `{"topic":"no slash"}`); status != http.StatusOK || !strings.Contains(body, "event_id") {
		t.Fatalf("PUT without the slash: %d %s", status, body)
	}
	if status, body := do("GET", ""); status != http.StatusOK || !strings.Contains(body, "no slash") {
		t.Fatalf("GET without the slash: %d %s", status, body)
	}
	if got := testnode.Call(t, alice, "GET", testnode.V3+"/rooms/"+url.PathEscape(room)+"/state/m.room.topic/", nil).OK(t)["topic"]; got != "no slash" {
		t.Fatalf("topic with the slash = %v", got)
	}
}
