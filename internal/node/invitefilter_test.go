package node_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// inviteOutcome is what an invite becomes under the invitee's invite
// permission config.
type inviteOutcome int

const (
	delivered inviteOutcome = iota // accepted and shown in the invitee's /sync
	hidden                         // accepted, but left out of the invitee's /sync
	refused                        // 403 M_INVITE_BLOCKED
)

// TestInviteFiltering mirrors Complement's TestInviteFiltering (MSC4155,
// unstable type org.matrix.msc4155.invite_permission_config), one case
// per subtest, on one server: its users bob, evilbob and evilalice stand
// for Complement's hs2 users and hs1's evil_alice, and the server
// patterns name localhost. A refused invite answers the spec's (v1.18)
// 403 M_INVITE_BLOCKED and writes nothing; an ignored one succeeds for
// the inviter, who sees alice invited, while alice's /sync leaves it out.
func TestInviteFiltering(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		inviters := map[string]*mautrix.Client{
			"bob": n.Register("bob"), "evilbob": n.Register("evilbob"), "evilalice": n.Register("evilalice"),
		}
		bob, evilBob := string(inviters["bob"].UserID), string(inviters["evilbob"].UserID)
		for _, c := range []struct {
			name   string
			config map[string]any
			want   map[string]inviteOutcome
		}{
			{"Can invite users normally without any rules", map[string]any{},
				map[string]inviteOutcome{"bob": delivered, "evilbob": delivered}},
			{"Can block a single user", map[string]any{"blocked_users": []string{bob}},
				map[string]inviteOutcome{"bob": refused, "evilbob": delivered}},
			{"Can ignore a single user", map[string]any{"ignored_users": []string{bob}},
				map[string]inviteOutcome{"bob": hidden, "evilbob": delivered}},
			{"Can block a whole server", map[string]any{"blocked_servers": []string{"localhost"}},
				map[string]inviteOutcome{"bob": refused, "evilbob": refused}},
			{"Can ignore a whole server", map[string]any{"ignored_servers": []string{"localhost"}},
				map[string]inviteOutcome{"bob": hidden, "evilbob": hidden}},
			{"Can glob serveral servers", map[string]any{"blocked_servers": []string{"loc*", "other.example"}},
				map[string]inviteOutcome{"bob": refused, "evilbob": refused, "evilalice": refused}},
			{"Can glob serveral users", map[string]any{"blocked_users": []string{"@evil?*"}},
				map[string]inviteOutcome{"bob": delivered, "evilbob": refused, "evilalice": refused}},
			{"Can allow a user from a blocked server", map[string]any{"allowed_users": []string{bob}, "blocked_servers": []string{"localhost"}},
				map[string]inviteOutcome{"bob": delivered, "evilbob": refused}},
			{"Can block a user from an allowed server", map[string]any{"blocked_users": []string{evilBob}, "allowed_servers": []string{"localhost"}},
				map[string]inviteOutcome{"bob": delivered, "evilbob": refused}},
			{"Will ignore null fields", map[string]any{
				"allowed_users": nil, "ignored_users": nil, "blocked_users": nil,
				"allowed_servers": nil, "ignored_servers": nil, "blocked_servers": nil,
			}, map[string]inviteOutcome{"bob": delivered}},
			{"Will allow users when a user appears in multiple fields", map[string]any{
				"ignored_users": []string{bob}, "blocked_users": []string{evilBob}, "allowed_users": []string{bob, evilBob},
			}, map[string]inviteOutcome{"bob": delivered, "evilbob": delivered}},
		} {
			t.Run(c.name, func(t *testing.T) {
				alice := n.Register("alice")
				if err := alice.SetAccountData(context.Background(), "org.matrix.msc4155.invite_permission_config", c.config); err != nil {
					t.Fatalf("set invite config: %v", err)
				}
				checkInvites(t, alice, inviters, c.want)
			})
		}
	})
}

