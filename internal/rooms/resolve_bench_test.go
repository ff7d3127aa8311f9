package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/cputime"
	"github.com/matrixos/matrixos/internal/stateres"
	"github.com/matrixos/matrixos/internal/storage"
)

// BenchmarkResolveStoredForks is state resolution as the engine runs it,
// with events read through the engine (its event cache, then the
// database): a room of 1,000 members on server a, joined by bob of server
// b; while apart, every member on a changes their display name and bob sets
// 1,000 state keys on b; b's side then reaches a (one gap, filled through
// /state_ids). Each iteration resolves the states after the two sides'
// heads on a, as a does for every event it receives while both sides are
// forward extremities. "cold" forgets the cached events and the room's auth
// graph first (a room bigger than the caches, or one not touched for a
// while).
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench ResolveStoredForks -benchtime 10x -count 3 ./internal/rooms/
func BenchmarkResolveStoredForks(b *testing.B) {
	ctx := context.Background()
	n := newFedNet(b, "a", "b")
	a := n.e("a")
	roomID := createFedRoom(b, a, id.RoomV11, aliceA)
	members := make([]Proto, 1000)
	for i := range members {
		members[i] = memberProto(id.UserID(fmt.Sprintf("@member%d:a", i)), "join")
	}
	if _, err := a.SendMany(ctx, roomID, members); err != nil {
		b.Fatal(err)
	}
	n.join("a", "b", roomID, bobB)
	renames := make([]Proto, len(members))
	for i := range renames {
		user := id.UserID(fmt.Sprintf("@member%d:a", i))
		renames[i] = stateProto(user, "m.room.member", user.String(), fmt.Sprintf(`{"membership":"join","displayname":"member %d"}`, i))
	}
	aSide, err := a.SendMany(ctx, roomID, renames)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]Proto, 1000)
	for i := range keys {
		keys[i] = stateProto(bobB, "org.example.state", fmt.Sprint("k", i), `{"side":"b"}`)
	}
	bSide, err := n.e("b").SendMany(ctx, roomID, keys)
	if err != nil {
		b.Fatal(err)
	}
	n.deliver("b", bSide[len(bSide)-1], "a")
	heads, err := a.Events(ctx, []id.EventID{aSide[len(aSide)-1].ID, bSide[len(bSide)-1].ID})
	if err != nil || len(heads) != 2 {
		b.Fatalf("heads on a: %v (%d found)", err, len(heads))
	}
	states, _, err := a.stateAfterEvents(ctx, heads)
	if err != nil {
		b.Fatal(err)
	}
	room, err := a.room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			meter := cputime.Start()
			for b.Loop() {
				if cold {
					b.StopTimer()
					a.cache = newEventCache(a.cache.max)
					a.graphs.drop(roomID)
					b.StartTimer()
				}
				if _, err := a.resolve(ctx, room, states, nil); err != nil {
					b.Fatal(err)
				}
			}
			meter.Report(b, b.N)
		})
	}
}

// Issue 16's big room: bigMembers members and, with the room's first
// events, bigStateEvents state events before the two sides part.
const (
	bigMembers     = 10_000
	bigStateEvents = 100_000
)

