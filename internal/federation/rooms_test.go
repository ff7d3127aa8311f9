package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/testnode"
)

// syncer follows one client's /sync.
type syncer struct {
	c     *mautrix.Client
	since string
}

func newSyncer(t *testing.T, c *mautrix.Client) *syncer {
	t.Helper()
	return &syncer{c: c, since: testnode.SyncOnce(t, c, "", 0).NextBatch}
}

// waitFor syncs until a timeline event of the room matches, and returns
// it; the test fails after 15 s.
func (s *syncer) waitFor(t *testing.T, roomID id.RoomID, what string, match func(ev *event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp := testnode.SyncOnce(t, s.c, s.since, 1000)
		s.since = resp.NextBatch
		if room := resp.Rooms.Join[roomID]; room != nil {
			for _, ev := range room.Timeline.Events {
				if match(ev) {
					return ev
				}
			}
		}
	}
	t.Fatalf("%s never saw %s in %s", s.c.UserID, what, roomID)
	return nil
}

func (s *syncer) waitText(t *testing.T, roomID id.RoomID, body string) {
	t.Helper()
	s.waitFor(t, roomID, "the message "+body, func(ev *event.Event) bool {
		return ev.Type == event.EventMessage && ev.Content.Raw["body"] == body
	})
}

func (s *syncer) waitMembership(t *testing.T, roomID id.RoomID, user id.UserID, membership string) {
	t.Helper()
	s.waitFor(t, roomID, string(user)+"'s "+membership, func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(user) && ev.Content.Raw["membership"] == membership
	})
}

// publicRoomWithAlias makes c create a public room with the alias
// localpart and returns the room and the full alias.
func publicRoomWithAlias(t *testing.T, n *testnode.Node, c *mautrix.Client, localpart string) (id.RoomID, id.RoomAlias) {
	t.Helper()
	roomID := testnode.CreateRoom(t, c, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: localpart})
	return roomID, id.RoomAlias("#" + localpart + ":" + n.Config.ServerName)
}

// TestJoinAcrossServers (SQLite and PostgreSQL): bob on B joins alice's room on A by its alias (B
// resolves it over federation, make_join and send_join through A, imports
// the room); messages go both ways and each side's /sync shows them; a
// third server's user joins through B and sees the others' messages too.
func TestJoinAcrossServers(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testJoinAcrossServers(t, engine) })
	}
}

func testJoinAcrossServers(t *testing.T, engine testnode.Engine) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, engine, ca)
	b := testnode.StartFederating(t, engine, ca)
	c := testnode.StartFederating(t, engine, ca)
	alice, bob, carol := a.Register("alice"), b.Register("bob"), c.Register("carol")
	roomID, alias := publicRoomWithAlias(t, a, alice, "lobby")
	aliceSync := newSyncer(t, alice)

	resp, err := bob.JoinRoom(ctx, string(alias), nil)
	if err != nil {
		t.Fatalf("bob joins %s: %v", alias, err)
	}
	if resp.RoomID != roomID {
		t.Fatalf("bob joined %s, want %s", resp.RoomID, roomID)
	}
	bobSync := newSyncer(t, bob)
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")

	testnode.SendText(t, alice, roomID, "hello from A")
	bobSync.waitText(t, roomID, "hello from A")
	testnode.SendText(t, bob, roomID, "hello from B")
	aliceSync.waitText(t, roomID, "hello from B")

	// Carol joins by room ID through B (the ID names A; via adds B).
	if _, err := carol.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}}); err != nil {
		t.Fatalf("carol joins through B: %v", err)
	}
	carolSync := newSyncer(t, carol)
	aliceSync.waitMembership(t, roomID, carol.UserID, "join")
	bobSync.waitMembership(t, roomID, carol.UserID, "join")
	testnode.SendText(t, carol, roomID, "hello from C")
	aliceSync.waitText(t, roomID, "hello from C")
	bobSync.waitText(t, roomID, "hello from C")
	testnode.SendText(t, alice, roomID, "hello again from A")
	carolSync.waitText(t, roomID, "hello again from A")
}

