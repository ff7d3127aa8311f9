package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

// joinPartial makes user, of server joiner, join roomID through resident
// with a send_join answer that omits the members (as omit_members asks),
// so the room is partial on joiner; its resync waits until the test
// closes n.stateGate. It returns the join as joiner stored it.
func (n *fedNet) joinPartial(resident, joiner string, roomID id.RoomID, user id.UserID) *Event {
	n.t.Helper()
	ctx := context.Background()
	res, j := n.e(resident), n.e(joiner)
	if n.stateGate == nil {
		n.stateGate = make(chan struct{})
	}
	servers := res.JoinedServers(ctx, roomID)
	version, stored := n.sendJoin(resident, joiner, roomID, user)
	state, chain, err := res.StateBefore(ctx, roomID, stored.ID, true)
	if err != nil {
		n.t.Fatalf("state before the join: %v", err)
	}
	st, err := j.CheckJoinState(ctx, version, roomID, func(add func(bool, json.RawMessage) error) error {
		for i, raw := range append(state, chain...) {
			if err := add(i < len(state), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.t.Fatalf("check the join's state: %v", err)
	}
	imported, err := j.ImportCheckedPartialJoin(ctx, resident, version, stored.JSON, st, servers)
	if err != nil {
		n.t.Fatalf("import the partial join: %v", err)
	}
	if !j.HasPartialState(ctx, roomID) {
		n.t.Fatal("the room is not partial after a join with members omitted")
	}
	return imported
}

// completeResync lets server's resync of the room fetch the full state
// and waits until the state is complete.
func (n *fedNet) completeResync(server string, roomID id.RoomID) {
	n.t.Helper()
	close(n.stateGate)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !n.e(server).AwaitFullState(ctx, roomID) {
		n.t.Fatalf("%s's state of the room never became complete", server)
	}
}

// forge builds and signs, as server, an event of the room with the
// prev_events and auth_events given (what a misbehaving or differently
// informed server may send), and returns its ID and JSON.
func (n *fedNet) forge(server string, roomID id.RoomID, p Proto, prevs, auth []id.EventID, depth int64) (id.EventID, json.RawMessage) {
	n.t.Helper()
	e := n.e(server)
	v, err := e.Version(context.Background(), roomID)
	if err != nil {
		n.t.Fatal(err)
	}
	pd := &pdu.PDU{
		RoomID: roomID, Sender: p.Sender, Type: p.Type, StateKey: p.StateKey, Content: []byte(p.Content),
		PrevEvents: prevs, AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli(),
	}
	if p.Redacts != "" {
		pd.Redacts = &p.Redacts
	}
	if err := pd.Sign(v, e.signer.ServerName, e.signer.KeyID, e.signer.Key); err != nil {
		n.t.Fatal(err)
	}
	raw, err := json.Marshal(pd)
	if err != nil {
		n.t.Fatal(err)
	}
	return EventIDOf(v, raw), raw
}

// stateIDsBefore is the state before an event on server as /state_ids
// answers it.
func stateIDsBefore(t *testing.T, e *Engine, roomID id.RoomID, eventID id.EventID) map[id.EventID]bool {
	t.Helper()
	state, _, err := e.StateIDsBefore(context.Background(), roomID, eventID)
	if err != nil {
		t.Fatalf("state_ids before %s: %v", eventID, err)
	}
	out := map[id.EventID]bool{}
	for _, eid := range state {
		out[eid] = true
	}
	return out
}

// partialRoom creates a public room on server a by alice, with the power
// levels given (alice's 100 added), in which each of joined (users of a)
// joins, then each of left leaves again.
func partialRoom(t *testing.T, n *fedNet, levels map[id.UserID]int, joined, left []id.UserID) (id.RoomID, map[id.UserID]*Event) {
	t.Helper()
	users := map[id.UserID]int{aliceA: 100}
	for u, l := range levels {
		users[u] = l
	}
	pl, _ := json.Marshal(map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
	})
	roomID, _, err := n.e("a").CreateRoom(context.Background(), id.RoomV10, aliceA, nil, []Proto{
		memberProto(aliceA, "join"),
		stateProto(aliceA, "m.room.power_levels", "", string(pl)),
		stateProto(aliceA, "m.room.join_rules", "", `{"join_rule":"public"}`),
		stateProto(aliceA, "m.room.history_visibility", "", `{"history_visibility":"shared"}`),
		stateProto(aliceA, "m.room.name", "", `{"name":"named"}`),
	})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	joins := map[id.UserID]*Event{}
	for _, u := range joined {
		joins[u] = n.send("a", roomID, memberProto(u, "join"))
	}
	for _, u := range left {
		n.send("a", roomID, memberProto(u, "leave"))
	}
	return roomID, joins
}

// partialFixture is a room of a's (partialRoom) that carol of c has joined
// with partial state, and the events of a's state that the tests' forged
// events name.
type partialFixture struct {
	roomID                id.RoomID
	joins                 map[id.UserID]*Event
	carolJoin             *Event
	create, pl, aliceJoin *Event
}

func newPartialFixture(t *testing.T, n *fedNet, levels map[id.UserID]int, joined, left []id.UserID) partialFixture {
	t.Helper()
	f := partialFixture{}
	f.roomID, f.joins = partialRoom(t, n, levels, joined, left)
	f.carolJoin = n.joinPartial("a", "c", f.roomID, carolC)
	st := n.e("a").rooms[f.roomID].view()
	f.create, f.pl, f.aliceJoin = st.get("m.room.create", ""), st.get("m.room.power_levels", ""), st.get("m.room.member", string(aliceA))
	return f
}

const (
	derekA = id.UserID("@derek:a")
	elsieA = id.UserID("@elsie:a")
)

// TestPartialStateAcceptedIncorrectly follows Complement's "State accepted
// incorrectly": derek, who may send state, joined and left; while c's
// state is partial (it lacks derek's member events), a sends a state
// event of derek's whose auth events name his old join. c accepts it, as
// the spec says for a member the partial state does not know; once the
// full state shows derek left, the event is rejected: not served, not in
// the current state nor in the state at the events after it.
func TestPartialStateAcceptedIncorrectly(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 50}, []id.UserID{derekA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	bad, badRaw := n.forge("a", roomID, stateProto(derekA, "m.room.test", "", `{"body":"bad state event"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", badRaw); err != nil {
		t.Fatalf("c refuses derek's state event while its state is partial: %v", err)
	}
	if _, err := n.e("c").Event(ctx, bad); err != nil {
		t.Fatalf("derek's state event is not served while the state is partial: %v", err)
	}
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "after"), []id.EventID{bad},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+2)
	if _, err := n.e("c").ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses alice's message: %v", err)
	}

	n.completeResync("c", roomID)
	if _, err := n.e("c").Event(ctx, bad); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("derek's state event after the resync: %v, want M_NOT_FOUND", err)
	}
	if got := currentStateIDs(t, n.e("c"), roomID)[stateKey{"m.room.test", ""}]; got != "" {
		t.Errorf("derek's state event %s is in the current state after the resync", got)
	}
	if before := stateIDsBefore(t, n.e("c"), roomID, msg); before[bad] {
		t.Errorf("derek's refused state event is in the state before the message after it")
	}
	assertNotInTimeline(t, n.e("c"), roomID, bad)
}

// TestPartialStateKickRejectedAfterResync follows Complement's "State
// rejected incorrectly": derek, who may kick, joined and left; while c's
// state is partial, a sends derek's kick of elsie with auth events that
// name his old join, which c accepts; once the full state shows derek
// left, the kick is rejected and elsie is a member again on c, in its
// current state and its memberships. A message from a user who was
// never a member, refused on receipt by its own auth events, stays
// rejected, and the messages accepted meanwhile stay accepted.
func TestPartialStateKickRejectedAfterResync(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 100, elsieA: 50}, []id.UserID{derekA, elsieA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(elsieA), `{"membership":"leave"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID, joins[elsieA].ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", kickRaw); err != nil {
		t.Fatalf("c refuses derek's kick while its state is partial: %v", err)
	}
	if m := n.e("c").Membership(elsieA, roomID); m != "leave" {
		t.Fatalf("elsie's membership on c after the kick = %q, want leave", m)
	}
	never, neverRaw := n.forge("a", roomID, stateProto("@fred:a", "m.room.test", "", `{"body":"never a member"}`),
		[]id.EventID{kick}, []id.EventID{create.ID, pl.ID}, carolJoin.Depth+2)
	if _, err := n.e("c").ReceivePDU(ctx, "a", neverRaw); errCode(err) != "M_FORBIDDEN" || !errors.Is(err, ErrRejected) {
		t.Fatalf("a state event of a user never in the room: %v, want M_FORBIDDEN, rejected", err)
	}
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "sentinel"), []id.EventID{never},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+3)
	if _, err := n.e("c").ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses alice's message: %v", err)
	}

	n.completeResync("c", roomID)
	if _, err := n.e("c").Event(ctx, kick); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("derek's kick after the resync: %v, want M_NOT_FOUND", err)
	}
	if _, err := n.e("c").FederationEvent(ctx, kick); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("derek's kick served to other servers after the resync: %v, want M_NOT_FOUND", err)
	}
	if m := n.e("c").Membership(elsieA, roomID); m != "join" {
		t.Errorf("elsie's membership on c after the resync = %q, want join", m)
	}
	if got := currentStateIDs(t, n.e("c"), roomID)[stateKey{"m.room.member", string(elsieA)}]; got != joins[elsieA].ID {
		t.Errorf("elsie's member event in c's current state = %s, want her join %s", got, joins[elsieA].ID)
	}
	if before := stateIDsBefore(t, n.e("c"), roomID, msg); before[kick] || !before[joins[elsieA].ID] {
		t.Errorf("the state before the message after the kick holds the kick, or lacks elsie's join")
	}
	if stored, err := n.e("c").storedEvent(ctx, never); err != nil || stored == nil || !stored.Rejected {
		t.Errorf("the state event of a user never in the room is not rejected after the resync (%v)", err)
	}
	if _, err := n.e("c").Event(ctx, msg); err != nil {
		t.Errorf("alice's message after the resync: %v", err)
	}
	if m := n.e("c").Membership(derekA, roomID); m != "leave" {
		t.Errorf("derek's membership on c after the resync = %q, want leave", m)
	}
	assertNotInTimeline(t, n.e("c"), roomID, kick)
}

