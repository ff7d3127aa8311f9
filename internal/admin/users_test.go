package admin_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestNonAdminsForbidden checks every admin endpoint refuses a normal user
// with M_FORBIDDEN (before looking anything up) and anonymous callers
// with M_MISSING_TOKEN.
func TestNonAdminsForbidden(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	bob := n.Register("bob")
	other := n.Register("other")
	room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	u, r := url.PathEscape(string(other.UserID)), url.PathEscape(string(room.RoomID))
	endpoints := []struct{ method, path string }{
		{"GET", "/_matrix/client/v3/admin/whois/" + u},
		{"GET", "/_matrix/client/v1/admin/suspend/" + u},
		{"PUT", "/_matrix/client/v1/admin/suspend/" + u},
		{"GET", "/_matrix/client/v1/admin/lock/" + u},
		{"PUT", "/_matrix/client/v1/admin/lock/" + u},
		{"GET", "/_synapse/admin/v1/server_version"},
		{"GET", "/_synapse/admin/v2/users"},
		{"GET", "/_synapse/admin/v2/users/" + u},
		{"PUT", "/_synapse/admin/v2/users/" + u},
		{"GET", "/_synapse/admin/v2/users/" + u + "/devices"},
		{"POST", "/_synapse/admin/v1/deactivate/" + u},
		{"POST", "/_synapse/admin/v1/reset_password/" + u},
		{"POST", "/_synapse/admin/v1/users/" + u + "/shadow_ban"},
		{"DELETE", "/_synapse/admin/v1/users/" + u + "/shadow_ban"},
		{"POST", "/_synapse/admin/v1/users/" + u + "/login"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/joined_rooms"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/admin"},
		{"PUT", "/_synapse/admin/v1/users/" + u + "/admin"},
		{"GET", "/_synapse/admin/v1/whois/" + u},
		{"PUT", "/_synapse/admin/v1/suspend/" + u},
		{"GET", "/_synapse/admin/v1/username_available?username=x"},
		{"POST", "/_matrixos/admin/v1/users"},
		{"GET", "/_synapse/admin/v1/rooms"},
		{"GET", "/_synapse/admin/v1/rooms/" + r},
		{"GET", "/_synapse/admin/v1/rooms/" + r + "/members"},
		{"GET", "/_synapse/admin/v1/rooms/" + r + "/state"},
		{"DELETE", "/_synapse/admin/v1/rooms/" + r},
		{"DELETE", "/_synapse/admin/v2/rooms/" + r},
		{"GET", "/_synapse/admin/v2/rooms/" + r + "/delete_status"},
		{"GET", "/_synapse/admin/v2/rooms/delete_status/x"},
		{"GET", "/_synapse/admin/v1/rooms/" + r + "/block"},
		{"PUT", "/_synapse/admin/v1/rooms/" + r + "/block"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/media"},
		{"GET", "/_synapse/admin/v1/room/" + r + "/media"},
		{"POST", "/_synapse/admin/v1/room/" + r + "/media/quarantine"},
		{"POST", "/_synapse/admin/v1/media/quarantine/localhost/abc"},
		{"DELETE", "/_synapse/admin/v1/media/localhost/abc"},
		{"GET", "/_synapse/admin/v1/event_reports"},
		{"GET", "/_synapse/admin/v1/event_reports/1"},
		{"DELETE", "/_synapse/admin/v1/event_reports/1"},
		{"GET", "/_synapse/admin/v1/room_reports"},
		{"GET", "/_synapse/admin/v1/user_reports"},
		{"GET", "/_synapse/admin/v1/registration_tokens"},
		{"POST", "/_synapse/admin/v1/registration_tokens/new"},
		{"GET", "/_synapse/admin/v1/registration_tokens/abc"},
		{"PUT", "/_synapse/admin/v1/registration_tokens/abc"},
		{"DELETE", "/_synapse/admin/v1/registration_tokens/abc"},
		{"POST", "/_synapse/admin/v1/send_server_notice"},
		{"PUT", "/_synapse/admin/v1/send_server_notice/txn1"},
	}
	anon := n.Client()
	for _, ep := range endpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			testnode.Call(t, bob, ep.method, ep.path, map[string]any{}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
			testnode.Call(t, anon, ep.method, ep.path, map[string]any{}).Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
		})
	}
	// The spec's whois may be called about oneself.
	me := testnode.Call(t, bob, "GET", "/_matrix/client/v3/admin/whois/"+url.PathEscape(string(bob.UserID)), nil)
	if me.Status != 200 || me.JSON(t)["user_id"] != string(bob.UserID) {
		t.Fatalf("whois self: %d %s", me.Status, me.Body)
	}
}

