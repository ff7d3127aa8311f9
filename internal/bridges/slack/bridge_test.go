//go:build goolm

package slack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/slack"
	"github.com/matrixos/matrixos/internal/bridges/slack/slackfake"
)

// harness is a node running the Slack bridge against a fake workspace with
// alice and the channel #general (alice and the app's bot user in it).
type harness struct {
	t       *testing.T
	env     *bridgetest.Env
	fake    *slackfake.Server
	alice   string // alice's Slack user ID
	general string // #general's channel ID
	aliceMX id.UserID
}

func newHarness(t *testing.T) *harness {
	fake := slackfake.New(t)
	h := &harness{t: t, fake: fake}
	h.alice = fake.AddUser("alice", "Alice Liddell")
	h.general = fake.AddChannel("general", h.alice, fake.BotUserID())
	h.env = bridgetest.Start(t, slack.Kind(), fmt.Sprintf("api_url: %q\n", fake.APIURL))
	h.aliceMX = id.NewUserID(strings.ToLower("slack_"+fake.TeamID()+"-"+h.alice), h.env.Node.Config.ServerName)
	return h
}

// login logs in from a DM with the bridge bot, as a new user would: the
// login command, then the bot's prompts for the two tokens (a wrong token
// first, which the bot refuses).
func (h *harness) login() {
	h.t.Helper()
	env := h.env
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "management room")

	h.command(dm, "login", "Please enter your Bot token")
	h.command(dm, "xoxb-not-the-right-one", "Please enter your App-level token")
	h.command(dm, h.fake.AppToken(), "Slack did not accept the token")

	h.command(dm, "login", "Please enter your Bot token")
	h.command(dm, h.fake.BotToken(), "Please enter your App-level token")
	h.command(dm, h.fake.AppToken(), "Logged in to the Slack workspace Fake Workspace")
}

// command sends text to the bot and waits for its reply containing want.
func (h *harness) command(room id.RoomID, text, want string) {
	h.t.Helper()
	seen := len(h.env.Device.Decrypted())
	h.env.Send(room, text)
	h.env.Device.SyncUntil(bridgetest.Timeout, fmt.Sprintf("the bot's answer %q to %q", want, text), func() bool {
		for _, evt := range h.env.Device.Decrypted()[seen:] {
			if msg := message(evt); evt.Sender == h.env.Bot && msg != nil && strings.Contains(msg.Body, want) {
				return true
			}
		}
		return false
	})
}

// sendContent encrypts and sends an event of any type from the admin.
func (h *harness) sendContent(room id.RoomID, evtType event.Type, content any) id.EventID {
	h.t.Helper()
	ctx := context.Background()
	members, err := h.env.Admin.JoinedMembers(ctx, room)
	if err != nil {
		h.t.Fatal(err)
	}
	users := make([]id.UserID, 0, len(members.Joined))
	for user := range members.Joined {
		users = append(users, user)
	}
	mach := h.env.Device.Mach
	if err := mach.ShareGroupSession(ctx, room, users); err != nil {
		h.t.Fatalf("share group session: %v", err)
	}
	enc, err := mach.EncryptMegolmEvent(ctx, room, evtType, content)
	if err != nil {
		h.t.Fatalf("encrypt %s: %v", evtType.Type, err)
	}
	resp, err := h.env.Admin.SendMessageEvent(ctx, room, event.EventEncrypted, enc)
	if err != nil {
		h.t.Fatalf("send %s: %v", evtType.Type, err)
	}
	return resp.EventID
}

// waitEvent syncs the admin's device until the room's recent timeline has a
// (decrypted) event that match accepts, and returns it.
func (h *harness) waitEvent(room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	h.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		h.env.Device.Sync(500)
		resp, err := h.env.Admin.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			h.t.Fatalf("messages: %v", err)
		}
		for _, evt := range resp.Chunk {
			evt.RoomID = room
			if evt.StateKey != nil {
				evt.Type.Class = event.StateEventType
			} else {
				evt.Type.Class = event.MessageEventType
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			if evt.Type == event.EventEncrypted {
				dec, err := h.env.Device.Mach.DecryptMegolmEvent(ctx, evt)
				if err != nil {
					continue
				}
				if dec.Content.Parsed == nil {
					_ = dec.Content.ParseRaw(dec.Type)
				}
				evt = dec
			}
			if match(evt) {
				return evt
			}
		}
	}
	resp, _ := h.env.Admin.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 20)
	var seen []string
	if resp != nil {
		for _, evt := range resp.Chunk {
			seen = append(seen, fmt.Sprintf("%s from %s: %s", evt.Type.Type, evt.Sender, evt.Content.VeryRaw))
		}
	}
	h.t.Fatalf("no %s in %s within %v; the room's latest events:\n%s", what, room, bridgetest.Timeout, strings.Join(seen, "\n"))
	return nil
}

