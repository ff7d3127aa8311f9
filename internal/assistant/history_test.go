//go:build goolm

package assistant_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// plainRoom has c create an unencrypted room with the history
// visibility hv, invite the assistant and wait until it has joined.
func plainRoom(t *testing.T, c *mautrix.Client, hv event.HistoryVisibility) id.RoomID {
	t.Helper()
	room := testnode.CreateRoom(t, c, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateHistoryVisibility, Content: event.Content{
			Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: hv}}}},
	})
	testnode.Invite(t, c, room, assistantID)
	testnode.WaitFor(t, 30*time.Second, "the assistant's join", func() bool {
		return membership(t, c, room, assistantID) == event.MembershipJoin
	})
	return room
}

// membership is user's membership of room as c sees it ("" for none).
func membership(t *testing.T, c *mautrix.Client, room id.RoomID, user id.UserID) event.Membership {
	t.Helper()
	var m event.MemberEventContent
	if err := c.StateEvent(context.Background(), room, event.StateMember, user.String(), &m); err != nil {
		if code, _ := testnode.ErrCode(err); code == "M_NOT_FOUND" {
			return ""
		}
		t.Fatalf("member event of %s: %v", user, err)
	}
	return m.Membership
}

// assistantNotices returns the assistant's messages in an unencrypted
// room, newest first.
func assistantNotices(t *testing.T, c *mautrix.Client, room id.RoomID) []*event.MessageEventContent {
	t.Helper()
	resp, err := c.Messages(context.Background(), room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	var out []*event.MessageEventContent
	for _, evt := range resp.Chunk {
		if evt.Sender != assistantID || evt.Type != event.EventMessage {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		out = append(out, evt.Content.AsMessage())
	}
	return out
}

// plainReplyTo waits for the assistant's answer to evID in an unencrypted
// room and returns its body.
func plainReplyTo(t *testing.T, c *mautrix.Client, room id.RoomID, evID id.EventID) string {
	t.Helper()
	var found string
	testnode.WaitFor(t, 30*time.Second, "the assistant's answer to "+evID.String(), func() bool {
		for _, msg := range assistantNotices(t, c, room) {
			if msg.RelatesTo.GetReplyTo() == evID {
				found = msg.Body
				return true
			}
		}
		return false
	})
	return found
}

// ask sends text to room as c and returns the assistant's answer.
func ask(t *testing.T, c *mautrix.Client, room id.RoomID, text string) string {
	t.Helper()
	return plainReplyTo(t, c, room, testnode.SendText(t, c, room, text))
}

// TestAssistantHidesHistoryBeforeJoin: a member who joined a room of
// joined history, or an encrypted room, does not get from the assistant
// what was said before they joined (summary, ask, translate of a reply),
// while one who was there does; in an unencrypted room of shared history
// a later member does.
func TestAssistantHidesHistoryBeforeJoin(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	alice, bob := n.Register("alice"), n.Register("bob")
	const before, after = "The launch code is swordfish, keep it quiet.", "The launch code for everyone is marlin now."

	for _, tc := range []struct {
		hv        event.HistoryVisibility
		bobSeesIt bool
	}{
		{event.HistoryVisibilityJoined, false},
		{event.HistoryVisibilityShared, true},
	} {
		t.Run(string(tc.hv), func(t *testing.T) {
			room := plainRoom(t, alice, tc.hv)
			early := testnode.SendText(t, alice, room, before)
			testnode.Invite(t, alice, room, bob.UserID)
			testnode.Join(t, bob, room)
			testnode.SendText(t, alice, room, after)

			if got := ask(t, alice, room, "!assistant ask launch code"); !strings.Contains(got, link(room, early)) {
				t.Errorf("alice, there from the start, is not told of the early message:\n%s", got)
			}
			for _, q := range []string{"!assistant ask launch code", "!assistant summary last 1h"} {
				got := ask(t, bob, room, q)
				if !strings.Contains(got, "marlin") {
					t.Errorf("%q: bob is not told of the message after his join:\n%s", q, got)
				}
				if strings.Contains(got, "swordfish") != tc.bobSeesIt {
					t.Errorf("%q: bob sees the message before his join: %v, want %v:\n%s", q, !tc.bobSeesIt, tc.bobSeesIt, got)
				}
			}
			reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "!assistant language"}
			reply.SetReply(&event.Event{ID: early, RoomID: room})
			resp, err := bob.SendMessageEvent(context.Background(), room, event.EventMessage, reply)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			got := plainReplyTo(t, bob, room, resp.EventID)
			if strings.Contains(got, "English") != tc.bobSeesIt {
				t.Errorf("language of the early message to bob: %s", got)
			}
		})
	}

	t.Run("encrypted", func(t *testing.T) {
		a, b := testnode.NewE2EEDevice(t, "alice", n.Register("alice")), testnode.NewE2EEDevice(t, "bob", n.Register("bob"))
		room := encryptedRoom(t, a) // shared history
		a.Send(room, before)
		testnode.Invite(t, a.C, room, b.C.UserID)
		testnode.Join(t, b.C, room)
		a.SyncUntil(30*time.Second, "bob's join", func() bool { return a.Member(room, b.C.UserID, event.MembershipJoin) })
		a.Send(room, after)
		b.SyncUntil(30*time.Second, "the room's members", func() bool { return b.Member(room, assistantID, event.MembershipJoin) })
		got := body(replyTo(t, b, b.Send(room, "!assistant summary last 1h")))
		if !strings.Contains(got, "marlin") || strings.Contains(got, "swordfish") {
			t.Errorf("bob's summary of an encrypted room should hold only what was said since he joined:\n%s", got)
		}
	})
}
