package rooms

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	alice = id.UserID("@alice:test")
	bob   = id.UserID("@bob:test")
	eve   = id.UserID("@eve:test")
)

// testEnv is a SQLite database in a temporary directory with an engine
// over it; reopen replaces both, as a restart does.
type testEnv struct {
	t    testing.TB
	path string
	key  ed25519.PrivateKey
	db   *storage.DB
	e    *Engine
	// server is the engine's server name ("test" when empty); remote, when
	// set, is given to each engine opened.
	server string
	remote Remote
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnvAt(t, filepath.Join(t.TempDir(), "db"))
}

// newTestEnvAt is newTestEnv on the database named by dsn (a SQLite path
// or a PostgreSQL URL).
func newTestEnvAt(t testing.TB, dsn string) *testEnv {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, path: dsn, key: key}
	env.open()
	t.Cleanup(func() { env.db.Close() })
	return env
}

func (env *testEnv) open() {
	t := env.t
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, env.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, Migrations); err != nil {
		db.Close()
		t.Fatal(err)
	}
	server := env.server
	if server == "" {
		server = "test"
	}
	e := New(db, slog.New(slog.DiscardHandler), Signer{ServerName: server, KeyID: "ed25519:t", Key: env.key})
	e.Remote = env.remote
	if err := e.Load(ctx); err != nil {
		db.Close()
		t.Fatal(err)
	}
	env.db, env.e = db, e
}

// reopen closes the database and opens a fresh engine over it.
func (env *testEnv) reopen() {
	env.t.Helper()
	if err := env.db.Close(); err != nil {
		env.t.Fatal(err)
	}
	env.open()
}

func stateProto(sender id.UserID, typ, sk, content string) Proto {
	return Proto{Type: typ, StateKey: &sk, Sender: sender, Content: json.RawMessage(content)}
}

func textProto(sender id.UserID, body string) Proto {
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return Proto{Type: "m.room.message", Sender: sender, Content: c}
}

// powerLevels gives alice 100 (implicitly from v12 on, where creators must
// not be listed) and everyone else 0, with the usual thresholds.
func powerLevels(v id.RoomVersion) string {
	users := map[id.UserID]int{}
	if !v.PrivilegedRoomCreators() {
		users[alice] = 100
	}
	b, _ := json.Marshal(map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
	})
	return string(b)
}

// createTestRoom creates a public room of version v by alice, with a name,
// and bob joined.
func createTestRoom(t *testing.T, e *Engine, v id.RoomVersion) (id.RoomID, []*Event) {
	t.Helper()
	ctx := context.Background()
	roomID, evs, err := e.CreateRoom(ctx, v, alice, map[string]any{"m.federate": true}, []Proto{
		memberProto(alice, "join"),
		stateProto(alice, "m.room.power_levels", "", powerLevels(v)),
		stateProto(alice, "m.room.join_rules", "", `{"join_rule":"public"}`),
		stateProto(alice, "m.room.history_visibility", "", `{"history_visibility":"shared"}`),
		stateProto(alice, "m.room.name", "", `{"name":"Test room"}`),
	})
	if err != nil {
		t.Fatalf("create v%s room: %v", v, err)
	}
	if _, err := e.Send(ctx, roomID, memberProto(bob, "join")); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	return roomID, evs
}

func errCode(err error) string {
	if me, ok := mxhttp.AsError(err); ok {
		return me.Code
	}
	if err != nil {
		return "not an mxhttp error: " + err.Error()
	}
	return ""
}

// stateIDs maps a state list to type/state_key -> event ID.
func stateIDs(evs []*Event) map[stateKey]id.EventID {
	out := map[stateKey]id.EventID{}
	for _, ev := range evs {
		out[stateKey{ev.Type, *ev.StateKey}] = ev.ID
	}
	return out
}

var testVersions = []id.RoomVersion{id.RoomV1, id.RoomV10, id.RoomV11, id.RoomV12}