// assertNotInTimeline checks that no timeline read (the room's events from
// memory and from the database, the node's committed events) serves evID.
func assertNotInTimeline(t *testing.T, e *Engine, roomID id.RoomID, evID id.EventID) {
	t.Helper()
	ctx := context.Background()
	reads := map[string]func() ([]*Event, error){
		"RoomEvents, newest (memory)": func() ([]*Event, error) { return e.RoomEvents(ctx, roomID, 0, math.MaxInt64, 3, true) },
		"RoomEvents, all (database)":  func() ([]*Event, error) { return e.RoomEvents(ctx, roomID, math.MinInt64, math.MaxInt64, 1000, false) },
		"CommittedEvents (memory)": func() ([]*Event, error) {
			evs, _, err := e.CommittedEvents(ctx, 0, math.MaxInt64, EventFilter{}, 1000)
			return evs, err
		},
		"CommittedEvents (database)": func() ([]*Event, error) {
			evs, _, err := e.committedFromDB(ctx, 0, math.MaxInt64, EventFilter{}, 1000)
			return evs, err
		},
	}
	for name, read := range reads {
		evs, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if slices.ContainsFunc(evs, func(ev *Event) bool { return ev.ID == evID }) {
			t.Errorf("%s serves %s, rejected", name, evID)
		}
	}
}

