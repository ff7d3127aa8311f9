//go:build goolm

package discord_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/discord"
)

// TestBridgeUserLogin logs in with a user account's token (after the bot
// warns that it is against Discord's terms): the user's DM with alice, their
// group DM and their guild's channel become encrypted portals; the DM works
// both ways, the admin's message arriving on Discord as the user and not
// coming back, a message the user typed on Discord itself arriving once,
// and the admin's read receipt marking the DM read on Discord.
func TestBridgeUserLogin(t *testing.T) {
	d := newDiscordSide(t)
	me := d.fake.AddUser("me")
	dm := d.fake.DMBetween(me.ID, d.alice.ID)
	d.fake.AddGroupDM("friends", me.ID, d.alice.ID, d.fake.AddUser("carol").ID)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())

	control := env.DM()
	env.Send(control, "login user-token")
	env.WaitMessage(control, env.Bot, "against Discord's terms of service")
	env.Send(control, d.fake.Token()) // a bot's token, sent without "Bot ", is refused
	env.WaitMessage(control, env.Bot, "Discord refused that user token")
	env.Send(control, "login user-token")
	waitMatrix(t, env, control, "the second prompt for the user token", func() func(*event.Event, *event.MessageEventContent) bool {
		prompts := map[string]bool{}
		return func(evt *event.Event, msg *event.MessageEventContent) bool {
			if evt.Sender == env.Bot && strings.Contains(msg.Body, "Please enter your User token") {
				prompts[evt.ID.String()] = true
			}
			return len(prompts) == 2
		}
	}())
	env.Send(control, d.fake.UserToken(me.ID))
	env.WaitMessage(control, env.Bot, "Logged in as me")
	env.WaitPortal("#general")
	joinedRoomNamed(t, env, "friends")

	// The DM, from READY's private channels, both ways.
	if _, err := d.fake.Post(dm.ID, d.alice.ID, "hi me, it's alice"); err != nil {
		t.Fatal(err)
	}
	alice := ghostOf(env, d.alice)
	dmPortal := waitInvitedMessage(t, env, alice, "hi me, it's alice")
	env.Send(dmPortal, "hi alice, from Matrix")
	d.waitDiscord(t, dm.ID, "the admin's message as the user", func(m *discordgo.Message) bool {
		return m.Author.ID == me.ID && m.Content == "hi alice, from Matrix"
	})

	// Typed by the user on Discord itself: it arrives, once.
	if _, err := d.fake.Post(dm.ID, me.ID, "typed on my phone"); err != nil {
		t.Fatal(err)
	}
	waitMatrix(t, env, dmPortal, "the user's message typed on Discord", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return msg.Body == "typed on my phone"
	})
	again, err := d.fake.Post(dm.ID, d.alice.ID, "alice again")
	if err != nil {
		t.Fatal(err)
	}
	againEvt := env.WaitMessage(dmPortal, alice, "alice again")
	counts := map[string]int{}
	for _, evt := range env.Device.Decrypted() {
		if evt.RoomID == dmPortal {
			counts[evt.Content.AsMessage().Body]++
		}
	}
	for _, body := range []string{"hi alice, from Matrix", "typed on my phone"} {
		if counts[body] != 1 {
			t.Errorf("%q is %d times in the DM portal, want once", body, counts[body])
		}
	}

	// The admin's read receipt marks the DM read on Discord.
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	if err := env.Admin.MarkRead(ctx, dmPortal, againEvt.ID); err != nil {
		t.Fatalf("read receipt: %v", err)
	}
	if err := d.fake.WaitAck(ctx, me.ID, dm.ID, again.ID); err != nil {
		t.Fatalf("the read receipt did not reach Discord: %v", err)
	}
}

// TestLoginWhileAnotherCannotConnect: while Discord's gateway refuses
// connections, the bot's login completes and its client keeps trying to
// connect; a user's login made meanwhile completes too (before, it waited
// for the bot's client to connect, so every login of the bridge hung
// while one could not), and both connect once the gateway is back.
func TestLoginWhileAnotherCannotConnect(t *testing.T) {
	d := newDiscordSide(t)
	me := d.fake.AddUser("me")
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	d.fake.SetGatewayDown(true)
	control := env.DM()
	env.Send(control, "login bot-token")
	env.WaitMessage(control, env.Bot, "Please enter your Bot token")
	env.Send(control, d.fake.Token())
	env.WaitMessage(control, env.Bot, "Logged in as the bot "+d.fake.Bot().Username)

	env.Send(control, "login user-token")
	env.WaitMessage(control, env.Bot, "Please enter your User token")
	env.Send(control, d.fake.UserToken(me.ID))
	env.WaitMessage(control, env.Bot, "Logged in as me")

	d.fake.SetGatewayDown(false)
	deadline := time.Now().Add(bridgetest.Timeout)
	for d.fake.ConnectedSessions() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d gateway sessions connected after the outage, want the bot's and the user's", d.fake.ConnectedSessions())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
