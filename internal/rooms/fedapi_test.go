package rooms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// fedNet is a few servers, each an engine on its own SQLite database with
// its own server name and signing key, that exchange raw PDUs directly:
// each engine's Remote answers from the other engines, so both sides run
// their real code paths.
type fedNet struct {
	t       testing.TB
	servers map[string]*testEnv
	// missingAsked and stateAsked count the gap-filling requests.
	missingAsked, stateAsked, backfillAsked int
	// served are events /event answers before asking the servers;
	// withheld those it answers with an error.
	served   map[id.EventID]json.RawMessage
	withheld map[id.EventID]bool
	// noMissingEvents makes get_missing_events fail.
	noMissingEvents bool
	// stateGate, when not nil, holds /state_ids and /state (a partial-state
	// resync's fetch) until it is closed.
	stateGate chan struct{}
}

func newFedNet(t testing.TB, names ...string) *fedNet {
	return newFedNetAt(t, nil, names...)
}

// newFedNetAt is newFedNet with the databases dsns names (a PostgreSQL
// one of pgtest.Start, say) for the servers it keys; the others get SQLite.
func newFedNetAt(t testing.TB, dsns map[string]string, names ...string) *fedNet {
	t.Helper()
	n := &fedNet{t: t, servers: map[string]*testEnv{}}
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		path := dsns[name]
		if path == "" {
			path = filepath.Join(t.TempDir(), "db")
		}
		env := &testEnv{t: t, path: path, key: key, server: name, remote: netRemote{n}}
		env.open()
		t.Cleanup(func() { env.db.Close() })
		n.servers[name] = env
	}
	return n
}

func (n *fedNet) e(server string) *Engine { return n.servers[server].e }

// netRemote is the Remote of every engine of a fedNet.
type netRemote struct{ n *fedNet }

func (r netRemote) server(name string) (*Engine, error) {
	env := r.n.servers[name]
	if env == nil {
		return nil, fmt.Errorf("no server %s", name)
	}
	return env.e, nil
}

func (r netRemote) VerifyKey(_ context.Context, server string, keyID id.KeyID, _ time.Time) (id.SigningKey, error) {
	env := r.n.servers[server]
	if env == nil || keyID != "ed25519:t" {
		return "", fmt.Errorf("no key %s of %s", keyID, server)
	}
	return id.SigningKey(base64.RawStdEncoding.EncodeToString(env.key.Public().(ed25519.PublicKey))), nil
}

func (r netRemote) GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, earliest, latest []id.EventID, limit int, minDepth int64) ([]json.RawMessage, error) {
	e, err := r.server(server)
	if err != nil {
		return nil, err
	}
	r.n.missingAsked++
	if r.n.noMissingEvents {
		return nil, fmt.Errorf("get_missing_events from %s fails", server)
	}
	evs, err := e.MissingEvents(ctx, roomID, earliest, latest, limit, minDepth)
	if err != nil {
		return nil, err
	}
	return eventJSON(evs), nil
}

func (r netRemote) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) ([]id.EventID, []id.EventID, error) {
	e, err := r.server(server)
	if err != nil {
		return nil, nil, err
	}
	if err := r.n.waitGate(ctx); err != nil {
		return nil, nil, err
	}
	r.n.stateAsked++
	return e.StateIDsBefore(ctx, roomID, eventID)
}

func (r netRemote) GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(bool, json.RawMessage) error) error {
	e, err := r.server(server)
	if err != nil {
		return err
	}
	if err := r.n.waitGate(ctx); err != nil {
		return err
	}
	state, chain, err := e.StateBefore(ctx, roomID, eventID, false)
	if err != nil {
		return err
	}
	for i, raw := range slices.Concat(state, chain) {
		if err := each(i >= len(state), raw); err != nil {
			return err
		}
	}
	return nil
}