// TestJoinRefused: a join to an invite-only room over federation is
// refused with the resident server's 403, and a join to a room no server
// knows is 404; the room stays unknown to the joining node.
func TestJoinRefused(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	private := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	_, err := bob.JoinRoom(ctx, string(private), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
	testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)
	if _, err := b.Rooms.Version(ctx, private); err == nil {
		t.Fatal("B keeps a room it could not join")
	}
	_, err = bob.JoinRoom(ctx, "!nowhere:"+a.Config.ServerName, nil)
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
}

// waitInvite syncs until the room is in the client's invites.
func (s *syncer) waitInvite(t *testing.T, roomID id.RoomID) *mautrix.SyncInvitedRoom {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp := testnode.SyncOnce(t, s.c, s.since, 1000)
		s.since = resp.NextBatch
		if inv := resp.Rooms.Invite[roomID]; inv != nil {
			return inv
		}
	}
	t.Fatalf("%s never saw the invite to %s", s.c.UserID, roomID)
	return nil
}

// waitLeft syncs until the room is in the client's left rooms.
func (s *syncer) waitLeft(t *testing.T, roomID id.RoomID) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp := testnode.SyncOnce(t, s.c, s.since, 1000)
		s.since = resp.NextBatch
		if resp.Rooms.Leave[roomID] != nil {
			return
		}
	}
	t.Fatalf("%s never saw %s in its left rooms", s.c.UserID, roomID)
}

// TestInviteAcrossServers: alice on A invites bob and dave on B to a
// private room (version 12, whose room ID names no server): B countersigns
// and shows the invites with the room's stripped state; bob accepts
// (through the inviter's server) and chats, dave rejects and A sees the
// rejection.
func TestInviteAcrossServers(t *testing.T) {
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, dave := a.Register("alice"), b.Register("bob"), b.Register("dave")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "secret plans", RoomVersion: id.RoomV12})
	aliceSync, bobSync, daveSync := newSyncer(t, alice), newSyncer(t, bob), newSyncer(t, dave)

	testnode.Invite(t, alice, roomID, bob.UserID)
	testnode.Invite(t, alice, roomID, dave.UserID)
	inv := bobSync.waitInvite(t, roomID)
	if testnode.EventContent(inv.State.Events, "m.room.name")["name"] != "secret plans" {
		t.Fatalf("bob's invite lacks the room's name: %+v", inv.State.Events)
	}
	daveSync.waitInvite(t, roomID)

	testnode.Join(t, bob, roomID)
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")
	testnode.SendText(t, bob, roomID, "thanks for the invite")
	aliceSync.waitText(t, roomID, "thanks for the invite")
	testnode.SendText(t, alice, roomID, "welcome")
	bobSync.waitText(t, roomID, "welcome")

	testnode.Leave(t, dave, roomID)
	aliceSync.waitMembership(t, roomID, dave.UserID, "leave")
	daveSync.waitLeft(t, roomID)
	if m := b.Rooms.Membership(dave.UserID, roomID); m != "leave" {
		t.Fatalf("dave's membership on B after rejecting: %q", m)
	}
}

// TestRejectInviteToEmptyRoom mirrors Complement's TestFederationRoomsInvite
// "Invited user can reject invite over federation for empty room": alice
// on A invites bob on B and leaves; bob rejects the invite, and his
// incremental sync shows the room left with his leave in its timeline (B
// is not in the room: the leave is kept beside the timeline).
func TestRejectInviteToEmptyRoom(t *testing.T) {
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	bobSync := newSyncer(t, bob)
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	bobSync.waitInvite(t, roomID)
	since := bobSync.since
	testnode.Leave(t, alice, roomID)
	testnode.Leave(t, bob, roomID)
	left := testnode.SyncOnce(t, bob, since, 0).Rooms.Leave[roomID]
	if left == nil || !slices.ContainsFunc(left.Timeline.Events, func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID) && ev.Content.Raw["membership"] == "leave"
	}) {
		t.Fatalf("bob's sync after rejecting shows no leave in the room's timeline: %+v", left)
	}
}

