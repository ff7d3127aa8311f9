package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// keyOutage is a Remote whose lookups of server's keys for events sent at
// ts fail, as when that server cannot be reached for a while.
type keyOutage struct {
	Remote
	server string
	ts     time.Time
}

func (k keyOutage) VerifyKey(ctx context.Context, server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, error) {
	if server == k.server && validAt.Equal(k.ts) {
		return "", errors.New("the server cannot be reached")
	}
	return k.Remote.VerifyKey(ctx, server, keyID, validAt)
}

// TestFailedJoinLeavesNoVerdictWithoutKey: a join whose send_join answer
// was checked (its events stored as outliers, batch by batch) and that
// then failed leaves those events behind. They are harmless: each is the
// event its ID hashes, signed by its sender's server and allowed by its
// own auth events, and a later join reuses them. But a check that could
// not decide must not leave a verdict: here the key of d, which authorised
// bob's restricted join, could not be had during the first attempt, and
// the later join (with the key back) must still take bob's join into the
// room's state instead of a rejection remembered from the failed attempt.
func TestFailedJoinLeavesNoVerdictWithoutKey(t *testing.T) {
	ctx := context.Background()
	const daveD = id.UserID("@dave:d")
	n := newFedNet(t, "a", "b", "c", "d")
	space := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "b", space, bobB)
	n.join("a", "d", space, daveD)
	n.join("a", "c", space, carolC)
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "d", roomID, daveD)
	rule := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, space)
	n.deliver("a", n.send("a", roomID, stateProto(aliceA, "m.room.join_rules", "", rule)), "d")
	bobJoin, _ := n.join("d", "b", roomID, bobB) // authorised by dave on d
	n.deliver("d", bobJoin, "a")
	last := n.send("a", roomID, textProto(aliceA, "after bob's join"))

	c := n.e("c")
	working := c.Remote
	c.Remote = keyOutage{Remote: working, server: "d", ts: time.UnixMilli(bobJoin.TS)}
	state, chain, err := n.e("a").StateBefore(ctx, roomID, last.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckJoinState(ctx, id.RoomV10, roomID, func(add func(bool, json.RawMessage) error) error {
		for i, raw := range slices.Concat(state, chain) {
			if err := add(i < len(state), raw); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("check the first answer: %v", err)
	}
	// The first join goes no further (the resident went away).

	c.Remote = working
	n.join("a", "c", roomID, carolC)
	if got := currentStateIDs(t, c, roomID)[stateKey{"m.room.member", string(bobB)}]; got != bobJoin.ID {
		t.Errorf("bob's membership in c's state after the second join = %q, want his join %s", got, bobJoin.ID)
	}
	n.assertSameState(roomID, "a", "c")
}
