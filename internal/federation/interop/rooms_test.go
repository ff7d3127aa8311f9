package interop_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// testRooms: in room versions 10 and 11, a Dendrite user joins a Matrix
// OS user's public room and a Matrix OS user joins a Dendrite user's, each
// through the room's server; both see the join, each other's messages,
// typing, read receipts, a redaction and the leave in /sync. Then each
// side invites a user of the other into a private room, who sees the
// invite and joins; a Matrix OS user and a Dendrite user each reject an
// invite of the other side, and a user of each side who joins a room of
// the other pages back through the messages sent before (fetched with
// /backfill).
func testRooms(t *testing.T, p peers) {
	d, n := p.d, p.n
	for _, version := range []id.RoomVersion{id.RoomV10, id.RoomV11} {
		t.Run("v"+string(version)+"/Dendrite user joins a Matrix OS room", func(t *testing.T) {
			chat(t, version, n.Register("owner"), d.Register("joiner"))
		})
		t.Run("v"+string(version)+"/Matrix OS user joins a Dendrite room", func(t *testing.T) {
			chat(t, version, d.Register("owner"), n.Register("joiner"))
		})
	}
	t.Run("Matrix OS user invited to a Dendrite room", func(t *testing.T) {
		invite(t, d.Register("owner"), n.Register("invitee"))
	})
	t.Run("Dendrite user invited to a Matrix OS room", func(t *testing.T) {
		invite(t, n.Register("owner"), d.Register("invitee"))
	})
	t.Run("Matrix OS user rejects an invite to a Dendrite room", func(t *testing.T) {
		rejectInvite(t, d.Register("owner"), n.Register("invitee"))
	})
	t.Run("Dendrite user rejects an invite to a Matrix OS room", func(t *testing.T) {
		rejectInvite(t, n.Register("owner"), d.Register("invitee"))
	})
	t.Run("Dendrite user pages back through a Matrix OS room", func(t *testing.T) {
		history(t, n.Register("owner"), d.Register("joiner"))
	})
	t.Run("Matrix OS user pages back through a Dendrite room", func(t *testing.T) {
		history(t, d.Register("owner"), n.Register("joiner"))
	})
}

// history has owner send messages to a public room (v10, history shared)
// before joiner joins it; joiner's first /messages page back from the
// present holds them all, in order (its server fetching them from owner's
// over federation).
func history(t *testing.T, owner, joiner *mautrix.Client) {
	ctx := context.Background()
	room := testnode.CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: id.RoomV10})
	var sent []id.EventID
	for i := range 5 {
		sent = append(sent, testnode.SendText(t, owner, room, fmt.Sprintf("earlier message %d", i)))
	}
	joinerSync := newWatcher(t, joiner)
	if _, err := joiner.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{owner.UserID.Homeserver()}}); err != nil {
		t.Fatalf("%s joins %s through %s: %v", joiner.UserID, room, owner.UserID.Homeserver(), err)
	}
	// As a client does, page back from the room as /sync first shows it.
	joinerSync.waitFor(t, room, "its own join", isMembership(joiner.UserID, event.MembershipJoin))
	page, err := joiner.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatalf("%s pages back through %s: %v", joiner.UserID, room, err)
	}
	var got []id.EventID
	for _, ev := range page.Chunk {
		if ev.Type == event.EventMessage {
			got = append(got, ev.ID)
		}
	}
	slices.Reverse(got)
	if !slices.Equal(got, sent) {
		t.Fatalf("%s's /messages holds the messages %v; want those sent before the join, %v", joiner.UserID, got, sent)
	}
}

// chat has owner create a public room of the version and joiner join it
// through owner's server; each sends a message the other sees, owner
// types, joiner marks owner's message read, owner redacts it and joiner
// leaves, each seen by the other.
func chat(t *testing.T, version id.RoomVersion, owner, joiner *mautrix.Client) {
	ctx := context.Background()
	ownerSync, joinerSync := newWatcher(t, owner), newWatcher(t, joiner)
	room := testnode.CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: version})
	if _, err := joiner.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{owner.UserID.Homeserver()}}); err != nil {
		t.Fatalf("%s joins %s (v%s) through %s: %v", joiner.UserID, room, version, owner.UserID.Homeserver(), err)
	}
	ownerSync.waitFor(t, room, "the join of "+joiner.UserID.String(), isMembership(joiner.UserID, event.MembershipJoin))
	joinerSync.waitFor(t, room, "its own join", isMembership(joiner.UserID, event.MembershipJoin))

	var ownerMessage id.EventID
	for _, msg := range []struct {
		from *mautrix.Client
		to   *watcher
	}{{owner, joinerSync}, {joiner, ownerSync}} {
		body := "hello from " + msg.from.UserID.String()
		sent := testnode.SendText(t, msg.from, room, body)
		got := msg.to.waitFor(t, room, "the message of "+msg.from.UserID.String(), func(ev *event.Event) bool {
			return ev.Type == event.EventMessage && ev.Sender == msg.from.UserID && ev.Content.AsMessage().Body == body
		})
		if got.ID != sent {
			t.Fatalf("%s saw the message as %s, sent as %s", msg.to.c.UserID, got.ID, sent)
		}
		if msg.from == owner {
			ownerMessage = sent
		}
	}

	if _, err := owner.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatalf("%s types: %v", owner.UserID, err)
	}
	joinerSync.waitForEphemeral(t, room, owner.UserID.String()+" typing", func(ev *event.Event) bool {
		return ev.Type == event.EphemeralEventTyping && slices.Contains(ev.Content.AsTyping().UserIDs, owner.UserID)
	})
	if err := joiner.SendReceipt(ctx, room, ownerMessage, event.ReceiptTypeRead, nil); err != nil {
		t.Fatalf("%s marks %s read: %v", joiner.UserID, ownerMessage, err)
	}
	ownerSync.waitForEphemeral(t, room, joiner.UserID.String()+"'s read receipt", func(ev *event.Event) bool {
		if ev.Type != event.EphemeralEventReceipt {
			return false
		}
		_, ok := (*ev.Content.AsReceipt())[ownerMessage][event.ReceiptTypeRead][joiner.UserID]
		return ok
	})

	if _, err := owner.RedactEvent(ctx, room, ownerMessage); err != nil {
		t.Fatalf("%s redacts %s: %v", owner.UserID, ownerMessage, err)
	}
	joinerSync.waitFor(t, room, "the redaction of "+ownerMessage.String(), func(ev *event.Event) bool {
		return ev.Type == event.EventRedaction && ev.Redacts == ownerMessage
	})

	testnode.Leave(t, joiner, room)
	ownerSync.waitFor(t, room, "the leave of "+joiner.UserID.String(), isMembership(joiner.UserID, event.MembershipLeave))
}

