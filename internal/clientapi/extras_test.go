package clientapi_test

import (
	"context"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestThreePIDs(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	const v3 = "/_matrix/client/v3"

	st, body := call(t, alice, "GET", v3+"/account/3pid", nil, nil, true)
	if got := decode[map[string][]any](t, body); st != 200 || got["threepids"] == nil || len(got["threepids"]) != 0 {
		t.Fatalf("GET /account/3pid: %d %s", st, body)
	}
	email := map[string]any{"client_secret": "secret", "email": "a@example.org", "send_attempt": 1}
	phone := map[string]any{"client_secret": "secret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
	anon := n.Client()
	for _, tc := range []struct {
		path   string
		body   map[string]any
		status int
		code   string
	}{
		{"/account/3pid/email/requestToken", email, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED"},
		{"/account/3pid/msisdn/requestToken", phone, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED"},
		{"/register/email/requestToken", email, 403, "M_THREEPID_DENIED"},
		{"/register/msisdn/requestToken", phone, 403, "M_THREEPID_DENIED"},
		{"/account/password/email/requestToken", email, 400, "M_THREEPID_NOT_FOUND"},
		{"/account/password/msisdn/requestToken", phone, 400, "M_THREEPID_NOT_FOUND"},
		{"/account/password/email/requestToken", map[string]any{"client_secret": "x", "send_attempt": 1}, 400, "M_MISSING_PARAM"},
	} {
		st, body := call(t, anon, "POST", v3+tc.path, nil, tc.body, true)
		wantStatus(t, st, body, tc.status, tc.code)
	}
	st, body = call(t, alice, "POST", v3+"/account/3pid/add", nil, map[string]any{"client_secret": "s", "sid": "1"}, true)
	wantStatus(t, st, body, 403, "M_THREEPID_AUTH_FAILED")
	st, body = call(t, alice, "POST", v3+"/account/3pid/bind", nil,
		map[string]any{"client_secret": "s", "sid": "1", "id_server": "id.example.org", "id_access_token": "t"}, true)
	wantStatus(t, st, body, 400, "M_SERVER_NOT_TRUSTED")
	for _, p := range []string{"/account/3pid/unbind", "/account/3pid/delete"} {
		st, body = call(t, alice, "POST", v3+p, nil, map[string]any{"medium": "email", "address": "a@example.org"}, true)
		if got := decode[map[string]string](t, body); st != 200 || got["id_server_unbind_result"] != "no-support" {
			t.Fatalf("%s: %d %s", p, st, body)
		}
		st, body = call(t, alice, "POST", v3+p, nil, map[string]any{"medium": "email"}, true)
		wantStatus(t, st, body, 400, "M_MISSING_PARAM")
	}

	// Inviting by third-party identifier needs an identity server.
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	invitePath := v3 + "/rooms/" + url.PathEscape(string(room.RoomID)) + "/invite"
	st, body = call(t, alice, "POST", invitePath, nil,
		map[string]any{"id_server": "id.example.org", "id_access_token": "t", "medium": "email", "address": "b@example.org"}, true)
	wantStatus(t, st, body, 403, "M_FORBIDDEN")
	// The Matrix ID form still works, with its reason.
	st, body = call(t, alice, "POST", invitePath, nil, map[string]any{"user_id": bob.UserID, "reason": "hi"}, true)
	if st != 200 {
		t.Fatalf("invite by user ID: %d %s", st, body)
	}
	if m := n.Rooms.Membership(bob.UserID, room.RoomID); m != "invite" {
		t.Fatalf("bob's membership = %q, want invite", m)
	}
}

func TestThirdPartyLookups(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	const tp = "/_matrix/client/v3/thirdparty"
	st, body := call(t, alice, "GET", tp+"/protocols", nil, nil, true)
	if st != 200 || string(body) != "{}" {
		t.Fatalf("protocols: %d %s", st, body)
	}
	for _, p := range []string{"/protocol/irc", "/location/irc", "/user/irc"} {
		st, body := call(t, alice, "GET", tp+p, nil, nil, true)
		wantStatus(t, st, body, 404, "M_NOT_FOUND")
	}
	for _, tc := range []struct{ path, param, value string }{
		{"/location", "alias", "#room:localhost"},
		{"/user", "userid", "@someone:localhost"},
	} {
		st, body := call(t, alice, "GET", tp+tc.path, url.Values{tc.param: {tc.value}}, nil, true)
		if st != 200 || string(body) != "[]" {
			t.Fatalf("%s: %d %s", tc.path, st, body)
		}
		st, body = call(t, alice, "GET", tp+tc.path, nil, nil, true)
		wantStatus(t, st, body, 400, "M_MISSING_PARAM")
	}
	st, body = call(t, n.Client(), "GET", tp+"/protocols", nil, nil, false)
	wantStatus(t, st, body, 401, "M_MISSING_TOKEN")
}

func TestNoSSONoTURNNoAppservices(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	anon := n.Client()
	st, body := call(t, anon, "GET", "/_matrix/client/v3/login/sso/redirect", url.Values{"redirectUrl": {"https://app.example/"}}, nil, false)
	wantStatus(t, st, body, 404, "M_NOT_FOUND")
	st, body = call(t, anon, "GET", "/_matrix/client/v3/login/sso/redirect/github", url.Values{"redirectUrl": {"https://app.example/"}}, nil, true)
	wantStatus(t, st, body, 404, "M_NOT_FOUND")

	// No TURN server: an empty object (what clients take as "none").
	st, body = call(t, alice, "GET", "/_matrix/client/v3/voip/turnServer", nil, nil, false)
	if st != 200 || string(body) != "{}" {
		t.Fatalf("turnServer: %d %s", st, body)
	}

	st, body = call(t, alice, "POST", "/_matrix/client/v1/appservice/bridge/ping", nil, map[string]any{}, true)
	wantStatus(t, st, body, 403, "M_FORBIDDEN")
	st, body = call(t, alice, "PUT", "/_matrix/client/v3/directory/list/appservice/irc/!room:localhost", nil, map[string]any{"visibility": "public"}, true)
	wantStatus(t, st, body, 403, "M_FORBIDDEN")
}

func TestGetLoginToken(t *testing.T) {
	eachEngine(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		caps, err := alice.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if caps.GetLoginToken == nil || !caps.GetLoginToken.Enabled {
			t.Fatalf("m.get_login_token capability: %+v", caps.GetLoginToken)
		}
		flows, err := n.Client().GetLoginFlows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !flows.HasFlow(mautrix.AuthTypeToken) {
			t.Fatalf("no m.login.token flow: %+v", flows)
		}
		const path = "/_matrix/client/v1/login/get_token"
		// UIA first.
		st, body := call(t, alice, "POST", path, nil, map[string]any{}, true)
		uia := decode[struct {
			Session string `json:"session"`
			Flows   []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
		}](t, body)
		if st != 401 || uia.Session == "" || len(uia.Flows) == 0 {
			t.Fatalf("no UIA: %d %s", st, body)
		}
		auth := map[string]any{
			"type": "m.login.password", "session": uia.Session, "password": testnode.Password,
			"identifier": map[string]any{"type": "m.id.user", "user": string(alice.UserID)},
		}
		st, body = call(t, alice, "POST", path, nil, map[string]any{"auth": auth}, true)
		got := decode[struct {
			Token     string `json:"login_token"`
			ExpiresIn int64  `json:"expires_in_ms"`
		}](t, body)
		if st != 200 || got.Token == "" || got.ExpiresIn != 120000 {
			t.Fatalf("get_token: %d %s", st, body)
		}
		// A new client logs in with it, once.
		c := n.Client()
		res, err := c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: got.Token})
		if err != nil || res.UserID != alice.UserID {
			t.Fatalf("login with token: %+v %v", res, err)
		}
		_, err = c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: got.Token})
		wantCode(t, err, "M_FORBIDDEN")
		// A wrong password gets no token.
		auth["password"] = "wrong"
		delete(auth, "session")
		st, body = call(t, alice, "POST", path, nil, map[string]any{"auth": auth}, false)
		if st != 401 && st != 403 {
			t.Fatalf("wrong password: %d %s", st, body)
		}
	})
}