// TestInviteCountersignedBeforeAppend: an invite of a user of another
// server goes there before it joins the room. bob on B blocks invites, so
// B refuses his (403 M_INVITE_BLOCKED, through /invite and createRoom's
// invite list alike) and A's room keeps no trace of it; dave's invite is
// appended as B returned it, with both servers' signatures.
func TestInviteCountersignedBeforeAppend(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, dave := a.Register("alice"), b.Register("bob"), b.Register("dave")
	if err := bob.SetAccountData(ctx, "m.invite_permission_config", map[string]any{"default_action": "block"}); err != nil {
		t.Fatal(err)
	}
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV12})

	_, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
	testnode.WantErr(t, err, "M_INVITE_BLOCKED", http.StatusForbidden)
	testnode.Invite(t, alice, roomID, dave.UserID)
	wantCountersignedInvite(t, a, roomID, dave.UserID)
	wantNoMember(t, a, roomID, bob.UserID)

	daveSync := newSyncer(t, dave)
	created := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV12,
		Invite: []id.UserID{bob.UserID, dave.UserID}})
	wantCountersignedInvite(t, a, created, dave.UserID)
	wantNoMember(t, a, created, bob.UserID)
	daveSync.waitInvite(t, created)
}

// wantCountersignedInvite checks that n's room state invites user with
// the signatures of the inviter's server and the invitee's.
func wantCountersignedInvite(t *testing.T, n *testnode.Node, roomID id.RoomID, user id.UserID) {
	t.Helper()
	ev, err := n.Rooms.StateEvent(context.Background(), roomID, "m.room.member", string(user))
	if err != nil || ev == nil {
		t.Fatalf("%s's member event in %s: %v, %v", user, roomID, ev, err)
	}
	if ev.Membership() != "invite" {
		t.Fatalf("%s's membership: %q", user, ev.Membership())
	}
	for _, server := range []string{ev.Sender.Homeserver(), user.Homeserver()} {
		if len(ev.PDU.Signatures[server]) == 0 {
			t.Errorf("the stored invite of %s lacks %s's signature: %s", user, server, ev.JSON)
		}
	}
	var stored struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(ev.JSON, &stored); err != nil || len(stored.Signatures) != 2 {
		t.Errorf("the stored invite's JSON has signatures of %d servers, want 2 (%v): %s", len(stored.Signatures), err, ev.JSON)
	}
}

// wantNoMember checks that n's room has no member event of user at all.
func wantNoMember(t *testing.T, n *testnode.Node, roomID id.RoomID, user id.UserID) {
	t.Helper()
	ctx := context.Background()
	if ev, err := n.Rooms.StateEvent(ctx, roomID, "m.room.member", string(user)); err == nil && ev != nil {
		t.Fatalf("%s has a member event in %s after a refused invite: %s", user, roomID, ev.JSON)
	}
	if m := n.Rooms.Membership(user, roomID); m != "" {
		t.Fatalf("%s's membership of %s after a refused invite: %q", user, roomID, m)
	}
	evs, err := n.Rooms.RoomEvents(ctx, roomID, 0, n.Rooms.LastPos(ctx, roomID), 1000, false)
	if err != nil || len(evs) == 0 {
		t.Fatalf("%s's timeline: %d events, %v", roomID, len(evs), err)
	}
	for _, ev := range evs {
		if ev.StateKey != nil && *ev.StateKey == string(user) {
			t.Fatalf("%s's refused invite is in %s's timeline: %s", user, roomID, ev.JSON)
		}
	}
}

// TestInviteAfterBanAcrossServers mirrors Complement's TestUnbanViaInvite:
// bob of B is A's only member in alice's room; banned, then unbanned while
// B is out of the room, he is invited again: B, which still holds the room
// but missed the unban, keeps the invite beside the timeline (instead of
// refusing it for its unknown prev_events), and bob joins through A.
func TestInviteAfterBanAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "second-chance")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatal(err)
	}
	aliceSync, bobSync := newSyncer(t, alice), newSyncer(t, bob)
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	bobSync.waitLeft(t, roomID) // banned
	if _, err := alice.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitMembership(t, roomID, bob.UserID, "leave")
	testnode.Invite(t, alice, roomID, bob.UserID)
	bobSync.waitInvite(t, roomID)
	testnode.Join(t, bob, roomID)
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")
}

