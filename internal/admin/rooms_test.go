package admin_test

import (
	"context"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestAdminRooms(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		adm := n.RegisterAdmin("admin")
		alice, bob := n.Register("alice"), n.Register("bob")
		name := "Garden Club"
		garden, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name, RoomAliasName: "garden"})
		if err != nil {
			t.Fatal(err)
		}
		other, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Other"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, garden.RoomID); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendMessageEvent(ctx, garden.RoomID, event.EventMessage, map[string]any{"msgtype": "m.image", "body": "x.png", "url": "mxc://localhost/abcdef"}); err != nil {
			t.Fatal(err)
		}
		gp := url.PathEscape(string(garden.RoomID))

		list := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms", nil).JSON(t)
		if list["total_rooms"].(float64) != 2 {
			t.Fatalf("list rooms: %v", list)
		}
		found := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms?search_term=garden", nil).JSON(t)
		rooms := found["rooms"].([]any)
		if len(rooms) != 1 {
			t.Fatalf("search_term=garden: %v", found)
		}
		info := rooms[0].(map[string]any)
		if info["room_id"] != string(garden.RoomID) || info["name"] != name || info["joined_members"].(float64) != 2 ||
			info["canonical_alias"] != "#garden:localhost" || info["join_rules"] != "public" || info["creator"] != string(alice.UserID) {
			t.Fatalf("room info: %v", info)
		}
		bySize := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms?order_by=joined_members&dir=b&limit=1", nil).JSON(t)
		if r := bySize["rooms"].([]any); len(r) != 1 || r[0].(map[string]any)["room_id"] != string(garden.RoomID) || bySize["next_batch"].(float64) != 1 {
			t.Fatalf("order_by=joined_members dir=b: %v", bySize)
		}

		details := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms/"+gp, nil).JSON(t)
		if details["name"] != name || details["public"] != false && details["public"] != true {
			t.Fatalf("details: %v", details)
		}
		members := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms/"+gp+"/members", nil).JSON(t)
		if members["total"].(float64) != 2 {
			t.Fatalf("members: %v", members)
		}
		state := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms/"+gp+"/state", nil).JSON(t)
		if len(state["state"].([]any)) < 5 {
			t.Fatalf("state: %v", state)
		}
		media := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/room/"+gp+"/media", nil).JSON(t)
		if local := media["local"].([]any); len(local) != 1 || local[0] != "mxc://localhost/abcdef" {
			t.Fatalf("room media: %v", media)
		}

		// Blocking a room refuses joins, by ID and by alias.
		carol := n.Register("carol")
		if r := testnode.Call(t, adm, "PUT", "/_synapse/admin/v1/rooms/"+gp+"/block", map[string]any{"block": true}); r.Status != 200 {
			t.Fatalf("block: %d %s", r.Status, r.Body)
		}
		if b := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms/"+gp+"/block", nil).JSON(t); b["block"] != true || b["user_id"] != string(adm.UserID) {
			t.Fatalf("block status: %v", b)
		}
		_, err = carol.JoinRoomByID(ctx, garden.RoomID)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		_, err = carol.JoinRoom(ctx, "#garden:localhost", nil)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		testnode.Call(t, adm, "PUT", "/_synapse/admin/v1/rooms/"+gp+"/block", map[string]any{"block": false}).OK(t)
		if _, err := carol.JoinRoomByID(ctx, garden.RoomID); err != nil {
			t.Fatalf("join after unblock: %v", err)
		}

		// Delete and purge (v2): members leave, the room is gone, the
		// status is kept.
		del := testnode.Call(t, adm, "DELETE", "/_synapse/admin/v2/rooms/"+gp, map[string]any{"block": true, "purge": true, "message": "closed"})
		if del.Status != 200 {
			t.Fatalf("delete room: %d %s", del.Status, del.Body)
		}
		delID := del.JSON(t)["delete_id"].(string)
		st := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/rooms/delete_status/"+delID, nil).JSON(t)
		if st["status"] != "complete" || len(st["shutdown_room"].(map[string]any)["kicked_users"].([]any)) != 3 {
			t.Fatalf("delete status: %v", st)
		}
		byRoom := testnode.Call(t, adm, "GET", "/_synapse/admin/v2/rooms/"+gp+"/delete_status", nil).JSON(t)
		if len(byRoom["results"].([]any)) != 1 {
			t.Fatalf("delete status by room: %v", byRoom)
		}
		testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms/"+gp, nil).Want(t, 404, "M_NOT_FOUND")
		for _, c := range []*mautrix.Client{alice, bob, carol} {
			if m := n.Rooms.Membership(c.UserID, garden.RoomID); m != "" {
				t.Fatalf("%s still has membership %q in the purged room", c.UserID, m)
			}
		}
		_, err = alice.ResolveAlias(ctx, "#garden:localhost") // the purged room's alias is gone
		testnode.WantErr(t, err, "M_NOT_FOUND", 404)
		_, err = alice.SendMessageEvent(ctx, garden.RoomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "hello?"})
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)
		_, err = carol.JoinRoomByID(ctx, garden.RoomID)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		if list := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/rooms", nil).JSON(t); list["total_rooms"].(float64) != 1 {
			t.Fatalf("rooms after purge: %v", list)
		}

		// v1 delete without purge keeps the room but empties it.
		res := testnode.Call(t, adm, "DELETE", "/_synapse/admin/v1/rooms/"+url.PathEscape(string(other.RoomID)), map[string]any{"purge": false}).JSON(t)
		if kicked := res["kicked_users"].([]any); len(kicked) != 1 || kicked[0] != string(alice.UserID) {
			t.Fatalf("v1 delete: %v", res)
		}
		if n.Rooms.Membership(alice.UserID, other.RoomID) != "leave" {
			t.Fatal("alice did not leave the shut-down room")
		}
		testnode.Call(t, adm, "DELETE", "/_synapse/admin/v1/rooms/!nope:localhost", map[string]any{}).Want(t, 404, "M_NOT_FOUND")
	})
}
