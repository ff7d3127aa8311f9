package appservice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mauas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/testnode"
)

// waitChan reads ch until match accepts a value (others are dropped) and
// returns it, failing the test after 30 seconds.
func waitChan[T any](t *testing.T, ch chan T, what string, match func(T) bool) T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case v := <-ch:
			if match(v) {
				return v
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestMautrixAppserviceExtensions: an appservice with receive_ephemeral and
// org.matrix.msc3202, parsed by mautrix-go's appservice package, gets the
// typing, read receipts and presence of a room its user is in (MSC2409),
// to-device messages for its user's device (MSC4203), the device list
// changes of users it shares a room with, joining and leaving (MSC3202),
// and its user's one-time key counts (MSC3202).
func TestMautrixAppserviceExtensions(t *testing.T) {
	reg := registration("bridge", "", "@watched.*:localhost")
	reg.EphemeralEvents, reg.SoruEphemeralEvents, reg.MSC3202 = true, true, true
	as := mautrixAppservice(t, reg)
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"bridge.yaml": yamlOf(t, reg)}))
	ctx := context.Background()
	watched, other, third := n.Register("watched"), n.Register("other"), n.Register("third")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.Join(t, other, room)
	msg := testnode.SendText(t, other, room, "hello")

	t.Run("typing", func(t *testing.T) {
		if _, err := other.UserTyping(ctx, room, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		waitChan(t, as.Events, "m.typing of other", func(ev *event.Event) bool {
			return ev.Type == event.EphemeralEventTyping && ev.RoomID == room && slices.Equal(ev.Content.AsTyping().UserIDs, []id.UserID{other.UserID})
		})
	})
	t.Run("receipt", func(t *testing.T) {
		if err := other.MarkRead(ctx, room, msg); err != nil {
			t.Fatal(err)
		}
		waitChan(t, as.Events, "m.receipt of other", func(ev *event.Event) bool {
			if ev.Type != event.EphemeralEventReceipt || ev.RoomID != room {
				return false
			}
			_, ok := (*ev.Content.AsReceipt())[msg][event.ReceiptTypeRead][other.UserID]
			return ok
		})
	})
	t.Run("presence", func(t *testing.T) {
		if err := other.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "away"}); err != nil {
			t.Fatal(err)
		}
		waitChan(t, as.Events, "m.presence of other", func(ev *event.Event) bool {
			return ev.Type == event.EphemeralEventPresence && ev.Sender == other.UserID && ev.Content.AsPresence().StatusMessage == "away"
		})
	})
	t.Run("to-device", func(t *testing.T) {
		_, err := other.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
			Messages: map[id.UserID]map[id.DeviceID]*event.Content{watched.UserID: {watched.DeviceID: {Raw: map[string]any{"n": 1}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ev := waitChan(t, as.ToDeviceEvents, "the to-device message", func(ev *event.Event) bool { return ev.Type.Type == "org.example.ping" })
		if ev.Sender != other.UserID || ev.ToUserID != watched.UserID || ev.ToDeviceID != watched.DeviceID {
			t.Errorf("to-device event from %s to %s/%s", ev.Sender, ev.ToUserID, ev.ToDeviceID)
		}
	})
	t.Run("one-time key counts", func(t *testing.T) {
		testnode.NewE2EEDevice(t, "watched", watched)
		otk := waitChan(t, as.OTKCounts, "the one-time key counts of watched", func(c *mautrix.OTKCount) bool {
			return c.UserID == watched.UserID && c.DeviceID == watched.DeviceID && c.SignedCurve25519 > 0
		})
		t.Logf("%d signed_curve25519 one-time keys", otk.SignedCurve25519)
	})
	t.Run("device lists", func(t *testing.T) {
		testnode.NewE2EEDevice(t, "other", other)
		waitChan(t, as.DeviceLists, "other's device list change", func(dl *mautrix.DeviceLists) bool { return slices.Contains(dl.Changed, other.UserID) })
		testnode.Join(t, third, room)
		waitChan(t, as.DeviceLists, "third joining", func(dl *mautrix.DeviceLists) bool { return slices.Contains(dl.Changed, third.UserID) })
		testnode.Leave(t, third, room)
		waitChan(t, as.DeviceLists, "third leaving", func(dl *mautrix.DeviceLists) bool { return slices.Contains(dl.Left, third.UserID) })
	})
}

// TestExtensionsUnderBothKeys: each extension is sent under its stable key
// and its MSC's unstable key, with the same value.
func TestExtensionsUnderBothKeys(t *testing.T) {
	reg := registration("raw", "", "@watched.*:localhost")
	reg.EphemeralEvents, reg.MSC3202 = true, true
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	plainReg := registration("plain", "", "@watched.*:localhost")
	plain := testnode.NewFakeAppservice(t, plainReg.ServerToken)
	plainReg.URL = plain.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{
		"raw.yaml": yamlOf(t, reg), "plain.yaml": yamlOf(t, plainReg),
	}))
	ctx := context.Background()
	watched, other := n.Register("watched"), n.Register("other")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.Join(t, other, room)
	if _, err := other.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := other.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{watched.UserID: {watched.DeviceID: {Raw: map[string]any{"n": 1}}}},
	}); err != nil {
		t.Fatal(err)
	}
	testnode.NewE2EEDevice(t, "watched", watched)
	testnode.NewE2EEDevice(t, "other", other)
	testnode.SendText(t, watched, room, "last")

	pairs := [][2]string{
		{"ephemeral", "de.sorunome.msc2409.ephemeral"},
		{"to_device", "de.sorunome.msc2409.to_device"},
		{"device_lists", "org.matrix.msc3202.device_lists"},
		{"device_one_time_keys_count", "org.matrix.msc3202.device_one_time_keys_count"},
		{"device_unused_fallback_key_types", "org.matrix.msc3202.device_unused_fallback_key_types"},
	}
	found := map[string]bool{}
	testnode.WaitFor(t, 30*time.Second, "every extension in a transaction", func() bool {
		for _, txn := range as.Transactions() {
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(txn.Raw, &keys); err != nil {
				t.Fatal(err)
			}
			for _, p := range pairs {
				stable, unstable := keys[p[0]], keys[p[1]]
				if stable == nil && unstable == nil {
					continue
				}
				if string(stable) != string(unstable) {
					t.Fatalf("%s is %s but %s is %s", p[0], stable, p[1], unstable)
				}
				found[p[0]] = true
			}
		}
		return len(found) == len(pairs)
	})
	// An appservice that asked for none of the extensions gets events only.
	plain.WaitBody("last")
	for _, txn := range plain.Transactions() {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(txn.Raw, &keys); err != nil {
			t.Fatal(err)
		}
		for key := range keys {
			if key != "events" {
				t.Errorf("an appservice without extensions got %s: %s", key, keys[key])
			}
		}
	}
}