func TestAdminUsers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		adm := n.RegisterAdmin("admin")
		bob := n.Register("bob")
		bobPath := url.PathEscape(string(bob.UserID))

		// List: everyone (the admin, bob and the moderation user the node
		// creates at start), then only admins, then by name.
		list := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users", nil)
		if list.Status != 200 || list.JSON(t)["total"].(float64) != 3 {
			t.Fatalf("list users: %d %s", list.Status, list.Body)
		}
		admins := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users?admins=true", nil).JSON(t)
		if users := admins["users"].([]any); len(users) != 1 || users[0].(map[string]any)["name"] != string(adm.UserID) {
			t.Fatalf("admins=true: %v", admins)
		}
		byName := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users?name=bob&limit=1", nil).JSON(t)
		if byName["total"].(float64) != 1 {
			t.Fatalf("name=bob: %v", byName)
		}
		paged := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users?limit=1", nil).JSON(t)
		if paged["next_token"] != "1" {
			t.Fatalf("limit=1 should give next_token 1: %v", paged)
		}
		testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users?order_by=nope", nil).Want(t, 400, "M_INVALID_PARAM")

		// Query one user.
		info := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users/"+bobPath, nil).JSON(t)
		if info["name"] != string(bob.UserID) || info["admin"] != false || info["deactivated"] != false {
			t.Fatalf("user info: %v", info)
		}
		testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users/@nobody:localhost", nil).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users/@bob:elsewhere", nil).Want(t, 400, "M_INVALID_PARAM")

		// Create a user, who can then log in; modify it.
		created := testnode.Call(t, adm, "PUT", "/_synapse/admin/v2/users/@carol:localhost", map[string]any{"password": "carol-pass-1", "displayname": "Carol"})
		if created.Status != 201 || created.JSON(t)["displayname"] != "Carol" {
			t.Fatalf("create user: %d %s", created.Status, created.Body)
		}
		carol := n.Client()
		if _, err := carol.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "carol"}, Password: "carol-pass-1", StoreCredentials: true}); err != nil {
			t.Fatalf("created user cannot log in: %v", err)
		}
		mod := testnode.Call(t, adm, "PUT", "/_synapse/admin/v2/users/@carol:localhost", map[string]any{"displayname": "Carol B", "admin": true})
		if mod.Status != 200 || mod.JSON(t)["displayname"] != "Carol B" || mod.JSON(t)["admin"] != true {
			t.Fatalf("modify user: %d %s", mod.Status, mod.Body)
		}

		// Reset the password: the old one stops working, devices are logged out.
		if r := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/reset_password/"+bobPath, map[string]any{"new_password": "new-bob-pass"}); r.Status != 200 {
			t.Fatalf("reset password: %d %s", r.Status, r.Body)
		}
		_, err := bob.Whoami(ctx) // the old token no longer works
		testnode.WantErr(t, err, "M_UNKNOWN_TOKEN", 401)
		bob2 := n.Client()
		if _, err := bob2.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(bob.UserID)}, Password: "new-bob-pass", StoreCredentials: true}); err != nil {
			t.Fatalf("login with the new password: %v", err)
		}

		// Log in as bob: the token is bob's, on a new device.
		login := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/users/"+bobPath+"/login", map[string]any{}).JSON(t)
		puppet := n.Client()
		puppet.AccessToken = login["access_token"].(string)
		who, err := puppet.Whoami(ctx)
		if err != nil || who.UserID != bob.UserID {
			t.Fatalf("login as bob: %v %v", who, err)
		}
		devs := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users/"+bobPath+"/devices", nil).JSON(t)
		if devs["total"].(float64) != 2 {
			t.Fatalf("bob should have 2 devices: %v", devs)
		}
		testnode.Call(t, adm, "POST", "/_synapse/admin/v1/users/"+url.PathEscape(string(adm.UserID))+"/login", map[string]any{}).Want(t, 400, "M_INVALID_PARAM")

		// Joined rooms and whois.
		room, err := bob2.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		jr := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/users/"+bobPath+"/joined_rooms", nil).JSON(t)
		if rooms := jr["joined_rooms"].([]any); len(rooms) != 1 || rooms[0] != string(room.RoomID) {
			t.Fatalf("joined rooms: %v", jr)
		}
		who2 := testnode.Call(t, adm, "GET", "/_matrix/client/v3/admin/whois/"+bobPath, nil).JSON(t)
		if len(who2["devices"].(map[string]any)) != 2 {
			t.Fatalf("whois: %v", who2)
		}

		// Deactivate: bob can no longer log in and is out of his rooms.
		if r := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/deactivate/"+bobPath, map[string]any{"erase": false}); r.Status != 200 {
			t.Fatalf("deactivate: %d %s", r.Status, r.Body)
		}
		_, err = n.Client().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(bob.UserID)}, Password: "new-bob-pass"})
		testnode.WantErr(t, err, "M_FORBIDDEN", 403) // deactivation cleared the password
		if got := n.Rooms.Membership(bob.UserID, room.RoomID); got != "leave" {
			t.Fatalf("deactivated user's membership %q, want leave", got)
		}
		deact := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users?deactivated=true", nil).JSON(t)
		if deact["total"].(float64) != 4 {
			t.Fatalf("deactivated=true should list all 4 (the moderation user too): %v", deact)
		}
		if testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users", nil).JSON(t)["total"].(float64) != 3 {
			t.Fatal("deactivated users are listed by default")
		}
		ver := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/server_version", nil).JSON(t)
		if ver["server_version"] == "" {
			t.Fatalf("server_version: %v", ver)
		}
	})
}

