package keys_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/keys"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// deviceList returns the users of device_lists.<which> in a sync.
func deviceList(s map[string]any, which string) []string {
	var out []string
	l, _ := get(s, "device_lists", which).([]any)
	for _, u := range l {
		out = append(out, u.(string))
	}
	return out
}

func TestDeviceListTracking(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		room := shareRoom(t, alice, bob)
		since := syncOnce(t, alice, "", 0)["next_batch"].(string)

		// Bob uploads keys: Alice is told.
		testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
		s := syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "changed"), string(bob.UserID)) {
			t.Fatalf("changed = %v, want Bob", deviceList(s, "changed"))
		}
		ch := testnode.Call(t, alice, "GET", v3+"/keys/changes?from="+since+"&to="+s["next_batch"].(string), nil).OK(t)
		if !slices.Contains(toStrings(ch["changed"]), string(bob.UserID)) {
			t.Errorf("/keys/changes = %v, want Bob", ch)
		}
		since = s["next_batch"].(string)

		// Carol shares no room: her keys are none of Alice's business.
		testnode.Call(t, carol, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, carol).deviceKeys(t)}).OK(t)
		s = syncOnce(t, alice, since, 0)
		if slices.Contains(deviceList(s, "changed"), string(carol.UserID)) {
			t.Errorf("Carol in changed without a shared room")
		}
		since = s["next_batch"].(string)

		// A long-poll wakes when Bob's new device uploads keys.
		done := make(chan map[string]any, 1)
		go func() { done <- syncOnce(t, alice, since, 10000) }()
		time.Sleep(100 * time.Millisecond)
		bob2 := n.Login(bob.UserID)
		testnode.Call(t, bob2, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob2).deviceKeys(t)}).OK(t)
		select {
		case s = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("long-poll did not wake for a device change")
		}
		if !slices.Contains(deviceList(s, "changed"), string(bob.UserID)) {
			t.Errorf("changed = %v after Bob's new device", deviceList(s, "changed"))
		}
		since = s["next_batch"].(string)

		// Bob deletes that device: Alice is told, the keys are gone.
		if err := n.Accounts.DeleteDevice(ctx, bob.UserID, bob2.DeviceID); err != nil {
			t.Fatal(err)
		}
		s = syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "changed"), string(bob.UserID)) {
			t.Errorf("changed = %v after Bob deleted a device", deviceList(s, "changed"))
		}
		q := testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
		if get(q, "device_keys", string(bob.UserID), string(bob2.DeviceID)) != nil {
			t.Errorf("deleted device's keys still served")
		}
		since = s["next_batch"].(string)

		// Carol joins a room with Alice: she is now tracked.
		room2 := shareRoom(t, alice, carol)
		s = syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "changed"), string(carol.UserID)) {
			t.Errorf("changed = %v after Carol joined", deviceList(s, "changed"))
		}
		since = s["next_batch"].(string)

		// Bob leaves: he is in left.
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		s = syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "left"), string(bob.UserID)) {
			t.Errorf("left = %v, want Bob", deviceList(s, "left"))
		}
		since = s["next_batch"].(string)

		// Alice leaves the room with Carol: Carol is in Alice's left, and
		// Alice in Carol's.
		carolSince := syncOnce(t, carol, "", 0)["next_batch"].(string)
		if _, err := alice.LeaveRoom(ctx, room2); err != nil {
			t.Fatal(err)
		}
		s = syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "left"), string(carol.UserID)) {
			t.Errorf("left = %v, want Carol", deviceList(s, "left"))
		}
		if cs := syncOnce(t, carol, carolSince, 0); !slices.Contains(deviceList(cs, "left"), string(alice.UserID)) {
			t.Errorf("Carol's left = %v, want Alice", deviceList(cs, "left"))
		}
	})
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}

