package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// TestAppendCountersigned proposes an invite of a user of server b on a,
// has b countersign it (ReceiveInvite) and appends what b returned: on
// the unchanged head, and after the room moved on (the DAG path). The
// proposal changes nothing; the stored invite carries both signatures and
// reaches the OnEvent hooks; what is not the proposal countersigned is
// refused with ErrBadCountersignature and leaves no trace.
func TestAppendCountersigned(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// between runs after the proposal, before the append.
		between func(n *fedNet, roomID id.RoomID)
		// returned turns what b returned into what reaches a.
		returned func(t *testing.T, proposed *Event, signed json.RawMessage) json.RawMessage
		wantErr  error
		// wantForbidden is a refusal by the room's current state.
		wantForbidden bool
	}{
		{name: "on the head"},
		{name: "room moved on", between: func(n *fedNet, roomID id.RoomID) {
			n.send("a", roomID, Proto{Type: "m.room.message", Sender: aliceA, Content: json.RawMessage(`{"msgtype":"m.text","body":"meanwhile"}`)})
			n.send("a", roomID, stateProto(aliceA, "m.room.topic", "", `{"topic":"moved on"}`))
		}},
		{name: "no longer allowed", wantForbidden: true, between: func(n *fedNet, roomID id.RoomID) {
			n.send("a", roomID, stateProto(aliceA, "m.room.member", string(bobB), `{"membership":"ban"}`))
		}},
		{name: "no countersignature", wantErr: ErrBadCountersignature,
			returned: func(t *testing.T, proposed *Event, _ json.RawMessage) json.RawMessage { return proposed.JSON }},
		{name: "another event", wantErr: ErrBadCountersignature,
			returned: func(t *testing.T, _ *Event, signed json.RawMessage) json.RawMessage {
				return withField(t, signed, func(m map[string]any) { m["origin_server_ts"] = 1 })
			}},
		{name: "bad countersignature", wantErr: ErrBadCountersignature,
			returned: func(t *testing.T, _ *Event, signed json.RawMessage) json.RawMessage {
				return withField(t, signed, func(m map[string]any) {
					m["signatures"].(map[string]any)["b"] = map[string]any{"ed25519:b": "AAAA"}
				})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFedNet(t, "a", "b")
			a := n.e("a")
			roomID := createFedRoom(t, a, id.RoomV11, aliceA)
			var hooked []id.EventID
			a.OnEvent = append(a.OnEvent, func(ev *Event, _ *RoomInfo) { hooked = append(hooked, ev.ID) })
			before := a.LastPos(ctx, roomID)

			proposed, err := a.Propose(ctx, roomID, stateProto(aliceA, "m.room.member", string(bobB), `{"membership":"invite"}`))
			if err != nil {
				t.Fatalf("propose: %v", err)
			}
			if a.LastPos(ctx, roomID) != before || a.Membership(bobB, roomID) != "" {
				t.Fatalf("the proposal changed the room")
			}
			signed, err := n.e("b").ReceiveInvite(ctx, "a", id.RoomV11, proposed.JSON, nil)
			if err != nil {
				t.Fatalf("b countersigns: %v", err)
			}
			if tt.between != nil {
				tt.between(n, roomID)
			}
			if tt.returned != nil {
				signed = tt.returned(t, proposed, signed)
			}

			stored, err := a.AppendCountersigned(ctx, proposed, "b", signed)
			if tt.wantErr != nil || tt.wantForbidden {
				if me, ok := errors.AsType[*mxhttp.Error](err); tt.wantForbidden && (!ok || me.Status != http.StatusForbidden) {
					t.Fatalf("append: %v, want 403", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("append: %v, want %v", err, tt.wantErr)
				}
				if cur, _ := a.StateEvent(ctx, roomID, "m.room.member", string(bobB)); slices.Contains(hooked, proposed.ID) || (cur != nil && cur.ID == proposed.ID) {
					t.Fatalf("a refused invite reached the room (hooks: %v)", hooked)
				}
				return
			}
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if stored.ID != proposed.ID {
				t.Fatalf("stored %s, proposed %s", stored.ID, proposed.ID)
			}
			cur, err := a.StateEvent(ctx, roomID, "m.room.member", string(bobB))
			if err != nil || cur == nil || cur.ID != proposed.ID || cur.Membership() != "invite" {
				t.Fatalf("bob's member event on a: %v, %v", cur, err)
			}
			for _, server := range []string{"a", "b"} {
				if len(cur.PDU.Signatures[server]) == 0 {
					t.Errorf("the stored invite lacks %s's signature: %s", server, cur.JSON)
				}
			}
			if !slices.Contains(hooked, proposed.ID) {
				t.Errorf("OnEvent never saw the invite (saw %v)", hooked)
			}
			if tt.between != nil {
				// The invite joined the DAG beside what came meanwhile:
				// the next event merges both branches.
				mustStateEvent(t, a, roomID, "m.room.topic")
				next := n.send("a", roomID, Proto{Type: "m.room.message", Sender: aliceA, Content: json.RawMessage(`{"msgtype":"m.text","body":"after"}`)})
				if len(next.PDU.PrevEvents) != 2 || !slices.Contains(next.PDU.PrevEvents, proposed.ID) {
					t.Errorf("the next event's prev_events = %v, want the topic and the invite", next.PDU.PrevEvents)
				}
			}
		})
	}
}

// withField returns raw, a JSON object, as change leaves it.
func withField(t *testing.T, raw json.RawMessage, change func(m map[string]any)) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
