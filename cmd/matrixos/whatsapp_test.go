//go:build goolm

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestWhatsAppBridge: a real external bridge, mautrix-whatsapp
// (testnode.WhatsAppVersion, run unchanged), enabled with `matrixos bridge
// enable whatsapp --binary` while the node runs: the node starts it under
// supervision, its checks of the homeserver pass and it reaches "Bridge
// started", it creates its bot user (with its avatar, and the bot's
// encryption device through MSC4190), and in an encrypted DM a user opens
// with the bot, read by a goolm client, the bot makes it the management
// room and answers `help`. No WhatsApp account is needed for that much.
// The test skips only when mautrix-whatsapp cannot be built (it says why),
// and fails instead with MATRIXOS_REQUIRE_WHATSAPP=1.
func TestWhatsAppBridge(t *testing.T) {
	binary := testnode.WhatsAppBinary(t)
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	admin := n.RegisterAdmin("admin")
	var out bytes.Buffer
	args := []string{"enable", "whatsapp", "--binary", binary, "--data", n.Config.DataDir, "--server-name", n.Config.ServerName}
	if err := runBridge(args, node.BuiltinBridges(), &out); err != nil {
		t.Fatalf("matrixos bridge %v: %v\n%s", args, err, out.String())
	}
	t.Cleanup(func() { n.Bridges.Disable(context.Background(), "whatsapp") })

	var st bridges.Status
	testnode.WaitFor(t, 90*time.Second, "mautrix-whatsapp running", func() bool {
		var err error
		st, err = n.Bridges.Status(ctx, "whatsapp")
		return err == nil && st.State == bridges.StateRunning
	})
	logs := func() string {
		st, _ := n.Bridges.Status(ctx, "whatsapp")
		return strings.Join(st.RecentLogs, "\n")
	}
	// "Bridge started" comes after its checks of the homeserver: the
	// versions, the as_token (registering its bot) and the ping both ways.
	testnode.WaitFor(t, 60*time.Second, "the bridge started", func() bool {
		return strings.Contains(logs(), "Bridge started")
	})
	bot := id.NewUserID("whatsappbot", n.Config.ServerName)
	if _, ok, err := n.Accounts.GetUser(ctx, bot); err != nil || !ok {
		t.Fatalf("the bot user %s was not created (%v)", bot, err)
	}
	keys, err := admin.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bot: nil}})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.DeviceKeys[bot]) == 0 {
		t.Errorf("the bot has no device with keys (made through MSC4190)")
	}
	// Its avatar (from its config) is set: it reads the current one
	// first and gives up when that is a 404 (mautrix-go before v0.33).
	testnode.WaitFor(t, 30*time.Second, "the bot's avatar", func() bool {
		avatar, err := admin.GetAvatarURL(ctx, bot)
		return err == nil && !avatar.IsEmpty()
	})

	dev := testnode.NewE2EEDevice(t, "admin", admin)
	room, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bot},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dev.SyncUntil(60*time.Second, "the bot joining the DM", func() bool { return dev.Member(room.RoomID, bot, event.MembershipJoin) })
	dev.Send(room.RoomID, "help")
	dev.SyncUntil(60*time.Second, "the bot's help", func() bool {
		for _, ev := range dev.Decrypted() {
			if ev.Sender == bot && ev.RoomID == room.RoomID && strings.Contains(ev.Content.AsMessage().Body, "**help** - Show this help message") {
				return true
			}
		}
		return false
	})
	if n := len(dev.Undecrypted()); n != 0 {
		t.Errorf("%d messages the client could not decrypt", n)
	}
	if t.Failed() {
		t.Logf("the bridge's log:\n%s", logs())
	}
}