func TestCreateRoom(t *testing.T) {
	for _, v := range testVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			ctx := context.Background()
			env := newTestEnv(t)
			e := env.e
			roomID, evs, err := e.CreateRoom(ctx, v, alice, nil, []Proto{
				memberProto(alice, "join"),
				stateProto(alice, "m.room.power_levels", "", powerLevels(v)),
				stateProto(alice, "m.room.join_rules", "", `{"join_rule":"public"}`),
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 4 || evs[0].Type != "m.room.create" {
				t.Fatalf("created events = %d, first %s", len(evs), evs[0].Type)
			}
			create := evs[0]
			if v.RoomIDIsCreateEventID() {
				if want := id.RoomID("!" + strings.TrimPrefix(string(create.ID), "$")); roomID != want {
					t.Errorf("room ID %s, want %s (from the create event)", roomID, want)
				}
				if gjson.GetBytes(create.JSON, "room_id").Exists() {
					t.Errorf("v12 create event has a room_id: %s", create.JSON)
				}
			} else if !strings.HasSuffix(string(roomID), ":test") || !strings.HasPrefix(string(roomID), "!") {
				t.Errorf("room ID %s", roomID)
			}
			for i, ev := range evs {
				if ev.RoomID != roomID {
					t.Errorf("event %d room ID %s, want %s", i, ev.RoomID, roomID)
				}
				if i > 0 && (ev.Pos <= evs[i-1].Pos || ev.Depth != evs[i-1].Depth+1) {
					t.Errorf("event %d at pos %d depth %d after pos %d depth %d", i, ev.Pos, ev.Depth, evs[i-1].Pos, evs[i-1].Depth)
				}
				if i > 0 && !slices.Equal(ev.PDU.PrevEvents, []id.EventID{evs[i-1].ID}) {
					t.Errorf("event %d prev_events %v, want [%s]", i, ev.PDU.PrevEvents, evs[i-1].ID)
				}
			}
			if got := gjson.GetBytes(create.PDU.Content, "room_version").Str; got != string(v) {
				t.Errorf("room_version = %q", got)
			}
			if got := gjson.GetBytes(create.PDU.Content, "creator").Str; (got == string(alice)) != v.CreatorInContent() {
				t.Errorf("creator in content = %q for v%s", got, v)
			}
			// Event format: v1 keeps the event ID in the event.
			if got := gjson.GetBytes(create.JSON, "event_id").Str; (got == string(create.ID)) != usesV1Format(v) {
				t.Errorf("event_id in JSON = %q (id %s)", got, create.ID)
			}
			if usesV1Format(v) && !gjson.GetBytes(evs[1].JSON, "prev_events.0").IsArray() {
				t.Errorf("v1 prev_events are not pairs: %s", evs[1].JSON)
			}
			if gv, err := e.Version(ctx, roomID); err != nil || gv != v {
				t.Errorf("Version = %s, %v", gv, err)
			}
			if m := e.Membership(alice, roomID); m != "join" {
				t.Errorf("alice's membership %q", m)
			}
			if !slices.Contains(e.JoinedRooms(alice), roomID) {
				t.Errorf("JoinedRooms(alice) = %v", e.JoinedRooms(alice))
			}
			st, err := e.CurrentState(ctx, roomID)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := stateIDs(st), stateIDs(evs); !maps.Equal(got, want) {
				t.Errorf("current state %v, want %v", got, want)
			}

			// A message and a state change, then a second user.
			msg, err := e.Send(ctx, roomID, textProto(alice, "hello"))
			if err != nil {
				t.Fatalf("send message: %v", err)
			}
			topic, err := e.Send(ctx, roomID, stateProto(alice, "m.room.topic", "", `{"topic":"t1"}`))
			if err != nil {
				t.Fatalf("send state: %v", err)
			}
			if got, _ := e.StateEvent(ctx, roomID, "m.room.topic", ""); got == nil || got.ID != topic.ID {
				t.Errorf("StateEvent(topic) = %v, want %s", got, topic.ID)
			}
			if msg.SnapshotBefore != evs[3].Pos || topic.SnapshotBefore != evs[3].Pos {
				t.Errorf("snapshot_before = %d, %d, want %d", msg.SnapshotBefore, topic.SnapshotBefore, evs[3].Pos)
			}
			if _, err := e.Send(ctx, roomID, memberProto(bob, "join")); err != nil {
				t.Fatalf("bob joins: %v", err)
			}
			if _, err := e.Send(ctx, roomID, textProto(bob, "hi")); err != nil {
				t.Fatalf("bob sends: %v", err)
			}
			got, err := e.Event(ctx, msg.ID)
			if err != nil || got.ID != msg.ID || gjson.GetBytes(got.PDU.Content, "body").Str != "hello" {
				t.Errorf("Event(msg) = %v, %v", got, err)
			}
		})
	}
}