// TestRejoinAfterLeaveAcrossServers: bob of B, invited into alice's
// invite-only room on A, joins, leaves and at once asks to join again. B's
// worker for A is gathering a batch (after bob's message) when the leave
// is queued, so the leave waits in B's outbox; B sends it before asking A
// for the join, and A, which has seen the leave, refuses the join (the
// invite is spent). Before, make_join overtook the leave, A still held bob
// joined and let him in (Complement's TestRestrictedRoomsRemoteJoin,
// "Join should fail with mangled join rules").
func TestRejoinAfterLeaveAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	fed.SetBatchDelay(b.Federation.Outbox, time.Minute)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	testnode.Invite(t, alice, roomID, bob.UserID)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	aliceSync := newSyncer(t, alice)
	testnode.SendText(t, bob, roomID, "hello")
	b.Federation.Outbox.Flush(ctx, a.Config.ServerName)
	aliceSync.waitText(t, roomID, "hello") // B's worker for A now gathers the next batch, for a minute
	if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
		t.Fatalf("bob leaves: %v", err)
	}
	began := time.Now()
	_, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
	testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the join waited %v for B's queue to A", took)
	}
	if m := a.Rooms.Membership(bob.UserID, roomID); m != "leave" {
		t.Fatalf("bob's membership on A: %q, want leave", m)
	}
}

// TestModerationAcrossServers: alice on A kicks, bans and unbans bob of B
// in her public room; B's /sync shows each, a banned bob's join is
// refused with 403, and bob's own leave reaches A.
func TestModerationAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, bea := a.Register("alice"), b.Register("bob"), b.Register("bea")
	roomID, alias := publicRoomWithAlias(t, a, alice, "townhall")
	aliceSync := newSyncer(t, alice)
	for _, c := range []*mautrix.Client{bob, bea} {
		if _, err := c.JoinRoom(ctx, string(alias), nil); err != nil {
			t.Fatalf("%s joins: %v", c.UserID, err)
		}
	}
	beaSync := newSyncer(t, bea)

	if _, err := alice.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "calm down"}); err != nil {
		t.Fatal(err)
	}
	beaSync.waitMembership(t, roomID, bob.UserID, "leave")
	if m := b.Rooms.Membership(bob.UserID, roomID); m != "leave" {
		t.Fatalf("bob's membership on B after the kick: %q", m)
	}
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob rejoins: %v", err)
	}
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")

	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	beaSync.waitMembership(t, roomID, bob.UserID, "ban")
	_, err := bob.JoinRoom(ctx, string(alias), nil)
	testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)

	if _, err := alice.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	beaSync.waitMembership(t, roomID, bob.UserID, "leave")
	testnode.Leave(t, bea, roomID)
	aliceSync.waitMembership(t, roomID, bea.UserID, "leave")
}

// TestKnockAcrossServers: bob on B knocks on alice's knock room on A by
// its alias; alice sees the knock and invites him; invited, he cannot knock
// again (Complement's TestKnocking); he joins.
func TestKnockAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{
		Preset: "private_chat", RoomAliasName: "knockers",
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}},
	})
	alias := "#knockers:" + a.Config.ServerName
	aliceSync, bobSync := newSyncer(t, alice), newSyncer(t, bob)
	if _, err := bob.KnockRoom(ctx, alias, &mautrix.ReqKnockRoom{Reason: "let me in"}); err != nil {
		t.Fatalf("bob knocks: %v", err)
	}
	aliceSync.waitMembership(t, roomID, bob.UserID, "knock")
	if m := b.Rooms.Membership(bob.UserID, roomID); m != "knock" {
		t.Fatalf("bob's membership on B after knocking: %q", m)
	}
	testnode.Invite(t, alice, roomID, bob.UserID)
	bobSync.waitInvite(t, roomID)
	// Invited, he cannot knock again: B answers from the invite it holds.
	_, err := bob.KnockRoom(ctx, alias, &mautrix.ReqKnockRoom{Reason: "again"})
	testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)
	testnode.Join(t, bob, roomID)
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")
}

