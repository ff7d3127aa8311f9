//go:build goolm

package discord_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"go.mau.fi/util/variationselector"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/discord"
	"github.com/matrixos/matrixos/internal/bridges/discord/discordfake"
)

// discordMaxContent is Discord's limit on a message's characters.
const discordMaxContent = 2000

// discordSide is a fake Discord with one guild channel and a user, alice.
type discordSide struct {
	fake    *discordfake.Server
	general *discordgo.Channel
	alice   *discordgo.User
}

func newDiscordSide(t *testing.T) *discordSide {
	fake := discordfake.Start(t, discordfake.Options{})
	guild := fake.AddGuild("Matrix OS fans")
	return &discordSide{fake: fake, general: fake.AddChannel(guild.ID, "general"), alice: fake.AddUser("alice")}
}

func (d *discordSide) networkConfig() string {
	return fmt.Sprintf("api_url: %s\ncdn_url: %s\n", d.fake.URL(), d.fake.URL())
}

// waitDiscord waits for a message in a Discord channel.
func (d *discordSide) waitDiscord(t *testing.T, channelID, what string, match func(*discordgo.Message) bool) *discordgo.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	m, err := d.fake.WaitMessage(ctx, channelID, match)
	if err != nil {
		t.Fatalf("no %s on Discord: %v", what, err)
	}
	return m
}

// login logs the admin in with the bot token from a DM with the bridge
// bot, as a new user would, and returns the portal of #general.
func login(t *testing.T, env *bridgetest.Env, d *discordSide) id.RoomID {
	t.Helper()
	dm := env.DM()
	env.Send(dm, "login bot-token")
	env.WaitMessage(dm, env.Bot, "Please enter your Bot token")
	env.Send(dm, d.fake.Token())
	env.WaitMessage(dm, env.Bot, "Logged in as the bot "+d.fake.Bot().Username)
	return env.WaitPortal("#general")
}

func ghostOf(env *bridgetest.Env, u *discordgo.User) id.UserID {
	return id.NewUserID("discord_"+u.ID, env.Node.Config.ServerName)
}

