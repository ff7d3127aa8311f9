//go:build goolm

package discord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/discord"
	"github.com/matrixos/matrixos/internal/testnode"
)

// publicMediaURL is the public_media_url the relay tests configure.
const publicMediaURL = "https://matrix.example.org/"

// relayedUser is a Matrix user who has not logged in to Discord, with a
// display name, an avatar and an encrypting device.
type relayedUser struct {
	client *mautrix.Client
	device *testnode.E2EEDevice
	avatar id.ContentURI
}

func newRelayedUser(t *testing.T, env *bridgetest.Env, name string) *relayedUser {
	t.Helper()
	ctx := context.Background()
	c := env.Node.Register("bob")
	if err := c.SetDisplayName(ctx, name); err != nil {
		t.Fatalf("set display name: %v", err)
	}
	upload, err := c.UploadBytes(ctx, []byte("\x89PNG\r\n\x1a\nbob"), "image/png")
	if err != nil {
		t.Fatalf("upload avatar: %v", err)
	}
	if err := c.SetAvatarURL(ctx, upload.ContentURI); err != nil {
		t.Fatalf("set avatar: %v", err)
	}
	return &relayedUser{client: c, device: testnode.NewE2EEDevice(t, "bob", c), avatar: upload.ContentURI}
}

// join has the admin invite the user to a portal and the user join it.
func (u *relayedUser) join(t *testing.T, env *bridgetest.Env, portal id.RoomID) {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Admin.InviteUser(ctx, portal, &mautrix.ReqInviteUser{UserID: u.client.UserID}); err != nil {
		t.Fatalf("invite %s: %v", u.client.UserID, err)
	}
	if _, err := u.client.JoinRoomByID(ctx, portal); err != nil {
		t.Fatalf("join %s: %v", portal, err)
	}
	u.device.SyncUntil(bridgetest.Timeout, "bob's join", func() bool {
		return u.device.Member(portal, u.client.UserID, event.MembershipJoin) && u.device.Member(portal, env.Bot, event.MembershipJoin)
	})
}

// joinedRoomNamed waits until the admin has joined a room with the name
// (WaitPortal joins every room it is invited to meanwhile).
func joinedRoomNamed(t *testing.T, env *bridgetest.Env, name string) id.RoomID {
	t.Helper()
	ctx := context.Background()
	var found id.RoomID
	env.Device.SyncUntil(bridgetest.Timeout, "a joined room named "+name, func() bool {
		for _, invited := range env.Device.Invited() {
			if _, err := env.Admin.JoinRoomByID(ctx, invited); err != nil {
				t.Fatalf("join %s: %v", invited, err)
			}
		}
		joined, err := env.Admin.JoinedRooms(ctx)
		if err != nil {
			t.Fatalf("joined rooms: %v", err)
		}
		for _, room := range joined.JoinedRooms {
			var content event.RoomNameEventContent
			if env.Admin.StateEvent(ctx, room, event.StateRoomName, "", &content) == nil && content.Name == name {
				found = room
			}
		}
		return found != ""
	})
	return found
}

