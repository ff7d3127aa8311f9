//go:build goolm

package telegram_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/tg"
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

func newHarness(t *testing.T) *harness {
	fake := telegramfake.New(t)
	h := &harness{t: t, fake: fake}
	h.mia = fake.AddUser("+15550001", "Mia", "Example")
	h.alice = fake.AddUser("+15550002", "Alice", "Liddell")
	config := fmt.Sprintf("api_id: 1\napi_hash: test\ndc_address: %q\ndc_id: %d\npublic_key: %q\n",
		fake.Addr, telegramfake.DC, fake.PublicKeyPEM())
	h.env = bridgetest.Start(t, telegram.Kind(), config)
	h.aliceMX = id.NewUserID("telegram_"+strconv.FormatInt(h.alice, 10), h.env.Node.Config.ServerName)
	return h
}

// command sends text to the bot and waits for its reply containing want.
func (h *harness) command(room id.RoomID, text, want string) {
	h.t.Helper()
	seen := len(h.env.Device.Decrypted())
	h.env.Send(room, text)
	h.env.Device.SyncUntil(bridgetest.Timeout, fmt.Sprintf("the bot's answer %q to %q", want, text), func() bool {
		for _, evt := range h.env.Device.Decrypted()[seen:] {
			msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
			if ok && evt.Sender == h.env.Bot && strings.Contains(msg.Body, want) {
				return true
			}
		}
		return false
	})
}

// waitTelegram waits until alice's chat with mia has a message with text.
func (h *harness) waitTelegram(text string) {
	h.t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		for _, m := range h.fake.Messages(h.alice, h.mia) {
			if m.Message == text {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no %q in alice's chat on Telegram: %+v", text, h.fake.Messages(h.alice, h.mia))
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
// number and code (a wrong code first), then bridges messages both ways in
// the encrypted portal of the private chat with alice (Telegram's
// FLOOD_WAIT waited out once), and after a bridge restart delivers the
// message alice sent while it was down.
func TestTelegramBridgeEndToEnd(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "management room")
	h.command(dm, "login", "Please enter your Phone number")
	h.command(dm, "+15550001", "Please enter your Code")
	h.command(dm, "00000", "did not accept the code")
	h.command(dm, telegramfake.LoginCode, "Logged in to Telegram as Mia Example")
	h.waitSyncs(1)

	fake.Type(h.alice, h.mia, "hello from Telegram")
	portal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(portal, h.aliceMX, "hello from Telegram")

	fake.FloodWait(tg.MessagesSendMessageRequestTypeID, 1)
	env.Send(portal, "hello from Matrix")
	h.waitTelegram("hello from Matrix")

	env.Stop()
	fake.Type(h.alice, h.mia, "sent while the bridge was down")
	syncs := fake.Syncs(h.mia)
	env.Run()
	h.waitSyncs(syncs + 1)
	env.WaitMessage(portal, h.aliceMX, "sent while the bridge was down")
}
