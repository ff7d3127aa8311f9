package admin_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestShadowBan(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	adm := n.RegisterAdmin("admin")
	alice, troll := n.Register("alice"), n.Register("troll")
	room := testnode.PublicRoom(t, alice, troll)
	if r := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/users/"+url.PathEscape(string(troll.UserID))+"/shadow_ban", map[string]any{}); r.Status != 200 {
		t.Fatalf("shadow ban: %d %s", r.Status, r.Body)
	}
	if info := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/users/"+url.PathEscape(string(troll.UserID)), nil).JSON(t); info["shadow_banned"] != true {
		t.Fatalf("user info after shadow ban: %v", info)
	}
	sent, err := troll.SendMessageEvent(ctx, room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "buy now"})
	if err != nil || sent.EventID == "" {
		t.Fatalf("shadow-banned send should look successful: %v %v", sent, err)
	}
	again, err := troll.SendMessageEvent(ctx, room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "buy now"}, mautrix.ReqSendEvent{TransactionID: "fixed"})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := troll.SendMessageEvent(ctx, room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "buy now"}, mautrix.ReqSendEvent{TransactionID: "fixed"})
	if err != nil {
		t.Fatal(err)
	}
	if again.EventID != retry.EventID {
		t.Fatalf("a retried transaction got another fake event ID: %s, %s", again.EventID, retry.EventID)
	}
	if _, err := troll.SendStateEvent(ctx, room, event.StateTopic, "", map[string]string{"topic": "spam"}); err != nil {
		t.Fatalf("shadow-banned state send: %v", err)
	}
	_, err = alice.GetEvent(ctx, room, sent.EventID)
	testnode.WantErr(t, err, "M_NOT_FOUND", 404) // the shadow-banned message was not stored
	msgs, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range msgs.Chunk {
		if ev.Sender == troll.UserID && ev.Type != event.StateMember {
			t.Fatalf("alice sees the shadow-banned user's %s", ev.Type)
		}
	}
	testnode.Call(t, adm, "DELETE", "/_synapse/admin/v1/users/"+url.PathEscape(string(troll.UserID))+"/shadow_ban", nil).OK(t)
	real, err := troll.SendMessageEvent(ctx, room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "sorry"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.GetEvent(ctx, room, real.EventID); err != nil {
		t.Fatalf("message after the shadow ban was lifted: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) {
		c.RateLimit = true
		c.RateLimitSendPerMin, c.RateLimitSendBurst = 1, 3
		c.RateLimitLoginPerMin, c.RateLimitLoginBurst = 1, 2
		c.RateLimitRegBurst = 100
	})
	ctx := context.Background()
	adm := n.RegisterAdmin("admin")
	alice := n.Register("alice")
	room := testnode.PublicRoom(t, alice, adm)
	send := func(c *mautrix.Client, i int) *testnode.Response {
		path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/t%d", url.PathEscape(string(room)), i)
		return testnode.Call(t, c, "PUT", path, map[string]string{"msgtype": "m.text", "body": "hi"})
	}
	for i := range 3 {
		if r := send(alice, i); r.Status != 200 {
			t.Fatalf("send %d within the burst: %d %s", i, r.Status, r.Body)
		}
	}
	r := send(alice, 3)
	r.Want(t, 429, "M_LIMIT_EXCEEDED")
	ms, ok := r.JSON(t)["retry_after_ms"].(float64)
	if !ok || ms <= 0 || ms > 60000 {
		t.Fatalf("retry_after_ms %v", r.JSON(t)["retry_after_ms"])
	}
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After header %q", r.Header.Get("Retry-After"))
	}
	// Other users have their own bucket; admins have none.
	bob := n.Register("bob")
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if r := send(bob, 100); r.Status != 200 {
		t.Fatalf("bob limited by alice's bucket: %d %s", r.Status, r.Body)
	}
	for i := range 10 {
		if r := send(adm, 200+i); r.Status != 200 {
			t.Fatalf("admin send %d limited: %d %s", i, r.Status, r.Body)
		}
	}

	// Logins are limited per client IP.
	login := func() error {
		_, err := n.Client().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(alice.UserID)}, Password: testnode.Password})
		return err
	}
	for i := range 2 {
		if err := login(); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	testnode.WantErr(t, login(), "M_LIMIT_EXCEEDED", 0)
}