// TestPartialStateRejectedThenAllowed follows Complement's "State
// rejected incorrectly" and its device-list "user incorrectly believed to
// be in room": while c's state is partial, fred (who joined and left)
// bans derek, which c accepts by fred's old join; derek then kicks elsie,
// which c rejects, derek being banned as far as it knows. Once the full
// state shows fred left, the ban is rejected and the kick, checked again,
// allowed: it joins c's timeline, elsie has left in c's current state and
// in the state before the events that follow the kick, and derek is a
// member.
func TestPartialStateRejectedThenAllowed(t *testing.T) {
	ctx := context.Background()
	const fredA = id.UserID("@fred:a")
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 50, fredA: 100}, []id.UserID{derekA, fredA, elsieA}, []id.UserID{fredA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	ban, banRaw := n.forge("a", roomID, stateProto(fredA, "m.room.member", string(derekA), `{"membership":"ban"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[fredA].ID, joins[derekA].ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", banRaw); err != nil {
		t.Fatalf("c refuses fred's ban while its state is partial: %v", err)
	}
	kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(elsieA), `{"membership":"leave"}`),
		[]id.EventID{ban}, []id.EventID{create.ID, pl.ID, joins[derekA].ID, joins[elsieA].ID}, carolJoin.Depth+2)
	if _, err := n.e("c").ReceivePDU(ctx, "a", kickRaw); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("derek's kick while c believes him banned: %v, want M_FORBIDDEN", err)
	}
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "sentinel"), []id.EventID{kick},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+3)
	if _, err := n.e("c").ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses alice's message: %v", err)
	}

	n.completeResync("c", roomID)
	if _, err := n.e("c").Event(ctx, ban); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("fred's ban after the resync: %v, want M_NOT_FOUND", err)
	}
	kickEv, err := n.e("c").Event(ctx, kick)
	if err != nil || kickEv.Pos <= 0 {
		t.Fatalf("derek's kick is not in c's timeline after the resync: %v", err)
	}
	// The room's last position covers the kick, in memory (an incremental
	// /sync skips a room whose last position is not past its token) and
	// as stored (a restart loads it).
	if last := n.e("c").LastPos(ctx, roomID); last < kickEv.Pos {
		t.Errorf("c's last position in the room after the resync = %d, before the kick's %d", last, kickEv.Pos)
	}
	var stored int64
	if err := n.e("c").db.QueryRow(ctx, "SELECT last_pos FROM rooms WHERE room_id = $1", roomID).Scan(&stored); err != nil || stored < kickEv.Pos {
		t.Errorf("c's stored last position in the room after the resync = %d (%v), before the kick's %d", stored, err, kickEv.Pos)
	}
	for user, want := range map[id.UserID]string{elsieA: "leave", derekA: "join", fredA: "leave"} {
		if m := n.e("c").Membership(user, roomID); m != want {
			t.Errorf("%s's membership on c after the resync = %q, want %q", user, m, want)
		}
	}
	if got := currentStateIDs(t, n.e("c"), roomID)[stateKey{"m.room.member", string(elsieA)}]; got != kick {
		t.Errorf("elsie's member event in c's current state = %s, want the kick %s", got, kick)
	}
	if before := stateIDsBefore(t, n.e("c"), roomID, msg); !before[kick] || before[ban] || !before[joins[derekA].ID] {
		t.Errorf("the state before the message after the kick lacks the kick or derek's join, or holds the ban")
	}
}

// TestPartialStateRejectedKickNotInHistory: derek, who joined and left,
// kicks carol (c's own user) while c's state is partial, which c accepts by
// his old join; once the full state rejects the kick, carol was a member
// all along: her membership at the message after the kick (unsigned
// membership, history visibility) is her join, not the kick's leave.
func TestPartialStateRejectedKickNotInHistory(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 100}, []id.UserID{derekA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(carolC), `{"membership":"leave"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID, carolJoin.ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", kickRaw); err != nil {
		t.Fatalf("c refuses derek's kick of carol while its state is partial: %v", err)
	}
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "after"), []id.EventID{kick},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+2)
	if _, err := n.e("c").ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses alice's message: %v", err)
	}

	n.completeResync("c", roomID)
	if m := n.e("c").Membership(carolC, roomID); m != "join" {
		t.Fatalf("carol's membership on c after the resync = %q, want join", m)
	}
	ev, err := n.e("c").Event(ctx, msg)
	if err != nil {
		t.Fatalf("alice's message after the resync: %v", err)
	}
	v, err := n.e("c").Visibility(ctx, roomID, carolC)
	if err != nil {
		t.Fatal(err)
	}
	if m := v.MembershipAt(ev); m != "join" {
		t.Errorf("carol's membership at the message after the rejected kick = %q, want join", m)
	}
}

