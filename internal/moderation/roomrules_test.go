package moderation_test

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

var roomRule = event.Type{Type: "m.policy.rule.room", Class: event.StateEventType}

// wantRefusedByRule checks that err is M_FORBIDDEN naming the list and
// the rule's entity.
func wantRefusedByRule(t *testing.T, what string, err error, list id.RoomID, entity string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: allowed, want M_FORBIDDEN naming the room rule", what)
	}
	if code, status := testnode.ErrCode(err); code != "M_FORBIDDEN" || status != 403 {
		t.Fatalf("%s: %v (%s %d), want 403 M_FORBIDDEN", what, err, code, status)
	}
	if !strings.Contains(err.Error(), string(list)) || !strings.Contains(err.Error(), entity) {
		t.Fatalf("%s: %v does not name the rule %q of %s", what, err, entity, list)
	}
}

// listed reports whether the node's public room directory lists a room.
func listed(t *testing.T, c *mautrix.Client, room id.RoomID) bool {
	t.Helper()
	resp, err := c.PublicRooms(t.Context(), &mautrix.ReqPublicRooms{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Chunk {
		if r.RoomID == room {
			return true
		}
	}
	return false
}

// TestRoomRuleKeepsNodeOut: a room rule (m.policy.rule.room, m.ban) of a
// list the node follows takes the node's users out of the room (a leave
// naming the rule, reported to the moderators' room), refuses local
// joins and invites, hides the room from the directory, refuses another
// server's make_join and its invites of local users, and keeps local
// users from joining such a room on another server; lifting the rule
// lets them in again.
func TestRoomRuleKeepsNodeOut(t *testing.T) {
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	admin := a.RegisterAdmin("admin")
	alice, bob, dave := a.Register("alice"), a.Register("bob"), a.Register("dave")
	carol := b.Register("carol")

	list := publicRoom(t, admin, "list")
	mods := modRoom(t, a, admin)
	a.Do(t, "PUT", "/_matrixos/admin/v1/moderation", admin.AccessToken,
		map[string]any{"policy_lists": []id.RoomID{list}, "moderators_room": mods}, testnode.NoSpecCheck()).OK(t)
	catchUp(t, a)

	bad := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "bad", Visibility: "public"})
	good := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "good", Visibility: "public"})
	testnode.Invite(t, alice, bad, bob.UserID)
	theirs := testnode.CreateRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "theirs"})
	if !listed(t, dave, bad) || !listed(t, dave, good) {
		t.Fatal("the published rooms are not in the directory before the rule")
	}

	testnode.SendState(t, admin, list, roomRule, "bad", map[string]string{
		"entity": string(bad), "recommendation": "m.ban", "reason": "abuse hub"})
	testnode.SendState(t, admin, list, roomRule, "theirs", map[string]string{
		"entity": string(theirs), "recommendation": "m.ban", "reason": "spam farm"})
	catchUp(t, a)

	// Those already in it are taken out, with the rule as the reason.
	wantMembership(t, a, bad, alice.UserID, "leave")
	wantMembership(t, a, bad, bob.UserID, "leave")
	ev, err := a.Rooms.StateEvent(t.Context(), bad, "m.room.member", string(alice.UserID))
	if err != nil || ev == nil || !strings.Contains(string(ev.Content()), "abuse hub") {
		t.Fatalf("alice's leave %v (%v) does not give the rule's reason", ev, err)
	}
	wantNotice(t, a, admin, mods, string(alice.UserID)+" removed from "+string(bad)+" by the room rule")
	wantMembership(t, a, good, alice.UserID, "join")

	// Nobody enters through this node.
	_, err = alice.JoinRoomByID(t.Context(), bad)
	wantRefusedByRule(t, "alice's join", err, list, string(bad))
	_, err = dave.JoinRoomByID(t.Context(), bad)
	wantRefusedByRule(t, "dave's join", err, list, string(bad))
	if listed(t, dave, bad) || !listed(t, dave, good) {
		t.Fatal("the directory still lists the banned room, or lost the other one")
	}
	_, err = carol.JoinRoom(t.Context(), string(bad), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
	wantRefusedByRule(t, "carol's join over federation", err, list, string(bad))
	_, err = carol.InviteUser(t.Context(), theirs, &mautrix.ReqInviteUser{UserID: dave.UserID})
	wantRefusedByRule(t, "carol's invite of dave over federation", err, list, string(theirs))
	_, err = dave.JoinRoom(t.Context(), string(theirs), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}})
	wantRefusedByRule(t, "dave's join of the remote room", err, list, string(theirs))

	// Lifting the rule lifts the block.
	testnode.SendState(t, admin, list, roomRule, "bad", map[string]string{})
	if _, err := admin.RedactEvent(t.Context(), list, stateEventID(t, a, list, "theirs")); err != nil {
		t.Fatal(err)
	}
	catchUp(t, a)
	if _, err := dave.JoinRoom(t.Context(), string(theirs), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}}); err != nil {
		t.Fatalf("dave's join of the remote room after the rule was redacted: %v", err)
	}
	wantMembership(t, a, theirs, dave.UserID, "join")
	if !listed(t, dave, bad) {
		t.Fatal("the directory does not list the room again after the rule was lifted")
	}
}

// stateEventID returns the ID of a policy room rule state event.
func stateEventID(t *testing.T, n *testnode.Node, room id.RoomID, stateKey string) id.EventID {
	t.Helper()
	ev, err := n.Rooms.StateEvent(t.Context(), room, "m.policy.rule.room", stateKey)
	if err != nil || ev == nil {
		t.Fatalf("rule %s in %s: %v", stateKey, room, err)
	}
	return ev.ID
}

// TestRoomRuleRemovalsReachFollowers: with no node-wide moderators'
// room, a removal by a room rule is told to the moderators' room of
// each protected room that follows the rule's list.
func TestRoomRuleRemovalsReachFollowers(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	alice := n.Register("alice")

	list := publicRoom(t, admin, "list")
	mods := modRoom(t, n, admin)
	guarded := publicRoom(t, admin, "guarded")
	protect(t, n, admin, guarded, map[string]any{"policy_lists": []id.RoomID{list}, "moderators_room": mods})

	bad := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "bad"})
	testnode.SendState(t, admin, list, roomRule, "bad", map[string]string{
		"entity": string(bad), "recommendation": "m.ban", "reason": "abuse hub"})
	catchUp(t, n)

	wantMembership(t, n, bad, alice.UserID, "leave")
	wantNotice(t, n, admin, mods, string(alice.UserID)+" removed from "+string(bad)+" by the room rule")
}