// TestServerACLAcrossServers: once alice's room on A has a server ACL that
// denies IP literals, A refuses bob's server B: its PDUs for the room (each
// answered with an error in /send), its requests about the room (403
// M_FORBIDDEN), and a new join through make_join.
func TestServerACLAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, bea := a.Register("alice"), b.Register("bob"), b.Register("bea")
	roomID, alias := publicRoomWithAlias(t, a, alice, "guarded")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatal(err)
	}
	bobSync := newSyncer(t, bob)
	// Before the ACL, B may read the room's state.
	latest := testnode.SendText(t, alice, roomID, "before the ACL")
	bobSync.waitText(t, roomID, "before the ACL")
	if _, err := b.Federation.Client.GetStateIDs(ctx, a.Config.ServerName, roomID, latest); err != nil {
		t.Fatalf("B reads the state before the ACL: %v", err)
	}

	testnode.SendState(t, alice, roomID, event.StateServerACL, "", map[string]any{"allow": []string{"*"}, "allow_ip_literals": false})
	bobSync.waitFor(t, roomID, "the server ACL", func(ev *event.Event) bool { return ev.Type == event.StateServerACL })

	evID := testnode.SendText(t, bob, roomID, "after the ACL")
	ev, err := b.Rooms.Event(ctx, evID)
	if err != nil {
		t.Fatal(err)
	}
	req := txn(b.Config.ServerName, a.Config.ServerName, "acl")
	req.PDUs = append(req.PDUs, ev.JSON)
	resp, err := b.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := resp.PDUs[evID]; !ok || r.Error == "" {
		t.Fatalf("A accepted B's PDU despite the ACL: %+v", resp.PDUs)
	}
	if _, err := a.Rooms.Event(ctx, evID); err == nil {
		t.Fatal("A stored B's event despite the ACL")
	}
	_, err = b.Federation.Client.GetStateIDs(ctx, a.Config.ServerName, roomID, latest)
	wantRemote(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = b.Federation.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: bea.UserID, Via: a.Config.ServerName, SupportedVersions: []id.RoomVersion{id.RoomV12}})
	wantRemote(t, err, http.StatusForbidden, "M_FORBIDDEN")

	// B's EDUs about the room are dropped; those about a room without an
	// ACL still arrive (in the same transaction: the positive signal).
	open := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	got := make(chan string, 2)
	a.Federation.HandleEDU(testEDU, func(ctx context.Context, origin string, content json.RawMessage) error {
		var c struct {
			RoomID string `json:"room_id"`
		}
		json.Unmarshal(content, &c)
		got <- c.RoomID
		return nil
	})
	edus := txn(b.Config.ServerName, a.Config.ServerName, "acl-edus")
	for _, r := range []id.RoomID{roomID, open} {
		edus.EDUs = append(edus.EDUs, json.RawMessage(fmt.Sprintf(`{"edu_type": %q, "content": {"room_id": %q}}`, testEDU, r)))
	}
	if _, err := b.Federation.Client.SendTransaction(ctx, edus); err != nil {
		t.Fatal(err)
	}
	close(got)
	var arrived []string
	for r := range got {
		arrived = append(arrived, r)
	}
	if !equal(arrived, []string{string(open)}) {
		t.Fatalf("EDUs that reached A's handler: %v, want only the one about %s", arrived, open)
	}
}

// wantRemote checks the status and errcode of a failed federation request.
func wantRemote(t *testing.T, err error, status int, errcode string) {
	t.Helper()
	he, ok := err.(mautrix.HTTPError)
	if !ok || he.Response == nil || he.Response.StatusCode != status || he.RespError == nil || he.RespError.ErrCode != errcode {
		t.Fatalf("got %v, want %d %s", err, status, errcode)
	}
}

