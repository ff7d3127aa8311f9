package rooms

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// watchedKeys is a Remote whose key lookups are counted, and those for
// one server (blocked) wait until release is closed.
type watchedKeys struct {
	Remote
	blocked string
	asked   chan struct{} // closed at the first lookup for blocked
	release chan struct{}
	once    sync.Once
	lookups atomic.Int64
}

func (w *watchedKeys) VerifyKey(ctx context.Context, server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, error) {
	w.lookups.Add(1)
	if server == w.blocked {
		w.once.Do(func() { close(w.asked) })
		select {
		case <-w.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return w.Remote.VerifyKey(ctx, server, keyID, validAt)
}

// restrictedJoinSetup makes a room on a that carol of c joined while it
// was public, then restricted to the members of a space bob of b is in,
// and bob's join through a, authorised by alice (signed by a and b). It
// returns the room and bob's join as a stored it, not yet sent to c.
func restrictedJoinSetup(t *testing.T) (*fedNet, id.RoomID, *Event) {
	t.Helper()
	n := newFedNet(t, "a", "b", "c")
	space := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "b", space, bobB)
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "c", roomID, carolC)
	rule := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, space)
	n.deliver("a", n.send("a", roomID, stateProto(aliceA, "m.room.join_rules", "", rule)), "c")
	join, _ := n.join("a", "b", roomID, bobB)
	return n, roomID, join
}

// TestLocalSendWhileRemoteKeyFetchHangs checks that the room's lock is not
// held while a remote event's checks wait on another server: while c's
// lookup of the key of a (the server that authorised bob's restricted
// join) hangs, carol's message to the room on c is still sent, and once
// the key arrives the join is accepted.
func TestLocalSendWhileRemoteKeyFetchHangs(t *testing.T) {
	ctx := context.Background()
	n, roomID, join := restrictedJoinSetup(t)
	c := n.e("c")
	keys := &watchedKeys{Remote: c.Remote, blocked: "a", asked: make(chan struct{}), release: make(chan struct{})}
	c.Remote = keys

	received := make(chan error, 1)
	go func() {
		_, err := c.ReceivePDU(ctx, "a", join.JSON)
		received <- err
	}()
	select {
	case <-keys.asked:
	case err := <-received:
		t.Fatalf("the join was received without a's key being looked up: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("c never looked up the authorising server's key")
	}

	sendCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(sendCtx, roomID, textProto(carolC, "while a's key is fetched"))
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("carol's send while the key fetch hangs: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(keys.release)
		t.Fatal("carol's send waited for another server's key fetch")
	}

	close(keys.release)
	if err := <-received; err != nil {
		t.Fatalf("c receives bob's join: %v", err)
	}
	if got := c.Membership(bobB, roomID); got != "join" {
		t.Errorf("bob's membership on c = %q, want join", got)
	}
	n.assertSameState(roomID, "a", "c")
}

// TestDuplicatePDUWithoutRoomLock checks that an event received again is
// answered from a lookup, without waiting for the room's lock.
func TestDuplicatePDUWithoutRoomLock(t *testing.T) {
	ctx := context.Background()
	n, roomID, join := restrictedJoinSetup(t)
	c := n.e("c")
	n.deliver("a", join, "c")

	r, err := c.room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	done := make(chan error, 1)
	go func() {
		_, err := c.ReceivePDU(ctx, "a", join.JSON)
		done <- err
	}()
	select {
	case err := <-done:
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("the duplicate: %v, want it accepted as the first time", err)
		}
	case <-time.After(10 * time.Second):
		r.mu.Unlock()
		t.Fatal("the duplicate waited for the room's lock")
	}
}

// TestOriginCheckedBeforeKeys checks that an event from a server with no
// member in the room is refused before any key is looked up for it.
func TestOriginCheckedBeforeKeys(t *testing.T) {
	ctx := context.Background()
	n, roomID, _ := restrictedJoinSetup(t)
	c := n.e("c")
	msg := n.send("a", roomID, textProto(aliceA, "relayed by a stranger"))
	keys := &watchedKeys{Remote: c.Remote, asked: make(chan struct{}), release: make(chan struct{})}
	c.Remote = keys

	evID, err := c.ReceivePDU(ctx, "d", msg.JSON)
	if errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("an event from a server not in the room: %v, want M_FORBIDDEN", err)
	}
	if evID != msg.ID {
		t.Errorf("the refusal names %q, want %s", evID, msg.ID)
	}
	if got := keys.lookups.Load(); got != 0 {
		t.Errorf("%d key lookups for an event from a server not in the room, want 0", got)
	}
	// The same event from a server in the room looks its sender's key up.
	if _, err := c.ReceivePDU(ctx, "a", msg.JSON); err != nil {
		t.Fatalf("the event from a: %v", err)
	}
	if keys.lookups.Load() == 0 {
		t.Error("no key lookup for an event from a server in the room")
	}
}
