package clientapi_test

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func send(t *testing.T, c *mautrix.Client, roomID id.RoomID, typ event.Type, content map[string]any) id.EventID {
	t.Helper()
	resp, err := c.SendMessageEvent(context.Background(), roomID, typ, content)
	if err != nil {
		t.Fatalf("send %s: %v", typ.Type, err)
	}
	return resp.EventID
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

func related(body, relType string, to id.EventID) map[string]any {
	c := text(body)
	c["m.relates_to"] = map[string]any{"rel_type": relType, "event_id": to}
	return c
}

func edit(body string, to id.EventID) map[string]any {
	c := related("* "+body, "m.replace", to)
	c["m.new_content"] = text(body)
	return c
}

func ids(evs []*event.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func TestAggregations(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		room := created.RoomID
		for _, c := range []*mautrix.Client{bob, carol} {
			if _, err := c.JoinRoomByID(ctx, room); err != nil {
				t.Fatal(err)
			}
		}
		root := send(t, alice, room, event.EventMessage, text("root"))
		e1 := send(t, alice, room, event.EventMessage, edit("v1", root))
		time.Sleep(5 * time.Millisecond)
		e2 := send(t, alice, room, event.EventMessage, edit("v2", root))
		time.Sleep(5 * time.Millisecond)
		send(t, bob, room, event.EventMessage, edit("not alice's", root)) // another sender's edit never counts
		send(t, alice, room, event.EventMessage, related("bad edit", "m.replace", root))
		t1 := send(t, alice, room, event.EventMessage, related("t1", "m.thread", root))
		send(t, bob, room, event.EventMessage, related("t2", "m.thread", root))
		t3 := send(t, alice, room, event.EventMessage, related("t3", "m.thread", root))
		ref := send(t, bob, room, event.EventMessage, related("see above", "m.reference", root))

		ev, err := alice.GetEvent(ctx, room, root)
		if err != nil {
			t.Fatal(err)
		}
		rel := ev.Unsigned.Relations
		if rel.GetLatestEdit() == nil || rel.LatestEdit.ID != e2 {
			t.Fatalf("m.replace should bundle %s: %+v", e2, rel)
		}
		if th := rel.GetThread(); th == nil || th.Count != 3 || th.LatestEvent == nil || th.LatestEvent.ID != t3 || !th.CurrentUserParticipated {
			t.Fatalf("m.thread wrong: %+v", th)
		}
		if got := rel.GetReferences().GetEventIDs(); !slices.Equal(got, []id.EventID{ref}) {
			t.Fatalf("m.reference = %v, want [%s]", got, ref)
		}
		if ev.Content.Raw["body"] != "root" {
			t.Fatalf("the original content must not be replaced: %v", ev.Content.Raw)
		}
		// Participation is per user.
		for _, tc := range []struct {
			c    *mautrix.Client
			want bool
		}{{bob, true}, {carol, false}} {
			ev, err := tc.c.GetEvent(ctx, room, root)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.Unsigned.Relations.GetThread(); got == nil || got.CurrentUserParticipated != tc.want {
				t.Fatalf("%s participated: %+v, want %v", tc.c.UserID, got, tc.want)
			}
		}

		// /messages, /context and sync bundle the same.
		msgs, err := carol.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range msgs.Chunk {
			if m.ID == root {
				found = m.Unsigned.Relations.GetLatestEdit() != nil && m.Unsigned.Relations.GetThread().GetCount() == 3
			}
		}
		if !found {
			t.Fatal("/messages lacks the root's aggregations")
		}
		cx, err := carol.Context(ctx, room, root, nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		if cx.Event.Unsigned.Relations.GetLatestEdit() == nil {
			t.Fatal("/context lacks the root's aggregations")
		}
		s, err := carol.FullSyncRequest(ctx, mautrix.ReqSync{FilterID: `{"room":{"timeline":{"limit":50}}}`})
		if err != nil {
			t.Fatal(err)
		}
		found = false
		for _, e := range s.Rooms.Join[room].Timeline.Events {
			if e.ID == root {
				th := e.Unsigned.Relations.GetThread()
				found = th != nil && th.Count == 3 && th.LatestEvent.ID == t3 && e.Unsigned.Relations.LatestEdit.ID == e2
			}
		}
		if !found {
			t.Fatal("sync timeline lacks the root's aggregations")
		}

		// A redacted edit no longer counts; the previous one takes over.
		if _, err := alice.RedactEvent(ctx, room, e2); err != nil {
			t.Fatal(err)
		}
		if ev, err = alice.GetEvent(ctx, room, root); err != nil {
			t.Fatal(err)
		}
		if got := ev.Unsigned.Relations.GetLatestEdit(); got == nil || got.ID != e1 {
			t.Fatalf("after redacting %s the edit should be %s, got %+v", e2, e1, got)
		}
		// A thread event's own edit is bundled in latest_event.
		t3edit := send(t, alice, room, event.EventMessage, edit("t3 fixed", t3))
		if ev, err = alice.GetEvent(ctx, room, root); err != nil {
			t.Fatal(err)
		}
		if got := ev.Unsigned.Relations.GetThread().LatestEvent.Unsigned.Relations.GetLatestEdit(); got == nil || got.ID != t3edit {
			t.Fatalf("latest_event should carry its edit %s: %+v", t3edit, got)
		}
		if got := ev.Unsigned.Relations.GetThread().GetCount(); got != 3 {
			t.Fatalf("an edit in a thread is not a thread event: count %d", got)
		}
		_ = t1

		// Redacting the original drops its aggregations.
		if _, err := alice.RedactEvent(ctx, room, root); err != nil {
			t.Fatal(err)
		}
		if ev, err = alice.GetEvent(ctx, room, root); err != nil {
			t.Fatal(err)
		}
		if ev.Unsigned.Relations != nil {
			t.Fatalf("a redacted event has no aggregations: %+v", ev.Unsigned.Relations)
		}
	})
}

// allRelations pages through root's relations with req (at most ten pages)
// and returns the event IDs in the order served.
func allRelations(t *testing.T, c *mautrix.Client, room id.RoomID, root id.EventID, req *mautrix.ReqGetRelations) []id.EventID {
	t.Helper()
	var got []id.EventID
	for range 10 {
		resp, err := c.GetRelations(context.Background(), room, root, req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(resp.Chunk)...)
		if resp.NextBatch == "" {
			break
		}
		req.From = resp.NextBatch
	}
	return got
}

func TestRelationsPagination(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, eve := n.Register("alice"), n.Register("bob"), n.Register("eve")
		room := testnode.PublicRoom(t, alice, bob)
		root := send(t, alice, room, event.EventMessage, text("root"))
		var thread []id.EventID
		for i := range 5 {
			thread = append(thread, send(t, bob, room, event.EventMessage, related("reply "+string(rune('a'+i)), "m.thread", root)))
		}
		reaction := send(t, alice, room, event.EventReaction, map[string]any{
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": thread[0], "key": "👍"},
		})
		ed := send(t, alice, room, event.EventMessage, edit("root!", root))

		// Backwards (the default), two at a time, newest first.
		got := allRelations(t, alice, room, root, &mautrix.ReqGetRelations{RelationType: event.RelThread, Limit: 2})
		want := slices.Clone(thread)
		slices.Reverse(want)
		if !slices.Equal(got, want) {
			t.Fatalf("backwards: got %v, want %v", got, want)
		}
		// Forwards, three at a time, oldest first.
		got = allRelations(t, alice, room, root, &mautrix.ReqGetRelations{RelationType: event.RelThread, Limit: 3, Dir: mautrix.DirectionForward})
		if !slices.Equal(got, thread) {
			t.Fatalf("forwards: got %v, want %v", got, thread)
		}
		// Every relation type; then filtered by type and event type.
		for _, tc := range []struct {
			req  *mautrix.ReqGetRelations
			want int
		}{
			{&mautrix.ReqGetRelations{}, 6},
			{&mautrix.ReqGetRelations{RelationType: event.RelReplace}, 1},
			{&mautrix.ReqGetRelations{RelationType: event.RelThread, EventType: event.EventMessage}, 5},
			{&mautrix.ReqGetRelations{RelationType: event.RelThread, EventType: event.EventReaction}, 0},
			{&mautrix.ReqGetRelations{RelationType: event.RelAnnotation}, 0},
			{&mautrix.ReqGetRelations{RelationType: event.RelAnnotation, Recurse: true}, 1},
		} {
			resp, err := alice.GetRelations(ctx, room, root, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Chunk) != tc.want {
				t.Errorf("%+v: %d events, want %d", tc.req, len(resp.Chunk), tc.want)
			}
			if tc.req.Recurse && (resp.RecursionDepth < 3 || len(resp.Chunk) != 1 || resp.Chunk[0].ID != reaction) {
				t.Errorf("recurse: depth %d, chunk %v", resp.RecursionDepth, ids(resp.Chunk))
			}
		}
		// The thread reply with a reaction bundles nothing it should not;
		// the edit is bundled on the served root... via /relations chunks too.
		resp, err := alice.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{RelationType: event.RelReplace})
		if err != nil || len(resp.Chunk) != 1 || resp.Chunk[0].ID != ed {
			t.Fatalf("replace relations: %v %+v", err, resp)
		}
		// The response matches the spec.
		path := "/_matrix/client/v1/rooms/" + url.PathEscape(string(room)) + "/relations/" + url.PathEscape(string(root))
		testnode.Call(t, alice, "GET", path+"/m.thread?limit=2&recurse=true", nil).OK(t)

		// Bad input.
		_, err = alice.GetRelations(ctx, room, "$nope", &mautrix.ReqGetRelations{})
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
		testnode.Call(t, alice, "GET", path+"?dir=x", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", path+"?from=bogus", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", path+"?limit=-1", nil).Want(t, 400, "M_INVALID_PARAM")
		// Someone who may not see the room gets "not found".
		_, err = eve.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{})
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
	})
}