// waitGate waits until n.stateGate, if any, is closed.
func (n *fedNet) waitGate(ctx context.Context) error {
	if n.stateGate == nil {
		return nil
	}
	select {
	case <-n.stateGate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r netRemote) Backfill(ctx context.Context, server string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error) {
	e, err := r.server(server)
	if err != nil {
		return nil, err
	}
	r.n.backfillAsked++
	evs, err := e.Backfill(ctx, roomID, from, limit)
	if err != nil {
		return nil, err
	}
	return eventJSON(evs), nil
}

func (r netRemote) GetEvent(ctx context.Context, server string, eventID id.EventID) (json.RawMessage, error) {
	if raw, ok := r.n.served[eventID]; ok {
		return raw, nil
	}
	if r.n.withheld[eventID] {
		return nil, fmt.Errorf("event %s withheld", eventID)
	}
	e, err := r.server(server)
	if err != nil {
		return nil, err
	}
	ev, err := e.FederationEvent(ctx, eventID)
	if err != nil {
		return nil, err
	}
	return ev.JSON, nil
}

// join makes user, of server joiner, join roomID through resident the way
// the federation endpoints do (make_join, send_join, then the joining
// server's import), and returns the join as both servers stored it.
func (n *fedNet) join(resident, joiner string, roomID id.RoomID, user id.UserID) (*Event, *Event) {
	n.t.Helper()
	return n.joinAltered(resident, joiner, roomID, user, nil)
}

// sendJoin makes user, of server joiner, join roomID through resident
// (make_join, the template signed by joiner, send_join) and returns the
// room's version and the join as resident stored it.
func (n *fedNet) sendJoin(resident, joiner string, roomID id.RoomID, user id.UserID) (id.RoomVersion, *Event) {
	n.t.Helper()
	ctx := context.Background()
	res, j := n.e(resident), n.e(joiner)
	version, tmpl, err := res.MembershipTemplate(ctx, roomID, user, "join", SupportedVersions)
	if err != nil {
		n.t.Fatalf("make_join: %v", err)
	}
	evID, signed, err := j.SignTemplate(version, tmpl)
	if err != nil {
		n.t.Fatalf("sign template: %v", err)
	}
	stored, err := res.ReceiveMembership(ctx, joiner, roomID, evID, signed, "join")
	if err != nil {
		n.t.Fatalf("send_join: %v", err)
	}
	return version, stored
}

// joinAltered is join with the send_join answer's state and auth chain
// passed through alter (when not nil) on their way to the joining server.
func (n *fedNet) joinAltered(resident, joiner string, roomID id.RoomID, user id.UserID, alter func(state, chain []json.RawMessage)) (*Event, *Event) {
	n.t.Helper()
	ctx := context.Background()
	res, j := n.e(resident), n.e(joiner)
	version, stored := n.sendJoin(resident, joiner, roomID, user)
	evID := stored.ID
	state, chain, err := res.StateBefore(ctx, roomID, evID, false)
	if err != nil {
		n.t.Fatalf("state before the join: %v", err)
	}
	if alter != nil {
		alter(state, chain)
	}
	imported, err := j.ImportJoin(ctx, resident, version, stored.JSON, state, chain)
	if err != nil {
		n.t.Fatalf("import join: %v", err)
	}
	if imported.ID != evID {
		n.t.Fatalf("imported join %s, want %s", imported.ID, evID)
	}
	return stored, imported
}

// deliver sends ev, stored by server from, to each of the other servers
// named, as /send would.
func (n *fedNet) deliver(from string, ev *Event, to ...string) {
	n.t.Helper()
	for _, s := range to {
		if _, err := n.e(s).ReceivePDU(context.Background(), from, ev.JSON); err != nil {
			n.t.Fatalf("%s receives %s from %s: %v", s, ev.ID, from, err)
		}
	}
}

func (n *fedNet) send(server string, roomID id.RoomID, p Proto) *Event {
	n.t.Helper()
	ev, err := n.e(server).Send(context.Background(), roomID, p)
	if err != nil {
		n.t.Fatalf("%s sends %s: %v", server, p.Type, err)
	}
	return ev
}

// currentStateIDs returns a server's current state of the room as IDs.
func currentStateIDs(t testing.TB, e *Engine, roomID id.RoomID) map[stateKey]id.EventID {
	t.Helper()
	evs, err := e.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatalf("current state: %v", err)
	}
	return stateIDs(evs)
}

// assertSameState fails unless every server has the same current state of
// the room, and the same state after a restart.
func (n *fedNet) assertSameState(roomID id.RoomID, servers ...string) map[stateKey]id.EventID {
	n.t.Helper()
	want := currentStateIDs(n.t, n.e(servers[0]), roomID)
	for _, s := range servers[1:] {
		if got := currentStateIDs(n.t, n.e(s), roomID); !maps.Equal(got, want) {
			n.t.Fatalf("state of %s differs from %s's:\n%v\n%v", s, servers[0], got, want)
		}
	}
	return want
}

