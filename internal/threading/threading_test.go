package threading_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

const path = "/_matrix/client/unstable/event_relationships"

// send posts a message that names parent in m.relationship ("" for none).
func send(t *testing.T, c *mautrix.Client, room id.RoomID, body string, parent id.EventID) id.EventID {
	t.Helper()
	content := map[string]any{"msgtype": "m.text", "body": body}
	if parent != "" {
		content["m.relationship"] = map[string]any{"rel_type": "m.reference", "event_id": parent}
	}
	res, err := c.SendMessageEvent(t.Context(), room, event.EventMessage, content)
	if err != nil {
		t.Fatal(err)
	}
	return res.EventID
}

// relationships asks /event_relationships and returns the event IDs in
// order, the events and limited.
func relationships(t *testing.T, c *mautrix.Client, body map[string]any) ([]id.EventID, []map[string]any, bool) {
	t.Helper()
	resp := testnode.Call(t, c, "POST", path, body).OK(t)
	list, _ := resp["events"].([]any)
	var ids []id.EventID
	var evs []map[string]any
	for _, e := range list {
		m, _ := e.(map[string]any)
		evs = append(evs, m)
		ids = append(ids, id.EventID(m["event_id"].(string)))
	}
	limited, ok := resp["limited"].(bool)
	if !ok {
		t.Fatalf("no limited in %v", resp)
	}
	return ids, evs, limited
}

// wantChildren checks an event's unsigned children count and hash.
func wantChildren(t *testing.T, ev map[string]any, refs int, children ...id.EventID) {
	t.Helper()
	unsigned, _ := ev["unsigned"].(map[string]any)
	counts, _ := unsigned["children"].(map[string]any)
	if got, _ := counts["m.reference"].(float64); int(got) != refs {
		t.Errorf("%s: children %v, want %d m.reference", ev["event_id"], unsigned["children"], refs)
	}
	ids := make([]string, len(children))
	for i, c := range children {
		ids[i] = string(c)
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, "")))
	if want := base64.RawStdEncoding.EncodeToString(sum[:]); unsigned["children_hash"] != want {
		t.Errorf("%s: children_hash %v, want %s", ev["event_id"], unsigned["children_hash"], want)
	}
}