// sendEncrypted encrypts any event content for the room and sends it as
// the admin's device.
func sendEncrypted(t *testing.T, env *bridgetest.Env, room id.RoomID, evtType event.Type, content any) id.EventID {
	t.Helper()
	ctx := context.Background()
	members, err := env.Device.C.StateStore.GetRoomJoinedOrInvitedMembers(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Device.Mach.ShareGroupSession(ctx, room, members); err != nil {
		t.Fatalf("share group session: %v", err)
	}
	encrypted, err := env.Device.Mach.EncryptMegolmEvent(ctx, room, evtType, content)
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	resp, err := env.Admin.SendMessageEvent(ctx, room, event.EventEncrypted, encrypted)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.EventID
}

// waitMatrix waits until the admin's device has decrypted a message in the
// room that matches.
func waitMatrix(t *testing.T, env *bridgetest.Env, room id.RoomID, what string, match func(*event.Event, *event.MessageEventContent) bool) *event.Event {
	t.Helper()
	var found *event.Event
	env.Device.SyncUntil(bridgetest.Timeout, what, func() bool {
		for _, evt := range env.Device.Decrypted() {
			if msg, ok := evt.Content.Parsed.(*event.MessageEventContent); ok && evt.RoomID == room && match(evt, msg) {
				found = evt
				return true
			}
		}
		return false
	})
	return found
}

// waitTimeline reads the room's recent timeline (as stored, not
// decrypted) until an event matches: for the reactions and redactions
// bridgev2 sends in the clear.
func waitTimeline(t *testing.T, env *bridgetest.Env, room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		resp, err := env.Admin.Messages(context.Background(), room, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatalf("read the timeline: %v", err)
		}
		for _, evt := range resp.Chunk {
			if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
				continue
			}
			if match(evt) {
				return evt
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s in room %s within %v", what, room, bridgetest.Timeout)
	return nil
}

// TestBridgeEndToEnd runs the Discord bridge against a node and the fake
// Discord, in an encrypted portal read by a goolm client: the login from a
// DM with the bot, then messages, edits, replies, reactions, an attachment
// and a thread both ways, a dropped gateway connection and a restart of the
// bridge without losing a message, and bad input refused with a notice.
func TestBridgeEndToEnd(t *testing.T) {
	d := newDiscordSide(t)
	avatar := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{9}, 500)...)
	if err := d.fake.SetAvatar(d.alice.ID, avatar); err != nil {
		t.Fatal(err)
	}
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	portal := login(t, env, d)
	alice := ghostOf(env, d.alice)
	bot := d.fake.Bot().ID
	general := d.general.ID
	assertInGuildSpace(t, env, portal, "Matrix OS fans")

	// Discord -> Matrix: text with markdown.
	first, err := d.fake.Post(general, d.alice.ID, "hello **from** Discord")
	if err != nil {
		t.Fatal(err)
	}
	firstEvt := env.WaitMessage(portal, alice, "hello from Discord")
	if msg := firstEvt.Content.AsMessage(); !strings.Contains(msg.FormattedBody, "<strong>from</strong>") {
		t.Fatalf("formatted body = %q", msg.FormattedBody)
	}
	assertGhostProfile(t, env, alice, "alice", avatar)

	// Matrix -> Discord: text, through two 429s Discord answers first.
	d.fake.ForceRateLimit(2)
	fromMatrix := env.Send(portal, "hello from *Matrix*")
	d.waitDiscord(t, general, "message from Matrix", func(m *discordgo.Message) bool {
		return m.Author.ID == bot && m.Content == `hello from \*Matrix\*`
	})
	if n := d.fake.RateLimited(); n != 2 {
		t.Fatalf("%d answers were 429s, want 2", n)
	}

	// Discord -> Matrix: an edit.
	if err := d.fake.Edit(general, first.ID, "hello, edited"); err != nil {
		t.Fatal(err)
	}
	waitMatrix(t, env, portal, "the edit from Discord", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return evt.Sender == alice && msg.RelatesTo.GetReplaceID() == firstEvt.ID && msg.NewContent != nil && msg.NewContent.Body == "hello, edited"
	})

	// Matrix -> Discord: an edit.
	sendEncrypted(t, env, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* hello again",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "hello again"},
		RelatesTo:  (&event.RelatesTo{}).SetReplace(fromMatrix),
	})
	d.waitDiscord(t, general, "the edit from Matrix", func(m *discordgo.Message) bool {
		return m.Author.ID == bot && m.Content == "hello again" && m.EditedTimestamp != nil
	})

	// Discord -> Matrix: a reply.
	if _, err := d.fake.Post(general, d.alice.ID, "a reply from Discord", discordfake.ReplyTo(first.ID)); err != nil {
		t.Fatal(err)
	}
	waitMatrix(t, env, portal, "the reply from Discord", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return msg.Body == "a reply from Discord" && msg.RelatesTo.GetReplyTo() == firstEvt.ID
	})

	// Matrix -> Discord: a reply.
	sendEncrypted(t, env, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "a reply from Matrix",
		RelatesTo: (&event.RelatesTo{}).SetReplyTo(firstEvt.ID),
	})
	d.waitDiscord(t, general, "the reply from Matrix", func(m *discordgo.Message) bool {
		return m.Content == "a reply from Matrix" && m.MessageReference != nil && m.MessageReference.MessageID == first.ID
	})

	// Discord -> Matrix: a reaction, then its removal.
	if err := d.fake.React(general, first.ID, d.alice.ID, "👍"); err != nil {
		t.Fatal(err)
	}
	reaction := waitTimeline(t, env, portal, "alice's reaction", func(evt *event.Event) bool {
		r, ok := evt.Content.Parsed.(*event.ReactionEventContent)
		return ok && evt.Sender == alice && variationselector.Remove(r.RelatesTo.Key) == "👍" && r.RelatesTo.EventID == firstEvt.ID
	})
	if err := d.fake.Unreact(general, first.ID, d.alice.ID, "👍"); err != nil {
		t.Fatal(err)
	}
	waitTimeline(t, env, portal, "the redaction of alice's reaction", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && (evt.Redacts == reaction.ID || evt.Content.AsRedaction().Redacts == reaction.ID)
	})

	// Discord -> Matrix: a custom emoji reaction arrives as its :name:.
	if err := d.fake.React(general, first.ID, d.alice.ID, "pog:123456"); err != nil {
		t.Fatal(err)
	}
	waitTimeline(t, env, portal, "alice's custom emoji reaction", func(evt *event.Event) bool {
		r, ok := evt.Content.Parsed.(*event.ReactionEventContent)
		return ok && evt.Sender == alice && r.RelatesTo.Key == ":pog:"
	})

	// Matrix -> Discord: a reaction that is not an emoji is refused, an
	// emoji reaction (sent after it) arrives.
	sendEncrypted(t, env, portal, event.EventReaction, &event.ReactionEventContent{
		RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: firstEvt.ID, Key: "+1"},
	})
	sendEncrypted(t, env, portal, event.EventReaction, &event.ReactionEventContent{
		RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: firstEvt.ID, Key: "🎉"},
	})
	d.waitDiscord(t, general, "the bot's reaction", func(m *discordgo.Message) bool {
		return m.ID == first.ID && slices.ContainsFunc(m.Reactions, func(r *discordgo.MessageReactions) bool { return r.Me && r.Emoji.Name == "🎉" })
	})
	for emoji, users := range d.fake.Reactions(first.ID) {
		if emoji != "🎉" && slices.Contains(users, bot) {
			t.Fatalf("the bot reacted with %q", emoji)
		}
	}

	// Deletions both ways.
	doomed, err := d.fake.Post(general, d.alice.ID, "to be deleted on Discord")
	if err != nil {
		t.Fatal(err)
	}
	doomedEvt := env.WaitMessage(portal, alice, "to be deleted on Discord")
	if err := d.fake.Delete(general, doomed.ID); err != nil {
		t.Fatal(err)
	}
	waitTimeline(t, env, portal, "the redaction of the deleted message", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && (evt.Redacts == doomedEvt.ID || evt.Content.AsRedaction().Redacts == doomedEvt.ID)
	})
	regret := env.Send(portal, "to be deleted on Matrix")
	regretted := d.waitDiscord(t, general, "the message to delete", func(m *discordgo.Message) bool {
		return m.Content == "to be deleted on Matrix"
	})
	if _, err := env.Admin.RedactEvent(context.Background(), portal, regret); err != nil {
		t.Fatalf("redact: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	if err := d.fake.WaitMessageGone(ctx, general, regretted.ID); err != nil {
		t.Fatalf("the redacted message stays on Discord: %v", err)
	}

	// Discord -> Matrix: an attachment, into the encrypted room's media.
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 1000)...)
	if _, err := d.fake.Post(general, d.alice.ID, "", discordfake.WithAttachment("cat.png", "image/png", png)); err != nil {
		t.Fatal(err)
	}
	image := waitMatrix(t, env, portal, "the image from Discord", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return msg.MsgType == event.MsgImage && msg.Body == "cat.png"
	})
	if got := downloadMatrixFile(t, env, image.Content.AsMessage()); !bytes.Equal(got, png) {
		t.Fatalf("image bytes differ: %d bytes, want %d", len(got), len(png))
	}

	// Matrix -> Discord: an (encrypted) file.
	fileBody := []byte("notes from Matrix")
	sendEncrypted(t, env, portal, event.EventMessage, uploadMatrixFile(t, env, "notes.txt", "text/plain", fileBody))
	upload := d.waitDiscord(t, general, "the file from Matrix", func(m *discordgo.Message) bool {
		return len(m.Attachments) == 1 && m.Attachments[0].Filename == "notes.txt"
	})
	if got, _, ok := d.fake.Attachment(upload.Attachments[0].URL); !ok || !bytes.Equal(got, fileBody) {
		t.Fatalf("uploaded file = %q, want %q", got, fileBody)
	}

	// Discord -> Matrix: a thread on the first message is its Matrix thread.
	thread, err := d.fake.StartThread(general, first.ID, d.alice.ID, "a topic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.fake.Post(thread.ID, d.alice.ID, "in the Discord thread"); err != nil {
		t.Fatal(err)
	}
	waitMatrix(t, env, portal, "the thread message from Discord", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return msg.Body == "in the Discord thread" && msg.RelatesTo.GetThreadParent() == firstEvt.ID
	})

	// Matrix -> Discord: a message in that Matrix thread goes to the thread.
	sendEncrypted(t, env, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "in the Matrix thread",
		RelatesTo: (&event.RelatesTo{}).SetThread(firstEvt.ID, firstEvt.ID),
	})
	d.waitDiscord(t, thread.ID, "the thread message from Matrix", func(m *discordgo.Message) bool {
		return m.Content == "in the Matrix thread"
	})

	// Bad input from Matrix: too long for Discord; refused with a notice,
	// nothing sent.
	env.Send(portal, strings.Repeat("x", discordMaxContent+1))
	// (bridgev2 sends its error notices in the clear.)
	waitTimeline(t, env, portal, "the notice refusing the long message", func(evt *event.Event) bool {
		msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
		return ok && evt.Sender == env.Bot && strings.Contains(msg.Body, "2000 characters")
	})
	for _, m := range d.fake.Messages(general) {
		if len(m.Content) > discordMaxContent {
			t.Fatalf("a message of %d characters reached Discord", len(m.Content))
		}
	}

	// A dropped gateway connection resumes its session; what was said
	// meanwhile arrives.
	d.fake.DropGatewayConnections()
	if _, err := d.fake.Post(general, d.alice.ID, "said while the connection was down"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(portal, alice, "said while the connection was down")
	if n := d.fake.GatewaySessions(); n != 1 {
		t.Fatalf("%d gateway sessions, want 1 (resumed)", n)
	}

	// A restart of the bridge: a new session, and what was said while the
	// bridge was down is fetched.
	env.Stop()
	if _, err := d.fake.Post(general, d.alice.ID, "said while the bridge was stopped"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.fake.Post(thread.ID, d.alice.ID, "in the thread while stopped"); err != nil {
		t.Fatal(err)
	}
	env.Run()
	env.WaitMessage(portal, alice, "said while the bridge was stopped")
	waitMatrix(t, env, portal, "the thread message sent while stopped", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return msg.Body == "in the thread while stopped" && msg.RelatesTo.GetThreadParent() == firstEvt.ID
	})
	// And both ways keep working after the restart.
	env.Send(portal, "after the restart")
	d.waitDiscord(t, general, "a message after the restart", func(m *discordgo.Message) bool {
		return m.Author.ID == bot && m.Content == "after the restart"
	})
	assertNoDuplicates(t, env, portal)
	// The stopped bridge's client did not reconnect behind its back: only
	// the new one is connected (a reconnect would have come a second after
	// the stop, long before this).
	if n := d.fake.ConnectedSessions(); n != 1 {
		t.Fatalf("%d gateway sessions connected after the restart, want 1", n)
	}
}