func message(evt *event.Event) *event.MessageEventContent {
	msg, _ := evt.Content.Parsed.(*event.MessageEventContent)
	return msg
}

// waitSlack waits until cond holds for #general's messages.
func (h *harness) waitSlack(what string, cond func([]slackapi.Msg) bool) []slackapi.Msg {
	h.t.Helper()
	return h.waitChannel(h.general, what, cond)
}

// waitChannel waits until cond holds for a channel's messages.
func (h *harness) waitChannel(channel, what string, cond func([]slackapi.Msg) bool) []slackapi.Msg {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	var msgs []slackapi.Msg
	err := h.fake.Wait(ctx, func() bool {
		msgs = h.fake.Messages(channel)
		return cond(msgs)
	})
	if err != nil {
		h.t.Fatalf("no %s on Slack within %v; %s has %+v", what, bridgetest.Timeout, channel, msgs)
	}
	return msgs
}

func findText(msgs []slackapi.Msg, text string) *slackapi.Msg {
	for i := range msgs {
		if msgs[i].Text == text {
			return &msgs[i]
		}
	}
	return nil
}

// TestSlackBridgeEndToEnd runs the Slack bridge on a node against the fake
// workspace in an encrypted portal read by a goolm client: the login from a
// DM with the bot, then messages, edits, thread replies, reactions, files
// and deletes both ways, Slack's rate limiting, bad input from both sides,
// and a bridge restart with a message typed on Slack while it was down.
func TestSlackBridgeEndToEnd(t *testing.T) {
	h := newHarness(t)
	h.login()
	env, fake := h.env, h.fake
	portal := env.WaitPortal("#general")

	// Slack -> Matrix: a message with mrkdwn and a mention.
	ts1 := fake.Post(h.general, h.alice, "hello *from* Slack, <@"+h.alice+">")
	first := env.WaitMessage(portal, h.aliceMX, "hello *from* Slack")
	if msg := message(first); !strings.Contains(msg.FormattedBody, "<strong>from</strong>") ||
		!strings.Contains(msg.FormattedBody, h.aliceMX.URI().MatrixToURL()) {
		t.Errorf("formatted body = %q, want bold and a pill for alice", msg.FormattedBody)
	}
	aliceProfile, err := env.Admin.GetProfile(context.Background(), h.aliceMX)
	if err != nil {
		t.Fatal(err)
	}
	if aliceProfile.DisplayName != "Alice Liddell" || aliceProfile.AvatarURL.IsEmpty() {
		t.Errorf("alice's ghost profile = %+v, want her Slack name and avatar", aliceProfile)
	}

	// Slack -> Matrix: edit, thread reply, reaction.
	fake.Edit(h.general, ts1, "hello edited on Slack")
	h.waitEvent(portal, "the edit", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.NewContent != nil && msg.NewContent.Body == "hello edited on Slack" &&
			msg.RelatesTo.GetReplaceID() == first.ID
	})
	fake.Reply(h.general, h.alice, ts1, "a reply in the thread")
	h.waitEvent(portal, "the thread reply", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.Body == "a reply in the thread" && msg.RelatesTo.GetThreadParent() == first.ID
	})
	fake.React(h.general, ts1, h.alice, "thumbsup")
	aliceReaction := h.waitEvent(portal, "alice's reaction", func(evt *event.Event) bool {
		r, ok := evt.Content.Parsed.(*event.ReactionEventContent)
		return ok && evt.Sender == h.aliceMX && r.RelatesTo.EventID == first.ID && strings.TrimSuffix(r.RelatesTo.Key, "\ufe0f") == "👍"
	})
	fake.Unreact(h.general, ts1, h.alice, "thumbsup")
	h.waitEvent(portal, "the removal of alice's reaction", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && evt.Redacts == aliceReaction.ID
	})

	// Slack -> Matrix: a file with a comment, decrypted by the client.
	png := []byte("\x89PNG\r\n\x1a\nnot really an image")
	fake.UploadFile(h.general, h.alice, "photo.png", "image/png", png, "look at this")
	fileEvt := h.waitEvent(portal, "alice's file", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.MsgType == event.MsgImage && msg.FileName == "photo.png"
	})
	if got := h.downloadMatrixFile(message(fileEvt)); string(got) != string(png) {
		t.Errorf("file from Slack arrived as %q, want %q", got, png)
	}
	env.WaitMessage(portal, h.aliceMX, "look at this")

	// Matrix -> Slack: a message, rate-limited once by Slack.
	fake.RateLimit("chat.postMessage", 1, 1)
	calls := fake.Calls("chat.postMessage")
	mxMsg := env.Send(portal, "hello from Matrix & friends")
	msgs := h.waitSlack("the Matrix message", func(m []slackapi.Msg) bool {
		return findText(m, "hello from Matrix &amp; friends") != nil
	})
	if got := findText(msgs, "hello from Matrix &amp; friends"); got.Username != env.Admin.UserID.Localpart() || got.User != fake.BotUserID() {
		t.Errorf("Matrix message on Slack = %+v, want posted by the bot as admin", got)
	}
	if n := fake.Calls("chat.postMessage") - calls; n != 2 {
		t.Errorf("chat.postMessage called %d times for one message, want 2 (one rate-limited)", n)
	}
	mxTS := findText(msgs, "hello from Matrix &amp; friends").Timestamp

	// Matrix -> Slack: edit, thread reply, reaction, redaction.
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* edited from Matrix",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "edited from Matrix",
			Format: event.FormatHTML, FormattedBody: "edited <b>from</b> Matrix"},
		RelatesTo: (&event.RelatesTo{}).SetReplace(mxMsg),
	})
	h.waitSlack("the Matrix edit", func(m []slackapi.Msg) bool {
		got := findText(m, "edited *from* Matrix")
		return got != nil && got.Timestamp == mxTS
	})
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "thread reply from Matrix",
		RelatesTo: (&event.RelatesTo{}).SetThread(first.ID, first.ID),
	})
	h.waitSlack("the Matrix thread reply", func(m []slackapi.Msg) bool {
		got := findText(m, "thread reply from Matrix")
		return got != nil && got.ThreadTimestamp == ts1
	})
	reaction := h.sendContent(portal, event.EventReaction, &event.ReactionEventContent{
		RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: first.ID, Key: "🎉"},
	})
	h.waitSlack("the Matrix reaction", func(m []slackapi.Msg) bool {
		for _, msg := range m {
			if msg.Timestamp == ts1 && slices.ContainsFunc(msg.Reactions, func(r slackapi.ItemReaction) bool {
				return r.Name == "tada" && slices.Contains(r.Users, fake.BotUserID())
			}) {
				return true
			}
		}
		return false
	})
	if _, err := env.Admin.RedactEvent(context.Background(), portal, reaction); err != nil {
		t.Fatal(err)
	}
	h.waitSlack("the reaction's removal", func(m []slackapi.Msg) bool {
		for _, msg := range m {
			if msg.Timestamp == ts1 {
				return !slices.ContainsFunc(msg.Reactions, func(r slackapi.ItemReaction) bool { return r.Name == "tada" })
			}
		}
		return false
	})
	if _, err := env.Admin.RedactEvent(context.Background(), portal, mxMsg); err != nil {
		t.Fatal(err)
	}
	h.waitSlack("the deletion", func(m []slackapi.Msg) bool {
		return !slices.ContainsFunc(m, func(msg slackapi.Msg) bool { return msg.Timestamp == mxTS })
	})

	// Matrix -> Slack: an encrypted file.
	data := []byte("a file from Matrix")
	h.sendFile(portal, "notes.txt", "text/plain", data)
	msgs = h.waitSlack("the Matrix file", func(m []slackapi.Msg) bool {
		return slices.ContainsFunc(m, func(msg slackapi.Msg) bool { return len(msg.Files) == 1 && msg.Files[0].Name == "notes.txt" })
	})
	for _, msg := range msgs {
		if len(msg.Files) == 1 && msg.Files[0].Name == "notes.txt" {
			if got := fake.FileData(msg.Files[0].ID); string(got) != string(data) {
				t.Errorf("file on Slack = %q, want %q", got, data)
			}
		}
	}

	// Slack -> Matrix: a delete.
	fake.Delete(h.general, ts1)
	h.waitEvent(portal, "the redaction of the first message", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && evt.Redacts == first.ID
	})

	// Bad input: a Matrix message longer than Slack takes is refused with a
	// notice; a malformed Slack envelope is acked and dropped, and what
	// follows it still arrives.
	env.Send(portal, strings.Repeat("x", 40001))
	h.waitEvent(portal, "the bot's notice that the message is too long", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == env.Bot && strings.Contains(msg.Body, "message too long for Slack")
	})
	fake.EmitRaw(json.RawMessage(`{"type":"event_callback","team_id":"` + fake.TeamID() + `","event":{"type":"message","channel":12}}`))
	fake.EmitRaw(json.RawMessage(`"not an object"`))
	fake.Post(h.general, h.alice, strings.Repeat("y", 200000))
	h.waitEvent(portal, "the notice for an oversized Slack message", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == h.aliceMX && strings.Contains(msg.Body, "too long to bridge")
	})
	fake.Post(h.general, h.alice, "after the bad events")
	env.WaitMessage(portal, h.aliceMX, "after the bad events")
	h.waitPending(0)

	// Slack's "disconnect" (it cycles its servers): the bridge reconnects.
	fake.Disconnect()
	fake.Post(h.general, h.alice, "after Slack asked to reconnect")
	env.WaitMessage(portal, h.aliceMX, "after Slack asked to reconnect")

	// A direct message to the app's bot user opens a DM portal.
	dmChannel := fake.AddDM(h.alice)
	fake.Post(dmChannel, h.alice, "a direct message")
	dmPortal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(dmPortal, h.aliceMX, "a direct message")
	env.Send(dmPortal, "an answer in the DM")
	h.waitChannel(dmChannel, "the answer in the DM", func(m []slackapi.Msg) bool {
		return findText(m, "an answer in the DM") != nil
	})

	// A Slack message whose bridging fails (the file server errs) is not
	// acknowledged, so Slack delivers it again after the restart below.
	fake.FailDownloads(1000)
	fake.UploadFile(h.general, h.alice, "later.txt", "text/plain", []byte("later"), "")
	h.waitEvent(portal, "the notice of the failed message", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && strings.Contains(msg.Body, "An error occurred while processing an incoming message")
	})
	fake.Post(h.general, h.alice, "after the failed one")
	env.WaitMessage(portal, h.aliceMX, "after the failed one")
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	err = fake.Wait(ctx, func() bool {
		return !slices.ContainsFunc(fake.PendingPayloads(), func(p string) bool { return strings.Contains(p, "after the failed one") })
	})
	if err != nil {
		t.Fatal("the message after the failed one was not acknowledged")
	}
	if pending := fake.PendingPayloads(); len(pending) != 1 || !strings.Contains(pending[0], "later.txt") {
		t.Fatalf("unacknowledged envelopes = %q, want only the failed message's", pending)
	}
	fake.FailDownloads(0)

	// A restart: what alice types while the bridge is down arrives after,
	// and edits of messages from before the restart find their targets.
	env.Stop()
	ts2 := fake.Post(h.general, h.alice, "typed while the bridge was down")
	env.Run()
	h.waitEvent(portal, "the file that failed before the restart", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.FileName == "later.txt"
	})
	down := env.WaitMessage(portal, h.aliceMX, "typed while the bridge was down")
	fake.Edit(h.general, ts2, "edited after the restart")
	h.waitEvent(portal, "the edit after the restart", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.NewContent != nil && msg.NewContent.Body == "edited after the restart" &&
			msg.RelatesTo.GetReplaceID() == down.ID
	})
	env.Send(portal, "after the restart from Matrix")
	h.waitSlack("a Matrix message after the restart", func(m []slackapi.Msg) bool {
		return findText(m, "after the restart from Matrix") != nil
	})
	h.waitPending(0)

	// Slack gives up retrying while the bridge is away long: what was
	// missed comes from the channel's history when it is back.
	env.Stop()
	fake.Post(h.general, h.alice, "first missed while away")
	fake.Post(h.general, h.alice, "second missed while away")
	fake.DropPending()
	env.Run()
	secondMissed := env.WaitMessage(portal, h.aliceMX, "second missed while away")
	firstMissed := env.WaitMessage(portal, h.aliceMX, "first missed while away")
	order := slices.IndexFunc(env.Device.Decrypted(), func(evt *event.Event) bool { return evt.ID == firstMissed.ID }) <
		slices.IndexFunc(env.Device.Decrypted(), func(evt *event.Event) bool { return evt.ID == secondMissed.ID })
	if !order {
		t.Error("the caught-up messages arrived out of order")
	}
}