// TestSuspendAndLock covers the spec's account moderation endpoints.
func TestSuspendAndLock(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	adm := n.RegisterAdmin("admin")
	eve := n.Register("eve")
	evePath := url.PathEscape(string(eve.UserID))
	room, err := eve.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}

	// Admins are told they may suspend and lock; others are not.
	caps := testnode.Call(t, adm, "GET", "/_matrix/client/v3/capabilities", nil).JSON(t)["capabilities"].(map[string]any)
	if mod, _ := caps["m.account_moderation"].(map[string]any); mod["suspend"] != true || mod["lock"] != true {
		t.Fatalf("admin capabilities: %v", caps)
	}
	caps = testnode.Call(t, eve, "GET", "/_matrix/client/v3/capabilities", nil).JSON(t)["capabilities"].(map[string]any)
	if _, ok := caps["m.account_moderation"]; ok {
		t.Fatalf("a normal user gets m.account_moderation: %v", caps)
	}

	r := testnode.Call(t, adm, "PUT", "/_matrix/client/v1/admin/suspend/"+evePath, map[string]any{"suspended": true})
	if r.Status != 200 || r.JSON(t)["suspended"] != true {
		t.Fatalf("suspend: %d %s", r.Status, r.Body)
	}
	if got := testnode.Call(t, adm, "GET", "/_matrix/client/v1/admin/suspend/"+evePath, nil).JSON(t); got["suspended"] != true {
		t.Fatalf("suspend status: %v", got)
	}
	_, err = eve.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "hi"})
	testnode.WantErr(t, err, "M_USER_SUSPENDED", 0)
	_, err = eve.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	testnode.WantErr(t, err, "M_USER_SUSPENDED", 0)
	testnode.WantErr(t, eve.SetDisplayName(ctx, "Evil"), "M_USER_SUSPENDED", 0)
	// Reading and leaving still work.
	if _, err := eve.JoinedRooms(ctx); err != nil {
		t.Fatalf("suspended user cannot read: %v", err)
	}
	if _, err := eve.LeaveRoom(ctx, room.RoomID); err != nil {
		t.Fatalf("suspended user cannot leave: %v", err)
	}
	testnode.Call(t, adm, "PUT", "/_matrix/client/v1/admin/suspend/"+evePath, map[string]any{"suspended": false}).OK(t)
	if _, err := eve.CreateRoom(ctx, &mautrix.ReqCreateRoom{}); err != nil {
		t.Fatalf("unsuspended user: %v", err)
	}

	// Admins cannot be targeted, nor can one suspend oneself.
	admPath := url.PathEscape(string(adm.UserID))
	testnode.Call(t, adm, "PUT", "/_matrix/client/v1/admin/suspend/"+admPath, map[string]any{"suspended": true}).Want(t, 403, "M_FORBIDDEN")
	testnode.Call(t, adm, "GET", "/_matrix/client/v1/admin/lock/@nobody:localhost", nil).Want(t, 404, "M_NOT_FOUND")
	testnode.Call(t, adm, "GET", "/_matrix/client/v1/admin/lock/@eve:elsewhere", nil).Want(t, 400, "M_INVALID_PARAM")

	// Locking logs eve out of every request.
	r = testnode.Call(t, adm, "PUT", "/_matrix/client/v1/admin/lock/"+evePath, map[string]any{"locked": true})
	if r.Status != 200 || r.JSON(t)["locked"] != true {
		t.Fatalf("lock: %d %s", r.Status, r.Body)
	}
	_, err = eve.Whoami(ctx)
	testnode.WantErr(t, err, "M_USER_LOCKED", 0)
	testnode.Call(t, adm, "PUT", "/_matrix/client/v1/admin/lock/"+evePath, map[string]any{"locked": false}).OK(t)
	if _, err := eve.Whoami(ctx); err != nil {
		t.Fatalf("unlocked user: %v", err)
	}
}
