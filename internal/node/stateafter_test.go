package node_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// syncEvent is the part of a sync event the state_after tests look at.
type syncEvent struct {
	ID       id.EventID `json:"event_id"`
	Type     string     `json:"type"`
	StateKey *string    `json:"state_key"`
}

type syncEvents struct {
	Events []syncEvent `json:"events"`
}

// stateAfterRoom is a joined or left room's section, with each name its
// state may come under.
type stateAfterRoom struct {
	State              *syncEvents `json:"state"`
	StateAfter         *syncEvents `json:"state_after"`
	UnstableStateAfter *syncEvents `json:"org.matrix.msc4222.state_after"`
	Timeline           syncEvents  `json:"timeline"`
}

type stateAfterSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join  map[id.RoomID]stateAfterRoom `json:"join"`
		Leave map[id.RoomID]stateAfterRoom `json:"leave"`
	} `json:"rooms"`
}

// keys lists the (type, state_key) pairs of evs, sorted.
func (e *syncEvents) keys() []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, ev := range e.Events {
		if ev.StateKey != nil {
			out = append(out, ev.Type+"|"+*ev.StateKey)
		}
	}
	slices.Sort(out)
	return out
}

// TestSyncStateAfter mirrors Complement's msc4222 TestSync ("Initial sync
// with lazy-loading room members -> state_after includes all members from
// timeline") and goes further: with use_state_after (spec v1.16) or its
// MSC4222 unstable name, room sections carry the state at the end of the
// timeline under the name asked with, and no "state": on an initial sync
// all of it (lazy-loaded members: the timeline's senders), on incremental
// syncs the change since the last one, also when the timeline carries the
// same events or skips them (limited).
func TestSyncStateAfter(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	room := testnode.PublicRoom(t, alice, bob)
	testnode.Join(t, carol, room)

	for _, tc := range []struct{ param, field string }{
		{"use_state_after", "state_after"},
		{"org.matrix.msc4222.use_state_after", "org.matrix.msc4222.state_after"},
	} {
		t.Run(tc.param, func(t *testing.T) {
			var last string // next_batch of the latest sync
			sync := func(since, filter string) stateAfterRoom {
				t.Helper()
				q := url.Values{tc.param: {"true"}, "filter": {filter}}
				if since != "" {
					q.Set("since", since)
				}
				r := testnode.Call(t, alice, http.MethodGet, "/_matrix/client/v3/sync?"+q.Encode(), nil)
				resp := testnode.Decode[stateAfterSync](t, r.Want(t, http.StatusOK, "").Body)
				jr, ok := resp.Rooms.Join[room]
				if !ok {
					t.Fatalf("room missing from the sync: %s", r.Body)
				}
				if jr.State != nil {
					t.Fatalf("state sent with %s: %s", tc.param, r.Body)
				}
				after := jr.StateAfter
				if tc.field != "state_after" {
					if jr.StateAfter != nil {
						t.Fatalf("stable state_after sent for %s: %s", tc.param, r.Body)
					}
					after = jr.UnstableStateAfter
				}
				if after == nil || after.Events == nil {
					t.Fatalf("no %s.events: %s", tc.field, r.Body)
				}
				jr.StateAfter = after
				last = resp.NextBatch
				return jr
			}

			// Initial sync, lazy-loaded members, a timeline of bob's message
			// only: every state event but carol's membership.
			testnode.SendText(t, bob, room, "hi")
			lazy := `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`
			jr := sync("", lazy)
			want := []string{"m.room.create|", "m.room.history_visibility|", "m.room.join_rules|",
				"m.room.member|" + string(alice.UserID), "m.room.member|" + string(bob.UserID), "m.room.power_levels|"}
			if got := jr.StateAfter.keys(); !isSuperset(got, want) || slices.Contains(got, "m.room.member|"+string(carol.UserID)) {
				t.Fatalf("initial %s = %v, want %v and not carol", tc.field, got, want)
			}

			// The whole room in the timeline: its state events are in
			// state_after as well, the members of all its senders.
			all := `{"room":{"timeline":{"limit":100},"state":{"lazy_load_members":true}}}`
			want = append(want, "m.room.member|"+string(carol.UserID))
			if got := sync("", all).StateAfter.keys(); !isSuperset(got, want) {
				t.Fatalf("initial %s with the whole timeline = %v, want %v", tc.field, got, want)
			}

			// A state event inside the timeline is in state_after too.
			name := testnode.SendState(t, alice, room, event.StateRoomName, "", map[string]any{"name": tc.param})
			testnode.SendText(t, alice, room, "named")
			jr = sync(last, `{}`)
			if got := jr.StateAfter.keys(); !slices.Equal(got, []string{"m.room.name|"}) || jr.StateAfter.Events[0].ID != name {
				t.Fatalf("%s after a name change = %v, want the name event %s", tc.field, got, name)
			}
			if !slices.ContainsFunc(jr.Timeline.Events, func(e syncEvent) bool { return e.ID == name }) {
				t.Fatalf("name event missing from the timeline %v", jr.Timeline.Events)
			}

			// No state change: an empty state_after, still present.
			testnode.SendText(t, alice, room, "quiet")
			if jr = sync(last, `{}`); len(jr.StateAfter.Events) != 0 {
				t.Fatalf("%s without a state change = %v", tc.field, jr.StateAfter.keys())
			}

			// A gap: the topic is before the timeline's one event, a
			// membership change of a lazy-loaded member who did not speak
			// stays out.
			testnode.SendState(t, alice, room, event.StateTopic, "", map[string]any{"topic": tc.param})
			testnode.SendState(t, carol, room, event.StateMember, string(carol.UserID),
				map[string]any{"membership": "join", "displayname": "Carol " + tc.param})
			testnode.SendText(t, alice, room, "after the gap")
			if got := sync(last, lazy).StateAfter.keys(); !slices.Equal(got, []string{"m.room.topic|"}) {
				t.Fatalf("%s over a gap = %v, want the topic only", tc.field, got)
			}
		})
	}
}