// waitPending waits until the fake has no unacknowledged envelope left.
func (h *harness) waitPending(n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	if err := h.fake.Wait(ctx, func() bool { return h.fake.Pending() == n }); err != nil {
		h.t.Fatalf("%d Slack envelopes unacknowledged, want %d", h.fake.Pending(), n)
	}
}

// sendFile uploads an encrypted file and sends it to the room.
func (h *harness) sendFile(room id.RoomID, name, mimeType string, data []byte) id.EventID {
	h.t.Helper()
	ef := attachment.NewEncryptedFile()
	upload, err := h.env.Admin.UploadBytes(context.Background(), ef.Encrypt(data), "application/octet-stream")
	if err != nil {
		h.t.Fatalf("upload: %v", err)
	}
	return h.sendContent(room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: name, FileName: name,
		Info: &event.FileInfo{MimeType: mimeType, Size: len(data)},
		File: &event.EncryptedFileInfo{EncryptedFile: *ef, URL: upload.ContentURI.CUString()},
	})
}

// downloadMatrixFile downloads and decrypts a file message's media.
func (h *harness) downloadMatrixFile(msg *event.MessageEventContent) []byte {
	h.t.Helper()
	if msg.File == nil {
		h.t.Fatalf("file message %+v is not encrypted", msg)
	}
	uri, err := msg.File.URL.Parse()
	if err != nil {
		h.t.Fatal(err)
	}
	data, err := h.env.Admin.DownloadBytes(context.Background(), uri)
	if err != nil {
		h.t.Fatalf("download: %v", err)
	}
	plain, err := msg.File.Decrypt(data)
	if err != nil {
		h.t.Fatalf("decrypt: %v", err)
	}
	return plain
}