// assertNoDuplicates checks that no Discord message was bridged twice
// (the restart's catch-up refetches messages bridgev2 already has).
func assertNoDuplicates(t *testing.T, env *bridgetest.Env, room id.RoomID) {
	t.Helper()
	seen := map[string]int{}
	for _, evt := range env.Device.Decrypted() {
		msg := evt.Content.AsMessage()
		if evt.RoomID == room && msg.RelatesTo.GetReplaceID() == "" && strings.HasPrefix(string(evt.Sender), "@discord_") {
			seen[msg.Body]++
		}
	}
	for body, n := range seen {
		if n > 1 {
			t.Errorf("%q arrived %d times", body, n)
		}
	}
}

func downloadMatrixFile(t *testing.T, env *bridgetest.Env, msg *event.MessageEventContent) []byte {
	t.Helper()
	if msg.File == nil {
		t.Fatalf("the file in an encrypted room is not encrypted: %+v", msg)
	}
	uri, err := msg.File.URL.Parse()
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Admin.DownloadBytes(context.Background(), uri)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	plain, err := msg.File.Decrypt(data)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return plain
}

func uploadMatrixFile(t *testing.T, env *bridgetest.Env, name, mimeType string, data []byte) *event.MessageEventContent {
	t.Helper()
	file := attachment.NewEncryptedFile()
	ciphertext := file.Encrypt(data)
	resp, err := env.Admin.UploadBytes(context.Background(), ciphertext, "application/octet-stream")
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return &event.MessageEventContent{
		MsgType: event.MsgFile, Body: name, FileName: name,
		File: &event.EncryptedFileInfo{EncryptedFile: *file, URL: resp.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: mimeType, Size: len(data)},
	}
}