// TestEventRelationships mirrors Complement's msc2836 TestEventRelationships
// on one server (A <- B <- {C, D}, m.reference relationships), then checks
// the walk's limits, the up direction, redaction, and that only events the
// user may see are returned.
func TestEventRelationships(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob, eve := n.Register("alice"), n.Register("bob"), n.Register("eve")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		testnode.SendState(t, alice, room, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "joined"})
		a := send(t, alice, room, "A", "")
		b := send(t, alice, room, "B", a)
		c := send(t, alice, room, "C", b)
		d := send(t, alice, room, "D", b)
		// A child in another room is not counted among A's children: its
		// room's members would learn of replies they cannot see.
		send(t, eve, testnode.CreateRoom(t, eve, &mautrix.ReqCreateRoom{}), "elsewhere", a)

		ids, evs, limited := relationships(t, alice, map[string]any{"event_id": d, "room_id": room, "direction": "down", "include_parent": true})
		if !slices.Equal(ids, []id.EventID{d, b}) || limited {
			t.Fatalf("D down with parent = %v (limited %v), want D, B", ids, limited)
		}
		wantChildren(t, evs[1], 2, c, d)
		wantChildren(t, evs[0], 0)

		ids, evs, _ = relationships(t, alice, map[string]any{"event_id": b, "direction": "down", "include_parent": true, "recent_first": false})
		if !slices.Equal(ids, []id.EventID{b, a, c, d}) {
			t.Fatalf("B down with parent, oldest first = %v, want B, A, C, D", ids)
		}
		wantChildren(t, evs[1], 1, b)

		tests := []struct {
			name    string
			body    map[string]any
			want    []id.EventID
			limited bool
		}{
			{"max_depth 1", map[string]any{"event_id": a, "max_depth": 1}, []id.EventID{a, b}, false},
			{"unbounded depth", map[string]any{"event_id": a, "max_depth": -1, "recent_first": false}, []id.EventID{a, b, c, d}, false},
			{"limit 2", map[string]any{"event_id": a, "limit": 2}, []id.EventID{a, b}, true},
			{"max_breadth 1, newest first", map[string]any{"event_id": b, "max_breadth": 1}, []id.EventID{b, d}, false},
			{"up", map[string]any{"event_id": d, "direction": "up"}, []id.EventID{d, b, a}, false},
			{"children only", map[string]any{"event_id": b, "include_children": true, "max_depth": 0}, []id.EventID{b, d, c}, false},
			{"depth first", map[string]any{"event_id": a, "depth_first": true, "recent_first": false}, []id.EventID{a, b, c, d}, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ids, _, limited := relationships(t, alice, tt.body)
				if !slices.Equal(ids, tt.want) || limited != tt.limited {
					t.Fatalf("%v (limited %v), want %v (limited %v)", ids, limited, tt.want, tt.limited)
				}
			})
		}

		// A redacted child keeps its place in the thread.
		if _, err := alice.RedactEvent(t.Context(), room, c); err != nil {
			t.Fatal(err)
		}
		if ids, _, _ := relationships(t, alice, map[string]any{"event_id": b, "recent_first": false}); !slices.Equal(ids, []id.EventID{b, c, d}) {
			t.Fatalf("after redacting C: %v", ids)
		}

		// Visibility: eve is not in the room; bob joined after A..D in a
		// room whose history is visible to members since they joined.
		testnode.Call(t, eve, "POST", path, map[string]any{"event_id": b}).Want(t, 404, "M_NOT_FOUND")
		testnode.Join(t, bob, room)
		testnode.Call(t, bob, "POST", path, map[string]any{"event_id": a}).Want(t, 404, "M_NOT_FOUND")
		e := send(t, bob, room, "E", d)
		if ids, _, _ := relationships(t, bob, map[string]any{"event_id": e, "direction": "up"}); !slices.Equal(ids, []id.EventID{e}) {
			t.Fatalf("bob walks up from E: %v, want only E", ids)
		}
		if ids, _, _ := relationships(t, alice, map[string]any{"event_id": e, "direction": "up"}); !slices.Equal(ids, []id.EventID{e, d, b, a}) {
			t.Fatalf("alice walks up from E: %v", ids)
		}

		// Bad requests.
		testnode.Call(t, alice, "POST", path, map[string]any{}).Want(t, 400, "M_MISSING_PARAM")
		testnode.Call(t, alice, "POST", path, map[string]any{"event_id": a, "direction": "sideways"}).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "POST", path, map[string]any{"event_id": a, "limit": 0}).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "POST", path, map[string]any{"event_id": "$unknown"}).Want(t, 404, "M_NOT_FOUND")
	})
}

