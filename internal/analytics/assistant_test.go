//go:build goolm

package analytics_test

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

const assistantID id.UserID = "@assistant:localhost"

// answer syncs until the assistant sends a decrypted message of msgtype
// in reply to evID.
func answer(t *testing.T, d *testnode.E2EEDevice, evID id.EventID, msgtype event.MessageType) *event.MessageEventContent {
	t.Helper()
	var found *event.MessageEventContent
	d.SyncUntil(30*time.Second, "the assistant's "+string(msgtype)+" answer to "+evID.String(), func() bool {
		for _, evt := range d.Decrypted() {
			msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
			if evt.Sender == assistantID && ok && msg.MsgType == msgtype && msg.RelatesTo.GetReplyTo() == evID {
				found = msg
				return true
			}
		}
		return false
	})
	return found
}

// TestAssistantStatsAndForecast: in an encrypted room, "!assistant
// stats" answers the room's figures (from metadata: nothing decrypted)
// and "!assistant forecast" posts the chart as an encrypted PNG.
func TestAssistantStatsAndForecast(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	alice := testnode.NewE2EEDevice(t, "alice", n.Register("alice"))
	room := testnode.CreateRoom(t, alice.C, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})
	testnode.Invite(t, alice.C, room, assistantID)
	alice.SyncUntil(30*time.Second, "the assistant's join", func() bool {
		return alice.Member(room, assistantID, event.MembershipJoin)
	})
	alice.Send(room, "one")
	alice.Send(room, "two")

	asked := alice.Send(room, "!assistant stats 3")
	stats := answer(t, alice, asked, event.MsgNotice).Body
	// Three messages of alice's so far: the command is the third.
	if !strings.Contains(stats, "Last 3 days in this room: 3 messages from 1 members") || !strings.Contains(stats, string(alice.C.UserID)+" (3)") {
		t.Fatalf("stats answer: %q", stats)
	}

	asked = alice.Send(room, "!assistant forecast")
	if text := answer(t, alice, asked, event.MsgNotice).Body; !strings.Contains(text, "Next 24 hours: no forecast, not enough history yet: ") ||
		!strings.Contains(text, "(a forecast needs 6)") {
		t.Fatalf("forecast answer: %q", text)
	}
	img := answer(t, alice, asked, event.MsgImage)
	if img.File == nil || img.Info == nil || img.Info.MimeType != "image/png" {
		t.Fatalf("the chart is not an encrypted PNG: %+v", img)
	}
	uri, err := img.File.URL.Parse()
	if err != nil {
		t.Fatal(err)
	}
	data, err := alice.C.DownloadBytes(t.Context(), uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.File.DecryptInPlace(data); err != nil {
		t.Fatalf("decrypt the chart: %v", err)
	}
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Fatalf("the chart does not decode: %v", err)
	}

	asked = alice.Send(room, "!assistant stats 365")
	if text := answer(t, alice, asked, event.MsgNotice).Body; !strings.Contains(text, "days must be a whole number from 1 to 90") {
		t.Fatalf("answer to a bad window: %q", text)
	}
}
