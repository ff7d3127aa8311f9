package clientapi_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestPublicRooms(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		mk := func(req *mautrix.ReqCreateRoom, joiners ...*mautrix.Client) id.RoomID {
			t.Helper()
			resp, err := alice.CreateRoom(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range joiners {
				if _, err := c.JoinRoomByID(ctx, resp.RoomID); err != nil {
					t.Fatal(err)
				}
			}
			return resp.RoomID
		}
		big := mk(&mautrix.ReqCreateRoom{Visibility: "public", Name: "Big Room", Topic: "lots of people", RoomAliasName: "big"}, bob, carol)
		mid := mk(&mautrix.ReqCreateRoom{Visibility: "public", Name: "Cheese talk"}, bob)
		space := mk(&mautrix.ReqCreateRoom{
			Visibility: "public", Name: "Space",
			CreationContent: map[string]any{"type": "m.space"},
			InitialState: []*event.Event{
				{Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "world_readable"}}},
				{Type: event.StateGuestAccess, Content: event.Content{Raw: map[string]any{"guest_access": "can_join"}}},
			},
		})
		mk(&mautrix.ReqCreateRoom{Visibility: "private", Preset: "public_chat", Name: "Not listed"})

		anon := n.Client()
		dir, err := anon.PublicRooms(ctx, &mautrix.ReqPublicRooms{})
		if err != nil {
			t.Fatal(err)
		}
		roomIDs := func(rs []*mautrix.PublicRoomInfo) []id.RoomID {
			out := make([]id.RoomID, len(rs))
			for i, r := range rs {
				out[i] = r.RoomID
			}
			return out
		}
		if got, want := roomIDs(dir.Chunk), []id.RoomID{big, mid, space}; !slices.Equal(got, want) {
			t.Fatalf("directory %v, want %v", got, want)
		}
		if dir.TotalRoomCountEstimate != 3 {
			t.Fatalf("total %d, want 3", dir.TotalRoomCountEstimate)
		}
		b, s := dir.Chunk[0], dir.Chunk[2]
		if b.Name != "Big Room" || b.Topic != "lots of people" || b.CanonicalAlias != "#big:localhost" || b.NumJoinedMembers != 3 ||
			b.JoinRule != event.JoinRulePublic || b.WorldReadable || b.GuestCanJoin {
			t.Fatalf("big room: %+v", b)
		}
		if s.RoomType != event.RoomTypeSpace || !s.WorldReadable || !s.GuestCanJoin || s.NumJoinedMembers != 1 {
			t.Fatalf("space: %+v", s)
		}
		testnode.Call(t, anon, "GET", "/_matrix/client/v3/publicRooms?limit=2", nil).OK(t)

		// One page at a time, forwards then back.
		var got []id.RoomID
		req := &mautrix.ReqPublicRooms{Limit: 1}
		var page *mautrix.RespPublicRooms
		for range 10 {
			if page, err = anon.PublicRooms(ctx, req); err != nil {
				t.Fatal(err)
			}
			got = append(got, roomIDs(page.Chunk)...)
			if page.NextBatch == "" {
				break
			}
			req.Since = page.NextBatch
		}
		if want := []id.RoomID{big, mid, space}; !slices.Equal(got, want) {
			t.Fatalf("paginated %v, want %v", got, want)
		}
		back, err := anon.PublicRooms(ctx, &mautrix.ReqPublicRooms{Limit: 1, Since: page.PrevBatch})
		if err != nil || len(back.Chunk) != 1 || back.Chunk[0].RoomID != mid {
			t.Fatalf("prev_batch page: %v %+v", err, back)
		}

		// Filters (POST).
		post := func(body map[string]any) []id.RoomID {
			t.Helper()
			raw := testnode.Call(t, bob, "POST", "/_matrix/client/v3/publicRooms", body).Want(t, 200, "").Body
			return roomIDs(testnode.Decode[mautrix.RespPublicRooms](t, raw).Chunk)
		}
		for _, tc := range []struct {
			body map[string]any
			want []id.RoomID
		}{
			{map[string]any{"filter": map[string]any{"generic_search_term": "cheese"}}, []id.RoomID{mid}},
			{map[string]any{"filter": map[string]any{"generic_search_term": "BIG"}}, []id.RoomID{big}},
			{map[string]any{"filter": map[string]any{"generic_search_term": string(space)}}, []id.RoomID{space}},
			{map[string]any{"filter": map[string]any{"generic_search_term": strings.ToLower(string(space)[1:9])}}, nil},
			{map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}}, []id.RoomID{space}},
			{map[string]any{"filter": map[string]any{"room_types": []any{nil}}}, []id.RoomID{big, mid}},
			{map[string]any{"limit": 2}, []id.RoomID{big, mid}},
			{map[string]any{"include_all_networks": true}, []id.RoomID{big, mid, space}},
			{map[string]any{"third_party_instance_id": "irc"}, []id.RoomID{}},
		} {
			if got := post(tc.body); !slices.Equal(got, tc.want) {
				t.Errorf("%v: %v, want %v", tc.body, got, tc.want)
			}
		}

		// Bad input.
		testnode.Call(t, bob, "POST", "/_matrix/client/v3/publicRooms",
			map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"}).Want(t, 400, "M_INVALID_PARAM")
		_, err = anon.PublicRooms(ctx, &mautrix.ReqPublicRooms{Since: "garbage"})
		testnode.WantErr(t, err, "M_INVALID_PARAM", 0)
		_, err = anon.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: "elsewhere.example"})
		testnode.WantErr(t, err, "M_INVALID_PARAM", 0)
		testnode.Call(t, anon, "POST", "/_matrix/client/v3/publicRooms", map[string]any{}).Want(t, 401, "M_MISSING_TOKEN")

		// Unpublishing removes a room.
		testnode.Call(t, alice, "PUT", "/_matrix/client/v3/directory/list/room/"+url.PathEscape(string(mid)), map[string]any{"visibility": "private"}).OK(t)
		if dir, err = anon.PublicRooms(ctx, &mautrix.ReqPublicRooms{}); err != nil {
			t.Fatal(err)
		}
		if got, want := roomIDs(dir.Chunk), []id.RoomID{big, space}; !slices.Equal(got, want) {
			t.Fatalf("after unpublishing: %v, want %v", got, want)
		}
	})
}