// TestConcurrentCreateRoom: one user creating rooms with the same content
// at the same moment gets distinct rooms, also where the room ID is the
// create event's hash.
func TestConcurrentCreateRoom(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			e := newTestEnv(t).e
			const n = 20
			ids := make([]id.RoomID, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					ids[i], _, errs[i] = e.CreateRoom(context.Background(), v, alice, nil, []Proto{memberProto(alice, "join")})
				})
			}
			close(start)
			wg.Wait()
			seen := map[id.RoomID]bool{}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("createRoom %d: %v", i, err)
				}
				seen[ids[i]] = true
			}
			if len(seen) != n {
				t.Fatalf("%d concurrent createRoom calls made %d rooms", n, len(seen))
			}
			for roomID := range seen {
				if m := e.Membership(alice, roomID); m != "join" {
					t.Errorf("alice's membership in %s = %q", roomID, m)
				}
			}
		})
	}
}

func TestCreateRoomUnsupported(t *testing.T) {
	env := newTestEnv(t)
	_, _, err := env.e.CreateRoom(context.Background(), "99", alice, nil, nil)
	if got := errCode(err); got != "M_UNSUPPORTED_ROOM_VERSION" {
		t.Errorf("error %v (%s), want M_UNSUPPORTED_ROOM_VERSION", err, got)
	}
}

func TestSendErrors(t *testing.T) {
	for _, v := range testVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			ctx := context.Background()
			env := newTestEnv(t)
			e := env.e
			roomID, _ := createTestRoom(t, e, v)
			aliceMsg, err := e.Send(ctx, roomID, textProto(alice, "mine"))
			if err != nil {
				t.Fatal(err)
			}
			big := strings.Repeat("x", MaxEventBytes)
			tests := []struct {
				name   string
				roomID id.RoomID
				p      Proto
				code   string
			}{
				{"outsider sends a message", roomID, textProto(eve, "hi"), "M_FORBIDDEN"},
				{"outsider sets state", roomID, stateProto(eve, "m.room.topic", "", `{"topic":"x"}`), "M_FORBIDDEN"},
				{"member changes power levels", roomID, stateProto(bob, "m.room.power_levels", "", `{"users":{"@bob:test":100}}`), "M_FORBIDDEN"},
				{"member changes the name", roomID, stateProto(bob, "m.room.name", "", `{"name":"mine"}`), "M_FORBIDDEN"},
				{"outsider joins the public room", roomID, memberProto(eve, "join"), ""},
				{"member redacts another user's event", roomID, Proto{Type: "m.room.redaction", Sender: bob, Redacts: aliceMsg.ID, Content: json.RawMessage(`{}`)}, "M_FORBIDDEN"},
				{"event too large", roomID, textProto(alice, big), "M_TOO_LARGE"},
				{"unknown room", "!nope:test", textProto(alice, "hi"), "M_NOT_FOUND"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := e.LastPos(ctx, roomID)
					stateBefore, _ := e.CurrentState(ctx, roomID)
					ev, err := e.Send(ctx, tt.roomID, tt.p)
					if got := errCode(err); got != tt.code {
						t.Fatalf("Send = %v, %v; want code %q", ev, err, tt.code)
					}
					if tt.code == "" {
						return
					}
					if after := e.LastPos(ctx, roomID); after != before {
						t.Errorf("a refused event moved the room from %d to %d", before, after)
					}
					stateAfter, _ := e.CurrentState(ctx, roomID)
					if !maps.Equal(stateIDs(stateBefore), stateIDs(stateAfter)) {
						t.Error("a refused event changed the current state")
					}
				})
			}
			if m := e.Membership(eve, roomID); m != "join" {
				t.Errorf("eve's membership %q", m)
			}
			// Just under the limit is accepted.
			if _, err := e.Send(ctx, roomID, textProto(alice, big[:MaxEventBytes-2000])); err != nil {
				t.Errorf("event just under the size limit: %v", err)
			}
		})
	}
}

