package accounts_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

const passwordPath = "/_matrix/client/v3/account/password"

func loginWith(t *testing.T, n *testnode.Node, user id.UserID, password string) *testnode.Response {
	t.Helper()
	return n.Do(t, "POST", loginPath, "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": string(user)}, "password": password})
}

func TestChangePassword(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		other1, other2 := n.Login(alice.UserID), n.Login(alice.UserID)

		body := map[string]any{"new_password": "new secret"}
		sess, m := uiaSession(t, n, "POST", passwordPath, alice.AccessToken, body)
		if !slices.EqualFunc(flowsOf(t, m), [][]string{{"m.login.password"}}, slices.Equal) {
			t.Fatalf("password change flows: %s", m)
		}
		body["auth"] = passwordAuth(string(alice.UserID), "wrong", sess)
		if r := n.Do(t, "POST", passwordPath, alice.AccessToken, body); r.Status != http.StatusUnauthorized {
			t.Fatalf("password change with the wrong password: %d %s", r.Status, r.Body)
		}
		body["auth"] = passwordAuth(string(alice.UserID), testnode.Password, sess)
		wantOK(t, n.Do(t, "POST", passwordPath, alice.AccessToken, body))

		// Other devices are logged out, this one is not.
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatalf("requesting device logged out: %v", err)
		}
		for _, c := range []*mautrix.Client{other1, other2} {
			_, err := c.Whoami(ctx)
			mxErr(t, err, "M_UNKNOWN_TOKEN")
		}
		wantErr(t, loginWith(t, n, alice.UserID, testnode.Password), http.StatusForbidden, "M_FORBIDDEN")
		wantOK(t, loginWith(t, n, alice.UserID, "new secret"))

		// logout_devices: false keeps the other devices.
		other := wantOK(t, loginWith(t, n, alice.UserID, "new secret"))["access_token"].(string)
		body = map[string]any{"new_password": "third", "logout_devices": false, "auth": passwordAuth(string(alice.UserID), "new secret", "")}
		wantOK(t, n.Do(t, "POST", passwordPath, alice.AccessToken, body))
		wantOK(t, n.Do(t, "GET", whoamiPath, other, nil))
		wantOK(t, loginWith(t, n, alice.UserID, "third"))

		wantErr(t, n.Do(t, "POST", passwordPath, alice.AccessToken, map[string]any{"auth": passwordAuth(string(alice.UserID), "third", "")}),
			http.StatusBadRequest, "M_MISSING_PARAM")

		// Without an access token, the password stage says who the user is,
		// and every device is logged out.
		sess, _ = uiaSession(t, n, "POST", passwordPath, "", map[string]any{"new_password": "fourth"})
		wantOK(t, n.Do(t, "POST", passwordPath, "", map[string]any{"new_password": "fourth", "auth": passwordAuth(alice.UserID.Localpart(), "third", sess)}))
		wantErr(t, n.Do(t, "GET", whoamiPath, alice.AccessToken, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		wantOK(t, loginWith(t, n, alice.UserID, "fourth"))
	})
}

func TestDeactivate(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		invited, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		other := n.Login(alice.UserID)

		const path = "/_matrix/client/v3/account/deactivate"
		sess, _ := uiaSession(t, n, "POST", path, alice.AccessToken, nil)
		// Bob's password cannot deactivate Alice.
		wantErr(t, n.Do(t, "POST", path, alice.AccessToken, map[string]any{"auth": passwordAuth(string(bob.UserID), testnode.Password, sess)}),
			http.StatusForbidden, "M_FORBIDDEN")
		m := wantOK(t, n.Do(t, "POST", path, alice.AccessToken, map[string]any{"auth": passwordAuth(string(alice.UserID), testnode.Password, sess)}))
		if m["id_server_unbind_result"] != "no-support" {
			t.Fatalf("deactivate response %v", m)
		}

		for _, c := range []*mautrix.Client{alice, other} {
			_, err := c.Whoami(ctx)
			mxErr(t, err, "M_UNKNOWN_TOKEN")
		}
		r := loginWith(t, n, alice.UserID, testnode.Password)
		if code := r.JSON(t)["errcode"]; r.Status != http.StatusForbidden || (code != "M_FORBIDDEN" && code != "M_USER_DEACTIVATED") {
			t.Fatalf("login after deactivation: %d %s", r.Status, r.Body)
		}
		// The user ID stays taken.
		_, err = n.Client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: alice.UserID.Localpart(), Password: "x"})
		mxErr(t, err, "M_USER_IN_USE")
		// Alice left the room and rejected the invite.
		for _, rid := range []id.RoomID{room.RoomID, invited.RoomID} {
			var member event.MemberEventContent
			if err := bob.StateEvent(ctx, rid, event.StateMember, string(alice.UserID), &member); err != nil {
				t.Fatal(err)
			}
			if member.Membership != event.MembershipLeave {
				t.Fatalf("alice's membership in %s after deactivation: %s", rid, member.Membership)
			}
		}
		joined, err := bob.JoinedMembers(ctx, room.RoomID)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := joined.Joined[alice.UserID]; ok {
			t.Fatal("alice still joined after deactivation")
		}
	})
}