// TestDeviceRenameChangesDeviceList: renaming a device with keys is a
// change of its owner's device list (the name is in the keys' unsigned
// part): users sharing a room see the owner in device_lists.changed and
// the new name in /keys/query.
func TestDeviceRenameChangesDeviceList(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		shareRoom(t, alice, bob)
		testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
		since := syncOnce(t, alice, "", 0)["next_batch"].(string)
		testnode.Call(t, bob, "PUT", v3+"/devices/"+string(bob.DeviceID), map[string]any{"display_name": "Bob's phone"}).OK(t)
		s := syncOnce(t, alice, since, 0)
		if !slices.Contains(deviceList(s, "changed"), string(bob.UserID)) {
			t.Fatalf("changed = %v after Bob renamed his device, want Bob", deviceList(s, "changed"))
		}
		q := testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
		if name := get(q, "device_keys", string(bob.UserID), string(bob.DeviceID), "unsigned", "device_display_name"); name != "Bob's phone" {
			t.Errorf("device_display_name = %v, want the new name", name)
		}
	})
}

// TestDeviceListsWithoutChangesAllocateNothing: the device lists of a
// window with messages but no device-list or membership change, for a user
// in 200 rooms, cost no allocation (they copied the user's memberships
// twice, the woken /sync's main cost), and a change after it is found.
func TestDeviceListsWithoutChangesAllocateNothing(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	var shared id.RoomID
	for i := range 200 {
		state := func(evType, stateKey, content string) rooms.Proto {
			return rooms.Proto{Type: evType, StateKey: &stateKey, Sender: alice.UserID, Content: json.RawMessage(content)}
		}
		roomID, _, err := n.Rooms.CreateRoom(ctx, id.RoomV11, alice.UserID, nil, []rooms.Proto{
			state("m.room.member", string(alice.UserID), `{"membership":"join"}`),
			state("m.room.join_rules", "", `{"join_rule":"public"}`),
			state("m.room.name", "", `{"name":"room `+itoa(i)+`"}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		shared = roomID
	}
	if _, err := bob.JoinRoomByID(ctx, shared); err != nil {
		t.Fatal(err)
	}
	testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
	since := n.DB.Visible()
	for range 5 {
		if _, err := bob.SendText(ctx, shared, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	to := n.DB.Visible()
	allocs := testing.AllocsPerRun(20, func() {
		changed, left, err := keys.DeviceLists(n.Keys, ctx, alice.UserID, since, to)
		if err != nil || changed != nil || left != nil {
			t.Fatalf("device lists of a window of messages: %v, %v, %v", changed, left, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for a window without changes, want 0", allocs)
	}

	testnode.Call(t, bob, "PUT", v3+"/devices/"+string(bob.DeviceID), map[string]any{"display_name": "Bob's phone"}).OK(t)
	changed, _, err := keys.DeviceLists(n.Keys, ctx, alice.UserID, to, n.DB.Visible())
	if err != nil || !slices.Equal(changed, []id.UserID{bob.UserID}) {
		t.Errorf("after Bob's rename: changed %v (%v), want Bob", changed, err)
	}
}

// TestDeviceListsLeaveAfterOwnLeave: alice leaves the one room she shares
// with bob, and bob leaves it too after the window that holds alice's
// leave ends but before that window is answered. Bob is in that answer's
// left (the room's members are read when it is answered, when bob is no
// longer among them), since the next window, without alice's own change,
// does not name him.
func TestDeviceListsLeaveAfterOwnLeave(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	room := shareRoom(t, alice, bob)
	since := n.DB.Visible()
	if _, err := alice.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	to := n.DB.Visible()
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	_, left, err := keys.DeviceLists(n.Keys, ctx, alice.UserID, since, to)
	if err != nil {
		t.Fatal(err)
	}
	_, leftNext, err := keys.DeviceLists(n.Keys, ctx, alice.UserID, to, n.DB.Visible())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(left, bob.UserID) && !slices.Contains(leftNext, bob.UserID) {
		t.Errorf("bob in neither window's left (%v, then %v)", left, leftNext)
	}
}