// TestRestrictedJoinAcrossServers: bob on B joins alice's restricted room
// on A because he is in the room it allows; A names its own user as the
// authoriser in make_join and countersigns the join in send_join.
func TestRestrictedJoinAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	space, spaceAlias := publicRoomWithAlias(t, a, alice, "club")
	restricted := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space}},
		}}}},
	})
	if _, err := bob.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err == nil {
		t.Fatal("bob joined the restricted room before joining the room it allows")
	}
	if _, err := bob.JoinRoom(ctx, string(spaceAlias), nil); err != nil {
		t.Fatal(err)
	}
	aliceSync := newSyncer(t, alice)
	if _, err := bob.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins the restricted room: %v", err)
	}
	join := aliceSync.waitFor(t, restricted, "bob's join", func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID) && ev.Content.Raw["membership"] == "join"
	})
	if join.Content.Raw["join_authorised_via_users_server"] != string(alice.UserID) {
		t.Fatalf("bob's join names no authoriser of A: %v", join.Content.Raw)
	}
	if m := b.Rooms.Membership(bob.UserID, restricted); m != "join" {
		t.Fatalf("bob's membership on B: %q", m)
	}
}

// TestRestrictedJoinWithoutLocalAuthoriser: B is in alice's restricted
// room on A through carol, who may not invite (the public preset needs 50
// to), so no member of B can authorise dave's join; his /join through B
// goes over federation to A, whose alice authorises it (Complement's
// TestRestrictedRoomsRemoteJoinLocalUser).
func TestRestrictedJoinWithoutLocalAuthoriser(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, carol, dave := a.Register("alice"), b.Register("carol"), b.Register("dave")
	space, spaceAlias := publicRoomWithAlias(t, a, alice, "club")
	restricted := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{
		Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space}},
		}}}},
	})
	if _, err := alice.InviteUser(ctx, restricted, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
		t.Fatalf("alice invites carol: %v", err)
	}
	if _, err := carol.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("carol joins: %v", err)
	}
	if _, err := dave.JoinRoom(ctx, string(spaceAlias), nil); err != nil {
		t.Fatalf("dave joins the space: %v", err)
	}
	aliceSync := newSyncer(t, alice)
	if _, err := dave.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}}); err != nil {
		t.Fatalf("dave joins the restricted room through B: %v", err)
	}
	join := aliceSync.waitFor(t, restricted, "dave's join", func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(dave.UserID) && ev.Content.Raw["membership"] == "join"
	})
	if join.Content.Raw["join_authorised_via_users_server"] != string(alice.UserID) {
		t.Fatalf("dave's join is not authorised by alice: %v", join.Content.Raw)
	}
	if m := b.Rooms.Membership(dave.UserID, restricted); m != "join" {
		t.Fatalf("dave's membership on B: %q", m)
	}

	// erin on C asks B, which cannot authorise her join (make_join: 400
	// M_UNABLE_TO_GRANT_JOIN), and only B: her join fails, where asking A
	// too, after B, lets her in (Complement's
	// TestRestrictedRoomsRemoteJoinFailOver).
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	erin := c.Register("erin")
	if _, err := erin.JoinRoom(ctx, string(spaceAlias), nil); err != nil {
		t.Fatalf("erin joins the space: %v", err)
	}
	eventually(t, "B seeing erin in the space", func() (bool, string) {
		m := b.Rooms.Membership(erin.UserID, space)
		return m == "join", m
	})
	_, err := c.Federation.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: restricted, UserID: erin.UserID, Via: b.Config.ServerName, SupportedVersions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12}})
	wantRemote(t, err, http.StatusBadRequest, "M_UNABLE_TO_GRANT_JOIN")
	if _, err := erin.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}}); err == nil {
		t.Fatalf("erin joined through B alone, which cannot authorise her join")
	}
	if _, err := erin.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName, a.Config.ServerName}}); err != nil {
		t.Fatalf("erin joins through B, then A: %v", err)
	}

	// Once erin has left, C, in the room no more, still knows A and B as
	// its servers; frank of C, in the space too, joining through B alone
	// asks B alone all the same, and fails.
	if _, err := erin.LeaveRoom(ctx, restricted); err != nil {
		t.Fatalf("erin leaves: %v", err)
	}
	frank := c.Register("frank")
	if _, err := frank.JoinRoom(ctx, string(spaceAlias), nil); err != nil {
		t.Fatalf("frank joins the space: %v", err)
	}
	eventually(t, "A seeing frank in the space", func() (bool, string) {
		m := a.Rooms.Membership(frank.UserID, space)
		return m == "join", m
	})
	if _, err := frank.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName}}); err == nil {
		t.Fatalf("frank joined through B alone: C added the servers it last knew to his via")
	}
	if _, err := frank.JoinRoom(ctx, string(restricted), &mautrix.ReqJoinRoom{Via: []string{b.Config.ServerName, a.Config.ServerName}}); err != nil {
		t.Fatalf("frank joins through B, then A: %v", err)
	}
}

