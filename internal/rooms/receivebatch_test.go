package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
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

// TestReceivePDUsFailedWrite: when the one write of a run of PDUs fails,
// the run's PDUs go back through ReceivePDU one by one, so only the PDU
// whose write fails is refused: the origin had its transaction answered
// and will not send the others again.
func TestReceivePDUsFailedWrite(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	a := n.e("a")
	a.OnPersist = append(a.OnPersist, func(ctx context.Context, tx *storage.Tx, ev *Event, r *RoomInfo) error {
		if gjson.GetBytes(ev.PDU.Content, "body").Str == "poison" {
			return fmt.Errorf("injected failure for %s", ev.ID)
		}
		return nil
	})
	m1 := n.send("b", roomID, textProto(bobB, "m1"))
	m2 := n.send("b", roomID, textProto(bobB, "m2"))
	poison := n.send("b", roomID, textProto(bobB, "poison"))
	// m3 follows m2 beside poison: an event that follows the one whose
	// write fails can never be stored.
	m3 := n.e("b").signedRaw(t, roomID, textProto(bobB, "m3"), poison)
	m3ID := EventIDOf(id.RoomV11, m3)

	out := a.ReceivePDUs(ctx, "b", []json.RawMessage{m1.JSON, m2.JSON, poison.JSON, m3})
	for i, want := range []id.EventID{m1.ID, m2.ID, poison.ID, m3ID} {
		if out[i].ID != want {
			t.Errorf("PDU %d answered as %s, want %s", i, out[i].ID, want)
		}
		if want == poison.ID {
			if out[i].Err == nil {
				t.Errorf("the PDU whose write fails was accepted")
			}
			continue
		}
		if out[i].Err != nil {
			t.Errorf("PDU %d (%s): %v", i, want, out[i].Err)
		}
	}
	for _, want := range []id.EventID{m1.ID, m2.ID, m3ID} {
		if _, err := a.Event(ctx, want); err != nil {
			t.Errorf("%s is not stored: %v", want, err)
		}
	}
	if got := timelineBodies(t, a, roomID); !slices.Contains(got, "m1") || !slices.Contains(got, "m2") || !slices.Contains(got, "m3") {
		t.Errorf("timeline %q lacks a message", got)
	}
}

// TestReceivePDUsRejectsAgainstHead: in a run, an event that its own auth
// events allow but the state before it (the head, which the run has
// moved) does not is rejected, not soft-failed, and the run goes on past
// it. Bob raises events_default to 50; carol's next message names the old
// power levels as its auth event and the new ones as its prev event.
func TestReceivePDUsRejectsAgainstHead(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	carolB := id.UserID("@carol:b")
	carolJoin := n.send("b", roomID, memberProto(carolB, "join"))
	n.deliver("b", carolJoin, "a")

	draft := n.send("b", roomID, textProto(carolB, "before the change"))
	raised := n.send("b", roomID, stateProto(bobB, "m.room.power_levels", "", `{"users":{"@alice:a":100,"@bob:b":50},"users_default":0,"events_default":50,"state_default":50,"ban":50,"kick":50,"redact":50,"invite":0}`))
	late := n.e("b").followingRaw(t, roomID, draft, textProto(carolB, "after the change"), raised)
	lateID := EventIDOf(id.RoomV11, late)
	after := n.send("b", roomID, textProto(bobB, "bob after"))
	if !slices.Equal(after.PDU.PrevEvents, []id.EventID{raised.ID}) {
		t.Fatalf("bob's message follows %v, want the power levels", after.PDU.PrevEvents)
	}

	out := n.e("a").ReceivePDUs(ctx, "b", []json.RawMessage{draft.JSON, raised.JSON, late, after.JSON})
	for i, want := range []id.EventID{draft.ID, raised.ID, lateID, after.ID} {
		if out[i].ID != want {
			t.Errorf("PDU %d answered as %s, want %s", i, out[i].ID, want)
		}
		if want == lateID {
			if errCode(out[i].Err) != "M_FORBIDDEN" {
				t.Errorf("carol's message after the change: %v, want M_FORBIDDEN", out[i].Err)
			}
			continue
		}
		if out[i].Err != nil {
			t.Errorf("PDU %d (%s): %v", i, want, out[i].Err)
		}
	}
	stored, err := n.e("a").anyEvents(ctx, []id.EventID{lateID})
	if err != nil {
		t.Fatal(err)
	}
	if ev := stored[lateID]; ev == nil {
		t.Errorf("carol's message after the change is not stored")
	} else if !ev.Rejected || ev.SoftFailed {
		t.Errorf("carol's message after the change is stored with rejected %v, soft-failed %v; want rejected", ev.Rejected, ev.SoftFailed)
	}
	if ext := n.e("a").view(t, roomID).extremities; !slices.Equal(ext, []id.EventID{after.ID}) {
		t.Errorf("extremities %v, want bob's message", ext)
	}
}

// followingRaw returns like's PDU, signed by e, with p's type, sender and
// content and prev as its one prev event: it keeps like's auth events.
func (e *Engine) followingRaw(t *testing.T, roomID id.RoomID, like *Event, p Proto, prev *Event) []byte {
	t.Helper()
	shaped := *like
	shaped.PDU = like.PDU.Clone()
	shaped.PDU.PrevEvents = []id.EventID{prev.ID}
	shaped.PDU.Depth = prev.PDU.Depth + 1
	return e.signedRaw(t, roomID, p, &shaped)
}
