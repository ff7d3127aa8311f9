package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/sync"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestSlidingFollowedListMatchesScratch checks that a response whose room
// list follows its predecessor's (the rooms moved by new events) says
// what a response that builds the list afresh from the memberships says:
// a user in 40 rooms, and between two polls random messages, renames,
// invites, joins and leaves, by the user and by another; each poll asks
// random ranges of the list and room subscriptions (now and then new
// ones), once with the list
// built afresh and then again from the same pos with it followed, and
// the two answers must be equal (the pos and event ages aside). The
// second answer's pos is the next poll's, so that responses follow
// followed ones.
func TestSlidingFollowedListMatchesScratch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 40 rooms and polls 120 times")
	}
	ctx := context.Background()
	f := newEngineFixture(t, 40, 1)
	svc := f.node.Sync
	bob := f.node.Register("bob")
	rng := rand.New(rand.NewPCG(12, 7))
	joined := slices.Clone(f.rooms)
	var invited, bobs []id.RoomID
	pick := func(rs []id.RoomID) (id.RoomID, int) {
		i := rng.IntN(len(rs))
		return rs[i], i
	}
	act := func(step int) {
		switch op := rng.IntN(12); {
		case op < 6 && len(joined) > 0:
			r, _ := pick(joined)
			f.send(t, r, step)
		case op == 6 && len(joined) > 0:
			r, _ := pick(joined)
			if !slices.Contains(f.rooms, r) {
				return // only the user's own rooms let them rename
			}
			name := fmt.Sprintf(`{"name":"renamed %d"}`, step)
			if _, err := f.node.Rooms.Send(ctx, r, stateProto(f.user.UserID, "m.room.name", "", name)); err != nil {
				t.Fatal(err)
			}
		case op == 7:
			r := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
			testnode.Invite(t, bob, r, f.user.UserID)
			invited = append(invited, r)
			bobs = append(bobs, r)
		case op <= 9 && len(invited) > 0:
			r, i := pick(invited)
			testnode.Join(t, f.user, r)
			invited = slices.Delete(invited, i, i+1)
			joined = append(joined, r)
		case op == 10 && len(joined) > 1:
			r, i := pick(joined)
			if _, err := f.user.LeaveRoom(ctx, r); err != nil {
				t.Fatal(err)
			}
			joined = slices.Delete(joined, i, i+1)
		case op == 11 && len(bobs) > 0:
			r, _ := pick(bobs)
			testnode.SendText(t, bob, r, fmt.Sprintf("from bob %d", step))
		}
	}
	request := func() map[string]any {
		first := rng.IntN(30)
		lists := map[string]any{"all": map[string]any{
			"ranges":         [][]int{{first, first + rng.IntN(15)}},
			"timeline_limit": 1 + rng.IntN(3), "required_state": elementXRequiredState,
		}}
		if rng.IntN(3) == 0 {
			lists["invites"] = map[string]any{
				"ranges": [][]int{{0, 5}}, "timeline_limit": 1, "filters": map[string]any{"is_invite": true},
			}
		}
		req := map[string]any{"conn_id": "room-list", "lists": lists}
		switch rng.IntN(4) {
		case 0:
			r, _ := pick(f.rooms)
			req["room_subscriptions"] = map[id.RoomID]any{r: map[string]any{"timeline_limit": 2, "required_state": elementXRequiredState}}
		case 1:
			r, _ := pick(f.rooms)
			req["unsubscribe_rooms"] = []id.RoomID{r}
		}
		return req
	}
	body := request()
	pos := f.slidingSync(t, body, "")
	const polls = 120
	for step := range polls {
		for range 1 + rng.IntN(2) {
			act(step)
		}
		if rng.IntN(4) == 0 {
			body = request()
		}
		sync.SetSlidingFromScratch(svc, true)
		scratch := f.slidingSyncBody(t, body, pos)
		sync.SetSlidingFromScratch(svc, false)
		followed := f.slidingSyncBody(t, body, pos)
		if !reflect.DeepEqual(normalized(t, scratch), normalized(t, followed)) {
			t.Fatalf("poll %d: the followed list's answer differs from the one built afresh:\nafresh:   %s\nfollowed: %s", step, scratch, followed)
		}
		var out struct {
			Pos string `json:"pos"`
		}
		if err := json.Unmarshal(followed, &out); err != nil {
			t.Fatal(err)
		}
		pos = out.Pos
	}
	if n := sync.SlidingFollowed(svc); n < polls/3 {
		t.Errorf("only %d of %d responses followed the room list: the comparison compared little", n, polls)
	}
}

// normalized decodes a sliding sync answer for comparison: without its pos
// and the events' ages, which differ between two answers of the same.
func normalized(t *testing.T, body []byte) any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "pos")
	var strip func(any)
	strip = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			delete(x, "age")
			for _, y := range x {
				strip(y)
			}
		case []any:
			for _, y := range x {
				strip(y)
			}
		}
	}
	strip(v)
	return v
}

