package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// backends runs test on a SQLite and a PostgreSQL engine.
func backends(t *testing.T, test func(t *testing.T, env *testEnv)) {
	t.Run("sqlite", func(t *testing.T) { test(t, newTestEnv(t)) })
	t.Run("postgres", func(t *testing.T) { test(t, newTestEnvAt(t, pgtest.Start(t))) })
}

const (
	carol   = id.UserID("@carol:test")
	mallory = id.UserID("@mallory:test")
)

// writeUsers send the random events: alice creates the room; bob and carol
// are members (bob a moderator at first), mallory is not.
var writeUsers = []id.UserID{alice, bob, carol, mallory}

// chooser draws the random choices of a write sequence.
type chooser interface {
	intn(n int) int
	done() bool
}

type randChooser struct {
	rng   *rand.Rand
	steps int
}

func (c *randChooser) intn(n int) int { return c.rng.IntN(n) }
func (c *randChooser) done() bool     { c.steps--; return c.steps < 0 }

// byteChooser draws from fuzz input; it is done when the input is used up.
type byteChooser struct {
	b     []byte
	steps int
}

func (c *byteChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0]) % n
	c.b = c.b[1:]
	return v
}
func (c *byteChooser) done() bool { c.steps--; return len(c.b) == 0 || c.steps < 0 }

func pick[T any](c chooser, xs ...T) T { return xs[c.intn(len(xs))] }

// writeGen makes random protos for one room.
type writeGen struct {
	c       chooser
	version id.RoomVersion
	known   []id.EventID // every event of the room, as redaction targets
}

// garbage are contents that are malformed for most event types.
var garbage = []string{
	`{}`, `[]`, `"x"`, `{"a":1.5}`, `{"n":9007199254740993}`, `{"membership":5}`, `{"join_rule":null}`,
	`{"users":{"@alice:test":"100"}}`, `{"users_default":"x"}`, `{"events_default":100}`, `{"ban":1.5}`,
	`{"users":{"@bob:test":100,"@mallory:test":100}}`, `{"room_version":"12"}`, `{"creator":"@mallory:test"}`,
}

func (g *writeGen) content(good ...string) json.RawMessage {
	if g.c.intn(4) == 0 {
		return json.RawMessage(pick(g.c, garbage...))
	}
	return json.RawMessage(pick(g.c, good...))
}

// powerLevelsFor is a well-formed power levels content that keeps alice's
// power (she is the creator; from v12 on creators must not be listed).
func (g *writeGen) powerLevelsFor() json.RawMessage {
	users := map[id.UserID]int{}
	if !g.version.PrivilegedRoomCreators() {
		users[alice] = 100
	}
	for _, u := range writeUsers[1:] {
		if l := pick(g.c, -1, 0, 50, 100); l >= 0 {
			users[u] = l
		}
	}
	b, _ := json.Marshal(map[string]any{
		"users": users, "users_default": pick(g.c, 0, 50), "events_default": pick(g.c, 0, 50),
		"state_default": pick(g.c, 0, 50), "ban": 50, "kick": 50, "redact": pick(g.c, 0, 50), "invite": 0,
		"events": map[string]int{"m.room.name": pick(g.c, 0, 50, 100)},
	})
	return b
}