// invite has owner create a private room (v10) and invite invitee, who
// sees the invite in /sync and joins; owner sees the join.
func invite(t *testing.T, owner, invitee *mautrix.Client) {
	ctx := context.Background()
	ownerSync, inviteeSync := newWatcher(t, owner), newWatcher(t, invitee)
	room := testnode.CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV10})
	testnode.Invite(t, owner, room, invitee.UserID)
	inviteeSync.waitForInvite(t, room)
	if _, err := invitee.JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("%s accepts the invite to %s: %v", invitee.UserID, room, err)
	}
	ownerSync.waitFor(t, room, "the join of "+invitee.UserID.String(), isMembership(invitee.UserID, event.MembershipJoin))
}

// rejectInvite has owner invite invitee into a private room (v10); the
// invitee rejects the invite (its server not in the room, the leave goes
// through owner's server) and owner sees the leave.
func rejectInvite(t *testing.T, owner, invitee *mautrix.Client) {
	ctx := context.Background()
	ownerSync, inviteeSync := newWatcher(t, owner), newWatcher(t, invitee)
	room := testnode.CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV10})
	testnode.Invite(t, owner, room, invitee.UserID)
	inviteeSync.waitForInvite(t, room)
	if _, err := invitee.LeaveRoom(ctx, room); err != nil {
		t.Fatalf("%s rejects the invite to %s: %v", invitee.UserID, room, err)
	}
	ownerSync.waitFor(t, room, "the rejection of "+invitee.UserID.String(), isMembership(invitee.UserID, event.MembershipLeave))
}

// isMembership matches the user's member event of that membership.
func isMembership(user id.UserID, membership event.Membership) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == user.String() &&
			ev.Content.AsMember().Membership == membership
	}
}

// watcher follows a client's /sync from where it was made.
type watcher struct {
	c     *mautrix.Client
	since string
}

// newWatcher starts following c's /sync from now.
func newWatcher(t *testing.T, c *mautrix.Client) *watcher {
	t.Helper()
	return &watcher{c: c, since: testnode.SyncOnce(t, c, "", 0).NextBatch}
}

// federationWait bounds how long an event takes to reach the other server
// and its client's /sync.
const federationWait = 30 * time.Second

// waitFor syncs until an event that match accepts shows in the joined
// room's timeline or state, and returns it; the test fails after
// federationWait.
func (w *watcher) waitFor(t *testing.T, room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	return w.wait(t, what, func(resp *mautrix.RespSync) *event.Event {
		if joined := resp.Rooms.Join[room]; joined != nil {
			return find(match, joined.State.Events, joined.Timeline.Events)
		}
		return nil
	})
}

// waitForEphemeral is waitFor for the joined room's ephemeral events.
func (w *watcher) waitForEphemeral(t *testing.T, room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	return w.wait(t, what, func(resp *mautrix.RespSync) *event.Event {
		if joined := resp.Rooms.Join[room]; joined != nil {
			return find(match, joined.Ephemeral.Events)
		}
		return nil
	})
}

// waitForInvite syncs until the room shows among the invites.
func (w *watcher) waitForInvite(t *testing.T, room id.RoomID) {
	t.Helper()
	w.wait(t, "the invite to "+room.String(), func(resp *mautrix.RespSync) *event.Event {
		if invited := resp.Rooms.Invite[room]; invited != nil {
			return find(isMembership(w.c.UserID, event.MembershipInvite), invited.State.Events)
		}
		return nil
	})
}

// wait syncs until found returns an event; the test fails after
// federationWait.
func (w *watcher) wait(t *testing.T, what string, found func(*mautrix.RespSync) *event.Event) *event.Event {
	t.Helper()
	deadline := time.Now().Add(federationWait)
	for time.Now().Before(deadline) {
		resp := testnode.SyncOnce(t, w.c, w.since, 1000)
		w.since = resp.NextBatch
		if ev := found(resp); ev != nil {
			return ev
		}
	}
	t.Fatalf("%s did not see %s within %v", w.c.UserID, what, federationWait)
	return nil
}

// find returns the first event of the lists that match accepts.
func find(match func(*event.Event) bool, lists ...[]*event.Event) *event.Event {
	for _, evs := range lists {
		for _, ev := range evs {
			ev.Content.ParseRaw(ev.Type)
			if match(ev) {
				return ev
			}
		}
	}
	return nil
}