// TestRoomEndpointsBadInput: the room endpoints answer malformed or
// unauthorised requests with the spec's errors.
func TestRoomEndpointsBadInput(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice := a.Register("alice")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: id.RoomV11})
	evID := testnode.SendText(t, alice, roomID, "hi")
	bName, aName := b.Config.ServerName, a.Config.ServerName
	bUser := "@someone:" + bName
	room := string(roomID)
	for _, tc := range []struct {
		name, method string
		path         federation.URLPath
		query        map[string]string
		body         any
		status       int
		errcode      string
	}{
		{"make_join of another server's user", "GET", federation.URLPath{"v1", "make_join", room, "@x:elsewhere.example"}, map[string]string{"ver": "11"}, nil, 403, "M_FORBIDDEN"},
		{"make_join of an unknown room", "GET", federation.URLPath{"v1", "make_join", "!nowhere:" + aName, bUser}, map[string]string{"ver": "11"}, nil, 404, "M_NOT_FOUND"},
		{"make_join without the room's version", "GET", federation.URLPath{"v1", "make_join", room, bUser}, map[string]string{"ver": "10"}, nil, 400, "M_INCOMPATIBLE_ROOM_VERSION"},
		{"make_join of an invalid user", "GET", federation.URLPath{"v1", "make_join", room, "nobody"}, nil, nil, 400, "M_INVALID_PARAM"},
		{"send_join of an array", "PUT", federation.URLPath{"v2", "send_join", room, "$x"}, nil, []any{}, 400, "M_BAD_JSON"},
		{"send_join of a bad event", "PUT", federation.URLPath{"v2", "send_join", room, "$x"}, nil, map[string]any{"type": "m.room.member"}, 400, "M_BAD_JSON"},
		{"send_join with a bad omit_members", "PUT", federation.URLPath{"v2", "send_join", room, "$x"}, map[string]string{"omit_members": "maybe"}, map[string]any{}, 400, "M_INVALID_PARAM"},
		{"state_ids without event_id", "GET", federation.URLPath{"v1", "state_ids", room}, nil, nil, 400, "M_MISSING_PARAM"},
		{"state_ids of a room B is not in", "GET", federation.URLPath{"v1", "state_ids", room}, map[string]string{"event_id": string(evID)}, nil, 403, "M_FORBIDDEN"},
		{"state of a room B is not in", "GET", federation.URLPath{"v1", "state", room}, map[string]string{"event_id": string(evID)}, nil, 403, "M_FORBIDDEN"},
		{"event_auth of a room B is not in", "GET", federation.URLPath{"v1", "event_auth", room, string(evID)}, nil, nil, 403, "M_FORBIDDEN"},
		{"backfill without v", "GET", federation.URLPath{"v1", "backfill", room}, map[string]string{"limit": "10"}, nil, 400, "M_MISSING_PARAM"},
		{"backfill with a bad limit", "GET", federation.URLPath{"v1", "backfill", room}, map[string]string{"v": string(evID), "limit": "x"}, nil, 400, "M_INVALID_PARAM"},
		{"backfill of a room B is not in", "GET", federation.URLPath{"v1", "backfill", room}, map[string]string{"v": string(evID), "limit": "10"}, nil, 403, "M_FORBIDDEN"},
		{"get_missing_events without lists", "POST", federation.URLPath{"v1", "get_missing_events", room}, nil, map[string]any{}, 400, "M_BAD_JSON"},
		{"timestamp_to_event with a bad dir", "GET", federation.URLPath{"v1", "timestamp_to_event", room}, map[string]string{"ts": "1", "dir": "x"}, nil, 400, "M_INVALID_PARAM"},
		{"timestamp_to_event with a bad ts", "GET", federation.URLPath{"v1", "timestamp_to_event", room}, map[string]string{"ts": "soon", "dir": "f"}, nil, 400, "M_INVALID_PARAM"},
		{"invite without room_version", "PUT", federation.URLPath{"v2", "invite", room, "$x"}, nil, map[string]any{"event": map[string]any{}}, 400, "M_BAD_JSON"},
		{"invite of another room's event", "PUT", federation.URLPath{"v2", "invite", room, "$x"}, nil, map[string]any{"event": map[string]any{"room_id": "!other:x"}, "room_version": "11"}, 400, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range tc.query {
				q.Set(k, v)
			}
			_, _, err := b.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
				ServerName: aName, Method: tc.method, Path: tc.path, Query: q, Authenticate: true, RequestJSON: tc.body,
			})
			wantRemote(t, err, tc.status, tc.errcode)
		})
	}
	// An event of a room B is not in is not found.
	_, err := b.Federation.Client.GetEvent(ctx, aName, evID)
	wantRemote(t, err, http.StatusNotFound, "M_NOT_FOUND")
}