// timelineBodies returns the message bodies of a server's timeline of the
// room, oldest first.
func timelineBodies(t *testing.T, e *Engine, roomID id.RoomID) []string {
	t.Helper()
	evs, err := e.RoomEvents(context.Background(), roomID, 0, 1<<62, 1000, false)
	if err != nil {
		t.Fatalf("room events: %v", err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == "m.room.message" {
			out = append(out, gjson.GetBytes(ev.PDU.Content, "body").Str)
		}
	}
	return out
}

// createFedRoom creates a public room on server a by its user alice, in
// which bob of server b may change state.
func createFedRoom(t testing.TB, e *Engine, v id.RoomVersion, creator id.UserID, extra ...Proto) id.RoomID {
	t.Helper()
	users := map[id.UserID]int{}
	if !v.PrivilegedRoomCreators() {
		users[creator] = 100
	}
	users["@bob:b"] = 50
	pl, _ := json.Marshal(map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
	})
	roomID, _, err := e.CreateRoom(context.Background(), v, creator, nil, append([]Proto{
		memberProto(creator, "join"),
		stateProto(creator, "m.room.power_levels", "", string(pl)),
		stateProto(creator, "m.room.join_rules", "", `{"join_rule":"public"}`),
		stateProto(creator, "m.room.history_visibility", "", `{"history_visibility":"shared"}`),
	}, extra...))
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	return roomID
}

const (
	aliceA = id.UserID("@alice:a")
	bobB   = id.UserID("@bob:b")
	carolC = id.UserID("@carol:c")
)

// TestFederatedRoom joins a user of a second server to a room, exchanges
// messages both ways, then lets both servers change state while apart
// (different keys, then the same key) and checks that after the exchange
// both hold the same state, resolved by state resolution, and every
// message; a third server that joins afterwards gets that state too.
func TestFederatedRoom(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			testFederatedRoom(t, v)
		})
	}
}