// TestFederatedEventRelationships: bob on B joins alice's room on A after
// the thread A <- B <- {C, D} was sent. Walking from D, which B lacks, B
// asks A's federated /event_relationships, stores D and B, sees from B's
// children_hash that it lacks a child and asks for B's children (C): the
// answer is D, B with B's two children. Walking down from B then fetches
// its parent A. In a room whose history is visible to members only since
// they joined, A refuses B the thread sent before bob's join, so bob
// gets 404.
func TestFederatedEventRelationships(t *testing.T) {
	ca := testnode.NewCA(t)
	nodeA := testnode.StartFederating(t, testnode.SQLite, ca)
	nodeB := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := nodeA.Register("alice"), nodeB.Register("bob")

	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "thread"})
	a := send(t, alice, room, "A", "")
	b := send(t, alice, room, "B", a)
	c := send(t, alice, room, "C", b)
	d := send(t, alice, room, "D", b)
	if _, err := bob.JoinRoom(t.Context(), "#thread:"+nodeA.Config.ServerName, nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}

	ids, evs, limited := relationships(t, bob, map[string]any{"event_id": d, "room_id": room, "direction": "down", "include_parent": true})
	if !slices.Equal(ids, []id.EventID{d, b}) || limited {
		t.Fatalf("bob: D down with parent = %v (limited %v), want D, B", ids, limited)
	}
	wantChildren(t, evs[1], 2, c, d)

	ids, evs, _ = relationships(t, bob, map[string]any{"event_id": b, "room_id": room, "direction": "down", "include_parent": true, "recent_first": false})
	if !slices.Equal(ids, []id.EventID{b, a, c, d}) {
		t.Fatalf("bob: B down with parent, oldest first = %v, want B, A, C, D", ids)
	}
	wantChildren(t, evs[1], 1, b)
	wantChildren(t, evs[0], 2, c, d)

	private := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "private-thread"})
	testnode.SendState(t, alice, private, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "joined"})
	root := send(t, alice, private, "root", "")
	reply := send(t, alice, private, "reply", root)
	if _, err := bob.JoinRoom(t.Context(), "#private-thread:"+nodeA.Config.ServerName, nil); err != nil {
		t.Fatalf("bob joins the private room: %v", err)
	}
	later := send(t, alice, private, "later", reply)
	// bob's /sync shows later: B has it, and the walk up from it asks A
	// for reply, which A does not show B.
	testnode.WaitFor(t, 10*time.Second, "bob has the later reply", func() bool {
		return testnode.Call(t, bob, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(private))+"/event/"+url.PathEscape(string(later)), nil).Status == 200
	})
	if ids, _, _ := relationships(t, bob, map[string]any{"event_id": later, "direction": "up"}); !slices.Equal(ids, []id.EventID{later}) {
		t.Fatalf("bob walks up from a reply to history he may not see: %v, want only the reply", ids)
	}
	testnode.Call(t, bob, "POST", path, map[string]any{"event_id": reply, "room_id": private}).Want(t, 404, "M_NOT_FOUND")
	// A filtered it out for B: B stored the thread of the public room
	// from A's answers, but not this reply.
	for evID, want := range map[id.EventID]bool{a: true, reply: false} {
		ev, err := nodeB.Rooms.Event(t.Context(), evID)
		if has := err == nil && ev.Pos != 0; has != want {
			t.Errorf("B has %s in its timeline: %v, want %v (err %v)", evID, has, want, err)
		}
	}
	if ids, _, _ := relationships(t, alice, map[string]any{"event_id": later, "direction": "up"}); !slices.Equal(ids, []id.EventID{later, reply, root}) {
		t.Fatalf("alice walks up from the later reply: %v", ids)
	}
}

// TestEventRelationshipsPaging: a walk cut by the limit gives next_batch,
// which continues it without repeating an event; a token the server did
// not give is refused.
func TestEventRelationshipsPaging(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		a := send(t, alice, room, "A", "")
		b := send(t, alice, room, "B", a)
		c := send(t, alice, room, "C", b)
		d := send(t, alice, room, "D", b)

		body := map[string]any{"event_id": a, "limit": 2, "recent_first": false}
		first := testnode.Call(t, alice, "POST", path, body).OK(t)
		next, _ := first["next_batch"].(string)
		if first["limited"] != true || next == "" {
			t.Fatalf("first page: limited %v, next_batch %q", first["limited"], next)
		}
		body["batch"] = next
		ids, _, limited := relationships(t, alice, body)
		if !slices.Equal(ids, []id.EventID{c, d}) || limited {
			t.Fatalf("second page = %v (limited %v), want C, D", ids, limited)
		}
		body["batch"] = "not a token"
		testnode.Call(t, alice, "POST", path, body).Want(t, 400, "M_INVALID_PARAM")
	})
}