// TestPartialStateRejectedIncorrectly follows Complement's "State
// rejected incorrectly", its events in one transaction (ReceivePDUs):
// derek's kick of elsie, accepted by his old join while c's state is
// partial; elsie's state event, rejected since she was kicked; a message
// after it. Once the full state shows derek left, the kick is rejected
// and elsie's state event, checked again, allowed: it is in the current
// state and in the state before the message; elsie is a member.
func TestPartialStateRejectedIncorrectly(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 100, elsieA: 50}, []id.UserID{derekA, elsieA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(elsieA), `{"membership":"leave"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID, joins[elsieA].ID}, carolJoin.Depth+1)
	elsieState, elsieRaw := n.forge("a", roomID, stateProto(elsieA, "m.room.test", "", `{"body":"rejected state"}`),
		[]id.EventID{kick}, []id.EventID{create.ID, pl.ID, joins[elsieA].ID}, carolJoin.Depth+2)
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "sentinel"), []id.EventID{elsieState},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+3)
	out := n.e("c").ReceivePDUs(ctx, "a", []json.RawMessage{kickRaw, elsieRaw, msgRaw})
	if out[0].Err != nil || out[2].Err != nil {
		t.Fatalf("c refuses the kick (%v) or the message (%v) while its state is partial", out[0].Err, out[2].Err)
	}
	if !errors.Is(out[1].Err, ErrRejected) {
		t.Fatalf("elsie's state event after her kick: %v, want rejected", out[1].Err)
	}

	n.completeResync("c", roomID)
	if _, err := n.e("c").Event(ctx, kick); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("derek's kick after the resync: %v, want M_NOT_FOUND", err)
	}
	if ev, err := n.e("c").Event(ctx, elsieState); err != nil || ev.Pos <= 0 {
		t.Errorf("elsie's state event is not in c's timeline after the resync: %v", err)
	}
	if m := n.e("c").Membership(elsieA, roomID); m != "join" {
		t.Errorf("elsie's membership on c after the resync = %q, want join", m)
	}
	if got := currentStateIDs(t, n.e("c"), roomID)[stateKey{"m.room.test", ""}]; got != elsieState {
		t.Errorf("m.room.test in c's current state = %q, want elsie's %s", got, elsieState)
	}
	if before := stateIDsBefore(t, n.e("c"), roomID, msg); !before[elsieState] || before[kick] || !before[joins[elsieA].ID] {
		t.Errorf("the state before the message lacks elsie's state event or her join, or holds the kick")
	}
}

// TestPartialStateRejectedNotLatest: the room's newest event, which a room
// upgrade names as its predecessor's last, is never one the full state
// rejected.
func TestPartialStateRejectedNotLatest(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 50}, []id.UserID{derekA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl := f.create, f.pl
	bad, badRaw := n.forge("a", roomID, stateProto(derekA, "m.room.test", "", `{"body":"bad state event"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", badRaw); err != nil {
		t.Fatalf("c refuses derek's state event while its state is partial: %v", err)
	}
	n.completeResync("c", roomID)
	if latest, err := n.e("c").LatestEventID(ctx, roomID); err != nil || latest == bad {
		t.Errorf("the room's latest event after the resync = %s (%v), the rejected one", latest, err)
	}
}

