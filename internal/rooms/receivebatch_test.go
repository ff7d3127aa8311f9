package rooms

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// TestReceivePDUs takes a transaction's PDUs of one room together: an
// event received before (answered as known), runs of messages and state
// events (a member event whose successors name it as an auth event), a
// redaction (which takes ReceivePDU's path between two runs), an event
// the auth rules reject among them (which changes nothing for the next)
// and a PDU sent twice. Each gets ReceivePDU's outcome, and both servers
// end with the same state and timeline.
func TestReceivePDUs(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	early := n.send("b", roomID, textProto(bobB, "delivered before"))
	n.deliver("b", early, "a")

	one := n.send("b", roomID, textProto(bobB, "one"))
	rename := n.send("b", roomID, stateProto(bobB, "m.room.member", string(bobB), `{"membership":"join","displayname":"Bob"}`))
	two := n.send("b", roomID, textProto(bobB, "two"))
	topic := n.send("b", roomID, stateProto(bobB, "m.room.topic", "", `{"topic":"batch"}`))
	redaction := n.send("b", roomID, Proto{Type: "m.room.redaction", Sender: bobB, Redacts: two.ID, Content: json.RawMessage(`{}`)})
	three := n.send("b", roomID, textProto(bobB, "three"))
	four := n.send("b", roomID, textProto(bobB, "four"))
	notJoined := n.e("b").signedRaw(t, roomID, textProto("@carol:b", "not joined"), four)
	if !slices.Contains(two.PDU.AuthEvents, rename.ID) {
		t.Fatalf("the message after the rename does not name it as an auth event")
	}

	raws := []json.RawMessage{early.JSON, one.JSON, rename.JSON, two.JSON, topic.JSON, redaction.JSON, three.JSON, notJoined, four.JSON, three.JSON}
	out := n.e("a").ReceivePDUs(ctx, "b", raws)
	wantIDs := []id.EventID{early.ID, one.ID, rename.ID, two.ID, topic.ID, redaction.ID, three.ID, EventIDOf(id.RoomV11, notJoined), four.ID, three.ID}
	for i, o := range out {
		if o.ID != wantIDs[i] {
			t.Errorf("PDU %d answered as %s, want %s", i, o.ID, wantIDs[i])
		}
		if i == 7 {
			if errCode(o.Err) != "M_FORBIDDEN" {
				t.Errorf("the event of a user not in the room: %v, want M_FORBIDDEN", o.Err)
			}
			continue
		}
		if o.Err != nil {
			t.Errorf("PDU %d (%s): %v", i, o.ID, o.Err)
		}
	}
	n.assertSameState(roomID, "a", "b")
	if got, want := timelineBodies(t, n.e("a"), roomID), timelineBodies(t, n.e("b"), roomID); !slices.Equal(got, want) {
		t.Errorf("timeline of a %q, of b %q", got, want)
	}
	stored, err := n.e("a").Event(ctx, two.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(stored.PDU.Content, "body").Exists() || stored.RedactedBy != redaction.ID {
		t.Errorf("the redaction was not applied: %s", stored.JSON)
	}
	rejected, err := n.e("a").anyEvents(ctx, []id.EventID{wantIDs[7]})
	if err != nil || rejected[wantIDs[7]] == nil || !rejected[wantIDs[7]].Rejected {
		t.Errorf("the event of a user not in the room is not stored as rejected (%v)", err)
	}
	if ext := n.e("a").view(t, roomID).extremities; !slices.Equal(ext, []id.EventID{four.ID}) {
		t.Errorf("extremities %v, want the last message", ext)
	}
	if name := n.e("a").view(t, roomID).get("m.room.member", string(bobB)); name == nil || name.ID != rename.ID {
		t.Errorf("bob's member event is not the rename")
	}
}

// TestParseRemoteSigningForm: parseRemote makes the signing form once for
// the event ID and the signature check; the ID is the library's in both
// event ID formats, and a signature that does not cover the event (another
// event's) is refused.
func TestParseRemoteSigningForm(t *testing.T) {
	ctx := context.Background()
	for _, v := range []id.RoomVersion{id.RoomV3, id.RoomV11} {
		t.Run("v"+string(v), func(t *testing.T) {
			n := newFedNet(t, "a", "b")
			roomID := createFedRoom(t, n.e("a"), v, aliceA)
			n.join("a", "b", roomID, bobB)
			msg := n.send("b", roomID, textProto(bobB, "signed"))
			other := n.send("b", roomID, textProto(bobB, "other"))
			ev, err := n.e("a").parseRemote(ctx, v, msg.JSON)
			if err != nil {
				t.Fatal(err)
			}
			libID, err := msg.PDU.GetEventID(v)
			if err != nil || ev.ID != libID || ev.ID != msg.ID {
				t.Errorf("parsed ID %s, library's %s (%v), sender's %s", ev.ID, libID, err, msg.ID)
			}
			var m, o map[string]json.RawMessage
			if err := json.Unmarshal(msg.JSON, &m); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(other.JSON, &o); err != nil {
				t.Fatal(err)
			}
			m["signatures"] = o["signatures"]
			forged, _ := json.Marshal(m)
			if _, err := n.e("a").parseRemote(ctx, v, forged); errCode(err) != "M_FORBIDDEN" {
				t.Errorf("an event with another event's signature: %v, want M_FORBIDDEN", err)
			}
		})
	}
}
