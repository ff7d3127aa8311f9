package admin_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestReports(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		adm := n.RegisterAdmin("admin")
		alice, bob, eve := n.Register("alice"), n.Register("bob"), n.Register("eve")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lobby"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		sent, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "spam"})
		if err != nil {
			t.Fatal(err)
		}
		rp := url.PathEscape(string(room.RoomID))
		evPath := "/_matrix/client/v3/rooms/" + rp + "/report/" + url.PathEscape(string(sent.EventID))

		// Reports answer {} whether or not the target exists or the
		// reporter may see it; only real ones are stored.
		for _, tc := range []struct {
			c    *mautrix.Client
			path string
			body map[string]any
		}{
			{bob, evPath, map[string]any{"reason": "spam", "score": -100}},
			{eve, evPath, map[string]any{"reason": "not joined"}},
			{bob, "/_matrix/client/v3/rooms/" + rp + "/report/$nope", map[string]any{"reason": "no such event"}},
			{bob, "/_matrix/client/v3/rooms/!nope:localhost/report/$nope", map[string]any{"reason": "no such room"}},
			{eve, "/_matrix/client/v3/rooms/" + rp + "/report", map[string]any{"reason": "bad room"}},
			{eve, "/_matrix/client/v3/rooms/!nope:localhost/report", map[string]any{"reason": "no such room"}},
			{eve, "/_matrix/client/v3/users/" + url.PathEscape(string(alice.UserID)) + "/report", map[string]any{"reason": "rude"}},
			{eve, "/_matrix/client/v3/users/@nobody:localhost/report", map[string]any{"reason": "no such user"}},
		} {
			r := testnode.Call(t, tc.c, "POST", tc.path, tc.body)
			if r.Status != 200 || string(r.Body) != "{}" {
				t.Fatalf("POST %s: %d %s", tc.path, r.Status, r.Body)
			}
		}
		testnode.Call(t, eve, "POST", "/_matrix/client/v3/rooms/"+rp+"/report", map[string]any{}).Want(t, 400, "M_MISSING_PARAM")
		testnode.Call(t, bob, "POST", evPath, map[string]any{"score": 5}).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, eve, "POST", "/_matrix/client/v3/users/nobody/report", map[string]any{"reason": "x"}).Want(t, 400, "M_INVALID_PARAM")

		list := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/event_reports", nil).JSON(t)
		reports := list["event_reports"].([]any)
		if list["total"].(float64) != 1 || len(reports) != 1 {
			t.Fatalf("event reports: %v", list)
		}
		rep := reports[0].(map[string]any)
		if rep["event_id"] != string(sent.EventID) || rep["user_id"] != string(bob.UserID) || rep["sender"] != string(alice.UserID) ||
			rep["reason"] != "spam" || rep["score"].(float64) != -100 || rep["name"] != "Lobby" || rep["room_id"] != string(room.RoomID) {
			t.Fatalf("event report: %v", rep)
		}
		repPath := fmt.Sprintf("/_synapse/admin/v1/event_reports/%d", int(rep["id"].(float64)))
		detail := testnode.Call(t, adm, "GET", repPath, nil).JSON(t)
		if ej, ok := detail["event_json"].(map[string]any); !ok || ej["type"] != "m.room.message" {
			t.Fatalf("report details: %v", detail)
		}
		if rooms := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/room_reports", nil).JSON(t); rooms["total"].(float64) != 1 {
			t.Fatalf("room reports: %v", rooms)
		}
		users := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/user_reports", nil).JSON(t)
		if users["total"].(float64) != 1 || users["user_reports"].([]any)[0].(map[string]any)["target_user_id"] != string(alice.UserID) {
			t.Fatalf("user reports: %v", users)
		}
		if filtered := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/event_reports?user_id="+url.QueryEscape(string(eve.UserID)), nil).JSON(t); filtered["total"].(float64) != 0 {
			t.Fatalf("filter by reporter: %v", filtered)
		}

		if r := testnode.Call(t, adm, "DELETE", repPath, nil); r.Status != 200 {
			t.Fatalf("delete report: %d %s", r.Status, r.Body)
		}
		testnode.Call(t, adm, "GET", repPath, nil).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, adm, "GET", "/_synapse/admin/v1/event_reports/abc", nil).Want(t, 400, "M_INVALID_PARAM")
	})
}