// TestToDeviceForExclusiveUsers: a to-device message for a device of a
// user an appservice holds exclusively goes to the appservice only (its
// inbox, which such devices never sync, is skipped), while one for a user
// of no appservice goes to the device's inbox as ever.
func TestToDeviceForExclusiveUsers(t *testing.T) {
	reg := registration("ghosts", "", "")
	reg.Namespaces.UserIDs = mauas.NamespaceList{{Regex: "@ghost.*:localhost", Exclusive: true}}
	reg.EphemeralEvents = true
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"ghosts.yaml": yamlOf(t, reg)}))
	ctx := context.Background()
	ghostID, err := n.Accounts.CreateUser(ctx, "ghost1", testnode.Password, false)
	if err != nil {
		t.Fatal(err)
	}
	ghost, human, other := n.Login(ghostID), n.Register("human"), n.Register("other")
	ghostSince := testnode.SyncOnce(t, ghost, "", 0).NextBatch
	humanSince := testnode.SyncOnce(t, human, "", 0).NextBatch
	if _, err := other.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			ghost.UserID: {ghost.DeviceID: {Raw: map[string]any{"to": "ghost"}}},
			human.UserID: {human.DeviceID: {Raw: map[string]any{"to": "human"}}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	testnode.WaitFor(t, 30*time.Second, "the ghost's to-device message at the appservice", func() bool {
		for _, txn := range as.Transactions() {
			var body struct {
				ToDevice []struct {
					ToUser   id.UserID   `json:"to_user_id"`
					ToDevice id.DeviceID `json:"to_device_id"`
				} `json:"to_device"`
			}
			if err := json.Unmarshal(txn.Raw, &body); err != nil {
				t.Fatal(err)
			}
			for _, td := range body.ToDevice {
				if td.ToUser == human.UserID {
					t.Fatalf("the appservice got the message for %s", human.UserID)
				}
				if td.ToUser == ghost.UserID && td.ToDevice == ghost.DeviceID {
					return true
				}
			}
		}
		return false
	})
	if got := len(testnode.SyncOnce(t, human, humanSince, 5000).ToDevice.Events); got != 1 {
		t.Fatalf("the human's device got %d to-device messages, want 1", got)
	}
	if got := testnode.SyncOnce(t, ghost, ghostSince, 0).ToDevice.Events; len(got) != 0 {
		t.Errorf("the ghost's inbox got %d to-device messages, want none: the appservice delivers them", len(got))
	}

	// With the appservice's queue full, a message for the ghost goes to
	// its inbox rather than nowhere.
	appservice.SetMaxQueued(n.AppserviceQueue, 0)
	if _, err := other.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{ghost.UserID: {ghost.DeviceID: {Raw: map[string]any{"to": "ghost, queue full"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := testnode.SyncOnce(t, ghost, ghostSince, 5000).ToDevice.Events; len(got) != 1 {
		t.Errorf("with the appservice's queue full, the ghost's inbox got %d to-device messages, want 1", len(got))
	}
}

// TestTransactionIDOfExclusiveUsers: an event sent by a user the
// appservice holds exclusively carries its transaction_id; one sent by a
// user of a non-exclusive namespace (whose client chose the ID) does not.
func TestTransactionIDOfExclusiveUsers(t *testing.T) {
	reg := registration("ghosts", "", "")
	reg.Namespaces.UserIDs = mauas.NamespaceList{{Regex: "@ghost.*:localhost", Exclusive: true}, {Regex: "@watched.*:localhost"}}
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"ghosts.yaml": yamlOf(t, reg)}))
	ghostID, err := n.Accounts.CreateUser(context.Background(), "ghost1", testnode.Password, false)
	if err != nil {
		t.Fatal(err)
	}
	ghost, watched := n.Login(ghostID), n.Register("watched")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.Join(t, ghost, room)
	fromGhost := testnode.SendText(t, ghost, room, "from the ghost")
	fromWatched := testnode.SendText(t, watched, room, "from watched")
	for _, ev := range as.WaitBody("from watched") {
		switch id.EventID(ev.EventID) {
		case fromGhost:
			if ev.Unsigned.TransactionID == "" {
				t.Error("the exclusive user's event has no transaction_id")
			}
		case fromWatched:
			if ev.Unsigned.TransactionID != "" {
				t.Errorf("a non-exclusive user's event carries their client's transaction_id %q", ev.Unsigned.TransactionID)
			}
		}
	}
}

// TestMemberDeviceListsCoalesced: when a user of an appservice with
// MSC3202 joins a room, every member's device list has changed for it,
// which is queued as one item however many members the room has (not a
// row per member inside the join's write), and delivered naming each
// member; a new display name of that user (a member event that leaves
// the membership as it was) queues no device list change at all.
func TestMemberDeviceListsCoalesced(t *testing.T) {
	reg := registration("bridge", "", "@watched.*:localhost")
	reg.MSC3202 = true
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"bridge.yaml": yamlOf(t, reg)}))
	// Nothing is taken off the queue until the restart below.
	appservice.SetTiming(n.AppserviceQueue, time.Hour, time.Hour, time.Hour)
	ctx := context.Background()
	owner := n.Register("owner")
	room := testnode.CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	members := []id.UserID{owner.UserID}
	for i := range 12 {
		c := n.Register(fmt.Sprintf("member%d", i))
		testnode.Join(t, c, room)
		members = append(members, c.UserID)
	}
	watched := n.Register("watched")
	queued := func() int {
		t.Helper()
		rows, err := appservice.QueuedRows(n.AppserviceQueue, "bridge", "device_list")
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if got := queued(); got != 0 {
		t.Fatalf("%d device list changes queued before the appservice's user joined", got)
	}
	testnode.Join(t, watched, room)
	if got := queued(); got != 1 {
		t.Errorf("the join of the appservice's user to a room of %d members queued %d device list rows, want 1", len(members), got)
	}
	if err := watched.SetDisplayName(ctx, "Watched"); err != nil {
		t.Fatal(err)
	}
	if got := queued(); got != 1 {
		t.Errorf("a new display name queued %d more device list rows, want none", got-1)
	}

	n = n.Restart()
	fastTiming(n)
	changed := map[id.UserID]bool{}
	testnode.WaitFor(t, 30*time.Second, "every member in device_lists.changed", func() bool {
		for _, txn := range as.Transactions() {
			var body struct {
				DeviceLists struct {
					Changed []id.UserID `json:"changed"`
				} `json:"device_lists"`
			}
			if err := json.Unmarshal(txn.Raw, &body); err != nil {
				t.Fatal(err)
			}
			for _, u := range body.DeviceLists.Changed {
				changed[u] = true
			}
		}
		for _, m := range members {
			if !changed[m] {
				return false
			}
		}
		return true
	})
	if changed[watched.UserID] {
		t.Errorf("the appservice's own user %s is among the changed device lists", watched.UserID)
	}
}

