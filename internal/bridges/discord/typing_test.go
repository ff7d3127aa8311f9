//go:build goolm

package discord_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/discord"
)

// TestBridgeTyping: in an encrypted portal, the admin typing in Matrix shows
// the bot typing in the Discord channel, and alice typing in Discord shows
// her ghost typing in the room.
func TestBridgeTyping(t *testing.T) {
	d := newDiscordSide(t)
	env := bridgetest.Start(t, discord.Kind(), d.networkConfig())
	portal := login(t, env, d)
	ctx := context.Background()

	if _, err := env.Admin.UserTyping(ctx, portal, true, 20*time.Second); err != nil {
		t.Fatalf("typing: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, bridgetest.Timeout)
	defer cancel()
	if err := d.fake.WaitTyping(waitCtx, d.general.ID, d.fake.Bot().ID); err != nil {
		t.Fatalf("the bot does not type on Discord: %v", err)
	}

	// (A ghost types only in rooms it is in: alice writes first.)
	if _, err := d.fake.Post(d.general.ID, d.alice.ID, "hi"); err != nil {
		t.Fatal(err)
	}
	env.WaitMessage(portal, ghostOf(env, d.alice), "hi")
	waitTyping(t, env, portal, ghostOf(env, d.alice), func() {
		if err := d.fake.Type(d.general.ID, d.alice.ID); err != nil {
			t.Fatal(err)
		}
	})
}

// waitTyping syncs a second device of the admin, runs start after its
// first sync, and syncs on until the user is among those typing in the
// room.
func waitTyping(t *testing.T, env *bridgetest.Env, room id.RoomID, user id.UserID, start func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bridgetest.Timeout)
	defer cancel()
	c := env.Node.Login(env.Admin.UserID)
	since := ""
	for ctx.Err() == nil {
		resp, err := c.SyncRequest(ctx, 5000, since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		if since == "" {
			start()
		}
		since = resp.NextBatch
		joined := resp.Rooms.Join[room]
		if joined == nil {
			continue
		}
		for _, evt := range joined.Ephemeral.Events {
			if evt.Type != event.EphemeralEventTyping {
				continue
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				t.Fatalf("typing content: %v", err)
			}
			if slices.Contains(evt.Content.AsTyping().UserIDs, user) {
				return
			}
		}
	}
	t.Fatalf("%s is not shown typing in %s within %v", user, room, bridgetest.Timeout)
}