func TestRegistrationTokens(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.OpenRegistration = false })
	ctx := context.Background()
	uid, err := n.Accounts.CreateUser(ctx, "root", testnode.Password, true)
	if err != nil {
		t.Fatal(err)
	}
	adm := n.Login(uid)
	const base = "/_synapse/admin/v1/registration_tokens"

	r := testnode.Call(t, adm, "POST", base+"/new", map[string]any{"token": "invite-1", "uses_allowed": 1})
	if r.Status != 200 || r.JSON(t)["token"] != "invite-1" || r.JSON(t)["uses_allowed"].(float64) != 1 {
		t.Fatalf("new token: %d %s", r.Status, r.Body)
	}
	testnode.Call(t, adm, "POST", base+"/new", map[string]any{"token": "invite-1"}).Want(t, 400, "M_INVALID_PARAM")
	testnode.Call(t, adm, "POST", base+"/new", map[string]any{"token": "bad token!"}).Want(t, 400, "M_INVALID_PARAM")
	testnode.Call(t, adm, "POST", base+"/new", map[string]any{"expiry_time": 1}).Want(t, 400, "M_INVALID_PARAM")
	random := testnode.Call(t, adm, "POST", base+"/new", map[string]any{"length": 20}).JSON(t)
	if tok := random["token"].(string); len(tok) != 20 {
		t.Fatalf("random token %q, want 20 characters", tok)
	}
	if all := testnode.Call(t, adm, "GET", base, nil).JSON(t)["registration_tokens"].([]any); len(all) != 2 {
		t.Fatalf("list tokens: %v", all)
	}

	// Someone registers with the token; it is then used up.
	c := n.Client()
	if resp, _, _ := c.Register(ctx, &mautrix.ReqRegister[any]{Username: "newbie", Password: "pw-newbie-1"}); resp != nil {
		t.Fatal("registered without a token")
	}
	if resp, err := registerWithToken(ctx, c, "newbie", "invite-1"); err != nil {
		t.Fatalf("register with token: %v", err)
	} else if resp.UserID != "@newbie:localhost" {
		t.Fatalf("registered %s", resp.UserID)
	}
	if valid := testnode.Call(t, adm, "GET", base+"?valid=false", nil).JSON(t)["registration_tokens"].([]any); len(valid) != 1 {
		t.Fatalf("used-up tokens: %v", valid)
	}

	// Raise the limit, then clear it.
	up := testnode.Call(t, adm, "PUT", base+"/invite-1", map[string]any{"uses_allowed": 5}).JSON(t)
	if up["uses_allowed"].(float64) != 5 || up["completed"].(float64) != 1 {
		t.Fatalf("update token: %v", up)
	}
	up = testnode.Call(t, adm, "PUT", base+"/invite-1", map[string]any{"uses_allowed": nil}).JSON(t)
	if up["uses_allowed"] != nil {
		t.Fatalf("clear uses_allowed: %v", up)
	}
	testnode.Call(t, adm, "PUT", base+"/invite-1", map[string]any{"uses_allowed": -1}).Want(t, 400, "M_INVALID_PARAM")
	if got := testnode.Call(t, adm, "GET", base+"/invite-1", nil).JSON(t); got["token"] != "invite-1" {
		t.Fatalf("get token: %v", got)
	}
	if r := testnode.Call(t, adm, "DELETE", base+"/invite-1", nil); r.Status != 200 {
		t.Fatalf("delete token: %d %s", r.Status, r.Body)
	}
	testnode.Call(t, adm, "GET", base+"/invite-1", nil).Want(t, 404, "M_NOT_FOUND")
	testnode.Call(t, adm, "DELETE", base+"/invite-1", nil).Want(t, 404, "M_NOT_FOUND")
}

// registerWithToken runs the registration-token UIA flow.
func registerWithToken(ctx context.Context, c *mautrix.Client, user, token string) (*mautrix.RespRegister, error) {
	req := &mautrix.ReqRegister[any]{Username: user, Password: "pw-" + user + "-1"}
	_, uia, err := c.Register(ctx, req)
	if uia == nil {
		return nil, fmt.Errorf("no UIA session: %w", err)
	}
	req.Auth = map[string]any{"type": "m.login.registration_token", "token": token, "session": uia.Session}
	resp, _, err := c.Register(ctx, req)
	return resp, err
}