func TestMutualRooms(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	var shared []id.RoomID
	for i := 0; i < 3; i++ {
		r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := bob.JoinRoomByID(ctx, r.RoomID); err != nil {
				t.Fatal(err)
			}
			shared = append(shared, r.RoomID)
		}
	}
	const path = "/_matrix/client/v1/mutual_rooms"
	st, body := call(t, alice, "GET", path, url.Values{"user_id": {string(bob.UserID)}}, nil, true)
	got := decode[struct {
		Joined []id.RoomID `json:"joined"`
		Count  int         `json:"count"`
	}](t, body)
	if st != 200 || got.Count != 2 || len(got.Joined) != 2 {
		t.Fatalf("mutual rooms: %d %s", st, body)
	}
	for _, r := range shared {
		found := false
		for _, j := range got.Joined {
			found = found || j == r
		}
		if !found {
			t.Fatalf("%s missing from %v", r, got.Joined)
		}
	}
	st, body = call(t, alice, "GET", path, url.Values{"user_id": {string(carol.UserID)}}, nil, true)
	if got := decode[map[string]any](t, body); st != 200 || got["count"] != 0.0 || len(got["joined"].([]any)) != 0 {
		t.Fatalf("no mutual rooms: %d %s", st, body)
	}
	for _, q := range []url.Values{{}, {"user_id": {string(alice.UserID)}}, {"user_id": {"not-a-user"}}} {
		st, body := call(t, alice, "GET", path, q, nil, true)
		if st != 400 {
			t.Fatalf("%v: %d %s", q, st, body)
		}
	}
}
