//go:build goolm

package telegram_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"go.mau.fi/util/variationselector"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/telegram"
	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// harness is a node running the Telegram bridge against a fake data center
// with the admin's account (mia) and alice.
type harness struct {
	t       *testing.T
	env     *bridgetest.Env
	fake    *telegramfake.Server
	mia     int64
	alice   int64
	aliceMX id.UserID
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, "") }

// newHarnessWith is newHarness with more of the bridge's network config.
func newHarnessWith(t *testing.T, extraConfig string) *harness {
	fake := telegramfake.New(t)
	h := &harness{t: t, fake: fake}
	h.mia = fake.AddUser("+15550001", "Mia", "Example")
	h.alice = fake.AddUser("+15550002", "Alice", "Liddell")
	config := fmt.Sprintf("api_id: 1\napi_hash: test\ndc_address: %q\ndc_id: %d\npublic_key: %q\n",
		fake.Addr, telegramfake.DC, fake.PublicKeyPEM()) + extraConfig
	h.env = bridgetest.Start(t, telegram.Kind(), config)
	h.aliceMX = id.NewUserID("telegram_"+strconv.FormatInt(h.alice, 10), h.env.Node.Config.ServerName)
	return h
}

// command sends text to the bot and waits for its replies containing
// each of wants (the last is the one to wait for before the next command:
// the bot takes input for its next step only after that prompt).
func (h *harness) command(room id.RoomID, text string, wants ...string) {
	h.t.Helper()
	seen := len(h.env.Device.Decrypted())
	h.env.Send(room, text)
	h.env.Device.SyncUntil(bridgetest.Timeout, fmt.Sprintf("the bot's answers %q to %q", wants, text), func() bool {
		for _, want := range wants {
			if !slices.ContainsFunc(h.env.Device.Decrypted()[seen:], func(evt *event.Event) bool {
				msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
				return ok && evt.Sender == h.env.Bot && strings.Contains(msg.Body, want)
			}) {
				return false
			}
		}
		return true
	})
}

// waitTelegram waits until mia's chat with alice, as alice sees it, has
// a message that match accepts, and returns it.
func (h *harness) waitTelegram(what string, match func(tg.Message) bool) tg.Message {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		for _, m := range h.fake.Messages(h.alice, h.mia) {
			if match(m) {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no %s in alice's chat on Telegram: %+v", what, h.fake.Messages(h.alice, h.mia))
	return tg.Message{}
}

// waitTelegramGone waits until a message is gone from alice's chat with mia.
func (h *harness) waitTelegramGone(id int) {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		if !slices.ContainsFunc(h.fake.Messages(h.alice, h.mia), func(m tg.Message) bool { return m.ID == id }) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("message %d was not deleted on Telegram", id)
}

// waitReaction waits until mia's reaction to a message is emoji ("" none).
func (h *harness) waitReaction(id int, emoji string) {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		if h.fake.Reactions(h.alice, id)[h.mia] == emoji {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("mia's reaction to %d on Telegram is %q, want %q", id, h.fake.Reactions(h.alice, id)[h.mia], emoji)
}

// sendContent sends an encrypted event of any type from the admin's device.
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

// events returns the room's latest events, decrypted where the device can.
func (h *harness) events(room id.RoomID) []*event.Event {
	h.t.Helper()
	ctx := context.Background()
	resp, err := h.env.Admin.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		h.t.Fatalf("messages: %v", err)
	}
	out := make([]*event.Event, 0, len(resp.Chunk))
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
		out = append(out, evt)
	}
	return out
}

// waitEvent syncs until the room has an event match accepts.
func (h *harness) waitEvent(room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		h.env.Device.Sync(500)
		for _, evt := range h.events(room) {
			if match(evt) {
				return evt
			}
		}
	}
	var seen []string
	for _, evt := range h.events(room) {
		seen = append(seen, fmt.Sprintf("%s from %s: %s", evt.Type.Type, evt.Sender, evt.Content.VeryRaw))
	}
	h.t.Fatalf("no %s in %s within %v; the room's latest events:\n%s", what, room, bridgetest.Timeout, strings.Join(seen, "\n"))
	return nil
}

