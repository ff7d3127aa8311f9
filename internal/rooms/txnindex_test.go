package rooms

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestTxnIndex: the index rules a transaction ID out only when neither the
// table (loaded once per device) nor an accepted send used it; a device
// past maxDeviceTxns, or whose load failed, always goes to the table.
func TestTxnIndex(t *testing.T) {
	ctx := context.Background()
	var x txnIndex
	loads := 0
	stored := func(ctx context.Context, add func(scope, txnID string)) error {
		loads++
		add("!r/send/m.room.message", "old")
		return nil
	}
	check := func(name, scope, txnID string, want bool) {
		t.Helper()
		got, err := x.mayHave(ctx, alice, "DEV", scope, txnID, stored)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: mayHave = %v, want %v", name, got, want)
		}
	}
	x.add(alice, "DEV", "!r/send/m.room.message", "accepted before the load")
	check("stored", "!r/send/m.room.message", "old", true)
	check("accepted before the load", "!r/send/m.room.message", "accepted before the load", true)
	check("new", "!r/send/m.room.message", "new", false)
	check("stored ID in another scope", "!other/send/m.room.message", "old", false)
	x.add(alice, "DEV", "!r/send/m.room.message", "new")
	check("accepted", "!r/send/m.room.message", "new", true)
	if loads != 1 {
		t.Errorf("the device's keys were loaded %d times, want once", loads)
	}

	got, err := x.mayHave(ctx, bob, "DEV", "s", "t", func(context.Context, func(string, string)) error {
		return errors.New("disk gone")
	})
	if err == nil || !got {
		t.Errorf("failed load: mayHave = %v, %v; want true and an error", got, err)
	}
	got, err = x.mayHave(ctx, bob, "DEV", "s", "t", stored)
	if err != nil || got {
		t.Errorf("after a failed load the next one must run: mayHave = %v, %v", got, err)
	}

	for i := range maxDeviceTxns {
		x.add(bob, "BUSY", "s", strconv.Itoa(i))
	}
	if got, _ := x.mayHave(ctx, bob, "BUSY", "s", "never used", stored); !got {
		t.Error("a device past maxDeviceTxns must be looked up in the table")
	}
}

// TestTxnIndexBounds: past its device bound a new device is not indexed,
// and past its key bound a device that would add a key stops being
// indexed and gives its keys back; both are then looked up in the table.
func TestTxnIndexBounds(t *testing.T) {
	ctx := context.Background()
	carol := id.UserID("@carol:test")
	x := txnIndex{maxDevices: 2, maxKeys: 3}
	none := func(context.Context, func(string, string)) error { return nil }
	mayHave := func(user id.UserID, device id.DeviceID, txnID string) bool {
		t.Helper()
		got, err := x.mayHave(ctx, user, device, "s", txnID, none)
		if err != nil {
			t.Fatalf("mayHave: %v", err)
		}
		return got
	}
	x.add(alice, "A", "s", "a1")
	x.add(alice, "A", "s", "a1")
	x.add(bob, "B", "s", "b1")
	x.add(carol, "C", "s", "c1")
	if len(x.devices) != 2 {
		t.Fatalf("%d devices indexed, want 2", len(x.devices))
	}
	if !mayHave(carol, "C", "never used") {
		t.Error("a device past the device bound must be looked up in the table")
	}
	if mayHave(alice, "A", "new") || !mayHave(alice, "A", "a1") {
		t.Error("an indexed device must still be ruled in and out")
	}
	x.add(alice, "A", "s", "a2")
	x.add(bob, "B", "s", "b2") // the fourth key: bob's stops being indexed
	if got := x.keys.Load(); got != 2 {
		t.Errorf("%d keys held, want alice's 2", got)
	}
	if !mayHave(bob, "B", "never used") {
		t.Error("a device past the key bound must be looked up in the table")
	}
	if mayHave(alice, "A", "new") || !mayHave(alice, "A", "a2") {
		t.Error("the other device must stay indexed")
	}
}