// TestSlackBridgeSurvivesPanic sends an envelope whose handling panics: the
// node's process survives, the poison envelope is acknowledged (Slack would
// otherwise send it again forever), and the messages after it are bridged.
func TestSlackBridgeSurvivesPanic(t *testing.T) {
	h := newHarness(t)
	h.login()
	env, fake := h.env, h.fake
	portal := env.WaitPortal("#general")

	restore := slack.SetSocketEventHook(func(evt socketmode.Event) {
		if evt.Request != nil && strings.Contains(string(evt.Request.Payload), "a poison message") {
			panic("a poison envelope")
		}
	})
	t.Cleanup(restore)
	fake.Post(h.general, h.alice, "a poison message")
	fake.Post(h.general, h.alice, "after the bad one")
	env.WaitMessage(portal, h.aliceMX, "after the bad one")
	h.waitPending(0)
}

// TestSlackBridgeCatchesUpOnReconnect drops the Socket Mode connection;
// while it is down alice posts on Slack (and Slack gives up delivering it)
// and a message is sent from Matrix, which is newer. On reconnecting, the
// bridge catches up from the last message it received from Slack, so
// alice's message arrives.
func TestSlackBridgeCatchesUpOnReconnect(t *testing.T) {
	h := newHarness(t)
	h.login()
	env, fake := h.env, h.fake
	portal := env.WaitPortal("#general")
	ts := fake.Post(h.general, h.alice, "before the drop")
	env.WaitMessage(portal, h.aliceMX, "before the drop")
	fake.Reply(h.general, h.alice, ts, "a thread reply before the drop")
	env.WaitMessage(portal, h.aliceMX, "a thread reply before the drop")
	h.waitPending(0)

	fake.SetSocketDown(true)
	fake.Post(h.general, h.alice, "typed while the socket was down")
	fake.DropPending()
	env.Send(portal, "sent from Matrix while the socket was down")
	h.waitSlack("the Matrix message", func(m []slackapi.Msg) bool {
		return findText(m, "sent from Matrix while the socket was down") != nil
	})
	fake.SetSocketDown(false)
	env.WaitMessage(portal, h.aliceMX, "typed while the socket was down")
}