// proto returns one random event. Alice never gives up her own rights
// (she never leaves, bans herself or lowers her power), so the room must
// stay writable by her whatever the others send.
func (g *writeGen) proto() Proto {
	sender := pick(g.c, writeUsers...)
	st := func(typ, sk string, content json.RawMessage) Proto {
		return Proto{Type: typ, StateKey: &sk, Sender: sender, Content: content}
	}
	var p Proto
	switch g.c.intn(10) {
	case 0:
		p = st("m.room.create", pick(g.c, "", "x"), g.content(`{}`, `{"room_version":"`+string(g.version)+`"}`))
	case 1:
		p = Proto{Type: "m.room.create", Sender: sender, Content: g.content(`{}`)}
	case 2:
		if sender == alice {
			p = st("m.room.power_levels", "", g.powerLevelsFor())
		} else {
			p = st("m.room.power_levels", pick(g.c, "", "x"), pick(g.c, g.powerLevelsFor(), json.RawMessage(pick(g.c, garbage...))))
		}
	case 3:
		p = st("m.room.join_rules", "", g.content(`{"join_rule":"public"}`, `{"join_rule":"invite"}`, `{"join_rule":"knock"}`,
			`{"join_rule":"restricted","allow":[]}`, `{"join_rule":"bogus"}`))
	case 4, 5:
		target := pick(g.c, writeUsers...)
		m := pick(g.c, "join", "leave", "invite", "ban", "knock", "bogus")
		if sender == alice && target == alice && (m == "leave" || m == "ban" || m == "knock") {
			m = "join"
		}
		p = st("m.room.member", string(target), g.content(`{"membership":"`+m+`"}`))
	case 6:
		var target id.EventID = "$unknown"
		if len(g.known) > 0 && g.c.intn(5) > 0 {
			target = g.known[g.c.intn(len(g.known))]
		}
		p = Proto{Type: "m.room.redaction", Sender: sender, Redacts: target, Content: g.content(`{}`, `{"reason":"spam"}`)}
	case 7:
		p = st(pick(g.c, "m.room.name", "m.room.topic", "m.room.history_visibility", "org.test.state"),
			pick(g.c, "", "k", string(sender), string(mallory)),
			g.content(`{"name":"n"}`, `{"topic":"t"}`, `{"history_visibility":"joined"}`))
	default:
		p = Proto{Type: "m.room.message", Sender: sender, Content: g.content(`{"msgtype":"m.text","body":"hi"}`)}
	}
	if g.c.intn(3) == 0 {
		p.TxnID, p.DeviceID = pick(g.c, "t1", "t2"), "DEV"
	}
	return p
}

// roomTrace is everything a refused event must leave as it was.
type roomTrace struct {
	head        *roomState
	id          id.RoomID
	state       map[stateKey]id.EventID
	lastPos     int64
	members     map[id.UserID]string
	memberships map[id.UserID]map[id.RoomID]string
	memberPos   map[id.UserID]int64
	powerLevels string
	rows        string // counts of the room's rows in the database
}