func TestSendForbiddenMembershipRollback(t *testing.T) {
	// A refused membership change leaves the membership index alone.
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	// bob (power 0) cannot ban eve (ban needs 50).
	_, err := e.SendMany(ctx, roomID, []Proto{
		memberProto(eve, "join"),
		stateProto(bob, "m.room.member", string(eve), `{"membership":"ban"}`),
	})
	if errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("SendMany = %v, want M_FORBIDDEN", err)
	}
	if m := e.Membership(eve, roomID); m != "" {
		t.Errorf("eve's membership after a refused batch = %q, want none", m)
	}
	if got, _ := e.StateEvent(ctx, roomID, "m.room.member", string(eve)); got != nil {
		t.Errorf("eve's member event in current state after a refused batch: %s", got.ID)
	}
}

func TestSendTxnRetry(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	roomID, _ := createTestRoom(t, env.e, id.RoomV11)
	p := textProto(alice, "once")
	p.TxnID, p.DeviceID = "txn1", "DEV"
	first, err := env.e.Send(ctx, roomID, p)
	if err != nil {
		t.Fatal(err)
	}
	if first.Client(ClientOptions{User: alice, Device: "DEV"}).Unsigned["transaction_id"] != "txn1" {
		t.Error("transaction_id not shown to the sending device")
	}
	last := env.e.LastPos(ctx, roomID)
	tests := []struct {
		name    string
		mod     func(p Proto) Proto
		restart bool
		same    bool
	}{
		{"same transaction", func(p Proto) Proto { return p }, false, true},
		{"same transaction, other content", func(p Proto) Proto { p.Content = json.RawMessage(`{"body":"twice"}`); return p }, false, true},
		{"same transaction after a restart", func(p Proto) Proto { return p }, true, true},
		{"other device", func(p Proto) Proto { p.DeviceID = "DEV2"; return p }, false, false},
		{"other transaction ID", func(p Proto) Proto { p.TxnID = "txn2"; return p }, false, false},
		{"other user, same device and ID", func(p Proto) Proto { p.Sender = bob; return p }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.restart {
				env.reopen()
			}
			ev, err := env.e.Send(ctx, roomID, tt.mod(p))
			if err != nil {
				t.Fatal(err)
			}
			if (ev.ID == first.ID) != tt.same {
				t.Errorf("got event %s, first was %s; want same = %v", ev.ID, first.ID, tt.same)
			}
			if tt.same {
				if got := env.e.LastPos(ctx, roomID); got != last {
					t.Errorf("a retried transaction moved the room from %d to %d", last, got)
				}
			}
			last = env.e.LastPos(ctx, roomID)
		})
	}
}