// TestConcurrentLoginsOfOneApp: logins of one Slack app completing at once
// for one user each replace the login's client (bridgev2 disconnects the
// one before), so exactly one client stays connected to Slack; no replaced
// client connects after it was disconnected, which left it bridging every
// event a second time beside its replacement.
func TestConcurrentLoginsOfOneApp(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	conn := env.Network.(*slack.Connector)
	ctx := t.Context()
	user, err := conn.Bridge.GetUserByMXID(ctx, env.Admin.UserID)
	if err != nil {
		t.Fatal(err)
	}
	const logins = 8
	var wg sync.WaitGroup
	errs := make(chan error, logins)
	for range logins {
		wg.Go(func() {
			process, err := conn.CreateLogin(ctx, user, "bot-token")
			if err == nil {
				_, err = process.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx,
					map[string]string{"bot_token": fake.BotToken(), "app_token": fake.AppToken()})
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("login: %v", err)
		}
	}
	if n := len(user.GetUserLogins()); n != 1 {
		t.Fatalf("%d logins after %d of one app, want 1", n, logins)
	}
	portal := env.WaitPortal("#general")
	fake.Post(h.general, h.alice, "after the logins")
	env.WaitMessage(portal, h.aliceMX, "after the logins")
	if n := fake.Connections(); n != 1 {
		t.Errorf("%d Socket Mode connections open after %d logins of one app, want 1", n, logins)
	}
}