func TestThreads(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob, eve := n.Register("alice"), n.Register("bob"), n.Register("eve")
		room := testnode.PublicRoom(t, alice, bob)
		rootA := send(t, alice, room, event.EventMessage, text("thread A"))
		rootB := send(t, alice, room, event.EventMessage, text("thread B"))
		rootC := send(t, bob, room, event.EventMessage, text("thread C"))
		send(t, alice, room, event.EventMessage, text("not a thread"))
		send(t, alice, room, event.EventMessage, related("a1", "m.thread", rootA))
		send(t, alice, room, event.EventMessage, related("c1", "m.thread", rootC))
		send(t, bob, room, event.EventMessage, related("b1", "m.thread", rootB))
		send(t, alice, room, event.EventMessage, related("a2", "m.thread", rootA))

		path := "/_matrix/client/v1/rooms/" + url.PathEscape(string(room)) + "/threads"
		type threadsResp struct {
			Chunk     []*event.Event `json:"chunk"`
			NextBatch string         `json:"next_batch"`
		}
		list := func(c *mautrix.Client, q url.Values) threadsResp {
			t.Helper()
			return testnode.Decode[threadsResp](t, testnode.Call(t, c, "GET", path+"?"+q.Encode(), nil).Want(t, 200, "").Body)
		}
		// Most recently active first, with aggregations.
		all := list(alice, nil)
		if got, want := ids(all.Chunk), []id.EventID{rootA, rootB, rootC}; !slices.Equal(got, want) {
			t.Fatalf("threads: %v, want %v", got, want)
		}
		if th := all.Chunk[0].Unsigned.Relations.GetThread(); th == nil || th.Count != 2 {
			t.Fatalf("thread A summary: %+v", th)
		}
		// Paginated one by one.
		var got []id.EventID
		q := url.Values{"limit": {"1"}}
		for range 10 {
			page := list(alice, q)
			got = append(got, ids(page.Chunk)...)
			if page.NextBatch == "" {
				break
			}
			q.Set("from", page.NextBatch)
		}
		if want := []id.EventID{rootA, rootB, rootC}; !slices.Equal(got, want) {
			t.Fatalf("paginated threads: %v, want %v", got, want)
		}
		// Bob took part in B (reply) and C (root) only.
		if got, want := ids(list(bob, url.Values{"include": {"participated"}}).Chunk), []id.EventID{rootB, rootC}; !slices.Equal(got, want) {
			t.Fatalf("participated: %v, want %v", got, want)
		}
		// Bad input.
		testnode.Call(t, alice, "GET", path+"?include=some", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", path+"?from=zzz", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", path+"?limit=0", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, eve, "GET", path, nil).Want(t, 403, "M_FORBIDDEN")
	})
}