// TestPartialStateLeaveAfterKickAcceptedIncorrectly follows Complement's
// "Device list updates reach incorrectly kicked servers once partial state
// join completes even though remote server left room": while c's state is
// partial, elsie joins; derek, who may kick but joined and left before
// c's join, kicks her with auth events naming his old join and not her
// join, which c accepts; elsie then leaves with auth events naming her
// join. The partial state holds the kick for her key, but her leave is
// checked against the partial state resolved with the leave's own auth
// events (MSC3902): her join, which the kick does not cite, is applied
// after it, so she is a member and may leave. (A kick that cites her join
// wins the resolution: TestPartialStateRejectedIncorrectly.) Once the
// full state shows derek left, the kick is rejected and her leave stands:
// she was a member from her join to her leave, as the state between them
// says.
func TestPartialStateLeaveAfterKickAcceptedIncorrectly(t *testing.T) {
	for _, oneByOne := range []bool{true, false} {
		name := map[bool]string{true: "ReceivePDU", false: "ReceivePDUs"}[oneByOne]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			n := newFedNet(t, "a", "c")
			f := newPartialFixture(t, n, map[id.UserID]int{derekA: 100}, []id.UserID{derekA}, []id.UserID{derekA})
			roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
			create, pl := f.create, f.pl
			joinRules := n.e("a").rooms[roomID].view().get("m.room.join_rules", "")
			c := n.e("c")
			receive := func(what string, raw json.RawMessage) {
				t.Helper()
				var err error
				if oneByOne {
					_, err = c.ReceivePDU(ctx, "a", raw)
				} else {
					err = c.ReceivePDUs(ctx, "a", []json.RawMessage{raw})[0].Err
				}
				if err != nil {
					t.Fatalf("c refuses %s while its state is partial: %v", what, err)
				}
			}

			join, joinRaw := n.forge("a", roomID, memberProto(elsieA, "join"),
				[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joinRules.ID}, carolJoin.Depth+1)
			receive("elsie's join", joinRaw)
			kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(elsieA), `{"membership":"leave"}`),
				[]id.EventID{join}, []id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+2)
			receive("derek's kick", kickRaw)
			if m := c.Membership(elsieA, roomID); m != "leave" {
				t.Fatalf("elsie's membership on c after the kick = %q, want leave", m)
			}
			leave, leaveRaw := n.forge("a", roomID, memberProto(elsieA, "leave"),
				[]id.EventID{kick}, []id.EventID{create.ID, pl.ID, join}, carolJoin.Depth+3)
			receive("elsie's leave", leaveRaw)
			if ev, err := c.Event(ctx, leave); err != nil || ev.Pos <= 0 {
				t.Fatalf("elsie's leave is not in c's timeline while the state is partial: %v", err)
			}

			n.completeResync("c", roomID)
			if _, err := c.Event(ctx, kick); errCode(err) != "M_NOT_FOUND" {
				t.Errorf("derek's kick after the resync: %v, want M_NOT_FOUND", err)
			}
			if _, err := c.Event(ctx, leave); err != nil {
				t.Errorf("elsie's leave after the resync: %v", err)
			}
			if m := c.Membership(elsieA, roomID); m != "leave" {
				t.Errorf("elsie's membership on c after the resync = %q, want leave", m)
			}
			if got := currentStateIDs(t, c, roomID)[stateKey{"m.room.member", string(elsieA)}]; got != leave {
				t.Errorf("elsie's member event in c's current state = %s, want her leave %s", got, leave)
			}
			if before := stateIDsBefore(t, c, roomID, leave); before[kick] || !before[join] {
				t.Errorf("the state before elsie's leave holds the kick, or lacks her join")
			}
		})
	}
}