// assertNoEchoes checks that the bridge's own changes on Telegram did not
// come back into the room: the admin's message has one edit (the admin's),
// and mia's ghost (the account itself) sent nothing but its membership.
func (h *harness) assertNoEchoes(room id.RoomID, target id.EventID) {
	h.t.Helper()
	miaMX := id.NewUserID("telegram_"+strconv.FormatInt(h.mia, 10), h.env.Node.Config.ServerName)
	var edits, fromMia []string
	for _, evt := range h.events(room) {
		if msg := message(evt); msg != nil && msg.RelatesTo.GetReplaceID() == target {
			edits = append(edits, fmt.Sprintf("%s from %s", evt.ID, evt.Sender))
		}
		if evt.Sender == miaMX && evt.Type != event.StateMember {
			fromMia = append(fromMia, fmt.Sprintf("%s %s", evt.Type.Type, evt.Content.VeryRaw))
		}
	}
	if len(edits) != 1 {
		h.t.Errorf("edits of %s: %v, want the admin's only", target, edits)
	}
	if len(fromMia) != 0 {
		h.t.Errorf("mia's ghost echoed the bridge's own changes: %v", fromMia)
	}
}

func message(evt *event.Event) *event.MessageEventContent {
	msg, _ := evt.Content.Parsed.(*event.MessageEventContent)
	return msg
}

// waitSyncs waits until mia's clients asked for their update state n times
// (the bridge's client is then receiving her updates).
func (h *harness) waitSyncs(n int) {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for h.fake.Syncs(h.mia) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("the bridge's Telegram client never asked for its update state")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTelegramBridgeEndToEnd logs in from a DM with the bot with a phone
// number and code (a wrong code first), then bridges the private chat with
// alice both ways in its encrypted portal: messages (Telegram's FLOOD_WAIT
// waited out once), replies, edits, reactions and deletes, none of the
// bridge's own changes echoed back; a wrong phone number is asked again and
// a message too long for Telegram or a location refused with a notice; after a bridge
// restart it delivers the
// message alice sent while it was down.
func TestTelegramBridgeEndToEnd(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "management room")
	h.command(dm, "login", "Please enter your Phone number")
	h.command(dm, "+1555", "Telegram did not take \"+1555\" (PHONE_NUMBER_INVALID)")
	h.command(dm, "+15550001", "Please enter your Code")
	h.command(dm, "00000", "did not accept the code")
	h.command(dm, telegramfake.LoginCode, "Logged in to Telegram as Mia Example")
	h.waitSyncs(1)

	first := fake.Type(h.alice, h.mia, "hello from Telegram")
	portal := env.WaitPortal("Alice Liddell")
	firstMX := env.WaitMessage(portal, h.aliceMX, "hello from Telegram")

	// Telegram -> Matrix: a reply, an edit, a reaction taken back.
	fake.Reply(h.alice, h.mia, first, "a reply on Telegram")
	h.waitEvent(portal, "alice's reply", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.Body == "a reply on Telegram" && msg.RelatesTo.GetReplyTo() == firstMX.ID
	})
	fake.Edit(h.alice, first, "hello edited on Telegram")
	h.waitEvent(portal, "alice's edit", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.NewContent != nil && msg.NewContent.Body == "hello edited on Telegram" &&
			msg.RelatesTo.GetReplaceID() == firstMX.ID
	})
	fake.React(h.alice, first, "👍")
	aliceReaction := h.waitEvent(portal, "alice's reaction", func(evt *event.Event) bool {
		r, ok := evt.Content.Parsed.(*event.ReactionEventContent)
		return ok && evt.Sender == h.aliceMX && r.RelatesTo.EventID == firstMX.ID && variationselector.Remove(r.RelatesTo.Key) == "👍"
	})
	fake.React(h.alice, first, "")
	h.waitEvent(portal, "the removal of alice's reaction", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && evt.Redacts == aliceReaction.ID
	})

	// Matrix -> Telegram: a message (Telegram's FLOOD_WAIT waited out once),
	// a reply, an edit, a reaction taken back and a delete.
	fake.FloodWait(tg.MessagesSendMessageRequestTypeID, 1)
	mxMsg := env.Send(portal, "hello from Matrix")
	sent := h.waitTelegram("the Matrix message", func(m tg.Message) bool { return m.Message == "hello from Matrix" })
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "a reply from Matrix",
		RelatesTo: (&event.RelatesTo{}).SetReplyTo(firstMX.ID),
	})
	h.waitTelegram("the Matrix reply", func(m tg.Message) bool {
		reply, ok := m.ReplyTo.(*tg.MessageReplyHeader)
		return m.Message == "a reply from Matrix" && ok && reply.ReplyToMsgID == first
	})
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* edited from Matrix",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "edited from Matrix"},
		RelatesTo:  (&event.RelatesTo{}).SetReplace(mxMsg),
	})
	h.waitTelegram("the Matrix edit", func(m tg.Message) bool { return m.ID == sent.ID && m.Message == "edited from Matrix" })
	reaction := h.sendContent(portal, event.EventReaction, &event.ReactionEventContent{
		RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: firstMX.ID, Key: "🎉"},
	})
	h.waitReaction(first, "🎉")
	if _, err := env.Admin.RedactEvent(context.Background(), portal, reaction); err != nil {
		t.Fatal(err)
	}
	h.waitReaction(first, "")
	if _, err := env.Admin.RedactEvent(context.Background(), portal, mxMsg); err != nil {
		t.Fatal(err)
	}
	h.waitTelegramGone(sent.ID)

	// Bad input: a message longer than Telegram takes and a location (not
	// bridged) are refused with a notice, and the next message still goes.
	env.Send(portal, strings.Repeat("x", 4097))
	h.waitEvent(portal, "the bot's notice that the message is too long", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == env.Bot && strings.Contains(msg.Body, "message too long for Telegram")
	})
	h.sendContent(portal, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgLocation, Body: "here", GeoURI: "geo:51.5,0.1"})
	h.waitEvent(portal, "the bot's notice that locations are not bridged", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == env.Bot && strings.Contains(msg.Body, "unsupported message type")
	})
	env.Send(portal, "after the long one")
	h.waitTelegram("the message after the long one", func(m tg.Message) bool { return m.Message == "after the long one" })

	// Telegram -> Matrix: a delete.
	fake.Delete(h.alice, first)
	h.waitEvent(portal, "the redaction of alice's first message", func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && evt.Redacts == firstMX.ID
	})
	// Neither the Matrix edit nor the reaction came back as its own echo
	// (the portal handles its events in order, and the delete came last).
	h.assertNoEchoes(portal, mxMsg)

	env.Stop()
	fake.Type(h.alice, h.mia, "sent while the bridge was down")
	syncs := fake.Syncs(h.mia)
	env.Run()
	h.waitSyncs(syncs + 1)
	env.WaitMessage(portal, h.aliceMX, "sent while the bridge was down")
}