func traceOf(t testing.TB, env *testEnv, roomID id.RoomID) roomTrace {
	t.Helper()
	ctx := context.Background()
	e := env.e
	r, err := e.room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	head := r.head
	r.mu.Unlock()
	st, err := e.CurrentState(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := e.PowerLevels(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	plJSON, _ := json.Marshal(pl)
	tr := roomTrace{
		head: head, id: r.id, state: stateIDs(st), lastPos: e.LastPos(ctx, roomID), members: maps.Clone(e.Members(ctx, roomID)),
		memberships: map[id.UserID]map[id.RoomID]string{}, memberPos: map[id.UserID]int64{}, powerLevels: string(plJSON),
	}
	for _, u := range writeUsers {
		tr.memberships[u] = e.Memberships(u)
		tr.memberPos[u] = e.MembershipPos(u)
	}
	var events, txns, snaps, memberships int
	if err := env.db.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM events WHERE room_id = $1),
		(SELECT COUNT(*) FROM transactions),
		(SELECT COUNT(*) FROM state_snapshots WHERE room_id = $1),
		(SELECT COUNT(*) FROM memberships WHERE room_id = $1)`, roomID).Scan(&events, &txns, &snaps, &memberships); err != nil {
		t.Fatal(err)
	}
	tr.rows = fmt.Sprintf("events %d, transactions %d, snapshots %d, memberships %d", events, txns, snaps, memberships)
	return tr
}

func (a roomTrace) diff(b roomTrace) string {
	switch {
	case a.head != b.head:
		return "the pipeline's head moved"
	case a.id != b.id:
		return fmt.Sprintf("room ID %s became %s", a.id, b.id)
	case !maps.Equal(a.state, b.state):
		return "current state changed"
	case a.lastPos != b.lastPos:
		return fmt.Sprintf("last position %d became %d", a.lastPos, b.lastPos)
	case !maps.Equal(a.members, b.members):
		return fmt.Sprintf("members %v became %v", a.members, b.members)
	case !maps.EqualFunc(a.memberships, b.memberships, maps.Equal):
		return fmt.Sprintf("membership index %v became %v", a.memberships, b.memberships)
	case !maps.Equal(a.memberPos, b.memberPos):
		return "membership positions changed"
	case a.powerLevels != b.powerLevels:
		return "power levels changed"
	case a.rows != b.rows:
		return fmt.Sprintf("database rows %q became %q", a.rows, b.rows)
	}
	return ""
}

// checkWriteSequence creates a room of version v and sends it random events
// drawn from c. After each one: a refused event left no trace, an accepted
// one changed the state as the accepted events say, and alice can still
// send to the room. At the end the engine's state must match the state
// read back from the database by a fresh engine.
func checkWriteSequence(t testing.TB, env *testEnv, v id.RoomVersion, c chooser) {
	t.Helper()
	ctx := context.Background()
	e := env.e
	roomID, created, err := e.CreateRoom(ctx, v, alice, nil, []Proto{
		memberProto(alice, "join"),
		stateProto(alice, "m.room.power_levels", "", powerLevels(v)),
		stateProto(alice, "m.room.join_rules", "", `{"join_rule":"public"}`),
		memberProto(bob, "join"),
		memberProto(carol, "join"),
		stateProto(alice, "m.room.power_levels", "", `{"users":{`+map[bool]string{true: "", false: `"@alice:test":100,`}[v.PrivilegedRoomCreators()]+
			`"@bob:test":50},"state_default":50,"ban":50,"kick":50,"redact":50}`),
	})
	if err != nil {
		t.Fatalf("create v%s room: %v", v, err)
	}
	g := &writeGen{c: c, version: v}
	model := map[stateKey]id.EventID{}
	accept := func(evs []*Event) {
		for _, ev := range evs {
			if slices.Contains(g.known, ev.ID) {
				continue // a retried transaction
			}
			g.known = append(g.known, ev.ID)
			if ev.IsState() {
				model[stateKey{ev.Type, *ev.StateKey}] = ev.ID
			}
		}
	}
	accept(created)
	for step := 0; !c.done(); step++ {
		var ps []Proto
		for range 1 + pick(c, 0, 0, 0, 1, 2) {
			ps = append(ps, g.proto())
		}
		before := traceOf(t, env, roomID)
		var evs []*Event
		var err error
		if len(ps) == 1 {
			var ev *Event
			if ev, err = e.Send(ctx, roomID, ps[0]); err == nil {
				evs = []*Event{ev}
			}
		} else {
			evs, err = e.SendMany(ctx, roomID, ps)
		}
		if err != nil {
			if _, ok := mxhttp.AsError(err); !ok {
				t.Fatalf("step %d: %+v: not a Matrix error: %v", step, ps, err)
			}
			if d := before.diff(traceOf(t, env, roomID)); d != "" {
				t.Fatalf("step %d: refused %+v (%v), but %s", step, ps, err, d)
			}
		} else {
			accept(evs)
			if got := stateIDs(mustState(t, e, roomID)); !maps.Equal(got, model) {
				t.Fatalf("step %d: after accepted %+v the state is not what the accepted events make it", step, ps)
			}
		}
		probe, err := e.Send(ctx, roomID, textProto(alice, fmt.Sprintf("still writable %d", step)))
		if err != nil {
			t.Fatalf("step %d: after %+v alice cannot write to her room: %v", step, ps, err)
		}
		accept([]*Event{probe})
	}
	fresh := New(env.db, slog.New(slog.DiscardHandler), e.signer)
	if err := fresh.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stateIDs(mustState(t, fresh, roomID)); !maps.Equal(got, model) {
		t.Fatalf("the state read back from the database differs from the accepted events' state")
	}
	if got, want := stateIDs(mustState(t, e, roomID)), model; !maps.Equal(got, want) {
		t.Fatalf("the engine's state differs from the accepted events' state")
	}
}

func mustState(t testing.TB, e *Engine, roomID id.RoomID) []*Event {
	t.Helper()
	st, err := e.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRefusedEventsLeaveNoTrace is the property test of the write path:
// random events of every kind from members, non-members and users of low
// and high power never change the room unless accepted, and never leave it
// unwritable by its creator.
func TestRefusedEventsLeaveNoTrace(t *testing.T) {
	steps := 120
	if testing.Short() {
		steps = 30
	}
	backends(t, func(t *testing.T, env *testEnv) {
		for i, v := range []id.RoomVersion{id.RoomV1, id.RoomV10, id.RoomV11, id.RoomV12} {
			t.Run("v"+string(v), func(t *testing.T) {
				seed := uint64(i + 1)
				checkWriteSequence(t, env, v, &randChooser{rng: rand.New(rand.NewPCG(seed, 8)), steps: steps})
			})
		}
	})
}

// TestRefusedCreateEvent is the reported case: a non-member's
// m.room.create (as state or through /send) is refused and the room stays
// writable for everyone.
func TestRefusedCreateEvent(t *testing.T) {
	ctx := context.Background()
	for _, v := range testVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			env := newTestEnv(t)
			roomID, _ := createTestRoom(t, env.e, v)
			empty := ""
			for _, p := range []Proto{
				{Type: "m.room.create", StateKey: &empty, Sender: mallory, Content: json.RawMessage(`{}`)},
				{Type: "m.room.create", Sender: mallory, Content: json.RawMessage(`{}`), TxnID: "t", DeviceID: "D"},
				{Type: "m.room.create", StateKey: &empty, Sender: alice, Content: json.RawMessage(`{}`)},
			} {
				before := traceOf(t, env, roomID)
				// A room has one create event, whoever sends another: the
				// request is bad (MSC4291), not only forbidden.
				if _, err := env.e.Send(ctx, roomID, p); errCode(err) != "M_BAD_JSON" {
					t.Fatalf("%s's create event: %v, want M_BAD_JSON", p.Sender, err)
				}
				if d := before.diff(traceOf(t, env, roomID)); d != "" {
					t.Fatalf("%s's refused create event: %s", p.Sender, d)
				}
				for _, u := range []id.UserID{alice, bob} {
					if _, err := env.e.Send(ctx, roomID, textProto(u, "still here")); err != nil {
						t.Fatalf("%s after %s's refused create event: %v", u, p.Sender, err)
					}
				}
			}
		})
	}
}

// FuzzRoomWrites drives the write sequences of TestRefusedEventsLeaveNoTrace
// from fuzz input, on SQLite.
func FuzzRoomWrites(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 1, 1})
	f.Add([]byte{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte("power levels, memberships and redactions by everyone"))
	env := newTestEnvAt(f, filepath.Join(f.TempDir(), "db"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		v := pick(chooser(&byteChooser{b: in[:1]}), id.RoomV1, id.RoomV10, id.RoomV11, id.RoomV12)
		checkWriteSequence(t, env, v, &byteChooser{b: in[1:], steps: 64})
	})
}

// TestMigrateTransactionScope: the transactions stored before transaction
// IDs were scoped keep answering their /send retries.
func TestMigrateTransactionScope(t *testing.T) {
	test := func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Migrate(ctx, Migrations[:3]); err != nil {
			t.Fatal(err)
		}
		if err := db.Write(ctx, func(tx *storage.Tx) error {
			for _, row := range [][]any{
				{int64(1), "$msg", "m.room.message", "t1"},
				{int64(2), "$red", "m.room.redaction", "redact:t1"},
			} {
				if _, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
					VALUES ($1, $2, '!r:test', $3, '@alice:test', $1, $1, '{}', 0)`, row[0], row[1], row[2]); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO transactions (user_id, device_id, txn_id, event_id, created_ts)
					VALUES ('@alice:test', 'DEV', $1, $2, 1)`, row[3], row[1]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(ctx, "SELECT scope, txn_id, event_id FROM transactions")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var scope, txn, evID string
			if err := rows.Scan(&scope, &txn, &evID); err != nil {
				t.Fatal(err)
			}
			got = append(got, scope+" "+txn+" "+evID)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := []string{txnScope("!r:test", "m.room.message", "") + " t1 $msg"}; !slices.Equal(got, want) {
			t.Errorf("transactions after the migration: %q, want %q", got, want)
		}
	}
	t.Run("sqlite", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "db")) })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.Start(t)) })
}

// TestFailedWriteLeavesNoTrace: an event whose write fails inside the
// database transaction is never served, and a redaction whose write fails
// leaves its target as it was, in memory as on disk.
func TestFailedWriteLeavesNoTrace(t *testing.T) {
	backends(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		e := env.e
		var failing atomic.Bool
		e.OnPersist = append(e.OnPersist, func(ctx context.Context, tx *storage.Tx, ev *Event, r *RoomInfo) error {
			if failing.Load() {
				return fmt.Errorf("injected failure for %s", ev.Type)
			}
			return nil
		})
		roomID, _ := createTestRoom(t, e, id.RoomV11)
		kept, err := e.Send(ctx, roomID, textProto(alice, "kept"))
		if err != nil {
			t.Fatal(err)
		}
		failing.Store(true)
		if _, err := e.Send(ctx, roomID, textProto(alice, "lost")); err == nil {
			t.Fatal("send with a failing write succeeded")
		}
		if _, err := e.Send(ctx, roomID, Proto{Type: "m.room.redaction", Sender: alice, Redacts: kept.ID, Content: json.RawMessage(`{}`)}); err == nil {
			t.Fatal("redaction with a failing write succeeded")
		}
		failing.Store(false)
		after, err := e.Send(ctx, roomID, textProto(alice, "after"))
		if err != nil {
			t.Fatal(err)
		}
		evs, err := e.RoomEvents(ctx, roomID, kept.Pos-1, after.Pos, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		var bodies []string
		for _, ev := range evs {
			var c struct{ Body string }
			json.Unmarshal(ev.PDU.Content, &c)
			bodies = append(bodies, ev.Type+":"+c.Body)
		}
		if want := []string{"m.room.message:kept", "m.room.message:after"}; !slices.Equal(bodies, want) {
			t.Errorf("events served = %q, want %q", bodies, want)
		}
		got, err := e.Event(ctx, kept.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RedactedBy != "" || !strings.Contains(string(got.PDU.Content), "kept") {
			t.Errorf("target of the failed redaction = %s (redacted_by %q)", got.PDU.Content, got.RedactedBy)
		}
	})
}

// TestCancelledSendStillCommits: an event queued for the database writer is
// written even when its sender's context ends while it waits, so the events
// queued behind it, which build on it, do not fail.
func TestCancelledSendStillCommits(t *testing.T) {
	backends(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		e := env.e
		blocked, release := make(chan struct{}), make(chan struct{})
		e.OnPersist = append(e.OnPersist, func(ctx context.Context, tx *storage.Tx, ev *Event, r *RoomInfo) error {
			if strings.Contains(string(ev.PDU.Content), "block the writer") {
				close(blocked)
				<-release
			}
			return nil
		})
		roomID, _ := createTestRoom(t, e, id.RoomV11)
		blockDone := make(chan error, 1)
		go func() {
			_, err := e.Send(ctx, roomID, textProto(alice, "block the writer"))
			blockDone <- err
		}()
		<-blocked
		e.mu.Lock()
		r := e.rooms[roomID]
		e.mu.Unlock()
		r.mu.Lock()
		h0 := r.head
		r.mu.Unlock()

		sendCtx, cancel := context.WithCancel(ctx)
		type result struct {
			ev  *Event
			err error
		}
		sent := make(chan result, 1)
		go func() {
			ev, err := e.Send(sendCtx, roomID, textProto(alice, "cancelled while queued"))
			sent <- result{ev, err}
		}()
		for queued := false; !queued; {
			r.mu.Lock()
			queued = r.head != h0
			r.mu.Unlock()
			if !queued {
				time.Sleep(time.Millisecond)
			}
		}
		cancel()
		close(release)
		if err := <-blockDone; err != nil {
			t.Fatalf("blocking send: %v", err)
		}
		res := <-sent
		if res.err != nil {
			t.Fatalf("send whose context ended while queued: %v", res.err)
		}
		if _, err := e.Event(ctx, res.ev.ID); err != nil {
			t.Fatalf("event of the cancelled send: %v", err)
		}
		if _, err := e.Send(ctx, roomID, textProto(alice, "after")); err != nil {
			t.Fatalf("send after the cancelled one: %v", err)
		}
	})
}

// TestRetryOfQueuedTxnAfterPrune: when a room's remembered transactions
// overflow, a transaction still waiting for the database writer is kept,
// so its retry answers the original event instead of sending a second one.
func TestRetryOfQueuedTxnAfterPrune(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t).e
	blocked, release := make(chan struct{}), make(chan struct{})
	e.OnPersist = append(e.OnPersist, func(ctx context.Context, tx *storage.Tx, ev *Event, r *RoomInfo) error {
		if strings.Contains(string(ev.PDU.Content), "block the writer") {
			close(blocked)
			<-release
		}
		return nil
	})
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	e.mu.Lock()
	r := e.rooms[roomID]
	e.mu.Unlock()
	r.mu.Lock()
	finished := make(chan struct{})
	close(finished)
	for i := range maxRoomTxns {
		r.txns[fmt.Sprint("old", i)] = &pendingTxn{done: finished}
	}
	r.mu.Unlock()

	type result struct {
		ev  *Event
		err error
	}
	send := func(p Proto) chan result {
		out := make(chan result, 1)
		r.mu.Lock()
		h0 := r.head
		r.mu.Unlock()
		go func() {
			ev, err := e.Send(ctx, roomID, p)
			out <- result{ev, err}
		}()
		for queued := false; !queued; {
			r.mu.Lock()
			queued = r.head != h0
			r.mu.Unlock()
			if !queued {
				time.Sleep(time.Millisecond)
			}
		}
		return out
	}
	withTxn := func(body, txnID string) Proto {
		p := textProto(alice, body)
		p.DeviceID, p.TxnID = "DEV", txnID
		return p
	}
	blocking := send(textProto(alice, "block the writer"))
	<-blocked
	first := send(withTxn("first", "txn1"))
	second := send(withTxn("second", "txn2")) // overflows the remembered transactions
	r.mu.Lock()
	_, kept := r.txns[txnKey(alice, "DEV", txnScope(roomID, "m.room.message", ""), "txn1")]
	r.mu.Unlock()
	if !kept {
		t.Error("a transaction still in the pipeline was forgotten")
	}
	retry := make(chan result, 1)
	go func() {
		ev, err := e.Send(ctx, roomID, withTxn("first", "txn1"))
		retry <- result{ev, err}
	}()
	close(release)
	for name, ch := range map[string]chan result{"blocking": blocking, "second": second} {
		if res := <-ch; res.err != nil {
			t.Fatalf("%s send: %v", name, res.err)
		}
	}
	a, b := <-first, <-retry
	if a.err != nil || b.err != nil {
		t.Fatalf("send = %v, retry = %v", a.err, b.err)
	}
	if a.ev.ID != b.ev.ID {
		t.Errorf("retry of a queued transaction sent %s, want the original %s", b.ev.ID, a.ev.ID)
	}
}
