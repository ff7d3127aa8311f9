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
	const v3 = testnode.V3

	if got := testnode.Call(t, alice, "GET", v3+"/account/3pid", nil).OK(t); got["threepids"] == nil || len(got["threepids"].([]any)) != 0 {
		t.Fatalf("GET /account/3pid: %v", got)
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
		testnode.Call(t, anon, "POST", v3+tc.path, tc.body).Want(t, tc.status, tc.code)
	}
	testnode.Call(t, alice, "POST", v3+"/account/3pid/add", map[string]any{"client_secret": "s", "sid": "1"}).Want(t, 403, "M_THREEPID_AUTH_FAILED")
	testnode.Call(t, alice, "POST", v3+"/account/3pid/bind",
		map[string]any{"client_secret": "s", "sid": "1", "id_server": "id.example.org", "id_access_token": "t"}).Want(t, 400, "M_SERVER_NOT_TRUSTED")
	for _, p := range []string{"/account/3pid/unbind", "/account/3pid/delete"} {
		if got := testnode.Call(t, alice, "POST", v3+p, map[string]any{"medium": "email", "address": "a@example.org"}).OK(t); got["id_server_unbind_result"] != "no-support" {
			t.Fatalf("%s: %v", p, got)
		}
		testnode.Call(t, alice, "POST", v3+p, map[string]any{"medium": "email"}).Want(t, 400, "M_MISSING_PARAM")
	}

	// Inviting by third-party identifier needs an identity server.
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	invitePath := v3 + "/rooms/" + url.PathEscape(string(room.RoomID)) + "/invite"
	testnode.Call(t, alice, "POST", invitePath,
		map[string]any{"id_server": "id.example.org", "id_access_token": "t", "medium": "email", "address": "b@example.org"}).Want(t, 403, "M_FORBIDDEN")
	// The Matrix ID form still works, with its reason.
	testnode.Call(t, alice, "POST", invitePath, map[string]any{"user_id": bob.UserID, "reason": "hi"}).OK(t)
	if m := n.Rooms.Membership(bob.UserID, room.RoomID); m != "invite" {
		t.Fatalf("bob's membership = %q, want invite", m)
	}
}

func TestThirdPartyLookups(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	const tp = "/_matrix/client/v3/thirdparty"
	if r := testnode.Call(t, alice, "GET", tp+"/protocols", nil); r.Status != 200 || string(r.Body) != "{}" {
		t.Fatalf("protocols: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/protocol/irc", "/location/irc", "/user/irc"} {
		testnode.Call(t, alice, "GET", tp+p, nil).Want(t, 404, "M_NOT_FOUND")
	}
	for _, tc := range []struct{ path, param, value string }{
		{"/location", "alias", "#room:localhost"},
		{"/user", "userid", "@someone:localhost"},
	} {
		if r := testnode.Call(t, alice, "GET", tp+tc.path+"?"+url.Values{tc.param: {tc.value}}.Encode(), nil); r.Status != 200 || string(r.Body) != "[]" {
			t.Fatalf("%s: %d %s", tc.path, r.Status, r.Body)
		}
		testnode.Call(t, alice, "GET", tp+tc.path, nil).Want(t, 400, "M_MISSING_PARAM")
	}
	testnode.Call(t, n.Client(), "GET", tp+"/protocols", nil).Want(t, 401, "M_MISSING_TOKEN")
}

func TestNoSSONoTURNNoAppservices(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	anon := n.Client()
	redirect := "?redirectUrl=" + url.QueryEscape("https://app.example/")
	testnode.Call(t, anon, "GET", "/_matrix/client/v3/login/sso/redirect"+redirect, nil).Want(t, 404, "M_NOT_FOUND")
	testnode.Call(t, anon, "GET", "/_matrix/client/v3/login/sso/redirect/github"+redirect, nil).Want(t, 404, "M_NOT_FOUND")

	// No TURN server: an empty object (what clients take as "none"; the
	// spec's schema has no such answer).
	if r := testnode.Call(t, alice, "GET", "/_matrix/client/v3/voip/turnServer", nil, testnode.NoSpecCheck()); r.Status != 200 || string(r.Body) != "{}" {
		t.Fatalf("turnServer: %d %s", r.Status, r.Body)
	}

	testnode.Call(t, alice, "POST", "/_matrix/client/v1/appservice/bridge/ping", map[string]any{}).Want(t, 403, "M_FORBIDDEN")
	testnode.Call(t, alice, "PUT", "/_matrix/client/v3/directory/list/appservice/irc/!room:localhost", map[string]any{"visibility": "public"}).Want(t, 403, "M_FORBIDDEN")
}

func TestGetLoginToken(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
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
		r := testnode.Call(t, alice, "POST", path, map[string]any{}).Want(t, 401, "")
		uia := testnode.Decode[struct {
			Session string `json:"session"`
			Flows   []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
		}](t, r.Body)
		if uia.Session == "" || len(uia.Flows) == 0 {
			t.Fatalf("no UIA: %s", r.Body)
		}
		auth := map[string]any{
			"type": "m.login.password", "session": uia.Session, "password": testnode.Password,
			"identifier": map[string]any{"type": "m.id.user", "user": string(alice.UserID)},
		}
		r = testnode.Call(t, alice, "POST", path, map[string]any{"auth": auth}).Want(t, 200, "")
		got := testnode.Decode[struct {
			Token     string `json:"login_token"`
			ExpiresIn int64  `json:"expires_in_ms"`
		}](t, r.Body)
		if got.Token == "" || got.ExpiresIn != 120000 {
			t.Fatalf("get_token: %s", r.Body)
		}
		// A new client logs in with it, once.
		c := n.Client()
		res, err := c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: got.Token})
		if err != nil || res.UserID != alice.UserID {
			t.Fatalf("login with token: %+v %v", res, err)
		}
		_, err = c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: got.Token})
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		// A wrong password gets no token.
		auth["password"] = "wrong"
		delete(auth, "session")
		if r := testnode.Call(t, alice, "POST", path, map[string]any{"auth": auth}); r.Status != 401 && r.Status != 403 {
			t.Fatalf("wrong password: %d %s", r.Status, r.Body)
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
	body := testnode.Call(t, alice, "GET", path+"?user_id="+url.QueryEscape(string(bob.UserID)), nil).Want(t, 200, "").Body
	got := testnode.Decode[struct {
		Joined []id.RoomID `json:"joined"`
		Count  int         `json:"count"`
	}](t, body)
	if got.Count != 2 || len(got.Joined) != 2 {
		t.Fatalf("mutual rooms: %s", body)
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
	if got := testnode.Call(t, alice, "GET", path+"?user_id="+url.QueryEscape(string(carol.UserID)), nil).OK(t); got["count"] != 0.0 || len(got["joined"].([]any)) != 0 {
		t.Fatalf("no mutual rooms: %v", got)
	}
	for _, q := range []url.Values{{}, {"user_id": {string(alice.UserID)}}, {"user_id": {"not-a-user"}}} {
		if r := testnode.Call(t, alice, "GET", path+"?"+q.Encode(), nil); r.Status != 400 {
			t.Fatalf("%v: %d %s", q, r.Status, r.Body)
		}
	}
}
