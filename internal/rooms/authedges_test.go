package rooms

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/stateres"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestAuthEdgesIndex: every state event a server stores, its own and
// another server's, on the timeline or beside it, has its auth_events in
// the auth_edges index, and no message has a row. After a restart the
// room's auth graph starts from the index: resolving the two sides of a
// fork loads no event for the auth DAG. With the index emptied (a room
// stored before it existed), the same resolution gives the same state and
// fills the index in.
func TestAuthEdgesIndex(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	a := n.e("a")
	roomID := createFedRoom(t, a, id.RoomV11, aliceA)
	var members []Proto
	for i := range 10 {
		members = append(members, memberProto(id.UserID(fmt.Sprintf("@member%d:a", i)), "join"))
	}
	if _, err := a.SendMany(ctx, roomID, members); err != nil {
		t.Fatal(err)
	}
	n.join("a", "b", roomID, bobB)
	n.send("a", roomID, textProto(aliceA, "hello"))
	var renames []Proto
	for i := range 10 {
		user := id.UserID(fmt.Sprintf("@member%d:a", i))
		renames = append(renames, stateProto(user, "m.room.member", user.String(), fmt.Sprintf(`{"membership":"join","displayname":"m%d"}`, i)))
	}
	aSide, err := a.SendMany(ctx, roomID, renames)
	if err != nil {
		t.Fatal(err)
	}
	bSide := n.send("b", roomID, stateProto(bobB, "org.example.state", "k", `{"side":"b"}`))
	n.deliver("b", bSide, "a")

	// Every state event of a's timeline and outliers has its row.
	env := n.servers["a"]
	want := storedStateAuthEvents(t, env.db, roomID)
	if got := authEdgeRows(t, env.db, roomID); !maps.Equal(got, want) {
		t.Fatalf("auth_edges of a:\n%v\nwant the state events' auth_events:\n%v", got, want)
	}

	resolveSides := func(preloaded int) idState {
		t.Helper()
		e := env.e
		r, err := e.room(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		heads, err := e.Events(ctx, []id.EventID{aSide[len(aSide)-1].ID, bSide.ID})
		if err != nil || len(heads) != 2 {
			t.Fatalf("heads: %v (%d)", err, len(heads))
		}
		states, _, err := e.stateAfterEvents(ctx, heads)
		if err != nil {
			t.Fatal(err)
		}
		g, err := e.authGraph(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if g.Len() < preloaded {
			t.Fatalf("the graph starts with %d events, want the index's %d", g.Len(), preloaded)
		}
		resolved, err := e.resolve(ctx, r, states, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.db.Write(ctx, func(*storage.Tx) error { return nil }); err != nil {
			t.Fatal(err) // the index's lazy writes, queued before, are done
		}
		return resolved
	}

	env.reopen()
	withIndex := resolveSides(len(want))
	if got := authEdgeRows(t, env.db, roomID); !maps.Equal(got, want) {
		t.Fatalf("a resolution from the index changed it:\n%v\nwant\n%v", got, want)
	}

	if err := env.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM auth_edges")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	env.reopen()
	if got := resolveSides(0); !maps.Equal(got, withIndex) {
		t.Fatalf("resolved without the index:\n%v\nwith it:\n%v", got, withIndex)
	}
	got := authEdgeRows(t, env.db, roomID)
	if len(got) == 0 {
		t.Fatal("a resolution without the index did not fill it in")
	}
	for eventID, authEvents := range got {
		if want[eventID] != authEvents {
			t.Errorf("filled-in row of %s: %q, want %q", eventID, authEvents, want[eventID])
		}
	}
}

// storedStateAuthEvents returns the auth_events, sorted and joined, of
// every state event of the room stored on the timeline or beside it.
func storedStateAuthEvents(t *testing.T, db *storage.DB, roomID id.RoomID) map[id.EventID]string {
	t.Helper()
	ctx := context.Background()
	out := map[id.EventID]string{}
	for _, q := range []string{
		"SELECT event_id, json FROM events WHERE room_id = $1 AND state_key IS NOT NULL",
		"SELECT event_id, json FROM outlier_events WHERE room_id = $1 AND state_key IS NOT NULL",
	} {
		rows, err := db.Query(ctx, q, roomID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var eventID id.EventID
			var raw string
			if err := rows.Scan(&eventID, &raw); err != nil {
				t.Fatal(err)
			}
			pd, err := parsePDU([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			out[eventID] = sortedJoin(pd.AuthEvents)
		}
		rows.Close()
	}
	return out
}

// authEdgeRows returns the room's rows of auth_edges, the auth_events
// sorted.
func authEdgeRows(t *testing.T, db *storage.DB, roomID id.RoomID) map[id.EventID]string {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT event_id, auth_events FROM auth_edges WHERE room_id = $1", roomID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[id.EventID]string{}
	for rows.Next() {
		var eventID id.EventID
		var authEvents string
		if err := rows.Scan(&eventID, &authEvents); err != nil {
			t.Fatal(err)
		}
		var ids []id.EventID
		for f := range strings.FieldsSeq(authEvents) {
			ids = append(ids, id.EventID(f))
		}
		out[eventID] = sortedJoin(ids)
	}
	return out
}

func sortedJoin(ids []id.EventID) string {
	s := slices.Clone(ids)
	slices.Sort(s)
	return joinIDs(s)
}

// TestAuthEdgesBackends: on SQLite and PostgreSQL, the index holds the
// auth_events of each state event sent (none for messages), a row written
// twice stays one, and after a restart the room's auth graph starts with
// them.
func TestAuthEdgesBackends(t *testing.T) {
	backends(t, func(t *testing.T, env *testEnv) {
		ctx := context.Background()
		roomID := createFedRoom(t, env.e, id.RoomV11, alice)
		if _, err := env.e.Send(ctx, roomID, memberProto(bob, "join")); err != nil {
			t.Fatal(err)
		}
		if _, err := env.e.Send(ctx, roomID, textProto(bob, "hello")); err != nil {
			t.Fatal(err)
		}
		ev, err := env.e.Send(ctx, roomID, stateProto(alice, "m.room.topic", "", `{"topic":"t"}`))
		if err != nil {
			t.Fatal(err)
		}
		want := storedStateAuthEvents(t, env.db, roomID)
		if len(want) < 6 {
			t.Fatalf("%d state events stored", len(want))
		}
		if err := env.db.Write(ctx, func(tx *storage.Tx) error {
			return insertAuthEdges(ctx, tx, stateAuthEdges([]*Event{ev}))
		}); err != nil {
			t.Fatal(err)
		}
		if got := authEdgeRows(t, env.db, roomID); !maps.Equal(got, want) {
			t.Fatalf("auth_edges:\n%v\nwant the state events' auth_events:\n%v", got, want)
		}
		env.reopen()
		g, err := env.e.authGraph(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if g.Len() < len(want) {
			t.Fatalf("the graph starts with %d events, want the index's %d", g.Len(), len(want))
		}
	})
}

// TestLazyAuthEdgesBounded: a resolution that had to load more events than
// maxLazyAuthEdges adds only that many rows to the index in its write.
func TestLazyAuthEdgesBounded(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	roomID := id.RoomID("!lazy:test")
	events := stateres.EventMap{}
	prev := []id.EventID{}
	for i := range maxLazyAuthEdges + 500 {
		eventID := id.EventID(fmt.Sprintf("$e%d", i))
		events[eventID] = &pdu.PDU{AuthEvents: prev}
		prev = []id.EventID{eventID}
	}
	g := stateres.NewAuthGraph(maxAuthGraphEvents)
	if _, err := g.Index(events).AuthChain(ctx, prev); err != nil {
		t.Fatal(err)
	}
	env.e.saveLoadedAuthEdges(roomID, g)
	if err := env.db.Write(ctx, func(*storage.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if rows := authEdgeRows(t, env.db, roomID); len(rows) != maxLazyAuthEdges {
		t.Fatalf("%d rows saved, want %d", len(rows), maxLazyAuthEdges)
	}
}