func testFederatedRoom(t *testing.T, v id.RoomVersion) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b", "c")
	roomID := createFedRoom(t, n.e("a"), v, aliceA)

	_, imported := n.join("a", "b", roomID, bobB)
	if got := n.e("b").Membership(bobB, roomID); got != "join" {
		t.Fatalf("bob's membership on b = %q, want join", got)
	}
	if imported.Pos == 0 || !slices.Contains(n.e("b").JoinedRooms(bobB), roomID) {
		t.Fatalf("b does not show bob joined (pos %d)", imported.Pos)
	}
	n.assertSameState(roomID, "a", "b")

	// Messages both ways.
	n.deliver("a", n.send("a", roomID, textProto(aliceA, "hello from a")), "b")
	n.deliver("b", n.send("b", roomID, textProto(bobB, "hello from b")), "a")
	n.assertSameState(roomID, "a", "b")

	// Apart: each changes another key, and both the topic.
	aName := n.send("a", roomID, stateProto(aliceA, "m.room.name", "", `{"name":"from a"}`))
	aTopic := n.send("a", roomID, stateProto(aliceA, "m.room.topic", "", `{"topic":"a's topic"}`))
	aMsg := n.send("a", roomID, textProto(aliceA, "a while apart"))
	bAvatar := n.send("b", roomID, stateProto(bobB, "m.room.avatar", "", `{"url":"mxc://b/x"}`))
	bTopic := n.send("b", roomID, stateProto(bobB, "m.room.topic", "", `{"topic":"b's topic"}`))
	bMsg := n.send("b", roomID, textProto(bobB, "b while apart"))
	for _, ev := range []*Event{aName, aTopic, aMsg} {
		n.deliver("a", ev, "b")
	}
	for _, ev := range []*Event{bAvatar, bTopic, bMsg} {
		n.deliver("b", ev, "a")
	}
	state := n.assertSameState(roomID, "a", "b")
	if state[stateKey{"m.room.name", ""}] != aName.ID || state[stateKey{"m.room.avatar", ""}] != bAvatar.ID {
		t.Errorf("the unconflicted changes of both sides are not both in the state")
	}
	if topic := state[stateKey{"m.room.topic", ""}]; topic != aTopic.ID && topic != bTopic.ID {
		t.Errorf("resolved topic %s is neither side's", topic)
	}
	// Both have two forward extremities now; the next event joins them.
	joinUp := n.send("a", roomID, textProto(aliceA, "together again"))
	if len(joinUp.PDU.PrevEvents) != 2 {
		t.Errorf("prev_events after the merge = %v, want both extremities", joinUp.PDU.PrevEvents)
	}
	n.deliver("a", joinUp, "b")
	n.assertSameState(roomID, "a", "b")
	want := []string{"hello from a", "hello from b", "a while apart", "b while apart", "together again"}
	for _, s := range []string{"a", "b"} {
		got := timelineBodies(t, n.e(s), roomID)
		if !sameElements(got, want) {
			t.Errorf("timeline of %s = %q, want %q in some order", s, got, want)
		}
	}

	// A third server joins the resolved room.
	stored, _ := n.join("a", "c", roomID, carolC)
	// omit_members (MSC3706): no member event but the joiner's own, and
	// the auth chain of what remains.
	full, _, err := n.e("a").StateBefore(ctx, roomID, stored.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	lazy, lazyChain, err := n.e("a").StateBefore(ctx, roomID, stored.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range lazy {
		if gjson.GetBytes(raw, "type").Str == "m.room.member" && gjson.GetBytes(raw, "state_key").Str != string(carolC) {
			t.Errorf("omit_members kept %s's member event", gjson.GetBytes(raw, "state_key").Str)
		}
	}
	if len(lazy) >= len(full) || len(lazyChain) == 0 {
		t.Errorf("omit_members: %d of %d state events, %d in the auth chain", len(lazy), len(full), len(lazyChain))
	}
	stateIDList, chainIDs, err := n.e("a").StateIDsBefore(ctx, roomID, stored.ID)
	if err != nil || len(stateIDList) != len(full) || len(chainIDs) == 0 {
		t.Errorf("state_ids: %d state, %d chain, %v", len(stateIDList), len(chainIDs), err)
	}
	n.deliver("a", stored, "b")
	final := n.assertSameState(roomID, "a", "b", "c")
	if final[stateKey{"m.room.member", string(carolC)}] != stored.ID {
		t.Errorf("carol's join is not in the state")
	}
	// A restart reads the same state, extremities and members back.
	n.servers["b"].reopen()
	n.assertSameState(roomID, "a", "b", "c")
	if got := n.e("b").Membership(carolC, roomID); got != "join" {
		t.Errorf("carol's membership on b after a restart = %q", got)
	}
	n.deliver("c", n.send("c", roomID, textProto(carolC, "hi from c")), "a", "b")
	n.assertSameState(roomID, "a", "b", "c")
	if !n.e("b").ServerInRoom(ctx, "c", roomID) || n.e("b").ServerInRoom(ctx, "d", roomID) {
		t.Errorf("ServerInRoom is wrong")
	}
}

func sameElements(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestFederatedRestrictedJoin checks both roles of a restricted join: the
// resident server names its user in the template and countersigns the
// join, the joining server accepts the countersigned join, and a user who
// is in none of the allowed rooms is refused a template.
func TestFederatedRestrictedJoin(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b", "c")
	space := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "b", space, bobB)
	rule := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, space)
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA, stateProto(aliceA, "m.room.join_rules", "", rule))

	_, tmpl, err := n.e("a").MembershipTemplate(ctx, roomID, bobB, "join", nil)
	if err != nil {
		t.Fatalf("make_join: %v", err)
	}
	if via := gjson.GetBytes(tmpl, "content.join_authorised_via_users_server").Str; via != string(aliceA) {
		t.Fatalf("template's authoriser = %q, want %s", via, aliceA)
	}
	stored, imported := n.join("a", "b", roomID, bobB)
	if !gjson.GetBytes(stored.JSON, "signatures.a").Exists() || !gjson.GetBytes(stored.JSON, "signatures.b").Exists() {
		t.Errorf("the stored join lacks a signature: %s", stored.JSON)
	}
	if !gjson.GetBytes(imported.JSON, "signatures.a").Exists() {
		t.Errorf("the joining server's copy lacks the authoriser's signature")
	}
	n.assertSameState(roomID, "a", "b")

	if _, _, err := n.e("a").MembershipTemplate(ctx, roomID, carolC, "join", nil); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("make_join for a user outside the allowed rooms: %v, want M_FORBIDDEN", err)
	}
	if _, _, err := n.e("a").MembershipTemplate(ctx, roomID, carolC, "join", []id.RoomVersion{id.RoomV9}); errCode(err) != "M_INCOMPATIBLE_ROOM_VERSION" {
		t.Errorf("make_join from a server without the room's version: %v, want M_INCOMPATIBLE_ROOM_VERSION", err)
	}
	v1Room := createFedRoom(t, n.e("a"), id.RoomV1, aliceA)
	if _, _, err := n.e("a").MembershipTemplate(ctx, v1Room, carolC, "join", nil); errCode(err) != "M_UNSUPPORTED_ROOM_VERSION" {
		t.Errorf("make_join in a room of version 1: %v, want M_UNSUPPORTED_ROOM_VERSION", err)
	}
}