// TestTxnScope: a transaction ID names one request path, so the same ID in
// two rooms, for two event types or for two redactions are different
// transactions, each stored, while a retry of the same path answers the
// first event, in memory and after a restart.
func TestTxnScope(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	roomA, _ := createTestRoom(t, env.e, id.RoomV11)
	roomB, _ := createTestRoom(t, env.e, id.RoomV12)
	withTxn := func(p Proto) Proto { p.TxnID, p.DeviceID = "t1", "DEV"; return p }
	redact := func(target id.EventID) Proto {
		return withTxn(Proto{Type: "m.room.redaction", Sender: alice, Redacts: target, Content: json.RawMessage(`{}`)})
	}
	send := func(roomID id.RoomID, p Proto) *Event {
		t.Helper()
		ev, err := env.e.Send(ctx, roomID, p)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	inA := send(roomA, withTxn(textProto(alice, "in A")))
	inB := send(roomB, withTxn(textProto(alice, "in B")))
	if inA.ID == inB.ID || inB.RoomID != roomB {
		t.Fatalf("the same transaction in room B answered %s in %s (room A's is %s)", inB.ID, inB.RoomID, inA.ID)
	}
	otherType := send(roomA, withTxn(Proto{Type: "org.test.event", Sender: alice, Content: json.RawMessage(`{}`)}))
	redactA := send(roomA, redact(inA.ID))
	redactOther := send(roomA, redact(otherType.ID))
	distinct := map[id.EventID]bool{inA.ID: true, inB.ID: true, otherType.ID: true, redactA.ID: true, redactOther.ID: true}
	if len(distinct) != 5 {
		t.Fatalf("five requests with one transaction ID on five paths gave %d events", len(distinct))
	}
	if got := redactA.Client(ClientOptions{User: alice, Device: "DEV"}).Unsigned["transaction_id"]; got != "t1" {
		t.Errorf("a redaction's transaction_id = %v, want t1", got)
	}
	check := func(t *testing.T) {
		for _, tt := range []struct {
			room id.RoomID
			p    Proto
			want *Event
		}{
			{roomA, withTxn(textProto(alice, "in A, again")), inA},
			{roomB, withTxn(textProto(alice, "in B, again")), inB},
			{roomA, redact(inA.ID), redactA},
			{roomA, redact(otherType.ID), redactOther},
		} {
			if got := send(tt.room, tt.p); got.ID != tt.want.ID {
				t.Errorf("retry of %s in %s: %s, want %s", tt.p.Type, tt.room, got.ID, tt.want.ID)
			}
		}
		for evID := range distinct {
			if _, err := env.e.Event(ctx, evID); err != nil {
				t.Errorf("event %s not stored: %v", evID, err)
			}
		}
	}
	t.Run("warm", check)
	env.reopen()
	t.Run("after a restart", check)
}

// TestStateAgreement changes state many times (more than
// snapshotFullEvery, so full snapshots are written between deltas) and
// checks that StateAt, SnapshotAtPos and CurrentState agree with the
// state computed alongside, on a warm and on a cold engine.
func TestStateAgreement(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	cur, err := e.CurrentState(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	type checkpoint struct {
		pos   int64
		state map[stateKey]id.EventID
	}
	want := stateIDs(cur)
	var checks []checkpoint
	joined := map[id.UserID]bool{}
	n := 3 * snapshotFullEvery
	for i := range n {
		var p Proto
		switch i % 4 {
		case 0:
			p = stateProto(alice, "m.room.topic", "", fmt.Sprintf(`{"topic":"topic %d"}`, i))
		case 1:
			p = stateProto(alice, "org.test.state", fmt.Sprintf("k%d", i%7), fmt.Sprintf(`{"i":%d}`, i))
		case 2:
			p = textProto(bob, fmt.Sprintf("message %d", i))
		case 3:
			u := id.UserID(fmt.Sprintf("@u%d:test", (i/4)%5))
			m := "join"
			if joined[u] {
				m = "leave"
			}
			joined[u] = !joined[u]
			p = memberProto(u, m)
		}
		ev, err := e.Send(ctx, roomID, p)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if ev.IsState() {
			want = maps.Clone(want)
			want[stateKey{ev.Type, *ev.StateKey}] = ev.ID
		}
		checks = append(checks, checkpoint{ev.Pos, want})
	}

	var fullSnapshots int
	if err := env.db.QueryRow(ctx, "SELECT COUNT(*) FROM state_snapshots WHERE room_id = $1 AND parent_id = 0", roomID).Scan(&fullSnapshots); err != nil {
		t.Fatal(err)
	}
	if fullSnapshots < 3 {
		t.Errorf("%d full snapshots written, want at least 3 (the first and one every %d changes)", fullSnapshots, snapshotFullEvery)
	}

	verify := func(t *testing.T, e *Engine, order []checkpoint) {
		for _, c := range order {
			snap, err := e.SnapshotAtPos(ctx, roomID, c.pos)
			if err != nil {
				t.Fatal(err)
			}
			st, err := e.StateAt(ctx, snap)
			if err != nil {
				t.Fatal(err)
			}
			if got := stateIDs(st); !maps.Equal(got, c.state) {
				t.Fatalf("state at pos %d (snapshot %d): %d entries, want %d; differs", c.pos, snap, len(got), len(c.state))
			}
			if !slices.IsSortedFunc(st, func(a, b *Event) int { return int(a.Pos - b.Pos) }) {
				t.Errorf("StateAt(%d) not in stream order", snap)
			}
		}
		cur, err := e.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if got := stateIDs(cur); !maps.Equal(got, want) {
			t.Errorf("current state has %d entries, want %d; differs", len(got), len(want))
		}
	}
	reversed := slices.Clone(checks)
	slices.Reverse(reversed)
	t.Run("warm", func(t *testing.T) { verify(t, e, checks) })
	t.Run("cold, newest first", func(t *testing.T) {
		env.reopen()
		verify(t, env.e, reversed)
	})
	t.Run("cold, oldest first", func(t *testing.T) {
		env.reopen()
		verify(t, env.e, checks)
	})

	// A message's snapshot_before is the state it was sent in.
	msgs, err := env.e.RoomEvents(ctx, roomID, 0, checks[len(checks)-1].pos, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	byPos := map[int64]map[stateKey]id.EventID{}
	for _, c := range checks {
		byPos[c.pos] = c.state
	}
	for i, ev := range msgs {
		if ev.IsState() || i == 0 || byPos[ev.Pos] == nil {
			continue
		}
		st, err := env.e.StateAt(ctx, ev.SnapshotBefore)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(stateIDs(st), byPos[ev.Pos]) {
			t.Errorf("state before message at %d differs", ev.Pos)
		}
	}
}

func TestRedaction(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV10, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			ctx := context.Background()
			env := newTestEnv(t)
			e := env.e
			roomID, _ := createTestRoom(t, e, v)
			msg, err := e.Send(ctx, roomID, textProto(bob, "secret"))
			if err != nil {
				t.Fatal(err)
			}
			topic, err := e.Send(ctx, roomID, stateProto(alice, "m.room.topic", "", `{"topic":"secret topic"}`))
			if err != nil {
				t.Fatal(err)
			}
			var reds []*Event
			for _, target := range []id.EventID{msg.ID, topic.ID} {
				red, err := e.Send(ctx, roomID, Proto{Type: "m.room.redaction", Sender: alice, Redacts: target, Content: json.RawMessage(`{"reason":"oops"}`)})
				if err != nil {
					t.Fatalf("redact %s: %v", target, err)
				}
				reds = append(reds, red)
				if got := red.Client(ClientOptions{}).Redacts; got != target {
					t.Errorf("redaction's client redacts = %s, want %s", got, target)
				}
				inContent := gjson.GetBytes(red.PDU.Content, "redacts").Str == string(target)
				if inContent != v.RedactsInContent() {
					t.Errorf("redacts in content = %v for v%s: %s", inContent, v, red.JSON)
				}
			}
			check := func(t *testing.T, e *Engine) {
				for i, target := range []*Event{msg, topic} {
					got, err := e.Event(ctx, target.ID)
					if err != nil {
						t.Fatal(err)
					}
					if string(got.PDU.Content) != "{}" {
						t.Errorf("redacted %s content = %s", target.Type, got.PDU.Content)
					}
					if got.RedactedBy != reds[i].ID {
						t.Errorf("redacted_by = %q, want %s", got.RedactedBy, reds[i].ID)
					}
					because := gjson.GetBytes(got.JSON, "unsigned.redacted_because")
					if because.Get("event_id").Str != string(reds[i].ID) || because.Get("type").Str != "m.room.redaction" {
						t.Errorf("redacted_because = %s", because.Raw)
					}
					if gjson.GetBytes(got.JSON, "event_id").Exists() != usesV1Format(v) {
						t.Errorf("redaction changed the event format: %s", got.JSON)
					}
					if got.Client(ClientOptions{}).Unsigned["redacted_because"] == nil {
						t.Error("client format lacks redacted_because")
					}
				}
				st, err := e.StateEvent(ctx, roomID, "m.room.topic", "")
				if err != nil || st == nil {
					t.Fatalf("topic state = %v, %v", st, err)
				}
				if st.ID != topic.ID || string(st.PDU.Content) != "{}" {
					t.Errorf("current topic %s content %s, want %s redacted", st.ID, st.PDU.Content, topic.ID)
				}
			}
			t.Run("live", func(t *testing.T) { check(t, e) })
			t.Run("after restart", func(t *testing.T) {
				env.reopen()
				check(t, env.e)
			})
		})
	}
}