// TestSendJoinOmitMembers: send_join v2 with omit_members=true answers the
// state without member events (the joiner's own is not in the state
// before its join), an auth chain, members_omitted and servers_in_room
// (the servers in the room before the join: not the joiner's, new to it);
// without it the members are all there.
func TestSendJoinOmitMembers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "big")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatal(err)
	}
	aName := a.Config.ServerName
	for _, omit := range []bool{true, false} {
		carol := id.UserID(fmt.Sprintf("@carol%v:%s", omit, c.Config.ServerName))
		tmpl, err := c.Federation.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: carol, Via: aName, SupportedVersions: []id.RoomVersion{id.RoomV12}})
		if err != nil {
			t.Fatal(err)
		}
		evID, signed, err := c.Rooms.SignTemplate(tmpl.RoomVersion, tmpl.Event)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Federation.Client.SendJoin(ctx, &federation.ReqSendJoin{RoomID: roomID, EventID: evID, Event: signed, Via: aName, OmitMembers: omit})
		if err != nil {
			t.Fatal(err)
		}
		members := 0
		for _, raw := range resp.State {
			var ev struct{ Type string }
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type == "m.room.member" {
				members++
			}
		}
		if resp.MembersOmitted != omit || len(resp.AuthChain) == 0 || len(resp.State) == 0 {
			t.Fatalf("omit_members=%v: members_omitted %v, %d state events, %d in the auth chain", omit, resp.MembersOmitted, len(resp.State), len(resp.AuthChain))
		}
		if omit {
			if members != 0 || !slices.Contains(resp.ServersInRoom, aName) || !slices.Contains(resp.ServersInRoom, b.Config.ServerName) ||
				slices.Contains(resp.ServersInRoom, c.Config.ServerName) {
				t.Fatalf("omit_members: %d member events, servers_in_room %v", members, resp.ServersInRoom)
			}
		} else if members < 3 {
			t.Fatalf("without omit_members: %d member events, want alice, bob and the first carol", members)
		}
	}
}

// TestInviteOfUnknownLocalUser: B refuses an invite of a user it has no
// account for, and of a deactivated one, with 403 M_FORBIDDEN (the spec's
// refusal of an invite), which alice on A gets and A's room keeps no trace
// of; an invite of an active user of B still goes through.
func TestInviteOfUnknownLocalUser(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, gone, dave := a.Register("alice"), b.Register("gone"), b.Register("dave")
	if err := b.Accounts.Deactivate(ctx, gone.UserID, false); err != nil {
		t.Fatal(err)
	}
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV12})
	nobody := id.NewUserID("nobody", b.Config.ServerName)
	for _, invitee := range []id.UserID{nobody, gone.UserID} {
		_, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: invitee})
		testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)
		wantNoMember(t, a, roomID, invitee)
	}
	testnode.Invite(t, alice, roomID, dave.UserID)
	wantCountersignedInvite(t, a, roomID, dave.UserID)
}
