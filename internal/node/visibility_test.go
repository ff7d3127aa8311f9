package node_test

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func bodies(evs []*event.Event) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evs {
		if b, ok := ev.Content.Raw["body"].(string); ok {
			out[b] = true
		}
	}
	return out
}

// roomWithVisibility creates a private room of alice's whose history
// visibility is hv, with the users invited.
func roomWithVisibility(t *testing.T, alice *mautrix.Client, hv string, invite ...id.UserID) id.RoomID {
	t.Helper()
	return testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: invite, InitialState: []*event.Event{{
		Type: event.StateHistoryVisibility, StateKey: ptr(""),
		Content: event.Content{Raw: map[string]any{"history_visibility": hv}},
	}}})
}

// TestHistoryVisibility checks each setting against what a newcomer sees in
// /messages and in their first sync.
func TestHistoryVisibility(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	for _, tc := range []struct {
		hv                        string
		seeBefore, seeAfterInvite bool
	}{
		{"shared", true, true},
		{"invited", false, true},
		{"joined", false, false},
		{"world_readable", true, true},
	} {
		t.Run(tc.hv, func(t *testing.T) {
			bob := n.Register("bob")
			room := roomWithVisibility(t, alice, tc.hv)
			testnode.SendText(t, alice, room, "before")
			testnode.Invite(t, alice, room, bob.UserID)
			testnode.SendText(t, alice, room, "after invite")
			testnode.Join(t, bob, room)
			testnode.SendText(t, alice, room, "after join")
			msgs, err := bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
			if err != nil {
				t.Fatal(err)
			}
			check := func(where string, got map[string]bool) {
				t.Helper()
				if got["before"] != tc.seeBefore || got["after invite"] != tc.seeAfterInvite || !got["after join"] {
					t.Errorf("%s: saw %v; want before=%v after-invite=%v after-join=true", where, got, tc.seeBefore, tc.seeAfterInvite)
				}
			}
			check("/messages", bodies(msgs.Chunk))
			s, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{FilterID: `{"room":{"timeline":{"limit":50}}}`})
			if err != nil {
				t.Fatal(err)
			}
			check("initial sync", bodies(s.Rooms.Join[room].Timeline.Events))
		})
	}
}

// The moments of a visibility room's history, in order; a message is sent
// at each, its body the search word and the moment's name.
const (
	beforeInvite = "before"  // carol is joined, bob not yet invited
	bobInvited   = "invited" // bob is invited
	bobJoined    = "joined"  // bob has joined
	carolLeft    = "left"    // carol has left
)

var moments = []string{beforeInvite, bobInvited, bobJoined, carolLeft}

// TestVisibilityOverHTTP checks GET /event, GET /context and POST /search
// against each history visibility setting, for three users: bob, invited
// and joined after the room's first message; carol, joined from the start,
// who leaves before its last; and dave, who never joins. Every user also
// shares a control room with alice, so each search has a result that
// proves it works; every event a user may see is asked for too, so each
// refusal is set against an answer to the same request that works.
func TestVisibilityOverHTTP(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		for _, tc := range []struct {
			hv               string
			bob, carol, dave []string // the moments each may see
		}{
			{"shared", moments, moments[:3], nil},
			{"invited", moments[1:], moments[:3], nil},
			{"joined", moments[2:], moments[:3], nil},
			{"world_readable", moments, moments, moments},
		} {
			t.Run(tc.hv, func(t *testing.T) {
				word := "zebra" + strings.ReplaceAll(tc.hv, "_", "")
				bob, carol, dave := n.Register("bob"), n.Register("carol"), n.Register("dave")
				control := testnode.PublicRoom(t, alice, bob, carol, dave)
				testnode.SendText(t, alice, control, word+" control")

				room := roomWithVisibility(t, alice, tc.hv, carol.UserID)
				testnode.Join(t, carol, room)
				sent := map[string]id.EventID{}
				sent[beforeInvite] = testnode.SendText(t, alice, room, word+" "+beforeInvite)
				testnode.Invite(t, alice, room, bob.UserID)
				sent[bobInvited] = testnode.SendText(t, alice, room, word+" "+bobInvited)
				testnode.Join(t, bob, room)
				sent[bobJoined] = testnode.SendText(t, alice, room, word+" "+bobJoined)
				testnode.Leave(t, carol, room)
				sent[carolLeft] = testnode.SendText(t, alice, room, word+" "+carolLeft)

				v := visibilityCheck{n: n, room: room, word: word, sent: sent}
				v.search(t, alice, moments) // the positive control: everything is indexed
				for _, u := range []struct {
					name   string
					c      *mautrix.Client
					sees   []string
					joined bool // search covers the rooms a user is joined to
				}{
					{"bob", bob, tc.bob, true},
					{"carol", carol, tc.carol, false},
					{"dave", dave, tc.dave, false},
				} {
					t.Run(u.name, func(t *testing.T) {
						v.events(t, u.c, u.sees)
						v.context(t, u.c, u.sees)
						var searchable []string
						if u.joined {
							searchable = u.sees
						}
						v.search(t, u.c, searchable)
					})
				}
			})
		}
	})
}