// TestSlidingRetryAfterLostResponse: a response lost on the way leaves the
// client at its previous pos; retrying it, after more events came, sends
// everything since that pos (the lost response's events and the newer
// ones), however the connection's state was built after it, and the
// next response from the retry's pos repeats none of it.
func TestSlidingRetryAfterLostResponse(t *testing.T) {
	f := newEngineFixture(t, 30, 1)
	body := roomListRequest(29)
	body["conn_id"] = "room-list"
	body["lists"].(map[string]any)["all_rooms"].(map[string]any)["timeline_limit"] = 5
	pos := f.slidingSync(t, body, "")
	a, b := f.rooms[3], f.rooms[17]
	eventIDs := func(r id.RoomID, bodies ...string) []id.EventID {
		t.Helper()
		var out []id.EventID
		for _, text := range bodies {
			out = append(out, testnode.SendText(t, f.user, r, text))
		}
		return out
	}
	lostA := eventIDs(a, "lost 1")
	f.slidingSyncBody(t, body, pos) // the answer never reaches the client
	laterA := eventIDs(a, "later 1")
	laterB := eventIDs(b, "later 2")
	var resp slidingResponse
	if err := json.Unmarshal(f.slidingSyncBody(t, body, pos), &resp); err != nil {
		t.Fatal(err)
	}
	if r := resp.Rooms[a]; r == nil || !slices.Equal(r.timelineIDs(), append(lostA, laterA...)) {
		t.Fatalf("retried pos: room %s has %v, want the lost and the later message", a, mustJSON(resp.Rooms[a]))
	}
	if r := resp.Rooms[b]; r == nil || !slices.Equal(r.timelineIDs(), laterB) {
		t.Fatalf("retried pos: room %s has %v, want the later message", b, mustJSON(resp.Rooms[b]))
	}
	if len(resp.Rooms) != 2 {
		t.Fatalf("retried pos: %d rooms, want 2", len(resp.Rooms))
	}
	var next, last slidingResponse
	if err := json.Unmarshal(f.slidingSyncBody(t, body, resp.Pos), &next); err != nil {
		t.Fatal(err)
	}
	if len(next.Rooms) != 0 {
		t.Fatalf("after the retry: rooms %s sent again", mustJSON(next.Rooms))
	}
	lastB := eventIDs(b, "last")
	if err := json.Unmarshal(f.slidingSyncBody(t, body, next.Pos), &last); err != nil {
		t.Fatal(err)
	}
	if r := last.Rooms[b]; len(last.Rooms) != 1 || r == nil || !slices.Equal(r.timelineIDs(), lastB) {
		t.Fatalf("after the retry, a new message: rooms %s", mustJSON(last.Rooms))
	}
}

// TestSlidingListsDroppedAfterFilteredList: a connection whose lists used
// a filter the followed list cannot reuse (not_tags) and whose next
// request has no lists and no subscriptions must answer no lists and no
// rooms, although its room list did not move (a room's new topic bumps
// nothing). The request with nothing in it and the one whose filters are
// not comparable both had an empty key, so the second response took the
// first one's window, list counts and room configs.
func TestSlidingListsDroppedAfterFilteredList(t *testing.T) {
	ctx := context.Background()
	f := newEngineFixture(t, 3, 1)
	body := roomListRequest(2)
	body["conn_id"] = "room-list"
	body["lists"].(map[string]any)["all_rooms"].(map[string]any)["filters"] = map[string]any{"not_tags": []string{"m.lowpriority"}}
	var first slidingResponse
	if err := json.Unmarshal(f.slidingSyncBody(t, body, ""), &first); err != nil {
		t.Fatal(err)
	}
	if len(first.Rooms) != 3 {
		t.Fatalf("first response: %d rooms, want 3", len(first.Rooms))
	}
	if _, err := f.node.Rooms.Send(ctx, f.rooms[1], stateProto(f.user.UserID, "m.room.topic", "", `{"topic":"new"}`)); err != nil {
		t.Fatal(err)
	}
	followed := sync.SlidingFollowed(f.node.Sync)
	raw := f.slidingSyncBody(t, map[string]any{"conn_id": "room-list", "lists": map[string]any{}}, first.Pos)
	if sync.SlidingFollowed(f.node.Sync) == followed {
		t.Fatal("the second response built its room list afresh: the test tests nothing")
	}
	var second struct {
		Lists map[string]any                `json:"lists"`
		Rooms map[id.RoomID]json.RawMessage `json:"rooms"`
	}
	if err := json.Unmarshal(raw, &second); err != nil {
		t.Fatal(err)
	}
	if len(second.Lists) != 0 || len(second.Rooms) != 0 {
		t.Fatalf("no lists asked: the response has lists %v and rooms %s", second.Lists, raw)
	}
}
