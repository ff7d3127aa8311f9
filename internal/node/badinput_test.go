package node_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// badCase is one request that must be refused with a given status and
// errcode. A zero status accepts any answer below 500 (for inputs where
// the point is only that the node copes).
type badCase struct {
	name   string
	method string
	path   string
	token  string
	body   any
	status int
	code   string
}

// TestBadInput sends malformed, unauthorised and forbidden requests to
// many endpoints: each gets the spec's error, and none a 500.
func TestBadInput(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := alice.SendText(ctx, room.RoomID, "hello")
		if err != nil {
			t.Fatal(err)
		}
		gone := n.Login(alice.UserID)
		if _, err := gone.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		a, b, c, revoked := alice.AccessToken, bob.AccessToken, carol.AccessToken, gone.AccessToken
		const v3 = "/_matrix/client/v3"
		r := v3 + "/rooms/" + string(room.RoomID)
		p := v3 + "/rooms/" + string(private.RoomID)
		send := r + "/send/m.room.message/"
		aliceProfile := v3 + "/profile/" + string(alice.UserID)
		filter := v3 + "/user/" + string(alice.UserID) + "/filter"
		big := map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 70000)}
		// Content that fits in 65,536 bytes only without the event envelope.
		edge := map[string]any{"msgtype": "m.text", "body": strings.Repeat("y", 65400)}

		cases := []badCase{
			// Malformed JSON.
			{"createRoom not json", "POST", v3 + "/createRoom", a, "{", 400, "M_NOT_JSON"},
			{"send not json", "PUT", send + "t1", a, "{bad", 400, "M_NOT_JSON"},
			{"state not json", "PUT", r + "/state/m.room.topic/", a, "topic?", 400, "M_NOT_JSON"},
			{"login not json", "POST", v3 + "/login", "", "{", 400, "M_NOT_JSON"},
			{"register not json", "POST", v3 + "/register", "", "{\"username\":", 400, "M_NOT_JSON"},
			{"filter not json", "POST", filter, a, "{", 400, "M_NOT_JSON"},
			{"invite not json", "POST", r + "/invite", a, "[", 400, "M_NOT_JSON"},
			{"profile not json", "PUT", aliceProfile + "/displayname", a, "{'displayname': 'x'}", 400, "M_NOT_JSON"},
			{"trailing garbage", "PUT", send + "t2", a, `{"body":"x"} x`, 400, "M_NOT_JSON"},

			// Valid JSON of the wrong shape.
			{"createRoom array", "POST", v3 + "/createRoom", a, "[]", 400, "M_BAD_JSON"},
			{"send array", "PUT", send + "t3", a, "[1,2]", 400, "M_BAD_JSON"},
			{"send string", "PUT", send + "t4", a, `"hello"`, 400, "M_BAD_JSON"},
			{"send null", "PUT", send + "t5", a, "null", 400, "M_BAD_JSON"},
			{"createRoom name number", "POST", v3 + "/createRoom", a, map[string]any{"name": 5}, 400, "M_BAD_JSON"},
			{"createRoom invite string", "POST", v3 + "/createRoom", a, map[string]any{"invite": "@bob:localhost"}, 400, "M_BAD_JSON"},
			{"createRoom preset number", "POST", v3 + "/createRoom", a, map[string]any{"preset": 1}, 400, "M_BAD_JSON"},
			{"createRoom state content string", "POST", v3 + "/createRoom", a, map[string]any{"initial_state": []any{map[string]any{"type": "m.room.topic", "content": "x"}}}, 400, "M_BAD_JSON"},
			{"createRoom bad visibility", "POST", v3 + "/createRoom", a, map[string]any{"visibility": "secret"}, 400, "M_INVALID_PARAM"},
			{"createRoom bad version", "POST", v3 + "/createRoom", a, map[string]any{"room_version": "999"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
			{"createRoom bad invitee", "POST", v3 + "/createRoom", a, map[string]any{"invite": []string{"bob"}}, 400, "M_INVALID_PARAM"},
			{"invite user_id number", "POST", r + "/invite", a, map[string]any{"user_id": 5}, 400, "M_BAD_JSON"},
			{"invite no user_id", "POST", r + "/invite", a, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"kick no user_id", "POST", r + "/kick", a, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"kick bad user_id", "POST", r + "/kick", a, map[string]any{"user_id": "bob"}, 400, "M_INVALID_PARAM"},
			{"ban reason number", "POST", r + "/ban", a, map[string]any{"user_id": string(bob.UserID), "reason": 1}, 400, "M_BAD_JSON"},
			{"login password number", "POST", v3 + "/login", "", map[string]any{"type": "m.login.password", "user": "alice1", "password": 1}, 400, "M_BAD_JSON"},
			{"register username number", "POST", v3 + "/register", "", map[string]any{"username": 1}, 400, "M_BAD_JSON"},
			{"filter room string", "POST", filter, a, map[string]any{"room": "x"}, 400, "M_BAD_JSON"},
			// Complement's TestFilter: a room list naming something that is no room ID.
			{"filter timeline not a room ID", "POST", filter, a, map[string]any{"room": map[string]any{"timeline": map[string]any{"rooms": []string{"not_a_room_id"}}}}, 400, "M_BAD_JSON"},
			{"filter not_rooms not a room ID", "POST", filter, a, map[string]any{"room": map[string]any{"not_rooms": []string{"#alias:localhost"}}}, 400, "M_BAD_JSON"},
			{"filter timeline not a sender ID", "POST", filter, a, map[string]any{"room": map[string]any{"timeline": map[string]any{"senders": []string{"not_a_sender_id"}}}}, 400, "M_BAD_JSON"},
			{"filter presence not_senders no server", "POST", filter, a, map[string]any{"presence": map[string]any{"not_senders": []string{"@alice"}}}, 400, "M_BAD_JSON"},
			{"filter state empty room ID", "POST", filter, a, map[string]any{"room": map[string]any{"state": map[string]any{"not_rooms": []string{""}}}}, 400, "M_BAD_JSON"},
			{"filter limit string", "POST", filter, a, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": "10"}}}, 400, "M_BAD_JSON"},
			{"member without membership", "PUT", r + "/state/m.room.member/" + string(bob.UserID), a, map[string]any{}, 400, "M_BAD_JSON"},
			{"alias no room_id", "PUT", v3 + "/directory/room/" + url.PathEscape("#x:localhost"), a, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"alias room_id number", "PUT", v3 + "/directory/room/" + url.PathEscape("#x:localhost"), a, map[string]any{"room_id": 3}, 400, "M_BAD_JSON"},
			{"alias malformed", "GET", v3 + "/directory/room/" + url.PathEscape("nohash"), a, nil, 400, "M_INVALID_PARAM"},
			{"join not a room", "POST", v3 + "/join/notaroom", a, map[string]any{}, 400, "M_INVALID_PARAM"},
			{"send to not a room", "PUT", v3 + "/rooms/notaroom/send/m.room.message/t6", a, map[string]any{"body": "x"}, 400, "M_INVALID_PARAM"},
			{"device name number", "PUT", v3 + "/devices/" + string(alice.DeviceID), a, map[string]any{"display_name": 1}, 400, "M_BAD_JSON"},
			{"password number", "POST", v3 + "/account/password", a, map[string]any{"new_password": 1}, 400, "M_BAD_JSON"},
			{"refresh token number", "POST", v3 + "/refresh", "", map[string]any{"refresh_token": 1}, 400, "M_BAD_JSON"},

			// Missing and bad access tokens.
			{"sync no token", "GET", v3 + "/sync", "", nil, 401, "M_MISSING_TOKEN"},
			{"createRoom no token", "POST", v3 + "/createRoom", "", map[string]any{}, 401, "M_MISSING_TOKEN"},
			{"send no token", "PUT", send + "t7", "", map[string]any{"body": "x"}, 401, "M_MISSING_TOKEN"},
			{"devices no token", "GET", v3 + "/devices", "", nil, 401, "M_MISSING_TOKEN"},
			{"delete_devices no token", "POST", v3 + "/delete_devices", "", map[string]any{"devices": []string{}}, 401, "M_MISSING_TOKEN"},
			{"joined_rooms bogus token", "GET", v3 + "/joined_rooms", "bogus", nil, 401, "M_UNKNOWN_TOKEN"},
			{"sync revoked token", "GET", v3 + "/sync", revoked, nil, 401, "M_UNKNOWN_TOKEN"},
			{"send revoked token", "PUT", send + "t8", revoked, map[string]any{"body": "x"}, 401, "M_UNKNOWN_TOKEN"},
			{"whoami revoked token", "GET", v3 + "/account/whoami", revoked, nil, 401, "M_UNKNOWN_TOKEN"},
			// A bad token is answered before the body is read, also where
			// the token is optional.
			{"password bogus token", "POST", v3 + "/account/password", "bogus", map[string]any{}, 401, "M_UNKNOWN_TOKEN"},
			{"deactivate bogus token", "POST", v3 + "/account/deactivate", "bogus", "{", 401, "M_UNKNOWN_TOKEN"},
			{"get_token bogus token", "POST", "/_matrix/client/v1/login/get_token", "bogus", "{", 401, "M_UNKNOWN_TOKEN"},
			{"get_token no token", "POST", "/_matrix/client/v1/login/get_token", "", "{", 401, "M_MISSING_TOKEN"},

			// Forbidden actions.
			{"send when not in room", "PUT", send + "t9", c, map[string]any{"msgtype": "m.text", "body": "x"}, 403, "M_FORBIDDEN"},
			{"send to unknown room", "PUT", v3 + "/rooms/!nope:localhost/send/m.room.message/t10", c, map[string]any{"body": "x"}, 403, "M_FORBIDDEN"},
			{"power levels without power", "PUT", r + "/state/m.room.power_levels/", b, map[string]any{"users": map[string]int{string(bob.UserID): 100}}, 403, "M_FORBIDDEN"},
			{"room name without power", "PUT", r + "/state/m.room.name/", b, map[string]any{"name": "mine"}, 403, "M_FORBIDDEN"},
			{"kick without power", "POST", r + "/kick", b, map[string]any{"user_id": string(alice.UserID)}, 403, "M_FORBIDDEN"},
			{"ban without power", "POST", r + "/ban", b, map[string]any{"user_id": string(alice.UserID)}, 403, "M_FORBIDDEN"},
			{"redact others without power", "PUT", r + "/redact/" + string(msg.EventID) + "/t11", b, map[string]any{}, 403, "M_FORBIDDEN"},
			{"invite when not in room", "POST", r + "/invite", c, map[string]any{"user_id": string(bob.UserID)}, 403, "M_FORBIDDEN"},
			{"join invite-only room", "POST", p + "/join", c, map[string]any{}, 403, "M_FORBIDDEN"},
			{"leave when not in room", "POST", p + "/leave", c, map[string]any{}, 403, "M_FORBIDDEN"},
			{"messages of unjoined private room", "GET", p + "/messages?dir=b", c, nil, 403, "M_FORBIDDEN"},
			{"state of unjoined private room", "GET", p + "/state", c, nil, 403, "M_FORBIDDEN"},
			{"members of unjoined private room", "GET", p + "/members", c, nil, 403, "M_FORBIDDEN"},
			{"joined_members of unjoined room", "GET", p + "/joined_members", c, nil, 403, "M_FORBIDDEN"},
			// The spec's 404 for an event the user may not read (Complement's TestFetchEventNonWorldReadable).
			{"event of unjoined private room", "GET", p + "/event/" + string(msg.EventID), c, nil, 404, "M_NOT_FOUND"},
			{"filter for another user", "POST", filter, b, map[string]any{}, 403, "M_FORBIDDEN"},
			{"profile of another user", "PUT", aliceProfile + "/displayname", b, map[string]any{"displayname": "x"}, 403, "M_FORBIDDEN"},

			// Too large.
			{"event over 64 KiB", "PUT", send + "t12", a, big, 413, "M_TOO_LARGE"},
			{"event envelope over 64 KiB", "PUT", send + "t13", a, edge, 413, "M_TOO_LARGE"},
			{"state event over 64 KiB", "PUT", r + "/state/m.room.topic/", a, map[string]any{"topic": strings.Repeat("t", 70000)}, 413, "M_TOO_LARGE"},

			// Unknown endpoints and wrong methods.
			{"unknown endpoint", "GET", v3 + "/no_such_thing", a, nil, 404, "M_UNRECOGNIZED"},
			{"unknown room endpoint", "GET", r + "/no_such_thing", a, nil, 404, "M_UNRECOGNIZED"},
			{"unknown version", "GET", "/_matrix/client/v9/sync", a, nil, 404, "M_UNRECOGNIZED"},
			{"send without txn", "PUT", r + "/send/m.room.message", a, map[string]any{}, 404, "M_UNRECOGNIZED"},
			{"DELETE sync", "DELETE", v3 + "/sync", a, nil, 405, "M_UNRECOGNIZED"},
			{"GET createRoom", "GET", v3 + "/createRoom", a, nil, 405, "M_UNRECOGNIZED"},
			{"POST send", "POST", send + "t14", a, map[string]any{}, 405, "M_UNRECOGNIZED"},
			{"PUT login", "PUT", v3 + "/login", "", map[string]any{}, 405, "M_UNRECOGNIZED"},

			// Bad query parameters.
			{"sync bad since", "GET", v3 + "/sync?since=garbage", a, nil, 400, "M_INVALID_PARAM"},
			{"sync negative since", "GET", v3 + "/sync?since=s-5_0", a, nil, 400, "M_INVALID_PARAM"},
			{"sync bad inline filter", "GET", v3 + "/sync?filter=" + url.QueryEscape("{bad"), a, nil, 400, ""},
			{"sync inline filter not a room ID", "GET", v3 + "/sync?filter=" + url.QueryEscape(`{"room":{"rooms":["nope"]}}`), a, nil, 400, "M_BAD_JSON"},
			{"sync filter wrong type", "GET", v3 + "/sync?filter=" + url.QueryEscape(`{"room":1}`), a, nil, 400, ""},
			{"sync unknown filter id", "GET", v3 + "/sync?filter=999", a, nil, 400, ""},
			{"sync bad timeout", "GET", v3 + "/sync?timeout=soon", a, nil, 400, "M_INVALID_PARAM"},
			{"sync bad full_state", "GET", v3 + "/sync?full_state=maybe", a, nil, 400, "M_INVALID_PARAM"},
			{"sync bad set_presence", "GET", v3 + "/sync?set_presence=busy", a, nil, 400, "M_INVALID_PARAM"},
			{"messages bad dir", "GET", r + "/messages?dir=x", a, nil, 400, "M_INVALID_PARAM"},
			{"messages no dir", "GET", r + "/messages", a, nil, 400, ""},
			{"messages bad from", "GET", r + "/messages?dir=b&from=zzz", a, nil, 400, "M_INVALID_PARAM"},
			{"messages bad to", "GET", r + "/messages?dir=b&to=zzz", a, nil, 400, "M_INVALID_PARAM"},
			{"messages negative limit", "GET", r + "/messages?dir=b&limit=-1", a, nil, 400, "M_INVALID_PARAM"},
			{"messages bad limit", "GET", r + "/messages?dir=b&limit=ten", a, nil, 400, "M_INVALID_PARAM"},
			{"messages bad filter", "GET", r + "/messages?dir=b&filter=" + url.QueryEscape("{bad"), a, nil, 400, ""},
			{"members bad at", "GET", r + "/members?at=nope", a, nil, 400, "M_INVALID_PARAM"},

			// Odd bytes: NUL and invalid UTF-8 never reach the database.
			{"NUL in display name", "PUT", aliceProfile + "/displayname", a, `{"displayname":"a\u0000b"}`, 400, "M_BAD_JSON"},
			{"NUL in device name", "PUT", v3 + "/devices/" + string(alice.DeviceID), a, `{"display_name":"a\u0000b"}`, 400, "M_BAD_JSON"},
			{"NUL in login user", "POST", v3 + "/login", "", `{"type":"m.login.password","user":"a\u0000b","password":"x"}`, 400, "M_BAD_JSON"},
			{"NUL in message", "PUT", send + "t15", a, `{"msgtype":"m.text","body":"a\u0000b"}`, 400, "M_BAD_JSON"},
			{"NUL in object key", "PUT", aliceProfile + "/org.example.f", a, `{"org.example.f":{"k\u0000":"v"}}`, 400, "M_BAD_JSON"},
			{"escaped backslash before u0000", "PUT", send + "t18", a, `{"msgtype":"m.text","body":"a\\u0000b"}`, 200, ""},
			{"NUL in state key", "PUT", r + "/state/m.room.topic/a%00b", a, map[string]any{"topic": "x"}, 400, "M_INVALID_PARAM"},
			{"NUL in txn id", "PUT", send + "a%00b", a, map[string]any{"body": "x"}, 400, "M_INVALID_PARAM"},
			{"NUL in filter id", "GET", v3 + "/sync?filter=a%00b", a, nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in path", "GET", v3 + "/profile/%FF%FE", "", nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in room ID", "GET", v3 + "/rooms/!%FF:localhost/messages?dir=b", a, nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in event ID", "GET", r + "/event/$%FF", a, nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in query", "GET", v3 + "/register/available?username=%FF", "", nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in query key", "GET", v3 + "/sync?%FF=1", a, nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in user ID", "GET", v3 + "/profile/@%FF:localhost", "", nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in alias", "GET", v3 + "/directory/room/%23%FF:localhost", "", nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in body", "PUT", send + "t16", a, []byte("{\"msgtype\":\"m.text\",\"body\":\"\xff\xfe\"}"), 400, "M_NOT_JSON"},
			{"lone surrogate", "PUT", send + "t19", a, `{"msgtype":"m.text","body":"\ud800"}`, 0, ""},
			{"deep JSON", "POST", v3 + "/createRoom", a, strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 400, ""},
			{"deep JSON object", "PUT", send + "t20", a, strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), 400, ""},

			// Numbers canonical JSON cannot carry.
			{"float in event", "PUT", send + "t21", a, `{"msgtype":"m.text","body":"x","n":1.5}`, 400, "M_BAD_JSON"},
			{"huge number in event", "PUT", send + "t17", a, `{"n":1e999999}`, 400, "M_BAD_JSON"},
			{"integer beyond 2^53 in event", "PUT", send + "t22", a, `{"n":9007199254740993}`, 400, "M_BAD_JSON"},
			{"float in state", "PUT", r + "/state/org.example.s/", a, `{"n":0.5}`, 400, "M_BAD_JSON"},
			{"float in power level override", "POST", v3 + "/createRoom", a, `{"power_level_content_override":{"ban":50.5}}`, 400, "M_BAD_JSON"},
			{"float in initial state", "POST", v3 + "/createRoom", a, `{"initial_state":[{"type":"org.example.s","state_key":"","content":{"n":2.5}}]}`, 400, "M_BAD_JSON"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				res := n.Do(t, tc.method, tc.path, tc.token, tc.body)
				checkErrorBody(t, tc.method, tc.path, res)
				if tc.status == 0 {
					return
				}
				m := res.JSON(t)
				if res.Status != tc.status || (tc.code != "" && m["errcode"] != tc.code) {
					t.Fatalf("got %d %v, want %d %s: %s", res.Status, m["errcode"], tc.status, tc.code, res.Body)
				}
			})
		}
		// The node is still fine.
		if _, err := alice.SendText(ctx, room.RoomID, "still alive"); err != nil {
			t.Fatal(err)
		}
	})
}

// checkErrorBody fails unless an error answer carries a Matrix error body
// (a UIA 401, with its flows, need not).
func checkErrorBody(t *testing.T, method, path string, r *testnode.Response) {
	t.Helper()
	if r.Status < 400 || (r.Status == http.StatusUnauthorized && bytes.Contains(r.Body, []byte(`"flows"`))) {
		return
	}
	if code := r.ErrCode(); !strings.HasPrefix(code, "M_") {
		t.Errorf("%s %s: error %d without a Matrix error body: %s", method, path, r.Status, r.Body)
	}
}