// TestRedactionSharedEvent documents a suspected bug: applyMemory redacts
// the target state event's PDU in place (pdu.PDU.Redact mutates its
// receiver), so an *Event handed out earlier (by Send, to OnEvent hooks, or
// from the event cache or recent timeline) changes under its readers
// without a lock, and stays redacted in memory even when the batch with the
// redaction is refused.
func TestRedactionSharedEvent(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	topic, err := e.Send(ctx, roomID, stateProto(alice, "m.room.topic", "", `{"topic":"secret topic"}`))
	if err != nil {
		t.Fatal(err)
	}
	// A batch with the redaction and a refused event is rolled back.
	_, err = e.SendMany(ctx, roomID, []Proto{
		{Type: "m.room.redaction", Sender: alice, Redacts: topic.ID},
		textProto(eve, "refused"),
	})
	if errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("SendMany = %v, want M_FORBIDDEN", err)
	}
	st, _ := e.StateEvent(ctx, roomID, "m.room.topic", "")
	if string(topic.PDU.Content) == "{}" || string(st.PDU.Content) == "{}" {
		t.Errorf("a refused redaction redacted the topic in memory (returned event %s, state %s)", topic.PDU.Content, st.PDU.Content)
	}
}

func TestLoadRestores(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	carol, dave := id.UserID("@carol:test"), id.UserID("@dave:test")
	roomID, _ := createTestRoom(t, e, id.RoomV10)
	other, _ := createTestRoom(t, e, id.RoomV12)
	for _, p := range []Proto{
		stateProto(alice, "m.room.member", string(carol), `{"membership":"invite"}`),
		memberProto(dave, "join"),
		textProto(dave, "bye"),
		memberProto(dave, "leave"),
		stateProto(alice, "m.room.topic", "", `{"topic":"kept"}`),
	} {
		if _, err := e.Send(ctx, roomID, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Send(ctx, other, memberProto(dave, "join")); err != nil {
		t.Fatal(err)
	}
	type roomSnap struct {
		state   map[stateKey]id.EventID
		lastPos int64
		version id.RoomVersion
	}
	snap := func(e *Engine) map[id.RoomID]roomSnap {
		out := map[id.RoomID]roomSnap{}
		for _, r := range []id.RoomID{roomID, other} {
			st, err := e.CurrentState(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := e.Version(ctx, r)
			out[r] = roomSnap{stateIDs(st), e.LastPos(ctx, r), v}
		}
		return out
	}
	users := []id.UserID{alice, bob, carol, dave, eve}
	type userSnap struct {
		memberships map[id.RoomID]string
		joined      []id.RoomID
		pos         int64
	}
	usersOf := func(e *Engine) map[id.UserID]userSnap {
		out := map[id.UserID]userSnap{}
		for _, u := range users {
			out[u] = userSnap{e.Memberships(u), e.JoinedRooms(u), e.MembershipPos(u)}
		}
		return out
	}
	beforeRooms, beforeUsers := snap(e), usersOf(e)
	plBefore, _ := e.PowerLevels(ctx, roomID)

	env.reopen()
	e = env.e
	afterUsers := usersOf(e) // before any room is loaded: from Load alone
	for _, u := range users {
		b, a := beforeUsers[u], afterUsers[u]
		if !maps.Equal(b.memberships, a.memberships) || !slices.Equal(b.joined, a.joined) || b.pos != a.pos {
			t.Errorf("%s after restart: %+v, want %+v", u, a, b)
		}
	}
	tests := []struct {
		user id.UserID
		want string
	}{
		{alice, "join"}, {bob, "join"}, {carol, "invite"}, {dave, "leave"}, {eve, ""},
	}
	for _, tt := range tests {
		if got := e.Membership(tt.user, roomID); got != tt.want {
			t.Errorf("Membership(%s) = %q, want %q", tt.user, got, tt.want)
		}
	}
	afterRooms := snap(e)
	for r, b := range beforeRooms {
		a := afterRooms[r]
		if !maps.Equal(a.state, b.state) || a.lastPos != b.lastPos || a.version != b.version {
			t.Errorf("room %s after restart: %d state events, last pos %d, v%s; want %d, %d, v%s",
				r, len(a.state), a.lastPos, a.version, len(b.state), b.lastPos, b.version)
		}
	}
	plAfter, _ := e.PowerLevels(ctx, roomID)
	if plAfter.GetUserLevel(alice) != plBefore.GetUserLevel(alice) || plAfter.GetUserLevel(alice) != 100 {
		t.Errorf("alice's power after restart %d", plAfter.GetUserLevel(alice))
	}
	if topic, _ := e.StateEvent(ctx, roomID, "m.room.topic", ""); topic == nil || gjson.GetBytes(topic.PDU.Content, "topic").Str != "kept" {
		t.Errorf("topic after restart = %v", topic)
	}
	// The restored room carries on from its last event.
	lastID, err := e.LatestEventID(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	last, err := e.Event(ctx, lastID)
	if err != nil {
		t.Fatal(err)
	}
	next, err := e.Send(ctx, roomID, textProto(bob, "still here"))
	if err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	if !slices.Equal(next.PDU.PrevEvents, []id.EventID{last.ID}) || next.Depth != last.Depth+1 || next.Pos <= last.Pos {
		t.Errorf("after restart: prev %v depth %d pos %d; last was %s depth %d pos %d",
			next.PDU.PrevEvents, next.Depth, next.Pos, last.ID, last.Depth, last.Pos)
	}
	// Outsiders are still refused, members still allowed.
	if _, err := e.Send(ctx, roomID, textProto(dave, "back?")); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("left user sends after restart: %v", err)
	}
}

// TestConcurrentSends sends from several goroutines into one room: every
// event commits with a distinct position and the room's DAG stays a line.
func TestConcurrentSends(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 10 {
				ev, err := e.Send(ctx, roomID, textProto(bob, fmt.Sprintf("%d/%d", g, i)))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[ev.Pos] {
					t.Errorf("position %d used twice", ev.Pos)
				}
				seen[ev.Pos] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	evs, err := e.RoomEvents(ctx, roomID, 0, e.LastPos(ctx, roomID), 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if !slices.Equal(evs[i].PDU.PrevEvents, []id.EventID{evs[i-1].ID}) || evs[i].Depth != evs[i-1].Depth+1 {
			t.Fatalf("event %d (%s) prev %v depth %d, after %s depth %d", i, evs[i].ID, evs[i].PDU.PrevEvents, evs[i].Depth, evs[i-1].ID, evs[i-1].Depth)
		}
	}
}