// TestReceivePDURefusals checks the refusals of the checks on receipt that
// need no fork: a bad signature and a forged sender are refused and leave
// nothing stored; an event refused by the auth rules is rejected (stored
// beside the timeline, never in it); an event received twice is accepted
// once; a node without Remote refuses remote events.
func TestReceivePDURefusals(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	before := currentStateIDs(t, n.e("a"), roomID)
	lastPos := n.e("a").LastPos(ctx, roomID)

	msg := n.send("b", roomID, textProto(bobB, "twice"))
	n.deliver("b", msg, "a")
	n.deliver("b", msg, "a")
	if got := timelineBodies(t, n.e("a"), roomID); slices.Index(got, "twice") != len(got)-1 || len(got) != 1 {
		t.Errorf("a's timeline after receiving one event twice = %q", got)
	}

	// A bad signature: the content changed after signing (a hash
	// mismatch alone redacts; here the signature covers the type).
	bad := n.send("b", roomID, stateProto(bobB, "m.room.topic", "", `{"topic":"x"}`))
	tampered := []byte(gjsonSet(t, string(bad.JSON), "type", "m.room.name"))
	if _, err := n.e("a").ReceivePDU(ctx, "b", tampered); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("bad signature: %v, want M_FORBIDDEN", err)
	}
	// A forged sender: b signs an event claiming a user of a.
	forged := n.e("b").signedRaw(t, roomID, stateProto(aliceA, "m.room.topic", "", `{"topic":"forged"}`), bad)
	if _, err := n.e("a").ReceivePDU(ctx, "b", forged); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("forged sender: %v, want M_FORBIDDEN", err)
	}
	// Bad auth: carol of b never joined.
	notJoined := n.e("b").signedRaw(t, roomID, textProto("@carol:b", "not joined"), bad)
	evID, err := n.e("a").ReceivePDU(ctx, "b", notJoined)
	if errCode(err) != "M_FORBIDDEN" {
		t.Errorf("event of a user who never joined: %v, want M_FORBIDDEN", err)
	}
	rejected, err := n.e("a").anyEvents(ctx, []id.EventID{evID})
	if err != nil || rejected[evID] == nil || !rejected[evID].Rejected {
		t.Errorf("the refused event is not stored as rejected: %v %+v", err, rejected[evID])
	}
	if _, err := n.e("a").FederationEvent(ctx, evID); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("a rejected event is served: %v", err)
	}
	if ev, err := n.e("a").Event(ctx, evID); err == nil {
		t.Errorf("a rejected event is readable as a timeline event: %s", ev.ID)
	}
	after := currentStateIDs(t, n.e("a"), roomID)
	if !maps.Equal(before, after) {
		t.Errorf("refused events changed the state")
	}
	if got := n.e("a").LastPos(ctx, roomID); got <= lastPos {
		t.Errorf("the accepted message did not move the room on")
	}

	// A server with no user in the room may not send its events, even
	// another server's.
	outsider := newFedNet(t, "c").servers["c"]
	n.servers["c"] = outsider
	if _, err := n.e("a").ReceivePDU(ctx, "c", msg.JSON); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("a PDU from a server not in the room: %v, want M_FORBIDDEN", err)
	}

	local := New(n.servers["a"].db, n.e("a").log, n.e("a").signer)
	if _, err := local.ReceivePDU(ctx, "b", msg.JSON); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("a node without Remote: %v, want M_FORBIDDEN", err)
	}
}

