package clientapi_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestRelTypesFilters: MSC3874. The room event filter's
// org.matrix.msc3874.rel_types and not_rel_types select events by the
// rel_type of their m.relates_to in /messages, /context and the /sync
// timeline: Element loads the main timeline without thread replies.
func TestRelTypesFilters(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		room := created.RoomID
		root := send(t, alice, room, event.EventMessage, text("root"))
		reply := send(t, alice, room, event.EventMessage, related("in thread", "m.thread", root))
		reaction := send(t, alice, room, event.EventReaction, map[string]any{
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root, "key": "👍"}})
		after := send(t, alice, room, event.EventMessage, text("after"))
		ours := []id.EventID{root, reply, reaction, after}

		const (
			notThread  = `{"org.matrix.msc3874.not_rel_types":["m.thread"]}`
			onlyThread = `{"org.matrix.msc3874.rel_types":["m.thread"]}`
			both       = `{"org.matrix.msc3874.rel_types":["m.thread","m.annotation"],"org.matrix.msc3874.not_rel_types":["m.thread"]}`
		)
		for _, tc := range []struct {
			filter string
			want   []id.EventID
		}{
			{notThread, []id.EventID{root, reaction, after}},
			{onlyThread, []id.EventID{reply}},
			{both, []id.EventID{reaction}},
		} {
			// /messages, oldest first.
			res := testnode.Call(t, alice, "GET", testnode.V3+"/rooms/"+url.PathEscape(string(room))+
				"/messages?dir=f&limit=50&filter="+url.QueryEscape(tc.filter), nil)
			res.OK(t)
			var page struct {
				Chunk []struct {
					EventID id.EventID `json:"event_id"`
				} `json:"chunk"`
			}
			if err := json.Unmarshal(res.Body, &page); err != nil {
				t.Fatal(err)
			}
			var got []id.EventID
			for _, ev := range page.Chunk {
				if slices.Contains(ours, ev.EventID) {
					got = append(got, ev.EventID)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("/messages with %s: got %v, want %v", tc.filter, got, tc.want)
			}

			// The /sync timeline.
			s, err := alice.SyncRequest(ctx, 0, "", `{"room":{"timeline":`+tc.filter[:len(tc.filter)-1]+`,"limit":50}}}`, false, "")
			if err != nil {
				t.Fatalf("sync with %s: %v", tc.filter, err)
			}
			got = nil
			if jr := s.Rooms.Join[room]; jr != nil {
				for _, ev := range jr.Timeline.Events {
					if slices.Contains(ours, ev.ID) {
						got = append(got, ev.ID)
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("/sync timeline with %s: got %v, want %v", tc.filter, got, tc.want)
			}
		}

		// /context of the root: the thread reply is left out after it.
		res := testnode.Call(t, alice, "GET", testnode.V3+"/rooms/"+url.PathEscape(string(room))+
			"/context/"+url.PathEscape(string(root))+"?limit=10&filter="+url.QueryEscape(notThread), nil)
		res.OK(t)
		var c struct {
			EventsAfter []struct {
				EventID id.EventID `json:"event_id"`
			} `json:"events_after"`
		}
		if err := json.Unmarshal(res.Body, &c); err != nil {
			t.Fatal(err)
		}
		var gotAfter []id.EventID
		for _, ev := range c.EventsAfter {
			gotAfter = append(gotAfter, ev.EventID)
		}
		if want := []id.EventID{reaction, after}; !slices.Equal(gotAfter, want) {
			t.Errorf("/context events_after with %s: got %v, want %v", notThread, gotAfter, want)
		}
	})
}
