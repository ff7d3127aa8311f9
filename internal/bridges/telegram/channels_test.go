//go:build goolm

package telegram_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
)

// waitChannelMessage waits until a channel on Telegram has a message with
// text and returns it.
func (h *harness) waitChannelMessage(channel int64, text string) tg.Message {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		for _, m := range h.fake.ChannelMessages(channel) {
			if m.Message == text {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%q never reached channel %d on Telegram: %+v", text, channel, h.fake.ChannelMessages(channel))
	return tg.Message{}
}

// TestTelegramSupergroup bridges a supergroup in its encrypted portal: its
// members are ghosts, messages, edits and deletes arrive (a message lost
// on the way is fetched by the gap it leaves, through
// updates.getChannelDifference), channel message IDs do not collide with
// private ones, and a Matrix message reaches the supergroup, then its edit
// and its deletion (channels.deleteMessages).
func TestTelegramSupergroup(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	bob := fake.AddUser("+15550003", "Bob", "Builder")
	bobMX := id.NewUserID("telegram_"+strconv.FormatInt(bob, 10), env.Node.Config.ServerName)
	sg := fake.AddChannel("Dev chat", false, h.alice, h.mia, bob)
	h.login()

	first := fake.PostInChannel(h.alice, sg, "hello supergroup")
	portal := env.WaitPortal("Dev chat")
	env.WaitMessage(portal, h.aliceMX, "hello supergroup")
	members, err := env.Admin.JoinedMembers(context.Background(), portal)
	if err != nil {
		t.Fatal(err)
	}
	for _, ghost := range []id.UserID{h.aliceMX, bobMX} {
		if _, ok := members.Joined[ghost]; !ok {
			t.Errorf("%s is not in the supergroup's portal: %v", ghost, members.Joined)
		}
	}

	// A private message numbered as the channel's first is another message.
	if private := fake.Type(h.alice, h.mia, "hello in private"); private != first {
		t.Fatalf("the private message is %d, the channel's %d: the test needs them equal", private, first)
	}
	env.WaitMessage(env.WaitPortal("Alice Liddell"), h.aliceMX, "hello in private")

	fake.EditInChannel(sg, first, "hello supergroup, edited")
	h.waitEvent(portal, "the channel edit", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.NewContent != nil && msg.NewContent.Body == "hello supergroup, edited"
	})

	fake.LoseChannelUpdates(sg, 1)
	fake.PostInChannel(bob, sg, "lost on the way")
	fake.PostInChannel(bob, sg, "after the gap")
	env.WaitMessage(portal, bobMX, "lost on the way")
	env.WaitMessage(portal, bobMX, "after the gap")

	fake.DeleteInChannel(sg, first)
	firstMX := env.WaitMessage(portal, h.aliceMX, "hello supergroup")
	h.waitEvent(portal, "the channel delete", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && evt.Redacts == firstMX.ID
	})

	mxMsg := env.Send(portal, "hello from Matrix")
	sent := h.waitChannelMessage(sg, "hello from Matrix")
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* edited from Matrix",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "edited from Matrix"},
		RelatesTo:  (&event.RelatesTo{}).SetReplace(mxMsg),
	})
	h.waitChannelMessage(sg, "edited from Matrix")
	if _, err := env.Admin.RedactEvent(context.Background(), portal, mxMsg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(bridgetest.Timeout)
	for slices.ContainsFunc(fake.ChannelMessages(sg), func(m tg.Message) bool { return m.ID == sent.ID }) {
		if time.Now().After(deadline) {
			t.Fatalf("the message deleted from Matrix is still in the supergroup: %+v", fake.ChannelMessages(sg))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTelegramChannelCatchUp: channel messages sent while the bridge was
// down arrive after its restart (the channel's pts and access hash were
// kept), and when Telegram has too much to replay (channelDifferenceTooLong)
// the channel's latest messages are fetched instead.
func TestTelegramChannelCatchUp(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	sg := fake.AddChannel("Night shift", false, h.alice, h.mia)
	h.login()
	fake.PostInChannel(h.alice, sg, "before the restart")
	portal := env.WaitPortal("Night shift")
	env.WaitMessage(portal, h.aliceMX, "before the restart")

	env.Stop()
	fake.PostInChannel(h.alice, sg, "while down 1")
	fake.PostInChannel(h.alice, sg, "while down 2")
	env.Run()
	env.WaitMessage(portal, h.aliceMX, "while down 1")
	env.WaitMessage(portal, h.aliceMX, "while down 2")

	env.Stop()
	fake.LimitChannelDifference(sg, 2)
	for i := 1; i <= 4; i++ {
		fake.PostInChannel(h.alice, sg, "too many "+strconv.Itoa(i))
	}
	env.Run()
	for i := 1; i <= 4; i++ {
		env.WaitMessage(portal, h.aliceMX, "too many "+strconv.Itoa(i))
	}
}

// TestTelegramBroadcastChannel: a broadcast channel's posts arrive from
// the bridge bot; its portal asks power level 50 to send, which mia has in
// her own channel (her Matrix message reaches it) and not in another's.
func TestTelegramBroadcastChannel(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	news := fake.AddChannel("Alice's news", true, h.alice, h.mia)
	own := fake.AddChannel("Mia's notes", true, h.mia)
	h.login()

	fake.PostInChannel(h.alice, news, "breaking news")
	newsPortal := env.WaitPortal("Alice's news")
	env.WaitMessage(newsPortal, env.Bot, "breaking news")
	if level := h.powerToSend(newsPortal); level >= 50 {
		t.Errorf("the admin's power level in a channel they may not post in is %d, want below 50", level)
	}

	fake.PostInChannel(h.mia, own, "a note from Telegram")
	ownPortal := env.WaitPortal("Mia's notes")
	env.WaitMessage(ownPortal, env.Bot, "a note from Telegram")
	if level := h.powerToSend(ownPortal); level < 50 {
		t.Errorf("the admin's power level in their own channel is %d, want 50", level)
	}
	env.Send(ownPortal, "a note from Matrix")
	h.waitChannelMessage(own, "a note from Matrix")
}

// powerToSend checks that sending a message in room needs power level 50
// and returns the admin's.
func (h *harness) powerToSend(room id.RoomID) int {
	h.t.Helper()
	var pl event.PowerLevelsEventContent
	if err := h.env.Admin.StateEvent(context.Background(), room, event.StatePowerLevels, "", &pl); err != nil {
		h.t.Fatalf("power levels of %s: %v", room, err)
	}
	if need := pl.GetEventLevel(event.EventMessage); need != 50 {
		h.t.Errorf("sending a message in %s needs power level %d, want 50", room, need)
	}
	return pl.GetUserLevel(h.env.Admin.UserID)
}