// signedRaw builds p as this engine would on top of the event like's prev
// and auth events, signs it with this engine's key whoever the sender is,
// and returns its JSON.
func (e *Engine) signedRaw(t *testing.T, roomID id.RoomID, p Proto, like *Event) []byte {
	t.Helper()
	pd := like.PDU.Clone()
	pd.Type, pd.Sender, pd.StateKey, pd.Content = p.Type, p.Sender, p.StateKey, []byte(p.Content)
	pd.Hashes, pd.Signatures, pd.Unsigned = nil, nil, nil
	v, err := e.Version(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	if err := pd.Sign(v, e.signer.ServerName, e.signer.KeyID, e.signer.Key); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(pd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gjsonSet(t *testing.T, raw, path, value string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	m[path] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReceiveInvite invites a user of a server not in the room (the
// invite is kept beside the timeline with its stripped state and moves the
// user's membership; the invitee's server signs it), rejects it through
// make_leave/send_leave, and invites another user of a server that is in
// the room (the invite joins the DAG). Bad invites are refused.
func TestReceiveInvite(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b", "c")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	version := id.RoomV11
	inv := n.send("a", roomID, stateProto(aliceA, "m.room.member", string(bobB), `{"membership":"invite"}`))
	stripped := []json.RawMessage{json.RawMessage(`{"type":"m.room.name","state_key":"","sender":"@alice:a","content":{"name":"Over there"}}`),
		json.RawMessage(`"not an event"`)}
	signed, err := n.e("b").ReceiveInvite(ctx, "a", version, inv.JSON, stripped)
	if err != nil {
		t.Fatalf("receive invite: %v", err)
	}
	if !gjson.GetBytes(signed, "signatures.b").Exists() || !gjson.GetBytes(signed, "signatures.a").Exists() {
		t.Errorf("the answered invite lacks a signature: %s", signed)
	}
	if m := n.e("b").Membership(bobB, roomID); m != "invite" {
		t.Fatalf("bob's membership on b = %q, want invite", m)
	}
	kept, err := n.e("b").InviteState(ctx, inv.ID)
	if err != nil || len(kept) != 1 || gjson.GetBytes(kept[0], "content.name").Str != "Over there" {
		t.Errorf("invite state = %s, %v; want the name event only", kept, err)
	}
	if ev, err := n.e("b").Event(ctx, inv.ID); err != nil || !ev.Outlier {
		t.Errorf("the invite is not loadable as an outlier: %v", err)
	}

	// Rejecting it: make_leave on a, signed on b, send_leave on a, then b
	// stores the leave.
	_, tmpl, err := n.e("a").MembershipTemplate(ctx, roomID, bobB, "leave", nil)
	if err != nil {
		t.Fatalf("make_leave: %v", err)
	}
	leaveID, leave, err := n.e("b").SignTemplate(version, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	storedLeave, err := n.e("a").ReceiveMembership(ctx, "b", roomID, leaveID, leave, "leave")
	if err != nil {
		t.Fatalf("send_leave: %v", err)
	}
	if _, err := n.e("b").StoreOutOfRoomMembership(ctx, version, storedLeave.JSON); err != nil {
		t.Fatalf("store the leave: %v", err)
	}
	if m := n.e("b").Membership(bobB, roomID); m != "leave" {
		t.Errorf("bob's membership on b after rejecting = %q, want leave", m)
	}
	if m := n.e("a").Membership(bobB, roomID); m != "leave" {
		t.Errorf("bob's membership on a after rejecting = %q, want leave", m)
	}

	// A server in the room takes an invite into its DAG.
	n.join("a", "c", roomID, carolC)
	dan := id.UserID("@dan:c")
	inv2 := n.send("a", roomID, stateProto(aliceA, "m.room.member", string(dan), `{"membership":"invite"}`))
	if _, err := n.e("c").ReceiveInvite(ctx, "a", version, inv2.JSON, nil); err != nil {
		t.Fatalf("invite into a room c is in: %v", err)
	}
	if ev, err := n.e("c").Event(ctx, inv2.ID); err != nil || ev.Outlier || ev.Pos == 0 {
		t.Errorf("the invite is not in c's timeline: %v", err)
	}
	if m := n.e("c").Membership(dan, roomID); m != "invite" {
		t.Errorf("dan's membership on c = %q", m)
	}

	for name, tc := range map[string]struct {
		origin  string
		version id.RoomVersion
		raw     []byte
		code    string
	}{
		"not our user":    {"a", version, n.send("a", roomID, stateProto(aliceA, "m.room.member", "@erin:c", `{"membership":"invite"}`)).JSON, "M_BAD_JSON"},
		"origin mismatch": {"c", version, inv.JSON, "M_FORBIDDEN"},
		"room version 1":  {"a", id.RoomV1, inv.JSON, "M_INCOMPATIBLE_ROOM_VERSION"},
		"not an invite":   {"a", version, n.send("a", roomID, textProto(aliceA, "hi")).JSON, "M_BAD_JSON"},
	} {
		if _, err := n.e("b").ReceiveInvite(ctx, tc.origin, tc.version, tc.raw, nil); errCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
}

// TestParseRemoteAll parses a joined room's events on every core: each
// outcome stays at its event's index, a bad event refused alone.
func TestParseRemoteAll(t *testing.T) {
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	var raws []json.RawMessage
	var want []id.EventID
	for i := range 20 {
		if i == 7 {
			raws, want = append(raws, json.RawMessage(`{"type":"m.room.message"}`)), append(want, "")
			continue
		}
		ev := n.send("b", roomID, textProto(bobB, fmt.Sprint("message ", i)))
		raws, want = append(raws, ev.JSON), append(want, ev.ID)
	}
	evs, errs := n.e("a").parseRemoteAll(context.Background(), id.RoomV11, raws)
	for i := range raws {
		switch {
		case want[i] == "" && errs[i] == nil:
			t.Errorf("event %d: the bad event was taken", i)
		case want[i] != "" && (errs[i] != nil || evs[i] == nil || evs[i].ID != want[i]):
			t.Errorf("event %d: %v, %v; want %s", i, evs[i], errs[i], want[i])
		}
	}
}

// TestOmitMembersKeepsHeroes: a send_join answer that omits members still
// carries the heroes' member events (the first joined or invited
// members) when the room has neither a name nor a canonical alias, so the
// joining server can name the room (the spec's omit_members; Complement's
// TestSendJoinPartialStateResponse); with a name, only the joiner's own
// (carol's earlier join, before she joins again). Its auth chain leaves out
// what its state carries.
func TestOmitMembersKeepsHeroes(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b", "c")
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "b", roomID, bobB)
	stored, _ := n.join("a", "c", roomID, carolC)
	members := func() []string {
		t.Helper()
		state, chain, err := n.e("a").StateBefore(ctx, roomID, stored.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chain {
			if slices.ContainsFunc(state, func(raw json.RawMessage) bool { return bytes.Equal(raw, c) }) {
				t.Errorf("the reduced auth chain repeats a state event: %s", c)
			}
		}
		var out []string
		for _, raw := range state {
			if gjson.GetBytes(raw, "type").Str == "m.room.member" {
				out = append(out, gjson.GetBytes(raw, "state_key").Str)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := members(), []string{string(aliceA), string(bobB)}; !slices.Equal(got, want) {
		t.Errorf("members of an unnamed room's reduced state = %v, want %v", got, want)
	}

	n.send("a", roomID, stateProto(aliceA, "m.room.name", "", `{"name":"named"}`))
	stored, _ = n.join("a", "c", roomID, carolC)
	if got, want := members(), []string{string(carolC)}; !slices.Equal(got, want) {
		t.Errorf("members of a named room's reduced state = %v, want %v", got, want)
	}
}

// TestImportJoinLeavesOutUnverifiableState joins a room whose send_join
// answer carries a state event that cannot be verified: without
// signatures, with a bad signature, signed with a key that cannot be had,
// or whose auth event is one of those. The join goes on without that
// event, which is not in the joining server's state (Complement's
// TestJoinFederatedRoomWithUnverifiableEvents).
func TestImportJoinLeavesOutUnverifiableState(t *testing.T) {
	badSig := base64.RawStdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	tests := []struct {
		name string
		// signatures replaces the signatures of the event altered.
		signatures map[string]map[string]string
		// authEvent alters carol's join, the auth event of her leave in
		// the state, instead of the room's name.
		authEvent bool
	}{
		{name: "missing signatures", signatures: map[string]map[string]string{}},
		{name: "bad signature", signatures: map[string]map[string]string{"a": {"ed25519:t": badSig}}},
		{name: "unobtainable key", signatures: map[string]map[string]string{"a": {"ed25519:gone": badSig}}},
		{name: "unverifiable auth event", signatures: map[string]map[string]string{"c": {"ed25519:t": badSig}}, authEvent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newFedNet(t, "a", "b", "c")
			roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
			altered := n.send("a", roomID, stateProto(aliceA, "m.room.name", "", `{"name":"unverifiable"}`))
			key := stateKey{"m.room.name", ""}
			if tc.authEvent {
				altered, _ = n.join("a", "c", roomID, carolC)
				n.send("a", roomID, stateProto(aliceA, "m.room.member", string(carolC), `{"membership":"leave"}`))
				key = stateKey{"m.room.member", string(carolC)}
			}
			found := false
			alter := func(state, chain []json.RawMessage) {
				for _, list := range [][]json.RawMessage{state, chain} {
					for i, raw := range list {
						if EventIDOf(id.RoomV11, raw) == altered.ID {
							list[i], found = withSignatures(t, raw, tc.signatures), true
						}
					}
				}
			}
			_, imported := n.joinAltered("a", "b", roomID, bobB, alter)
			if !found {
				t.Fatalf("the send_join answer does not carry %s", altered.ID)
			}
			if imported == nil || n.e("b").Membership(bobB, roomID) != "join" {
				t.Fatalf("bob is not joined on b")
			}
			state := currentStateIDs(t, n.e("b"), roomID)
			if state[stateKey{"m.room.member", string(bobB)}] != imported.ID {
				t.Errorf("b's state lacks bob's join")
			}
			if got, ok := state[key]; ok {
				t.Errorf("b's state holds %v = %s, which could not be verified", key, got)
			}
		})
	}
}

// withSignatures returns the PDU raw with its signatures replaced.
func withSignatures(t *testing.T, raw json.RawMessage, sigs map[string]map[string]string) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["signatures"] = sigs
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInviteRescinded: the inviter's server sends the kick of an invitee
// whose server is not in the room to that server, which shows the invite
// withdrawn (the invitee's membership is leave); a kick by anyone but the
// inviter is refused there and the invite stays (Complement's
// TestFederationRoomsInvite, "Inviter user can rescind invite over
// federation" and "Non-invitee user cannot rescind invite over
// federation").
func TestInviteRescinded(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	other := id.UserID("@other:a")
	n.send("a", roomID, memberProto(other, "join"))
	dan := id.UserID("@dan:b")
	invite := func(inviter, invitee id.UserID) {
		t.Helper()
		inv := n.send("a", roomID, stateProto(inviter, "m.room.member", string(invitee), `{"membership":"invite"}`))
		if _, err := n.e("b").ReceiveInvite(ctx, "a", id.RoomV11, inv.JSON, nil); err != nil {
			t.Fatalf("b receives the invite of %s: %v", invitee, err)
		}
	}
	kick := func(invitee id.UserID) (*Event, error) {
		t.Helper()
		k := n.send("a", roomID, stateProto(aliceA, "m.room.member", string(invitee), `{"membership":"leave"}`))
		_, err := n.e("b").ReceivePDU(ctx, "a", k.JSON)
		return k, err
	}

	invite(aliceA, bobB)
	k, err := kick(bobB)
	if err != nil {
		t.Fatalf("b receives the inviter's kick: %v", err)
	}
	if m := n.e("b").Membership(bobB, roomID); m != "leave" {
		t.Errorf("bob's membership on b after the inviter's kick = %q, want leave", m)
	}
	if evID, err := n.e("b").MembershipEventID(ctx, bobB, roomID); err != nil || evID != k.ID {
		t.Errorf("bob's membership event on b = %s (%v), want the kick %s", evID, err, k.ID)
	}
	if _, err := n.e("b").ReceivePDU(ctx, "a", k.JSON); err != nil {
		t.Errorf("the kick received again: %v", err)
	}

	invite(other, dan)
	if _, err := kick(dan); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("a kick by another than the inviter: %v, want M_FORBIDDEN", err)
	}
	if m := n.e("b").Membership(dan, roomID); m != "invite" {
		t.Errorf("dan's membership on b after another's kick = %q, want invite", m)
	}
	msg := n.send("a", roomID, textProto(aliceA, "not for b"))
	if _, err := n.e("b").ReceivePDU(ctx, "a", msg.JSON); errCode(err) != "M_NOT_FOUND" {
		t.Errorf("another event of a room b is not in: %v, want M_NOT_FOUND", err)
	}
}

// TestRestrictedJoinAllowedRoomsUnknown: a restricted room on a admits the
// members of a space on c. While a is in that space it knows whether carol
// of c is a member and names its authoriser; while it is not (before it
// joins, after it left, keeping the memberships it last saw) it cannot
// tell, and answers M_UNABLE_TO_AUTHORISE_JOIN so that another server is
// asked (Complement's TestRestrictedRoomsRemoteJoinFailOver).
func TestRestrictedJoinAllowedRoomsUnknown(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	space := createFedRoom(t, n.e("c"), id.RoomV10, carolC)
	rule := fmt.Sprintf(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":%q}]}`, space)
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA, stateProto(aliceA, "m.room.join_rules", "", rule))
	if _, err := n.e("a").JoinAuthoriser(ctx, roomID, carolC); errCode(err) != "M_UNABLE_TO_AUTHORISE_JOIN" {
		t.Errorf("a, not in the space: %v, want M_UNABLE_TO_AUTHORISE_JOIN", err)
	}
	n.join("c", "a", space, aliceA)
	if via, err := n.e("a").JoinAuthoriser(ctx, roomID, carolC); err != nil || via != aliceA {
		t.Errorf("a, in the space: authoriser %q, %v; want %s", via, err, aliceA)
	}
	if _, err := n.e("a").JoinAuthoriser(ctx, roomID, "@nobody:c"); errCode(err) != "M_FORBIDDEN" {
		t.Errorf("a user in no allowed room: %v, want M_FORBIDDEN", err)
	}
	n.send("a", space, stateProto(aliceA, "m.room.member", string(aliceA), `{"membership":"leave"}`))
	if _, err := n.e("a").JoinAuthoriser(ctx, roomID, carolC); errCode(err) != "M_UNABLE_TO_AUTHORISE_JOIN" {
		t.Errorf("a, which left the space: %v, want M_UNABLE_TO_AUTHORISE_JOIN", err)
	}
}

func eventIDs(evs []*Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func eventJSON(evs []*Event) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[i] = json.RawMessage(ev.JSON)
	}
	return out
}