// visibilityCheck asks for a visibility room's messages over HTTP.
type visibilityCheck struct {
	n    *testnode.Node
	room id.RoomID
	word string
	sent map[string]id.EventID // by moment
}

// moment returns the moment of an event's body, or "" for an event that
// is not one of the test's messages.
func (v *visibilityCheck) moment(ev map[string]any) string {
	content, _ := ev["content"].(map[string]any)
	body, _ := content["body"].(string)
	m, ok := strings.CutPrefix(body, v.word+" ")
	if !ok {
		return ""
	}
	return m
}

// moments returns the sorted moments of the test's messages among evs.
func (v *visibilityCheck) moments(evs ...any) []string {
	set := map[string]bool{}
	for _, e := range evs {
		ev, _ := e.(map[string]any)
		if m := v.moment(ev); m != "" {
			set[m] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (v *visibilityCheck) path(kind string, ev id.EventID) string {
	return testnode.V3 + "/rooms/" + url.PathEscape(string(v.room)) + "/" + kind + "/" + url.PathEscape(string(ev))
}

// events asks GET /event for each message: those the user may see come
// back, the others are not found, in a room the user may not read at all
// too (the spec's 404 for an event the user may not read; Complement's
// TestFetchEventNonWorldReadable).
func (v *visibilityCheck) events(t *testing.T, c *mautrix.Client, sees []string) {
	t.Helper()
	for _, m := range moments {
		r := testnode.Call(t, c, "GET", v.path("event", v.sent[m]), nil)
		switch {
		case slices.Contains(sees, m):
			if got := r.OK(t); got["event_id"] != string(v.sent[m]) || v.moment(got) != m {
				t.Errorf("/event %s: got %v", m, got)
			}
		default:
			r.Want(t, 404, "M_NOT_FOUND")
		}
	}
}

// context asks GET /context around each message: one the user may not see
// is refused as /event refuses it; around one they may see, the events
// before and after hold exactly the messages they may see.
func (v *visibilityCheck) context(t *testing.T, c *mautrix.Client, sees []string) {
	t.Helper()
	for _, m := range moments {
		r := testnode.Call(t, c, "GET", v.path("context", v.sent[m])+"?limit=100", nil)
		if !slices.Contains(sees, m) {
			if r.Status == 200 {
				t.Errorf("/context %s: got %s, want a refusal", m, r.Body)
			}
			continue
		}
		got := r.OK(t)
		if v.moment(got["event"].(map[string]any)) != m {
			t.Errorf("/context %s: event %v", m, got["event"])
		}
		before, _ := got["events_before"].([]any)
		after, _ := got["events_after"].([]any)
		if all := v.moments(append(append(before, got["event"]), after...)...); !slices.Equal(all, slices.Sorted(slices.Values(sees))) {
			t.Errorf("/context %s: saw %v, want %v", m, all, sees)
		}
	}
}

// search runs POST /search for the room's word with event context: the
// results and their context hold exactly the messages in searchable, and
// the control room's message.
func (v *visibilityCheck) search(t *testing.T, c *mautrix.Client, searchable []string) {
	t.Helper()
	res := testnode.Call(t, c, "POST", testnode.V3+"/search", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
		"search_term":   v.word,
		"filter":        map[string]any{"limit": 50},
		"event_context": map[string]any{"before_limit": 20, "after_limit": 20},
	}}}).OK(t)
	events := res["search_categories"].(map[string]any)["room_events"].(map[string]any)
	results, _ := events["results"].([]any)
	var found, context []any
	for _, r := range results {
		r := r.(map[string]any)
		found = append(found, r["result"])
		ctx, _ := r["context"].(map[string]any)
		before, _ := ctx["events_before"].([]any)
		after, _ := ctx["events_after"].([]any)
		context = append(append(context, before...), after...)
	}
	want := slices.Sorted(slices.Values(append([]string{"control"}, searchable...)))
	if got := v.moments(found...); !slices.Equal(got, want) {
		t.Errorf("/search found %v, want %v", got, want)
	}
	for _, m := range v.moments(context...) {
		if m != "control" && !slices.Contains(searchable, m) {
			t.Errorf("/search: the context of a result shows %q", m)
		}
	}
}

func ptr[T any](v T) *T { return &v }
