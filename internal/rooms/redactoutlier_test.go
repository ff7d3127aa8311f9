package rooms

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

// TestRedactionOfOutlierState: b joins a's room over federation, so it
// holds a's earlier topic as an outlier (the send_join answer's state);
// a redacts the topic. b stores the topic redacted, as /event, /state and
// federation /event read it, remembers no pending redaction, and reads
// the same after a restart. b runs on SQLite and PostgreSQL.
func TestRedactionOfOutlierState(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRedactionOfOutlierState(t, newFedNet(t, "a", "b")) })
	t.Run("postgres", func(t *testing.T) {
		testRedactionOfOutlierState(t, newFedNetAt(t, map[string]string{"b": pgtest.Start(t)}, "a", "b"))
	})
}

func testRedactionOfOutlierState(t *testing.T, n *fedNet) {
	ctx := context.Background()
	roomID := createFedRoom(t, n.e("a"), "11", aliceA)
	topic := n.send("a", roomID, stateProto(aliceA, "m.room.topic", "", `{"topic":"secret"}`))
	n.join("a", "b", roomID, bobB)
	if ev, err := n.e("b").Event(ctx, topic.ID); err != nil || !ev.Outlier {
		t.Fatalf("b holds the topic %+v (%v); the test needs it an outlier", ev, err)
	}
	red := n.send("a", roomID, Proto{Type: "m.room.redaction", Sender: aliceA, Redacts: topic.ID, Content: json.RawMessage(`{}`)})
	n.deliver("a", red, "b")
	check := func(t *testing.T) {
		e := n.e("b")
		ev, err := e.Event(ctx, topic.ID)
		if err != nil {
			t.Fatal(err)
		}
		if gjson.GetBytes(ev.PDU.Content, "topic").Exists() || gjson.GetBytes(ev.JSON, "unsigned.redacted_because.event_id").Str != string(red.ID) {
			t.Errorf("b serves the topic unredacted: %s", ev.JSON)
		}
		cur := mustStateEvent(t, e, roomID, "m.room.topic")
		if gjson.GetBytes(cur.PDU.Content, "topic").Exists() {
			t.Errorf("b's current state holds the topic unredacted: %s", cur.JSON)
		}
		var pending int
		if err := e.db.QueryRow(ctx, "SELECT COUNT(*) FROM pending_redactions").Scan(&pending); err != nil || pending != 0 {
			t.Errorf("%d pending redactions (%v), want none", pending, err)
		}
	}
	t.Run("stored", check)
	n.servers["b"].reopen()
	t.Run("after a restart", check)
}

// TestRedactionBeforeOutlierTarget: while c's state is partial, alice
// redacts derek's join, which the send_join answer left out (members
// omitted); c keeps the redaction waiting. The resync brings derek's join
// as an outlier: c stores it redacted, as the current state holds it, and
// forgets the waiting redaction. c runs on SQLite and PostgreSQL.
func TestRedactionBeforeOutlierTarget(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRedactionBeforeOutlierTarget(t, newFedNet(t, "a", "c")) })
	t.Run("postgres", func(t *testing.T) {
		testRedactionBeforeOutlierTarget(t, newFedNetAt(t, map[string]string{"c": pgtest.Start(t)}, "a", "c"))
	})
}

func testRedactionBeforeOutlierTarget(t *testing.T, n *fedNet) {
	ctx := context.Background()
	roomID := createFedRoom(t, n.e("a"), "11", aliceA, stateProto(aliceA, "m.room.name", "", `{"name":"named"}`))
	derekJoin := n.send("a", roomID, memberProto(derekA, "join"))
	n.send("a", roomID, textProto(aliceA, "not derek's join: the prev_event of carol's"))
	n.joinPartial("a", "c", roomID, carolC)
	if ev, err := n.e("c").Event(ctx, derekJoin.ID); err == nil {
		t.Fatalf("c holds derek's join after the partial join: %+v", ev)
	}
	red := n.send("a", roomID, Proto{Type: "m.room.redaction", Sender: aliceA, Redacts: derekJoin.ID, Content: json.RawMessage(`{}`)})
	n.deliver("a", red, "c")
	if _, err := n.e("c").Event(ctx, derekJoin.ID); err == nil {
		t.Fatal("c holds derek's join before the resync; the test needs it missing")
	}
	n.completeResync("c", roomID)
	ev, err := n.e("c").Event(ctx, derekJoin.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(ev.JSON, "unsigned.redacted_because.event_id").Str != string(red.ID) || ev.RedactedBy != red.ID {
		t.Errorf("c stores derek's join unredacted after the resync: %s", ev.JSON)
	}
	if cur, err := n.e("c").StateEvent(ctx, roomID, "m.room.member", string(derekA)); err != nil || cur == nil || cur.RedactedBy != red.ID {
		t.Errorf("derek's join in c's current state after the resync: %+v (%v), want redacted", cur, err)
	}
	var pending int
	if err := n.e("c").db.QueryRow(ctx, "SELECT COUNT(*) FROM pending_redactions").Scan(&pending); err != nil || pending != 0 {
		t.Errorf("%d pending redactions (%v), want none", pending, err)
	}
}