// TestBridgeRelaysThroughWebhook has a Matrix user who has not logged in
// write in an encrypted guild channel portal: the message goes through a
// webhook the bot creates in the channel, under the user's display name
// and public avatar URL, is not bridged back, and the user's edit and
// deletion go through the same webhook. The logged-in admin's messages
// still come from the bot. Without the Manage Webhooks permission (in a
// second channel) relayed messages come from the bot with the name in
// front, and the room is told once.
func TestBridgeRelaysThroughWebhook(t *testing.T) {
	d := newDiscordSide(t)
	random := d.fake.AddChannel(d.general.GuildID, "random")
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig()+"public_media_url: "+publicMediaURL+"\n")
	portal := login(t, env, d)
	randomPortal := joinedRoomNamed(t, env, "#random")
	bob := newRelayedUser(t, env, "Bob Relay")
	bob.join(t, env, portal)
	general := d.general.ID

	// A relayed message goes through the channel's webhook.
	hello := bob.device.Send(portal, "hello from **bob**")
	relayed := d.waitDiscord(t, general, "bob's relayed message", func(m *discordgo.Message) bool {
		return m.WebhookID != "" && strings.HasPrefix(m.Content, "hello from")
	})
	if relayed.Author.Username != "Bob Relay" || relayed.Content != "hello from \\*\\*bob\\*\\*" {
		t.Fatalf("relayed message by %q: %q", relayed.Author.Username, relayed.Content)
	}
	wantAvatar := publicMediaURL + "_matrix/media/v3/download/" + bob.avatar.Homeserver + "/" + bob.avatar.FileID
	if got := d.fake.WebhookAvatarURL(relayed.ID); got != wantAvatar {
		t.Fatalf("avatar_url = %q, want %q", got, wantAvatar)
	}
	hooks := d.fake.Webhooks(general)
	if len(hooks) != 1 || hooks[0].ID != relayed.WebhookID || hooks[0].User.ID != d.fake.Bot().ID {
		t.Fatalf("webhooks of #general = %+v, want the bot's one", hooks)
	}

	// A second relayed message reuses the webhook.
	bob.device.Send(portal, "second from bob")
	d.waitDiscord(t, general, "bob's second message", func(m *discordgo.Message) bool {
		return m.WebhookID == relayed.WebhookID && m.Content == "second from bob"
	})
	if n := len(d.fake.Webhooks(general)); n != 1 {
		t.Fatalf("%d webhooks in #general, want 1", n)
	}

	// The logged-in admin's message comes from the bot.
	env.Send(portal, "from the admin")
	d.waitDiscord(t, general, "the admin's message", func(m *discordgo.Message) bool {
		return m.Author.ID == d.fake.Bot().ID && m.WebhookID == "" && m.Content == "from the admin"
	})

	// Bob's edit goes through the webhook.
	bob.device.SendContent(portal, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* hello, edited",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "hello, edited"},
		RelatesTo:  (&event.RelatesTo{}).SetReplace(hello),
	})
	d.waitDiscord(t, general, "bob's edit", func(m *discordgo.Message) bool {
		return m.ID == relayed.ID && m.Content == "hello, edited" && m.EditedTimestamp != nil
	})

	// The echoes of the webhook's messages and edit were not bridged back:
	// alice's message after them arrives alone.
	if _, err := d.fake.Post(general, d.alice.ID, "alice after the relay"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(portal, ghostOf(env, d.alice), "alice after the relay")
	webhookGhost := id.NewUserID("discord_"+relayed.WebhookID, env.Node.Config.ServerName)
	for _, evt := range env.Device.Decrypted() {
		if evt.RoomID == portal && evt.Sender == webhookGhost {
			t.Fatalf("a relayed message came back: %q", evt.Content.AsMessage().Body)
		}
	}

	// Bob's deletion goes through the webhook.
	if _, err := bob.client.RedactEvent(context.Background(), portal, hello); err != nil {
		t.Fatalf("redact: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	if err := d.fake.WaitMessageGone(ctx, general, relayed.ID); err != nil {
		t.Fatalf("bob's deleted message stays on Discord: %v", err)
	}

	// Without the permission: the bot sends, with the name in front, and
	// the room is told once.
	d.fake.DenyManageWebhooks(true)
	bob.join(t, env, randomPortal)
	bob.device.Send(randomPortal, "first without webhook")
	bob.device.Send(randomPortal, "second without webhook")
	for _, text := range []string{"first without webhook", "second without webhook"} {
		d.waitDiscord(t, random.ID, "the fallback "+text, func(m *discordgo.Message) bool {
			return m.Author.ID == d.fake.Bot().ID && m.Content == "**Bob Relay**: "+text
		})
	}
	if _, err := d.fake.Post(random.ID, d.alice.ID, "alice in random"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(randomPortal, ghostOf(env, d.alice), "alice in random")
	notices := 0
	for _, evt := range env.Device.Decrypted() {
		if evt.RoomID == randomPortal && evt.Sender == env.Bot && strings.Contains(evt.Content.AsMessage().Body, "Manage Webhooks") {
			notices++
		}
	}
	if notices != 1 {
		t.Fatalf("%d notices about the missing permission, want 1", notices)
	}
	if n := len(d.fake.Webhooks(random.ID)); n != 0 {
		t.Fatalf("%d webhooks in #random without the permission", n)
	}
}

// TestForeignWebhookMessages: messages an integration posts through a
// webhook of its own (not the bridge's) are bridged, each from a ghost
// named as the message was (one per webhook and name), although Discord
// has no user profile for the webhook; the bridge's own relayed messages
// are still not bridged back.
func TestForeignWebhookMessages(t *testing.T) {
	d := newDiscordSide(t)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	portal := login(t, env, d)
	hook := d.fake.AddWebhook(d.general.ID, d.alice.ID, "CI")
	post := func(username, content string) {
		t.Helper()
		body, err := json.Marshal(map[string]string{"username": username, "content": content})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(d.fake.URL()+"api/v10/webhooks/"+hook.ID+"/"+hook.Token+"?wait=true", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("execute the webhook: %s", resp.Status)
		}
	}
	post("Build Bot", "build 42 passed")
	post("Deploy Bot", "deployed 42")
	post("Build Bot", "build 43 passed")

	senderOf := func(text string) id.UserID {
		return waitMatrix(t, env, portal, text, func(_ *event.Event, msg *event.MessageEventContent) bool {
			return msg.Body == text
		}).Sender
	}
	build, deploy, build2 := senderOf("build 42 passed"), senderOf("deployed 42"), senderOf("build 43 passed")
	if build == deploy || build != build2 || build == ghostOf(env, d.alice) {
		t.Fatalf("senders %s, %s, %s: want one ghost per name, not the webhook owner's", build, deploy, build2)
	}
	for ghost, name := range map[id.UserID]string{build: "Build Bot", deploy: "Deploy Bot"} {
		testnode.WaitFor(t, bridgetest.Timeout, "the profile of "+string(ghost), func() bool {
			profile, err := env.Admin.GetProfile(context.Background(), ghost)
			return err == nil && profile.DisplayName == name
		})
	}
}
