package rooms

import (
	"context"
	"errors"
	"strconv"
	"testing"
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
