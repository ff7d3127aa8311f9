//go:build goolm

package telegram_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
)

// TestTelegramReceiptsAndTyping bridges read receipts and typing both ways
// in the encrypted portal of a private chat: the Matrix user's read receipt
// marks the chat read on Telegram (messages.readHistory) up to the message
// read, and their typing starts and stops the account's
// (messages.setTyping); alice reading the account's message on Telegram
// (updateReadHistoryOutbox) is a read receipt from her ghost on the
// message's event, and her typing (updateUserTyping) her ghost's typing,
// stopped when she stops.
func TestTelegramReceiptsAndTyping(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	ctx := context.Background()
	h.login()
	question := fake.Type(h.alice, h.mia, "are you there?")
	portal := env.WaitPortal("Alice Liddell")
	questionMX := env.WaitMessage(portal, h.aliceMX, "are you there?")

	// Matrix -> Telegram.
	if err := env.Admin.MarkRead(ctx, portal, questionMX.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mia's chat with alice read up to alice's message on Telegram", func() bool {
		return fake.ReadUpTo(h.mia, h.alice) == question
	})
	if _, err := env.Admin.UserTyping(ctx, portal, true, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mia typing to alice on Telegram", func() bool {
		return lastAction(fake.TypingActions(h.mia, h.alice)) == tg.SendMessageTypingActionTypeID
	})
	if _, err := env.Admin.UserTyping(ctx, portal, false, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mia's typing cancelled on Telegram", func() bool {
		return lastAction(fake.TypingActions(h.mia, h.alice)) == tg.SendMessageCancelActionTypeID
	})

	// Telegram -> Matrix.
	answerMX := env.Send(portal, "yes, here")
	answer := h.waitTelegram("the Matrix answer", func(m tg.Message) bool { return m.Message == "yes, here" })
	fake.ReadHistory(h.alice, h.mia, answer.ID)
	since := h.waitEphemeral(portal, "", "alice's read receipt on the answer", func(evt *event.Event) bool {
		receipts, ok := evt.Content.Parsed.(*event.ReceiptEventContent)
		if !ok {
			return false
		}
		_, read := (*receipts)[answerMX][event.ReceiptTypeRead][h.aliceMX]
		return read
	})
	fake.SetTyping(h.alice, h.mia, true)
	since = h.waitEphemeral(portal, since, "alice's ghost typing", func(evt *event.Event) bool {
		typing, ok := evt.Content.Parsed.(*event.TypingEventContent)
		return ok && slices.Contains(typing.UserIDs, h.aliceMX)
	})
	fake.SetTyping(h.alice, h.mia, false)
	h.waitEphemeral(portal, since, "alice's ghost no longer typing", func(evt *event.Event) bool {
		typing, ok := evt.Content.Parsed.(*event.TypingEventContent)
		return ok && !slices.Contains(typing.UserIDs, h.aliceMX)
	})
}

// lastAction is the type ID of the latest typing action (0 for none).
func lastAction(actions []tg.SendMessageActionClass) uint32 {
	if len(actions) == 0 {
		return 0
	}
	return actions[len(actions)-1].TypeID()
}

// waitFor polls cond until it holds, failing the test after the bridge
// test timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bridgetest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, bridgetest.Timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEphemeral syncs the admin from since ("" for an initial sync) until
// the room has an ephemeral event (receipt, typing) match accepts, and
// returns the sync token after it.
func (h *harness) waitEphemeral(room id.RoomID, since, what string, match func(*event.Event) bool) string {
	h.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(bridgetest.Timeout)
	for time.Now().Before(deadline) {
		resp, err := h.env.Admin.SyncRequest(ctx, 1000, since, "", false, "")
		if err != nil {
			h.t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		joined, ok := resp.Rooms.Join[room]
		if !ok {
			continue
		}
		for _, evt := range joined.Ephemeral.Events {
			evt.Type.Class = event.EphemeralEventType
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			if match(evt) {
				return since
			}
		}
	}
	h.t.Fatalf("no %s in %s within %v", what, room, bridgetest.Timeout)
	return ""
}