// blockingReader reads a value that changes under a test: its first read
// takes the value, says so on read and waits for release before it
// answers; the reads after it answer at once.
type blockingReader[T any] struct {
	mu            sync.Mutex
	value         T
	reads         int
	read, release chan struct{}
}

func newBlockingReader[T any](value T) *blockingReader[T] {
	return &blockingReader[T]{value: value, read: make(chan struct{}), release: make(chan struct{})}
}

func (r *blockingReader[T]) set(v T) {
	r.mu.Lock()
	r.value = v
	r.mu.Unlock()
}

func (r *blockingReader[T]) get() T {
	r.mu.Lock()
	v := r.value
	r.reads++
	first := r.reads == 1
	r.mu.Unlock()
	if first {
		close(r.read)
		<-r.release
	}
	return v
}

// racePair runs queue twice at once: the first run reads the old value
// and is held there while the value changes and the second run reads it;
// the first is let go once the second has returned, or after a while when
// the second waits for it (as it should). Both must succeed.
func racePair[T any](t *testing.T, r *blockingReader[T], newValue T, queue func() error) {
	t.Helper()
	first := make(chan error, 1)
	go func() { first <- queue() }()
	<-r.read
	r.set(newValue)
	second := make(chan error, 1)
	go func() { second <- queue() }()
	select {
	case err := <-second:
		second <- err
	case <-time.After(500 * time.Millisecond):
	}
	close(r.release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// TestTypingAndKeyCountsInOrder: when a room's typing users or a device's
// key counts change twice at once, the appservice gets them in the order
// they changed: the last it gets is the latest, never an older value that
// was read first and queued last.
func TestTypingAndKeyCountsInOrder(t *testing.T) {
	reg := registration("bridge", "", "@watched.*:localhost")
	reg.EphemeralEvents, reg.MSC3202 = true, true
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"bridge.yaml": yamlOf(t, reg)}))
	fastTiming(n)
	ctx := context.Background()
	watched, other := n.Register("watched"), n.Register("other")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{})
	drained := func() bool { return n.AppserviceQueue.Status("bridge").QueueDepth == 0 }

	t.Run("typing", func(t *testing.T) {
		r := newBlockingReader([]id.UserID{watched.UserID})
		racePair(t, r, []id.UserID{watched.UserID, other.UserID}, func() error {
			return n.AppserviceQueue.QueueTyping(ctx, room, func(id.RoomID) []id.UserID { return r.get() })
		})
		testnode.WaitFor(t, 30*time.Second, "an empty queue", drained)
		var last []id.UserID
		for _, txn := range as.Transactions() {
			for _, raw := range txn.Ephemeral {
				var ev struct {
					Type    string    `json:"type"`
					RoomID  id.RoomID `json:"room_id"`
					Content struct {
						UserIDs []id.UserID `json:"user_ids"`
					} `json:"content"`
				}
				if err := json.Unmarshal(raw, &ev); err != nil {
					t.Fatal(err)
				}
				if ev.Type == "m.typing" && ev.RoomID == room {
					last = ev.Content.UserIDs
				}
			}
		}
		if len(last) != 2 {
			t.Errorf("the last m.typing the appservice got names %v, want both users (the latest)", last)
		}
	})
	t.Run("key counts", func(t *testing.T) {
		r := newBlockingReader(50)
		racePair(t, r, 49, func() error {
			return n.AppserviceQueue.QueueKeyCounts(ctx, watched.UserID, watched.DeviceID, func(context.Context, id.UserID, id.DeviceID) (map[string]int, []string, error) {
				return map[string]int{"signed_curve25519": r.get()}, nil, nil
			})
		})
		testnode.WaitFor(t, 30*time.Second, "an empty queue", drained)
		last := -1
		for _, txn := range as.Transactions() {
			var body struct {
				Counts map[id.UserID]map[id.DeviceID]map[string]int `json:"device_one_time_keys_count"`
			}
			if err := json.Unmarshal(txn.Raw, &body); err != nil {
				t.Fatal(err)
			}
			if c, ok := body.Counts[watched.UserID][watched.DeviceID]; ok {
				last = c["signed_curve25519"]
			}
		}
		if last != 49 {
			t.Errorf("the last one-time key count the appservice got is %d, want the latest, 49", last)
		}
	})
}