// login logs mia in from a DM with the bot, waits until the bridge's
// client receives her updates and returns the DM.
func (h *harness) login() id.RoomID {
	h.t.Helper()
	dm := h.env.DM()
	h.env.WaitMessage(dm, h.env.Bot, "management room")
	h.command(dm, "login", "Please enter your Phone number")
	h.command(dm, "+15550001", "Please enter your Code")
	h.command(dm, telegramfake.LoginCode, "Logged in to Telegram as Mia Example")
	h.waitSyncs(1)
	return dm
}

// TestTelegramBasicGroup bridges a basic group mia is in: its portal is
// named after the group with its members as ghosts, a member's message
// arrives from their ghost, and a Matrix message reaches the group.
func TestTelegramBasicGroup(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	bob := fake.AddUser("+15550003", "Bob", "Builder")
	bobMX := id.NewUserID("telegram_"+strconv.FormatInt(bob, 10), env.Node.Config.ServerName)
	chat := fake.AddGroup("Book club", h.alice, h.mia, bob)
	h.login()

	fake.TypeInGroup(h.alice, chat, "hello book club")
	portal := env.WaitPortal("Book club")
	env.WaitMessage(portal, h.aliceMX, "hello book club")
	members, err := env.Admin.JoinedMembers(context.Background(), portal)
	if err != nil {
		t.Fatal(err)
	}
	for _, ghost := range []id.UserID{h.aliceMX, bobMX} {
		if _, ok := members.Joined[ghost]; !ok {
			t.Errorf("%s is not in the group's portal: %v", ghost, members.Joined)
		}
	}

	env.Send(portal, "hello from Matrix")
	deadline := time.Now().Add(bridgetest.Timeout)
	for !slices.ContainsFunc(fake.GroupMessages(bob, chat), func(m tg.Message) bool {
		from, ok := m.FromID.(*tg.PeerUser)
		return m.Message == "hello from Matrix" && ok && from.UserID == h.mia
	}) {
		if time.Now().After(deadline) {
			t.Fatalf("bob never got the Matrix message from mia: %+v", fake.GroupMessages(bob, chat))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTelegramFiles carries files both ways through the encrypted portal:
// a document sent on Telegram (with a caption) arrives as an encrypted
// Matrix file the client decrypts, and a Matrix file arrives on Telegram
// as a document with its name and content. The sender's ghost has her
// Telegram name and profile photo.
func TestTelegramFiles(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	h.login()
	png := []byte("\x89PNG\r\n\x1a\nnot really an image, but long enough to take a few bytes")
	avatar := []byte("\x89PNG\r\n\x1a\nalice's profile photo")
	fake.SetPhoto(h.alice, avatar)
	fake.SendFile(h.alice, h.mia, "photo.png", "image/png", png, "look at this")
	portal := env.WaitPortal("Alice Liddell")
	fileEvt := h.waitEvent(portal, "alice's file", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == h.aliceMX && msg.MsgType == event.MsgImage && msg.FileName == "photo.png"
	})
	if msg := message(fileEvt); msg.Body != "look at this" {
		t.Errorf("caption = %q, want %q", msg.Body, "look at this")
	}
	if got := h.downloadMatrixFile(message(fileEvt)); !bytes.Equal(got, png) {
		t.Errorf("file from Telegram arrived as %q, want %q", got, png)
	}
	profile, err := env.Admin.GetProfile(context.Background(), h.aliceMX)
	if err != nil {
		t.Fatal(err)
	}
	if profile.DisplayName != "Alice Liddell" || profile.AvatarURL.IsEmpty() {
		t.Fatalf("alice's ghost = %+v, want her Telegram name and photo", profile)
	}
	if got, err := env.Admin.DownloadBytes(context.Background(), profile.AvatarURL); err != nil || !bytes.Equal(got, avatar) {
		t.Errorf("alice's ghost's avatar = %q (%v), want her Telegram photo", got, err)
	}

	data := bytes.Repeat([]byte("a file from Matrix\n"), 40000) // 760 kB: two upload parts
	h.sendFile(portal, "notes.txt", "text/plain", data)
	sent := h.waitTelegram("the Matrix file", func(m tg.Message) bool { return !m.Out && m.Media != nil })
	name, got, ok := fake.File(h.alice, sent.ID)
	if !ok || name != "notes.txt" || !bytes.Equal(got, data) {
		t.Errorf("file on Telegram = %q (%d bytes, ok %v), want notes.txt with %d bytes", name, len(got), ok, len(data))
	}
}

// sendFile sends an encrypted file from the admin's device.
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

// TestTelegramReplyAfterRestart sends a Matrix message into an existing
// private chat right after a bridge restart, before any Telegram update
// names alice again: the bridge must name her to Telegram with the access
// hash it kept, as Telegram refuses her ID alone (USER_ID_INVALID).
func TestTelegramReplyAfterRestart(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	h.login()
	fake.Type(h.alice, h.mia, "hello before the restart")
	portal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(portal, h.aliceMX, "hello before the restart")

	env.Stop()
	syncs := fake.Syncs(h.mia)
	env.Run()
	h.waitSyncs(syncs + 1)
	env.Send(portal, "a reply right after the restart")
	h.waitTelegram("the Matrix message after the restart", func(m tg.Message) bool {
		return m.Message == "a reply right after the restart"
	})
}

// TestTelegramLogout: logging out from the bot ends the session on
// Telegram (auth.logOut), so it no longer takes requests.
func TestTelegramLogout(t *testing.T) {
	h := newHarness(t)
	dm := h.login()
	h.command(dm, "logout "+strconv.FormatInt(h.mia, 10), "Logged out")
	if n := h.fake.LoggedOut(h.mia); n != 1 {
		t.Errorf("sessions logged out on Telegram = %d, want 1", n)
	}
}

// TestTelegramReconnects: a client that stops with an error (here its
// first request after the login fails) connects again after a backoff,
// from the kept session, and then receives the account's updates.
func TestTelegramReconnects(t *testing.T) {
	h := newHarness(t)
	h.fake.FailOnce(tg.UsersGetUsersRequestTypeID, tgerr.New(400, "TEST_FAILURE"))
	h.login()
	h.fake.Type(h.alice, h.mia, "hello after the reconnect")
	h.env.WaitMessage(h.env.WaitPortal("Alice Liddell"), h.aliceMX, "hello after the reconnect")
}

// TestTelegramConnectTwice: bridgev2 may call Connect on a client that is
// connected already; the client still runs once, so Disconnect stops it:
// a message typed on Telegram while it is disconnected is not bridged
// then (before, the first run went on beside the second, out of
// Disconnect's reach), and arrives once it connects again.
func TestTelegramConnectTwice(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	h.login()
	fake.Type(h.alice, h.mia, "before the second connect")
	portal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(portal, h.aliceMX, "before the second connect")
	conn := env.Network.(*telegram.Connector)
	login := conn.Bridge.GetCachedUserLoginByID(networkid.UserLoginID(strconv.FormatInt(h.mia, 10)))
	if login == nil {
		t.Fatal("no login of mia's")
	}
	ctx := login.Log.WithContext(conn.Bridge.BackgroundCtx)
	login.Client.Connect(ctx)
	login.Client.Disconnect()
	fake.Type(h.alice, h.mia, "typed while disconnected")
	time.Sleep(2 * time.Second)
	env.Device.Sync(500)
	for _, evt := range h.events(portal) {
		if m := message(evt); m != nil && m.Body == "typed while disconnected" {
			t.Fatal("a message typed while the client was disconnected was bridged: a client run outlived Disconnect")
		}
	}
	login.Client.Connect(ctx)
	env.WaitMessage(portal, h.aliceMX, "typed while disconnected")
}