// TestPartialStateRecheckPaged: the re-check after the resync reads the
// events received meanwhile a page (StateBatch) at a time. With pages of
// one and two events, fewer than there are to check, the verdicts and
// the states are those of one page: fred's ban of derek is refused,
// derek's kick of elsie after it allowed, and the messages that follow
// the kick have it in their state before. A second branch, received
// last, has lower depths at higher positions than the first, so the
// room's order (depth, then position) is not the positions'.
func TestPartialStateRecheckPaged(t *testing.T) {
	for _, batch := range []int{1, 2, DefaultStateBatch} {
		t.Run(strconv.Itoa(batch), func(t *testing.T) {
			ctx := context.Background()
			const fredA = id.UserID("@fred:a")
			n := newFedNet(t, "a", "c")
			f := newPartialFixture(t, n, map[id.UserID]int{derekA: 50, fredA: 100}, []id.UserID{derekA, fredA, elsieA}, []id.UserID{fredA})
			n.e("c").StateBatch = batch
			roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
			create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
			d := carolJoin.Depth
			ban, banRaw := n.forge("a", roomID, stateProto(fredA, "m.room.member", string(derekA), `{"membership":"ban"}`),
				[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[fredA].ID, joins[derekA].ID}, d+1)
			kick, kickRaw := n.forge("a", roomID, stateProto(derekA, "m.room.member", string(elsieA), `{"membership":"leave"}`),
				[]id.EventID{ban}, []id.EventID{create.ID, pl.ID, joins[derekA].ID, joins[elsieA].ID}, d+2)
			aliceAuth := []id.EventID{create.ID, pl.ID, aliceJoin.ID}
			m1, m1Raw := n.forge("a", roomID, textProto(aliceA, "m1"), []id.EventID{kick}, aliceAuth, d+3)
			m2, m2Raw := n.forge("a", roomID, textProto(aliceA, "m2"), []id.EventID{m1}, aliceAuth, d+4)
			b1, b1Raw := n.forge("a", roomID, textProto(aliceA, "b1"), []id.EventID{carolJoin.ID}, aliceAuth, d+1)
			b2, b2Raw := n.forge("a", roomID, textProto(aliceA, "b2"), []id.EventID{b1}, aliceAuth, d+2)
			for i, raw := range []json.RawMessage{banRaw, kickRaw, m1Raw, m2Raw, b1Raw, b2Raw} {
				_, err := n.e("c").ReceivePDU(ctx, "a", raw)
				if (i == 1) != (err != nil) {
					t.Fatalf("c receives event %d while its state is partial: %v", i, err)
				}
			}

			n.completeResync("c", roomID)
			if _, err := n.e("c").Event(ctx, ban); errCode(err) != "M_NOT_FOUND" {
				t.Errorf("fred's ban after the resync: %v, want M_NOT_FOUND", err)
			}
			for _, eid := range []id.EventID{kick, m1, m2, b1, b2} {
				if ev, err := n.e("c").Event(ctx, eid); err != nil || ev.Pos <= 0 {
					t.Errorf("%s is not in c's timeline after the resync: %v", eid, err)
				}
			}
			for user, want := range map[id.UserID]string{elsieA: "leave", derekA: "join"} {
				if m := n.e("c").Membership(user, roomID); m != want {
					t.Errorf("%s's membership on c after the resync = %q, want %q", user, m, want)
				}
			}
			for _, eid := range []id.EventID{m1, m2} {
				if before := stateIDsBefore(t, n.e("c"), roomID, eid); !before[kick] || before[ban] {
					t.Errorf("the state before %s lacks the allowed kick or holds the refused ban", eid)
				}
			}
			if before := stateIDsBefore(t, n.e("c"), roomID, b2); before[kick] || before[ban] || !before[joins[elsieA].ID] {
				t.Errorf("the state before b2, on the other branch, holds the kick or the ban, or lacks elsie's join")
			}
		})
	}
}