// TestBridgeLoginAndDMs logs in as a new user would, first with a token
// Discord refuses (the bot asks again), and bridges a DM with the bot both
// ways.
func TestBridgeLoginAndDMs(t *testing.T) {
	d := newDiscordSide(t)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	dm := env.DM()
	env.Send(dm, "login bot-token")
	env.WaitMessage(dm, env.Bot, "Please enter your Bot token")
	env.Send(dm, "not-the-token")
	env.WaitMessage(dm, env.Bot, "Discord refused that bot token")
	if n := d.fake.GatewaySessions(); n != 0 {
		t.Fatalf("%d gateway sessions after a refused token", n)
	}
	// Trying again with the right token logs in.
	env.Send(dm, "login bot-token")
	waitMatrix(t, env, dm, "the second prompt for the token", func() func(*event.Event, *event.MessageEventContent) bool {
		prompts := map[id.EventID]bool{}
		return func(evt *event.Event, msg *event.MessageEventContent) bool {
			if evt.Sender == env.Bot && strings.Contains(msg.Body, "Please enter your Bot token") {
				prompts[evt.ID] = true
			}
			return len(prompts) == 2
		}
	}())
	env.Send(dm, d.fake.Token())
	env.WaitMessage(dm, env.Bot, "Logged in as the bot "+d.fake.Bot().Username)
	env.WaitPortal("#general")

	// alice writes to the bot in a DM: a DM portal named after her.
	dmChannel := d.fake.DMChannel(d.alice.ID)
	if _, err := d.fake.Post(dmChannel.ID, d.alice.ID, "hi bot, it's alice"); err != nil {
		t.Fatal(err)
	}
	dmPortal := waitInvitedMessage(t, env, ghostOf(env, d.alice), "hi bot, it's alice")
	var name event.RoomNameEventContent
	if err := env.Admin.StateEvent(context.Background(), dmPortal, event.StateRoomName, "", &name); err != nil || name.Name != "alice" {
		t.Fatalf("DM portal name = %q, %v; want alice", name.Name, err)
	}
	env.Send(dmPortal, "hi alice")
	d.waitDiscord(t, dmChannel.ID, "the answer in the DM", func(m *discordgo.Message) bool {
		return m.Author.ID == d.fake.Bot().ID && m.Content == "hi alice"
	})

	// A file Discord cannot hand over becomes a notice saying so, and the
	// message's text still arrives.
	d.fake.FailAttachmentDownloads(true)
	if _, err := d.fake.Post(dmChannel.ID, d.alice.ID, "see attached", discordfake.WithAttachment("gone.txt", "text/plain", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	waitMatrix(t, env, dmPortal, "the notice for the missing file", func(evt *event.Event, msg *event.MessageEventContent) bool {
		return evt.Sender == ghostOf(env, d.alice) && msg.MsgType == event.MsgNotice && strings.Contains(msg.Body, "gone.txt could not be bridged")
	})
	env.WaitMessage(dmPortal, ghostOf(env, d.alice), "see attached")
}

// waitInvitedMessage joins the rooms the admin is invited to until a
// message from sender containing text is decrypted in one, and returns
// that room. (The bot names a DM portal after inviting to it.)
func waitInvitedMessage(t *testing.T, env *bridgetest.Env, sender id.UserID, text string) id.RoomID {
	t.Helper()
	var room id.RoomID
	env.Device.SyncUntil(bridgetest.Timeout, fmt.Sprintf("a message from %s containing %q", sender, text), func() bool {
		for _, invited := range env.Device.Invited() {
			if _, err := env.Admin.JoinRoomByID(context.Background(), invited); err != nil {
				t.Fatalf("join %s: %v", invited, err)
			}
		}
		for _, evt := range env.Device.Decrypted() {
			if evt.Sender == sender && strings.Contains(evt.Content.AsMessage().Body, text) {
				room = evt.RoomID
				return true
			}
		}
		return false
	})
	return room
}

// assertInGuildSpace checks that a portal's m.space.parent is a space
// named after its guild.
func assertInGuildSpace(t *testing.T, env *bridgetest.Env, portal id.RoomID, guildName string) {
	t.Helper()
	ctx := context.Background()
	// The bridge adds the portal to the space just after creating both.
	var space id.RoomID
	env.Device.SyncUntil(bridgetest.Timeout, "the portal's m.space.parent", func() bool {
		state, err := env.Admin.State(ctx, portal)
		if err != nil {
			t.Fatalf("portal state: %v", err)
		}
		for key := range state[event.StateSpaceParent] {
			space = id.RoomID(key)
		}
		return space != ""
	})
	var name event.RoomNameEventContent
	env.Device.SyncUntil(bridgetest.Timeout, "the guild's space", func() bool {
		for _, invited := range env.Device.Invited() {
			if _, err := env.Admin.JoinRoomByID(ctx, invited); err != nil {
				t.Fatalf("join %s: %v", invited, err)
			}
		}
		return env.Admin.StateEvent(ctx, space, event.StateRoomName, "", &name) == nil
	})
	var create event.CreateEventContent
	if err := env.Admin.StateEvent(ctx, space, event.StateCreate, "", &create); err != nil || create.Type != event.RoomTypeSpace {
		t.Fatalf("parent %s is not a space: %+v, %v", space, create, err)
	}
	if name.Name != guildName {
		t.Fatalf("space name = %q, want %q", name.Name, guildName)
	}
}

// assertGhostProfile checks a ghost's display name and avatar (the bytes
// Discord's CDN has) once the bridge has set them.
func assertGhostProfile(t *testing.T, env *bridgetest.Env, ghost id.UserID, name string, avatar []byte) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(bridgetest.Timeout)
	for {
		profile, err := env.Admin.GetProfile(ctx, ghost)
		if err != nil {
			t.Fatalf("profile of %s: %v", ghost, err)
		}
		if profile.DisplayName == name && !profile.AvatarURL.IsEmpty() {
			got, err := env.Admin.DownloadBytes(ctx, profile.AvatarURL)
			if err != nil {
				t.Fatalf("download avatar: %v", err)
			}
			if !bytes.Equal(got, avatar) {
				t.Fatalf("avatar of %s differs from Discord's", ghost)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile of %s = %+v, want %q with an avatar", ghost, profile, name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBridgeSurvivesPanic has the fake send a READY with "user": null after
// a restart of the bridge: the handler that panics on it is contained (the
// test process survives) and the messages after it are bridged.
func TestBridgeSurvivesPanic(t *testing.T) {
	d := newDiscordSide(t)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	portal := login(t, env, d)
	alice := ghostOf(env, d.alice)

	d.fake.SendReadyWithoutUser(1)
	env.Stop()
	identified := d.fake.GatewaySessions()
	env.Run()
	// Connect returns before the gateway is open: post once the bridge
	// has IDENTIFYed again (its READY sent first), not into the catch-up
	// the bad READY skipped.
	deadline := time.Now().Add(bridgetest.Timeout)
	for d.fake.GatewaySessions() == identified {
		if time.Now().After(deadline) {
			t.Fatal("the bridge never connected to the gateway after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := d.fake.Post(d.general.ID, d.alice.ID, "after the bad READY"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(portal, alice, "after the bad READY")
}

// TestBridgeCatchesUpAfterFreshReady drops the gateway and has Discord
// forget the session: alice's message typed meanwhile is not replayed, and
// a message sent from Matrix is newer. After the fresh READY the bridge
// catches up from the last message received from Discord, so alice's
// arrives.
func TestBridgeCatchesUpAfterFreshReady(t *testing.T) {
	d := newDiscordSide(t)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	portal := login(t, env, d)
	alice := ghostOf(env, d.alice)
	if _, err := d.fake.Post(d.general.ID, d.alice.ID, "before the drop"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(portal, alice, "before the drop")

	d.fake.ForgetSessions()
	if _, err := d.fake.Post(d.general.ID, d.alice.ID, "typed while the session was lost"); err != nil {
		t.Fatal(err)
	}
	env.Send(portal, "sent from Matrix meanwhile")
	d.waitDiscord(t, d.general.ID, "the Matrix message", func(m *discordgo.Message) bool {
		return m.Content == "sent from Matrix meanwhile"
	})
	env.WaitMessage(portal, alice, "typed while the session was lost")
}
