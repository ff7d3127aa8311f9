package rooms

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestAggregateSeesNewRelations checks that an event asked about with no
// relations yet, which the engine then remembers as such, gets its
// aggregations as soon as an edit and a thread reply of it are stored.
func TestAggregateSeesNewRelations(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	msg, err := e.Send(ctx, roomID, textProto(alice, "first"))
	if err != nil {
		t.Fatal(err)
	}
	aggregate := func() Aggregations {
		t.Helper()
		agg, err := e.Aggregate(ctx, []*Event{msg}, ClientOptions{User: bob}, e.LastPos(ctx, roomID))
		if err != nil {
			t.Fatal(err)
		}
		return agg
	}
	for range 2 {
		if agg := aggregate(); len(agg) != 0 {
			t.Fatalf("aggregations before any relation: %v", agg)
		}
	}
	edit := Proto{Type: "m.room.message", Sender: alice, Content: json.RawMessage(`{"msgtype":"m.text","body":"* second",` +
		`"m.new_content":{"msgtype":"m.text","body":"second"},"m.relates_to":{"rel_type":"m.replace","event_id":"` + string(msg.ID) + `"}}`)}
	if _, err := e.Send(ctx, roomID, edit); err != nil {
		t.Fatal(err)
	}
	if agg := aggregate(); agg[msg.ID][RelReplace] == nil {
		t.Fatalf("aggregations after an edit: %v, want the edit", agg)
	}
	reply := Proto{Type: "m.room.message", Sender: bob, Content: json.RawMessage(`{"msgtype":"m.text","body":"reply",` +
		`"m.relates_to":{"rel_type":"m.thread","event_id":"` + string(msg.ID) + `"}}`)}
	if _, err := e.Send(ctx, roomID, reply); err != nil {
		t.Fatal(err)
	}
	if agg := aggregate(); agg[msg.ID][RelThread] == nil {
		t.Fatalf("aggregations after a thread reply: %v, want the thread", agg)
	}
}