// TestPartialStateRefusedExtremity: a refused event that is one of the
// room's forward extremities gives way to the events it follows that no
// accepted event follows. While c's state is partial, derek's state event
// (refused once the full state shows he left) and alice's message both
// follow carol's join, a fork: after the resync the room's one extremity
// is alice's message (carol's join, which it follows, is not one), in
// memory and as stored, and carol's next event names it alone.
func TestPartialStateRefusedExtremity(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{derekA: 50}, []id.UserID{derekA}, []id.UserID{derekA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl, aliceJoin := f.create, f.pl, f.aliceJoin
	bad, badRaw := n.forge("a", roomID, stateProto(derekA, "m.room.test", "", `{"body":"bad state event"}`),
		[]id.EventID{carolJoin.ID}, []id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+1)
	msg, msgRaw := n.forge("a", roomID, textProto(aliceA, "beside"), []id.EventID{carolJoin.ID},
		[]id.EventID{create.ID, pl.ID, aliceJoin.ID}, carolJoin.Depth+1)
	for _, raw := range []json.RawMessage{badRaw, msgRaw} {
		if _, err := n.e("c").ReceivePDU(ctx, "a", raw); err != nil {
			t.Fatalf("c refuses an event while its state is partial: %v", err)
		}
	}
	if ext := n.e("c").rooms[roomID].view().extremities; !slices.Contains(ext, bad) || !slices.Contains(ext, msg) {
		t.Fatalf("c's extremities while partial = %v, want derek's %s and alice's %s", ext, bad, msg)
	}

	n.completeResync("c", roomID)
	if ext := n.e("c").rooms[roomID].view().extremities; !slices.Equal(ext, []id.EventID{msg}) {
		t.Errorf("c's extremities after the resync = %v, want alice's message %s alone", ext, msg)
	}
	var stored string
	if err := n.e("c").db.QueryRow(ctx, "SELECT extremities FROM rooms WHERE room_id = $1", roomID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want, _ := json.Marshal([]id.EventID{msg}); stored != string(want) {
		t.Errorf("c's stored extremities after the resync = %s, want %s", stored, want)
	}
	next := n.send("c", roomID, textProto(carolC, "next"))
	if !slices.Equal(next.PDU.PrevEvents, []id.EventID{msg}) {
		t.Errorf("carol's next event has prev_events %v, want alice's message %s alone (not the refused %s)", next.PDU.PrevEvents, msg, bad)
	}
}

// TestPartialStateAllowedRedactionRedacts: while c's state is partial,
// fred (who joined and left) bans derek, which c accepts by fred's old
// join; derek's redaction of his own earlier message, after the ban, is
// rejected. Once the full state shows fred left, the ban is rejected and
// the redaction allowed: it joins c's timeline, and redacts its target
// there as any redaction does.
func TestPartialStateAllowedRedactionRedacts(t *testing.T) {
	ctx := context.Background()
	const fredA = id.UserID("@fred:a")
	n := newFedNet(t, "a", "c")
	f := newPartialFixture(t, n, map[id.UserID]int{fredA: 100}, []id.UserID{derekA, fredA}, []id.UserID{fredA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	create, pl := f.create, f.pl
	msg, msgRaw := n.forge("a", roomID, textProto(derekA, "to be redacted"), []id.EventID{carolJoin.ID},
		[]id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+1)
	if _, err := n.e("c").ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses derek's message while its state is partial: %v", err)
	}
	ban, banRaw := n.forge("a", roomID, stateProto(fredA, "m.room.member", string(derekA), `{"membership":"ban"}`),
		[]id.EventID{msg}, []id.EventID{create.ID, pl.ID, joins[fredA].ID, joins[derekA].ID}, carolJoin.Depth+2)
	if _, err := n.e("c").ReceivePDU(ctx, "a", banRaw); err != nil {
		t.Fatalf("c refuses fred's ban while its state is partial: %v", err)
	}
	red, redRaw := n.forge("a", roomID, Proto{Type: "m.room.redaction", Sender: derekA, Content: json.RawMessage(`{}`), Redacts: msg},
		[]id.EventID{ban}, []id.EventID{create.ID, pl.ID, joins[derekA].ID}, carolJoin.Depth+3)
	if _, err := n.e("c").ReceivePDU(ctx, "a", redRaw); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("derek's redaction while c believes him banned: %v, want M_FORBIDDEN", err)
	}
	if ev, err := n.e("c").Event(ctx, msg); err != nil || ev.RedactedBy != "" {
		t.Fatalf("derek's message before the resync: %v, redacted by %q", err, ev.RedactedBy)
	}

	n.completeResync("c", roomID)
	if ev, err := n.e("c").Event(ctx, red); err != nil || ev.Pos <= 0 {
		t.Fatalf("derek's redaction is not in c's timeline after the resync: %v", err)
	}
	ev, err := n.e("c").Event(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if ev.RedactedBy != red || strings.Contains(string(ev.JSON), "to be redacted") {
		t.Errorf("derek's message after the resync allowed his redaction: redacted by %q, want %s; %s", ev.RedactedBy, red, ev.JSON)
	}
}

// TestPartialStateRefusedRedactionRestores: while c's state is partial,
// fred (who joined with the power to redact, and left) redacts derek's
// message; c accepts it by fred's old join and redacts the message at
// once. Once the full state shows fred left, the redaction is refused and
// the message is given back: its content in the events c serves, in the
// newest events in memory that /sync reads, and to the OnReject hooks
// (search indexes it again from there). c runs on SQLite and PostgreSQL.
func TestPartialStateRefusedRedactionRestores(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRefusedRedactionRestores(t, newFedNet(t, "a", "c")) })
	t.Run("postgres", func(t *testing.T) {
		testRefusedRedactionRestores(t, newFedNetAt(t, map[string]string{"c": pgtest.Start(t)}, "a", "c"))
	})
}

func testRefusedRedactionRestores(t *testing.T, n *fedNet) {
	ctx := context.Background()
	const fredA = id.UserID("@fred:a")
	f := newPartialFixture(t, n, map[id.UserID]int{fredA: 100}, []id.UserID{derekA, fredA}, []id.UserID{fredA})
	roomID, joins, carolJoin := f.roomID, f.joins, f.carolJoin
	c := n.e("c")
	msg, msgRaw := n.forge("a", roomID, textProto(derekA, "to be given back"), []id.EventID{carolJoin.ID},
		[]id.EventID{f.create.ID, f.pl.ID, joins[derekA].ID}, carolJoin.Depth+1)
	if _, err := c.ReceivePDU(ctx, "a", msgRaw); err != nil {
		t.Fatalf("c refuses derek's message while its state is partial: %v", err)
	}
	red, redRaw := n.forge("a", roomID, Proto{Type: "m.room.redaction", Sender: fredA, Content: json.RawMessage(`{}`), Redacts: msg},
		[]id.EventID{msg}, []id.EventID{f.create.ID, f.pl.ID, joins[fredA].ID}, carolJoin.Depth+2)
	if _, err := c.ReceivePDU(ctx, "a", redRaw); err != nil {
		t.Fatalf("c refuses fred's redaction while its state is partial: %v", err)
	}
	if ev, err := c.Event(ctx, msg); err != nil || ev.RedactedBy != red || strings.Contains(string(ev.JSON), "to be given back") {
		t.Fatalf("derek's message while the redaction stands: %v, redacted by %q, want %s", err, ev.RedactedBy, red)
	}
	// A state event redacted, the room's name, is given back in the
	// current state too.
	name := n.e("a").rooms[roomID].view().get("m.room.name", "")
	_, nameRedRaw := n.forge("a", roomID, Proto{Type: "m.room.redaction", Sender: fredA, Content: json.RawMessage(`{}`), Redacts: name.ID},
		[]id.EventID{red}, []id.EventID{f.create.ID, f.pl.ID, joins[fredA].ID}, carolJoin.Depth+3)
	if _, err := c.ReceivePDU(ctx, "a", nameRedRaw); err != nil {
		t.Fatalf("c refuses fred's redaction of the name while its state is partial: %v", err)
	}
	if ev, _ := c.StateEvent(ctx, roomID, "m.room.name", ""); ev == nil || strings.Contains(string(ev.Content()), "named") {
		t.Fatalf("the room's name while its redaction stands: found %t, not redacted", ev != nil)
	}
	var hookSaw string
	c.OnReject = append(c.OnReject, func(ctx context.Context, tx *storage.Tx, ev *Event) error {
		if ev.ID != red {
			return nil
		}
		target, err := c.TimelineEventTx(ctx, tx, msg)
		if err != nil || target == nil {
			return fmt.Errorf("the refused redaction's target: %v", err)
		}
		hookSaw = string(target.Content())
		return nil
	})

	n.completeResync("c", roomID)
	if _, err := c.Event(ctx, red); err == nil {
		t.Fatal("c serves fred's redaction after the full state refused it")
	}
	ev, err := c.Event(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if ev.RedactedBy != "" || !strings.Contains(string(ev.JSON), "to be given back") {
		t.Errorf("derek's message after the resync refused the redaction: redacted by %q; %s", ev.RedactedBy, ev.JSON)
	}
	if ev := c.rooms[roomID].recent.find(msg); ev == nil || ev.RedactedBy != "" || !strings.Contains(string(ev.JSON), "to be given back") {
		t.Errorf("the newest events in memory lack derek's message as it was (found: %t)", ev != nil)
	}
	evs, _, err := c.CommittedEvents(ctx, ev.Pos-1, ev.Pos, EventFilter{}, 1)
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].JSON), "to be given back") {
		t.Errorf("the committed events at derek's message: %v, %v", err, evs)
	}
	if ev, _ := c.StateEvent(ctx, roomID, "m.room.name", ""); ev == nil || ev.RedactedBy != "" || !strings.Contains(string(ev.Content()), "named") {
		t.Errorf("the room's name in the current state after the resync refused its redaction: found %t, not named", ev != nil)
	}
	if ev, err := c.Event(ctx, name.ID); err != nil || !strings.Contains(string(ev.Content()), "named") {
		t.Errorf("the room's name event after the resync refused its redaction: %v", err)
	}
	if !strings.Contains(hookSaw, "to be given back") {
		t.Errorf("the OnReject hooks read the target as %q, want its content back", hookSaw)
	}
	var kept int
	if err := c.db.QueryRow(ctx, "SELECT COUNT(*) FROM partial_redacted").Scan(&kept); err != nil || kept != 0 {
		t.Errorf("partial_redacted keeps %d rows after the resync (%v), want none", kept, err)
	}
}
