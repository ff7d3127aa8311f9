package node_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestFollowersSkipIgnoredEventsWithoutWrites: a message in a room where
// no contract, rule or protection applies moves the analytics mark (which
// counts it) and costs the contracts, automation and moderation followers
// no write: their stored marks stay where they were.
func TestFollowersSkipIgnoredEventsWithoutWrites(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := t.Context()
	alice := n.Register("alice")
	resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	catchUp := func() {
		t.Helper()
		steps := map[string]func(context.Context) (bool, error){
			"contracts": n.Contracts.Step, "automation": n.Automation.Step, "moderation": n.Moderation.Step, "analytics": n.Analytics.Step,
		}
		for name, step := range steps {
			for more := true; more; {
				if more, err = step(ctx); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	}
	stored := func(table string) int64 {
		t.Helper()
		var pos int64
		err := n.DB.QueryRow(ctx, "SELECT pos FROM "+table+" WHERE follower = 'events'").Scan(&pos)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		return pos
	}
	catchUp()
	ignoring := []string{"contract_marks", "automation_marks", "moderation_marks"}
	before := map[string]int64{}
	for _, table := range ignoring {
		before[table] = stored(table)
	}
	sent, err := alice.SendText(ctx, resp.RoomID, "hello")
	if err != nil {
		t.Fatal(err)
	}
	var pos int64
	if err := n.DB.QueryRow(ctx, "SELECT pos FROM events WHERE event_id = $1", sent.EventID).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	catchUp()
	if got := stored("analytics_marks"); got < pos {
		t.Fatalf("analytics mark %d, want at least the message's position %d", got, pos)
	}
	for _, table := range ignoring {
		if got := stored(table); got != before[table] {
			t.Errorf("%s moved %d → %d for a message its follower ignores", table, before[table], got)
		}
	}
}