func TestServerNotices(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		adm := n.RegisterAdmin("admin")
		alice := n.Register("alice")
		if err := n.Admin.SendNotice(ctx, alice.UserID, "Maintenance tonight"); err != nil {
			t.Fatal(err)
		}
		sync := testnode.Call(t, alice, "GET", "/_matrix/client/v3/sync?timeout=0", nil).JSON(t)
		invites, _ := sync["rooms"].(map[string]any)["invite"].(map[string]any)
		if len(invites) != 1 {
			t.Fatalf("want one invite, sync has %v", sync["rooms"])
		}
		var roomID id.RoomID
		for r := range invites {
			roomID = id.RoomID(r)
		}
		if _, err := alice.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		// A second notice goes to the same room.
		r := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/send_server_notice", map[string]any{
			"user_id": alice.UserID, "content": map[string]string{"msgtype": "m.server_notice", "body": "Done"}})
		if r.Status != 200 || r.JSON(t)["event_id"] == nil {
			t.Fatalf("send_server_notice: %d %s", r.Status, r.Body)
		}
		sync = testnode.Call(t, alice, "GET", "/_matrix/client/v3/sync?timeout=0", nil).JSON(t)
		joined := sync["rooms"].(map[string]any)["join"].(map[string]any)
		jr, ok := joined[string(roomID)].(map[string]any)
		if !ok || len(joined) != 1 {
			t.Fatalf("notices room not joined: %v", joined)
		}
		var bodies []string
		for _, ev := range jr["timeline"].(map[string]any)["events"].([]any) {
			e := ev.(map[string]any)
			if e["type"] == "m.room.message" {
				c := e["content"].(map[string]any)
				if c["msgtype"] != "m.server_notice" || e["sender"] != "@server:localhost" {
					t.Fatalf("notice event: %v", e)
				}
				bodies = append(bodies, c["body"].(string))
			}
		}
		if fmt.Sprint(bodies) != "[Maintenance tonight Done]" {
			t.Fatalf("notices %v", bodies)
		}
		tagged := false
		if ad, ok := jr["account_data"].(map[string]any); ok {
			for _, ev := range ad["events"].([]any) {
				e := ev.(map[string]any)
				if e["type"] == "m.tag" {
					_, tagged = e["content"].(map[string]any)["tags"].(map[string]any)["m.server_notice"]
				}
			}
		}
		if !tagged {
			t.Fatalf("notices room has no m.server_notice tag: %v", jr["account_data"])
		}
		// Alice may not post in it; after leaving, the next notice invites her again.
		_, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "hi"})
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		if _, err := alice.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if err := n.Admin.SendNotice(ctx, alice.UserID, "Back"); err != nil {
			t.Fatal(err)
		}
		if m := n.Rooms.Membership(alice.UserID, roomID); m != "invite" {
			t.Fatalf("after leaving and a new notice, membership %q, want invite", m)
		}
		testnode.Call(t, adm, "POST", "/_synapse/admin/v1/send_server_notice", map[string]any{
			"user_id": "@nobody:localhost", "content": map[string]string{"msgtype": "m.text", "body": "x"}}).Want(t, 404, "M_NOT_FOUND")
		// The system user cannot log in.
		_, err = n.Client().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "server"}, Password: ""})
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)
	})
}

// TestServerNoticesAsSynapse: with server_notices_localpart set as
// Complement's Synapse has it, notices come from @_server; the invite to
// the notices room cannot be rejected (403
// M_CANNOT_LEAVE_SERVER_NOTICE_ROOM, by /leave or a member state event),
// the joined room can be left, and the
// next notice invites the user back to the same room. Mirrors Complement's
// TestServerNotices.
func TestServerNoticesAsSynapse(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.ServerNoticesLocalpart = "_server" })
	adm := n.RegisterAdmin("admin")
	alice := n.Register("alice")
	notice := map[string]any{"user_id": alice.UserID, "content": map[string]string{"msgtype": "m.text", "body": "hello"}}
	inviteRoom := func() id.RoomID {
		t.Helper()
		testnode.Call(t, adm, "POST", "/_synapse/admin/v1/send_server_notice", notice).OK(t)
		sync := testnode.Call(t, alice, "GET", "/_matrix/client/v3/sync?timeout=0", nil).JSON(t)
		invites, _ := sync["rooms"].(map[string]any)["invite"].(map[string]any)
		if len(invites) != 1 {
			t.Fatalf("want one invite, sync has %v", sync["rooms"])
		}
		for room, inv := range invites {
			first := inv.(map[string]any)["invite_state"].(map[string]any)["events"].([]any)[0].(map[string]any)
			if first["sender"] != "@_server:localhost" {
				t.Fatalf("invite state's first event sent by %v, want @_server:localhost", first["sender"])
			}
			return id.RoomID(room)
		}
		return ""
	}
	room := inviteRoom()
	leave := "/_matrix/client/v3/rooms/" + url.PathEscape(room.String()) + "/leave"
	testnode.Call(t, alice, "POST", leave, map[string]any{}).Want(t, 403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	member := "/_matrix/client/v3/rooms/" + url.PathEscape(room.String()) + "/state/m.room.member/" + url.PathEscape(alice.UserID.String())
	testnode.Call(t, alice, "PUT", member, map[string]any{"membership": "leave"}).Want(t, 403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	if m := n.Rooms.Membership(alice.UserID, room); m != "invite" {
		t.Fatalf("after the refused rejection alice's membership is %q, want invite", m)
	}
	testnode.Join(t, alice, room)
	testnode.Call(t, alice, "POST", leave, map[string]any{}).OK(t)
	if again := inviteRoom(); again != room {
		t.Fatalf("the notice after leaving invites to %s, want the same room %s", again, room)
	}
}