// checkInvites makes each inviter named in want invite alice to a new
// room of theirs and checks the outcome: the answer, the inviter's view
// of alice's membership, alice's /sync and, for a delivered invite, her
// join.
func checkInvites(t *testing.T, alice *mautrix.Client, inviters map[string]*mautrix.Client, want map[string]inviteOutcome) {
	t.Helper()
	roomOf := map[string]id.RoomID{}
	for name, outcome := range want {
		inviter := inviters[name]
		room := testnode.CreateRoom(t, inviter, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		roomOf[name] = room
		r := testnode.Call(t, inviter, "POST", testnode.V3+"/rooms/"+string(room)+"/invite", map[string]any{"user_id": alice.UserID})
		member := testnode.Call(t, inviter, "GET", testnode.V3+"/rooms/"+string(room)+"/state/m.room.member/"+string(alice.UserID), nil)
		if outcome == refused {
			r.Want(t, 403, "M_INVITE_BLOCKED")
			member.Want(t, 404, "M_NOT_FOUND")
			continue
		}
		r.OK(t)
		if got := member.OK(t)["membership"]; got != "invite" {
			t.Fatalf("%s's invite: alice's membership is %v, want invite", name, got)
		}
	}
	s := testnode.SyncOnce(t, alice, "", 0)
	for name, outcome := range want {
		_, shown := s.Rooms.Invite[roomOf[name]]
		if shown != (outcome == delivered) {
			t.Fatalf("%s's invite shown in alice's /sync: %v, want %v", name, shown, outcome == delivered)
		}
		if outcome == delivered {
			testnode.Join(t, alice, roomOf[name])
		}
	}
	if len(s.Rooms.Invite) != countOf(want, delivered) {
		t.Fatalf("alice's /sync has %d invites, want %d", len(s.Rooms.Invite), countOf(want, delivered))
	}
}

func countOf(want map[string]inviteOutcome, outcome inviteOutcome) int {
	n := 0
	for _, o := range want {
		if o == outcome {
			n++
		}
	}
	return n
}

// TestInviteBlocking follows the spec's (v1.18) invite permission: with
// m.invite_permission_config's default_action "block" every way of
// inviting, /invite, createRoom's invite list and an m.room.member state
// event, answers 403 M_INVITE_BLOCKED; and /capabilities says that the
// server enforces MSC4155's config.
func TestInviteBlocking(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	if err := alice.SetAccountData(context.Background(), "m.invite_permission_config", map[string]any{"default_action": "block"}); err != nil {
		t.Fatalf("set invite config: %v", err)
	}
	room := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	testnode.Call(t, bob, "POST", testnode.V3+"/rooms/"+string(room)+"/invite", map[string]any{"user_id": alice.UserID}).
		Want(t, 403, "M_INVITE_BLOCKED")
	testnode.Call(t, bob, "PUT", testnode.V3+"/rooms/"+string(room)+"/state/m.room.member/"+string(alice.UserID), map[string]any{"membership": "invite"}).
		Want(t, 403, "M_INVITE_BLOCKED")
	testnode.Call(t, bob, "POST", testnode.V3+"/createRoom", map[string]any{"invite": []id.UserID{alice.UserID}}).
		Want(t, 403, "M_INVITE_BLOCKED")
	if s := testnode.SyncOnce(t, alice, "", 0); len(s.Rooms.Invite) != 0 {
		t.Fatalf("alice is invited to %d rooms, want none", len(s.Rooms.Invite))
	}

	// Any other value invites as usual.
	if err := alice.SetAccountData(context.Background(), "m.invite_permission_config", map[string]any{"default_action": "allow"}); err != nil {
		t.Fatalf("set invite config: %v", err)
	}
	testnode.Invite(t, bob, room, alice.UserID)

	caps := testnode.Call(t, alice, "GET", testnode.V3+"/capabilities", nil).OK(t)["capabilities"].(map[string]any)
	enforced, _ := caps["org.matrix.msc4155.invite_permission_config_enforced"].(map[string]any)
	if enforced["enabled"] != true {
		t.Fatalf("capabilities = %v, want org.matrix.msc4155.invite_permission_config_enforced enabled", caps)
	}
}