// BenchmarkResolveBigRoom is issue 16's case: state resolution in a room of
// 10,000 members (9,000 of server test, 1,000 of server b) whose history
// holds 100,000 state events (each member joins and changes their display
// name 8 times, and alice sets one state key per member), so the auth
// chains of its state hold some 90,000 events. The room then parts in two:
// on one side alice changes the power levels and 300 of test's members
// their display names; on the other bob of b changes the power levels,
// kicks 20 of those 300, 200 of b's members change their display names and
// bob sets 100 state keys: 622 conflicted events. Each iteration resolves
// the states after the two heads, as the engine does for an event whose
// prev_events are both. "cold" is a fresh engine on the stored database,
// as after a restart (the room itself is loaded before the timer starts);
// "warm" resolves again on the same engine.
//
// The history is written straight into the database in one transaction
// (see bulkRoom), not sent event by event, so the setup takes about a
// minute, not an hour; it is not run by plain go test.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench ResolveBigRoom -benchtime 5x -count 3 -timeout 30m ./internal/rooms/
func BenchmarkResolveBigRoom(b *testing.B) {
	ctx := context.Background()
	env := newTestEnvAt(b, filepath.Join(b.TempDir(), "db"))
	roomID := createFedRoom(b, env.e, id.RoomV11, alice)
	heads := bulkForkedRoom(b, env.e, roomID, alice)
	checkBigRoomResolution(b, env.e, roomID, heads)
	for _, cold := range []bool{true, false} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			e := env.e
			r, states := statesAfter(b, e, roomID, heads)
			if !cold {
				if _, err := e.resolve(ctx, r, states, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			var peak uint64
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				if cold {
					env.reopen()
					e = env.e
					r, states = statesAfter(b, e, roomID, heads)
				}
				sampler := startHeapPeak()
				began := cputime.Process()
				b.StartTimer()
				resolved, err := e.resolve(ctx, r, states, nil)
				b.StopTimer()
				cpu += cputime.Process() - began
				peak = max(peak, sampler.stop())
				b.StartTimer()
				if err != nil {
					b.Fatal(err)
				}
				if len(resolved) < bigMembers {
					b.Fatalf("resolved state of %d entries", len(resolved))
				}
			}
			b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// statesAfter loads the room and the states after its heads.
func statesAfter(b *testing.B, e *Engine, roomID id.RoomID, heads []id.EventID) (*room, []idState) {
	b.Helper()
	ctx := context.Background()
	r, err := e.room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	evs, err := e.Events(ctx, heads)
	if err != nil || len(evs) != len(heads) {
		b.Fatalf("heads: %v (%d found)", err, len(evs))
	}
	states, _, err := e.stateAfterEvents(ctx, evs)
	if err != nil {
		b.Fatal(err)
	}
	return r, states
}

// checkBigRoomResolution resolves the two sides once as the engine does
// (from the auth_edges index) and once walking every auth chain through
// the events (stateres.WalkIndex), and fails unless both agree.
func checkBigRoomResolution(b *testing.B, e *Engine, roomID id.RoomID, heads []id.EventID) {
	b.Helper()
	ctx := context.Background()
	r, states := statesAfter(b, e, roomID, heads)
	got, err := e.resolve(ctx, r, states, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := make([]stateres.StateMap, len(states))
	for i, st := range states {
		in[i] = stateres.StateMap{}
		for k, v := range st {
			in[i][pdu.StateKey(k)] = v
		}
	}
	walked, err := stateres.Resolver{Events: engineEvents{e, nil}, GetKey: e.keyFunc(ctx)}.Resolve(ctx, r.version, in)
	if err != nil {
		b.Fatal(err)
	}
	if len(walked) != len(got) {
		b.Fatalf("resolved from the index: %d entries, by walking: %d", len(got), len(walked))
	}
	for k, v := range walked {
		if got[stateKey(k)] != v {
			b.Fatalf("%v: %s from the index, %s by walking", k, got[stateKey(k)], v)
		}
	}
}

// heapPeak samples the live heap every millisecond while an operation
// runs; stop returns the highest growth seen over the heap at the start
// (after a collection).
type heapPeak struct {
	base, peak uint64
	done       chan struct{}
	stopped    chan struct{}
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{done: make(chan struct{}), stopped: make(chan struct{})}
	h.base = heapBytes()
	go func() {
		defer close(h.stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			h.peak = max(h.peak, heapBytes())
			select {
			case <-h.done:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) stop() uint64 {
	close(h.done)
	<-h.stopped
	h.peak = max(h.peak, heapBytes())
	if h.peak < h.base {
		return 0
	}
	return h.peak - h.base
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// bulkForkedRoom writes BenchmarkResolveBigRoom's room into e's database
// and returns the heads of its two sides.
func bulkForkedRoom(b *testing.B, e *Engine, roomID id.RoomID, alice id.UserID) []id.EventID {
	b.Helper()
	ctx := context.Background()
	r, err := e.room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	r.mu.Lock()
	main := newBulkBuilder(e, r, r.head)
	r.mu.Unlock()
	bob := id.UserID("@bob:b")
	member := func(i int) id.UserID {
		if i < bigMembers/10 {
			return id.UserID(fmt.Sprintf("@b%d:b", i))
		}
		return id.UserID(fmt.Sprintf("@m%d:test", i))
	}
	rename := func(user id.UserID, name string) Proto {
		return stateProto(user, "m.room.member", user.String(), fmt.Sprintf(`{"membership":"join","displayname":%q}`, name))
	}
	main.add(b, memberProto(bob, "join"))
	for i := range bigMembers {
		main.add(b, memberProto(member(i), "join"))
	}
	for round := range 8 {
		for i := range bigMembers {
			main.add(b, rename(member(i), fmt.Sprintf("member %d (%d)", i, round)))
		}
	}
	for i := range bigMembers {
		main.add(b, stateProto(alice, "org.example.profile", member(i).String(), fmt.Sprintf(`{"n":%d}`, i)))
	}
	if n := len(main.evs) + len(r.head.state); n < bigStateEvents {
		b.Fatalf("%d state events, want %d", n, bigStateEvents)
	}
	pl := func(sender id.UserID, extra string) Proto {
		return stateProto(sender, "m.room.power_levels", "", `{"users":{"@alice:test":100,"@bob:b":50},"users_default":0,"events_default":0,
			"state_default":50,"ban":50,"kick":50,"redact":50,"invite":0`+extra+`}`)
	}
	sideA, sideB := main.fork(), main.fork()
	sideA.add(b, pl(alice, `,"events":{"m.room.name":100}`))
	for i := bigMembers / 10; i < bigMembers/10+300; i++ {
		sideA.add(b, rename(member(i), fmt.Sprintf("member %d on a", i)))
	}
	sideB.add(b, pl(bob, `,"events":{"m.room.topic":50}`))
	for i := bigMembers / 10; i < bigMembers/10+300; i += 15 {
		sideB.add(b, stateProto(bob, "m.room.member", member(i).String(), `{"membership":"leave"}`))
	}
	for i := range 200 {
		sideB.add(b, rename(member(i), fmt.Sprintf("member %d on b", i)))
	}
	for i := range 100 {
		sideB.add(b, stateProto(bob, "org.example.state", fmt.Sprint("k", i), `{"side":"b"}`))
	}
	err = e.db.Write(ctx, func(tx *storage.Tx) error {
		for _, bb := range []*bulkBuilder{main, sideA, sideB} {
			if err := bb.insert(ctx, tx); err != nil {
				return err
			}
		}
		for _, bb := range []*bulkBuilder{sideA, sideB} {
			head := bb.evs[len(bb.evs)-1]
			if _, err := e.writeSnapshot(ctx, tx, roomID, head.Pos, 0, bb.ids(), bb == sideB); err != nil {
				return err
			}
		}
		headA, headB := sideA.evs[len(sideA.evs)-1], sideB.evs[len(sideB.evs)-1]
		ext, _ := json.Marshal([]id.EventID{headA.ID, headB.ID})
		_, err := tx.Exec(ctx, "UPDATE rooms SET snapshot = $1, depth = $2, extremities = $3, last_pos = $4 WHERE room_id = $5",
			headA.Pos, max(headA.Depth, headB.Depth), string(ext), headB.Pos, roomID)
		return err
	})
	if err != nil {
		b.Fatalf("write the big room: %v", err)
	}
	e.dropRoom(r)
	return []id.EventID{sideA.evs[len(sideA.evs)-1].ID, sideB.evs[len(sideB.evs)-1].ID}
}

// bulkBuilder builds events one after another on a state it keeps as a
// plain map (not a roomState, whose copy per state event would make a big
// room's history quadratic), without the auth checks: the caller builds a
// history that passes them. insert stores them with the snapshot before
// them all as their snapshot_before; only the heads' states are written.
type bulkBuilder struct {
	e      *Engine
	r      *room
	st     *roomState
	before int64
	evs    []*Event
}

func newBulkBuilder(e *Engine, r *room, head *roomState) *bulkBuilder {
	st := &roomState{state: maps.Clone(head.state), extremities: head.extremities, depth: head.depth}
	return &bulkBuilder{e: e, r: r, st: st, before: r.dbSnapshot}
}

func (bb *bulkBuilder) add(b *testing.B, p Proto) {
	b.Helper()
	ev, err := bb.e.build(bb.r, bb.st, p)
	if err != nil {
		b.Fatal(err)
	}
	bb.st.state[stateKey{ev.Type, *ev.StateKey}] = ev
	bb.st.extremities, bb.st.depth = []id.EventID{ev.ID}, ev.Depth
	bb.evs = append(bb.evs, ev)
}

// fork returns a builder that goes on from the same state.
func (bb *bulkBuilder) fork() *bulkBuilder {
	st := &roomState{state: maps.Clone(bb.st.state), extremities: bb.st.extremities, depth: bb.st.depth}
	return &bulkBuilder{e: bb.e, r: bb.r, st: st, before: bb.before}
}

func (bb *bulkBuilder) ids() idState {
	out := make(idState, len(bb.st.state))
	for k, ev := range bb.st.state {
		out[k] = ev.ID
	}
	return out
}

func (bb *bulkBuilder) insert(ctx context.Context, tx *storage.Tx) error {
	for _, ev := range bb.evs {
		ev.Pos, ev.SnapshotBefore = tx.NextPos(), bb.before
	}
	if err := insertAuthEdges(ctx, tx, stateAuthEdges(bb.evs)); err != nil {
		return err
	}
	return insertRows(bb.evs, 10, func(part []*Event, values string) error {
		args := make([]any, 0, len(part)*10)
		for _, ev := range part {
			args = append(args, ev.Pos, ev.ID, bb.r.id, ev.Type, ev.StateKey, ev.Sender, ev.Depth, ev.TS, string(ev.JSON), ev.SnapshotBefore)
		}
		_, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json, snapshot_before)
			VALUES `+values, args...)
		return err
	})
}