// isSuperset reports whether all of want is in got.
func isSuperset(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// TestSyncStateAfterLeftRoom: a left room's section carries state_after
// too, the state as of the user's leave.
func TestSyncStateAfterLeftRoom(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.PublicRoom(t, alice, bob)
	first := testnode.Decode[stateAfterSync](t, testnode.Call(t, bob, http.MethodGet, "/_matrix/client/v3/sync?use_state_after=true", nil).Want(t, http.StatusOK, "").Body)
	testnode.Leave(t, bob, room)
	testnode.SendState(t, alice, room, event.StateTopic, "", map[string]any{"topic": "after bob left"})
	r := testnode.Call(t, bob, http.MethodGet, "/_matrix/client/v3/sync?use_state_after=true&since="+first.NextBatch, nil)
	lr, ok := testnode.Decode[stateAfterSync](t, r.Want(t, http.StatusOK, "").Body).Rooms.Leave[room]
	if !ok || lr.State != nil || lr.StateAfter == nil {
		t.Fatalf("want the left room with state_after and no state: %s", r.Body)
	}
	if got := lr.StateAfter.keys(); !slices.Equal(got, []string{"m.room.member|" + string(bob.UserID)}) {
		t.Fatalf("left room state_after = %v, want bob's leave only", got)
	}
}

// TestSyncStateAfterDefault: without use_state_after the sections carry
// "state" alone, and a value other than true or false is refused.
func TestSyncStateAfterDefault(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	r := testnode.Call(t, alice, http.MethodGet, "/_matrix/client/v3/sync?use_state_after=false", nil)
	jr := testnode.Decode[stateAfterSync](t, r.Want(t, http.StatusOK, "").Body).Rooms.Join[room]
	if jr.State == nil || jr.StateAfter != nil || jr.UnstableStateAfter != nil {
		t.Fatalf("want state and no state_after: %s", r.Body)
	}
	for _, p := range []string{"use_state_after", "org.matrix.msc4222.use_state_after"} {
		testnode.Call(t, alice, http.MethodGet, "/_matrix/client/v3/sync?"+p+"=yes", nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}
}
