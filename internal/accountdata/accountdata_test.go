package accountdata_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestGlobalAccountData(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		// A room moves the stream past position 0, whose token reads as an
		// initial sync.
		if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{}); err != nil {
			t.Fatal(err)
		}
		since := testnode.SyncOnce(t, alice, "", 0).NextBatch

		// A long-poll wakes up when account data changes.
		done := make(chan *mautrix.RespSync, 1)
		go func() {
			s, err := alice.SyncRequest(ctx, 10000, since, "", false, "")
			if err != nil {
				t.Errorf("long-poll: %v", err)
			}
			done <- s
		}()
		time.Sleep(100 * time.Millisecond)
		if err := alice.SetAccountData(ctx, "org.example.config", map[string]any{"theme": "dark"}); err != nil {
			t.Fatalf("set: %v", err)
		}
		select {
		case s := <-done:
			if s == nil {
				t.FailNow()
			}
			if c := testnode.EventContent(s.AccountData.Events, "org.example.config"); c["theme"] != "dark" {
				t.Fatalf("long-poll got %d events, want the new account data", len(s.AccountData.Events))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("long-poll did not wake for account data")
		}

		var got map[string]any
		if err := alice.GetAccountData(ctx, "org.example.config", &got); err != nil || got["theme"] != "dark" {
			t.Fatalf("get: %v %v", got, err)
		}
		// Upsert: only the latest value is kept and synced.
		if err := alice.SetAccountData(ctx, "org.example.config", map[string]any{"theme": "light"}); err != nil {
			t.Fatal(err)
		}
		s := testnode.SyncOnce(t, alice, "", 0)
		if testnode.CountEvents(s.AccountData.Events, "org.example.config") != 1 || testnode.EventContent(s.AccountData.Events, "org.example.config")["theme"] != "light" {
			t.Fatalf("initial sync account data: %v", s.AccountData.Events)
		}
		// Nothing changed since: an incremental sync carries no account data.
		if s2 := testnode.SyncOnce(t, alice, s.NextBatch, 0); len(s2.AccountData.Events) != 0 {
			t.Fatalf("unchanged account data repeated: %v", s2.AccountData.Events)
		}
		// The filter's account_data types apply.
		fs, err := alice.SyncRequest(ctx, 0, "", `{"account_data":{"types":["m.other"]}}`, false, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(fs.AccountData.Events) != 0 {
			t.Fatalf("filtered-out account data delivered: %v", fs.AccountData.Events)
		}

		// Errors.
		testnode.WantErr(t, alice.GetAccountData(ctx, "org.example.unset", &got), "M_NOT_FOUND", 404)
		path := func(c *mautrix.Client, typ string) string {
			return fmt.Sprintf("/user/%s/account_data/%s", url.PathEscape(string(c.UserID)), url.PathEscape(typ))
		}
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"other user's data", "GET", path(alice, "org.example.config"), "", 403, "M_FORBIDDEN"},
			{"set other user's data", "PUT", path(alice, "org.example.config"), `{}`, 403, "M_FORBIDDEN"},
			{"array body", "PUT", path(bob, "org.example.x"), `[1, 2]`, 400, "M_BAD_JSON"},
			{"string body", "PUT", path(bob, "org.example.x"), `"text"`, 400, "M_BAD_JSON"},
			{"not JSON", "PUT", path(bob, "org.example.x"), `{nope`, 400, "M_NOT_JSON"},
			{"m.fully_read", "PUT", path(bob, "m.fully_read"), `{"event_id":"$x"}`, 405, "M_BAD_JSON"},
			{"m.push_rules", "PUT", path(bob, "m.push_rules"), `{}`, 405, "M_BAD_JSON"},
		} {
			res := testnode.Call(t, bob, tc.method, testnode.V3+tc.path, tc.body)
			if res.Status != tc.status || res.ErrCode() != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
			}
		}
		// Bob's own data is unaffected by the failed attempts.
		testnode.WantErr(t, bob.GetAccountData(ctx, "org.example.x", &got), "M_NOT_FOUND", 404)
		// m.push_rules reads the push rules.
		if body := testnode.Call(t, bob, "GET", testnode.V3+path(bob, "m.push_rules"), nil).OK(t); body["global"] == nil {
			t.Errorf("GET m.push_rules: %v", body)
		}
	})
}

func TestRoomAccountData(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "ad"})
		if err != nil {
			t.Fatal(err)
		}
		other, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "not alice's"})
		if err != nil {
			t.Fatal(err)
		}
		first := testnode.SyncOnce(t, alice, "", 0)
		if err := alice.SetRoomAccountData(ctx, room.RoomID, "org.example.room", map[string]any{"n": 1}); err != nil {
			t.Fatalf("set: %v", err)
		}
		// Data for a room alice is not in is stored but not synced.
		if err := alice.SetRoomAccountData(ctx, other.RoomID, "org.example.room", map[string]any{"n": 2}); err != nil {
			t.Fatalf("set for another room: %v", err)
		}
		var got map[string]any
		if err := alice.GetRoomAccountData(ctx, room.RoomID, "org.example.room", &got); err != nil || got["n"] != float64(1) {
			t.Fatalf("get: %v %v", got, err)
		}
		testnode.WantErr(t, alice.GetAccountData(ctx, "org.example.room", &got), "M_NOT_FOUND", 404)
		testnode.WantErr(t, alice.GetRoomAccountData(ctx, room.RoomID, "org.example.unset", &got), "M_NOT_FOUND", 404)

		s := testnode.SyncOnce(t, alice, first.NextBatch, 0)
		if c := testnode.EventContent(roomAccountData(s, room.RoomID), "org.example.room"); c["n"] != float64(1) {
			t.Fatalf("incremental sync room account data: %+v", s.Rooms.Join[room.RoomID])
		}
		if _, ok := s.Rooms.Join[other.RoomID]; ok {
			t.Fatalf("account data of a room alice is not joined to was synced")
		}
		if len(s.AccountData.Events) != 0 {
			t.Fatalf("room data appeared as global: %v", s.AccountData.Events)
		}
		s = testnode.SyncOnce(t, alice, "", 0)
		if c := testnode.EventContent(roomAccountData(s, room.RoomID), "org.example.room"); c["n"] != float64(1) {
			t.Fatalf("initial sync room account data: %+v", s.Rooms.Join[room.RoomID])
		}

		rpath := func(c *mautrix.Client, roomID, typ string) string {
			return fmt.Sprintf("/user/%s/rooms/%s/account_data/%s", url.PathEscape(string(c.UserID)), url.PathEscape(roomID), url.PathEscape(typ))
		}
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"other user's room data", "GET", rpath(alice, string(room.RoomID), "org.example.room"), "", 403, "M_FORBIDDEN"},
			{"bad room ID", "GET", rpath(bob, "@notaroom:localhost", "org.example.room"), "", 400, "M_INVALID_PARAM"},
			{"bad room ID on PUT", "PUT", rpath(bob, "notaroom", "org.example.room"), `{}`, 400, "M_INVALID_PARAM"},
			{"array body", "PUT", rpath(bob, string(room.RoomID), "org.example.room"), `[]`, 400, "M_BAD_JSON"},
			{"m.fully_read", "PUT", rpath(bob, string(room.RoomID), "m.fully_read"), `{"event_id":"$x"}`, 405, "M_BAD_JSON"},
		} {
			res := testnode.Call(t, bob, tc.method, testnode.V3+tc.path, tc.body)
			if res.Status != tc.status || res.ErrCode() != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
			}
		}

		// Account data survives a restart.
		n2 := n.Restart()
		u, _ := url.Parse(n2.URL)
		alice.HomeserverURL = u
		if err := alice.GetRoomAccountData(ctx, room.RoomID, "org.example.room", &got); err != nil || got["n"] != float64(1) {
			t.Fatalf("after restart: %v %v", got, err)
		}
	})
}

func TestTags(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "tagged"})
		if err != nil {
			t.Fatal(err)
		}
		tags, err := alice.GetTags(ctx, room.RoomID)
		if err != nil || len(tags.Tags) != 0 {
			t.Fatalf("tags of an untagged room: %v %v", tags, err)
		}
		first := testnode.SyncOnce(t, alice, "", 0)
		if err := alice.AddTag(ctx, room.RoomID, event.RoomTagFavourite, 0.25); err != nil {
			t.Fatalf("add tag: %v", err)
		}
		if err := alice.AddTagWithCustomData(ctx, room.RoomID, "u.work", map[string]any{}); err != nil {
			t.Fatalf("add tag: %v", err)
		}
		tagsPath := fmt.Sprintf("/user/%s/rooms/%s/tags", url.PathEscape(string(alice.UserID)), url.PathEscape(string(room.RoomID)))
		body := testnode.Call(t, alice, "GET", testnode.V3+tagsPath, nil).OK(t)
		got, _ := body["tags"].(map[string]any)
		fav, _ := got["m.favourite"].(map[string]any)
		if len(got) != 2 || fav["order"] != 0.25 {
			t.Fatalf("GET tags: %v", body)
		}
		s := testnode.SyncOnce(t, alice, first.NextBatch, 0)
		c := testnode.EventContent(roomAccountData(s, room.RoomID), "m.tag")
		if synced, _ := c["tags"].(map[string]any); len(synced) != 2 {
			t.Fatalf("m.tag in sync: %v", c)
		}
		if err := alice.RemoveTag(ctx, room.RoomID, "u.work"); err != nil {
			t.Fatalf("remove tag: %v", err)
		}
		// Removing a tag that is not there is fine.
		if err := alice.RemoveTag(ctx, room.RoomID, "u.never"); err != nil {
			t.Fatalf("remove missing tag: %v", err)
		}
		tags, err = alice.GetTags(ctx, room.RoomID)
		if err != nil || len(tags.Tags) != 1 {
			t.Fatalf("after removal: %v %v", tags, err)
		}
		s = testnode.SyncOnce(t, alice, s.NextBatch, 0)
		c = testnode.EventContent(roomAccountData(s, room.RoomID), "m.tag")
		if synced, _ := c["tags"].(map[string]any); len(synced) != 1 {
			t.Fatalf("m.tag in sync after removal: %v", c)
		}

		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"other user's tags", "GET", tagsPath, "", 403, "M_FORBIDDEN"},
			{"tag other user's room", "PUT", tagsPath + "/u.x", `{}`, 403, "M_FORBIDDEN"},
			{"untag other user's room", "DELETE", tagsPath + "/m.favourite", "", 403, "M_FORBIDDEN"},
			{"order not a number", "PUT", fmt.Sprintf("/user/%s/rooms/%s/tags/u.x", url.PathEscape(string(bob.UserID)), url.PathEscape(string(room.RoomID))), `{"order":"first"}`, 400, "M_BAD_JSON"},
			{"body not an object", "PUT", fmt.Sprintf("/user/%s/rooms/%s/tags/u.x", url.PathEscape(string(bob.UserID)), url.PathEscape(string(room.RoomID))), `[]`, 400, "M_BAD_JSON"},
		} {
			res := testnode.Call(t, bob, tc.method, testnode.V3+tc.path, tc.body)
			if res.Status != tc.status || res.ErrCode() != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
			}
		}
	})
}

// TestDeactivationDeletesAccountData: a deactivated account keeps no
// private account data on the server.
func TestDeactivationDeletesAccountData(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		if err := alice.SetAccountData(ctx, "org.example.secret", map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		if err := n.Accounts.Deactivate(ctx, alice.UserID, false); err != nil {
			t.Fatal(err)
		}
		var c int
		if err := n.DB.QueryRow(ctx, "SELECT COUNT(*) FROM account_data WHERE user_id = $1", alice.UserID).Scan(&c); err != nil {
			t.Fatal(err)
		}
		if c != 0 {
			t.Fatalf("%d account data rows left after deactivation", c)
		}
	})
}

// TestDeleteAccountData: MSC3391. DELETE under the MSC's unstable prefix,
// and PUT {}, delete global and room account data: GET then answers 404,
// an incremental /sync delivers the type with empty content, and an
// initial /sync leaves it out. Deleting is idempotent and writes nothing
// when there is nothing to delete.
func TestDeleteAccountData(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		const unstable = "/_matrix/client/unstable/org.matrix.msc3391"
		user := url.PathEscape(string(alice.UserID))
		global := func(typ string) string { return "/user/" + user + "/account_data/" + url.PathEscape(typ) }
		inRoom := func(roomID, typ string) string {
			return "/user/" + user + "/rooms/" + url.PathEscape(roomID) + "/account_data/" + url.PathEscape(typ)
		}
		for typ, content := range map[string]any{"org.example.a": map[string]int{"x": 1}, "org.example.b": map[string]int{"x": 2}} {
			if err := alice.SetAccountData(ctx, typ, content); err != nil {
				t.Fatal(err)
			}
		}
		if err := alice.SetRoomAccountData(ctx, room.RoomID, "org.example.r", map[string]int{"y": 1}); err != nil {
			t.Fatal(err)
		}
		since := testnode.SyncOnce(t, alice, "", 0).NextBatch

		for _, path := range []string{unstable + global("org.example.a"), unstable + inRoom(string(room.RoomID), "org.example.r")} {
			if body := testnode.Call(t, alice, "DELETE", path, nil).OK(t); len(body) != 0 {
				t.Fatalf("DELETE %s answered %v, want {}", path, body)
			}
		}
		// PUT {} is the same as DELETE.
		testnode.Call(t, alice, "PUT", testnode.V3+global("org.example.b"), `{}`).OK(t)

		var got map[string]any
		testnode.WantErr(t, alice.GetAccountData(ctx, "org.example.a", &got), "M_NOT_FOUND", 404)
		testnode.WantErr(t, alice.GetAccountData(ctx, "org.example.b", &got), "M_NOT_FOUND", 404)
		testnode.WantErr(t, alice.GetRoomAccountData(ctx, room.RoomID, "org.example.r", &got), "M_NOT_FOUND", 404)

		// An incremental sync reports each deletion as the type with
		// empty content.
		inc := syncRaw(t, alice, since)
		for _, typ := range []string{"org.example.a", "org.example.b"} {
			if c, ok := inc.global[typ]; !ok || c != "{}" {
				t.Errorf("incremental sync: %s content %q (present %v), want {}", typ, c, ok)
			}
		}
		if c, ok := inc.rooms[room.RoomID]["org.example.r"]; !ok || c != "{}" {
			t.Errorf("incremental sync: room org.example.r content %q (present %v), want {}", c, ok)
		}
		// An initial sync does not mention deleted data.
		initial := syncRaw(t, alice, "")
		if len(initial.rooms[room.RoomID]) != 0 {
			t.Errorf("initial sync room account data: %v", initial.rooms[room.RoomID])
		}
		for _, typ := range []string{"org.example.a", "org.example.b"} {
			if c, ok := initial.global[typ]; ok {
				t.Errorf("initial sync has deleted %s: %s", typ, c)
			}
		}

		// Deleting again, or deleting what was never set, succeeds and
		// writes nothing: a sync after it has only the data set since.
		for _, path := range []string{unstable + global("org.example.a"), unstable + global("org.example.never"),
			unstable + inRoom(string(room.RoomID), "org.example.r")} {
			testnode.Call(t, alice, "DELETE", path, nil).OK(t)
		}
		testnode.Call(t, alice, "PUT", testnode.V3+global("org.example.b"), `{ }`).OK(t)
		if err := alice.SetAccountData(ctx, "org.example.c", map[string]int{"z": 1}); err != nil {
			t.Fatal(err)
		}
		after := syncRaw(t, alice, initial.next)
		if len(after.global) != 1 || after.global["org.example.c"] == "" || len(after.rooms) != 0 {
			t.Errorf("sync after repeated deletes: global %v, rooms %v; want only org.example.c", after.global, after.rooms)
		}

		// Setting deleted data again brings it back.
		if err := alice.SetAccountData(ctx, "org.example.a", map[string]int{"x": 3}); err != nil {
			t.Fatal(err)
		}
		if err := alice.GetAccountData(ctx, "org.example.a", &got); err != nil || got["x"] != float64(3) {
			t.Fatalf("get after re-set: %v %v", got, err)
		}
		if c := syncRaw(t, alice, "").global["org.example.a"]; c != `{"x":3}` {
			t.Errorf("initial sync after re-set: org.example.a %q", c)
		}

		for _, tc := range []struct {
			name, path string
			status     int
			code       string
		}{
			{"other user's data", unstable + global("org.example.c"), 403, "M_FORBIDDEN"},
			{"other user's room data", unstable + inRoom(string(room.RoomID), "org.example.c"), 403, "M_FORBIDDEN"},
		} {
			res := testnode.Call(t, bob, "DELETE", tc.path, nil)
			if res.Status != tc.status || res.ErrCode() != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
			}
		}
		for _, tc := range []struct {
			name, path string
			status     int
			code       string
		}{
			{"m.fully_read", unstable + inRoom(string(room.RoomID), "m.fully_read"), 405, "M_BAD_JSON"},
			{"m.push_rules", unstable + global("m.push_rules"), 405, "M_BAD_JSON"},
			{"bad room ID", unstable + inRoom("notaroom", "org.example.r"), 400, "M_INVALID_PARAM"},
		} {
			res := testnode.Call(t, alice, "DELETE", tc.path, nil)
			if res.Status != tc.status || res.ErrCode() != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, res.Status, res.Body, tc.status, tc.code)
			}
		}
		// Bob's refused attempt left alice's data alone.
		if err := alice.GetAccountData(ctx, "org.example.c", &got); err != nil || got["z"] != float64(1) {
			t.Fatalf("get after refused delete: %v %v", got, err)
		}
	})
}

// rawSync is the account data of a /sync answer, each content as its
// compact JSON text, by type.
type rawSync struct {
	next   string
	global map[string]string
	rooms  map[id.RoomID]map[string]string
}

// syncRaw runs one /sync (initial when since is empty) without waiting and
// returns its account data as sent.
func syncRaw(t *testing.T, c *mautrix.Client, since string) rawSync {
	t.Helper()
	path := testnode.V3 + "/sync?timeout=0"
	if since != "" {
		path += "&since=" + url.QueryEscape(since)
	}
	res := testnode.Call(t, c, "GET", path, nil)
	type events struct {
		Events []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		} `json:"events"`
	}
	var body struct {
		NextBatch   string `json:"next_batch"`
		AccountData events `json:"account_data"`
		Rooms       struct {
			Join map[id.RoomID]struct {
				AccountData events `json:"account_data"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if res.Status != 200 {
		t.Fatalf("sync: %d %s", res.Status, res.Body)
	}
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatalf("sync: %v", err)
	}
	byType := func(e events) map[string]string {
		out := map[string]string{}
		for _, ev := range e.Events {
			var buf bytes.Buffer
			if err := json.Compact(&buf, ev.Content); err != nil {
				t.Fatalf("sync: %s content: %v", ev.Type, err)
			}
			out[ev.Type] = buf.String()
		}
		return out
	}
	out := rawSync{next: body.NextBatch, global: byType(body.AccountData), rooms: map[id.RoomID]map[string]string{}}
	for roomID, jr := range body.Rooms.Join {
		if evs := byType(jr.AccountData); len(evs) > 0 {
			out.rooms[roomID] = evs
		}
	}
	return out
}

// TestDeletedDeviceLosesLocalNotificationSettings: MSC3890. Logging a
// device out deletes its org.matrix.msc3890.local_notification_settings
// entry (GET then answers 404 M_NOT_FOUND, as Complement's msc3890 test
// checks); the entries of the user's other devices stay.
func TestDeletedDeviceLosesLocalNotificationSettings(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		first := n.Register("alice")
		second := n.Login(first.UserID)
		settings := func(device id.DeviceID) string {
			return "org.matrix.msc3890.local_notification_settings." + string(device)
		}
		for _, d := range []id.DeviceID{first.DeviceID, second.DeviceID} {
			if err := first.SetAccountData(ctx, settings(d), map[string]bool{"is_silenced": true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := second.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		path := "/_matrix/client/v3/user/" + url.PathEscape(string(first.UserID)) + "/account_data/"
		testnode.Call(t, first, "GET", path+url.PathEscape(settings(second.DeviceID)), nil).Want(t, 404, "M_NOT_FOUND")
		kept := testnode.Call(t, first, "GET", path+url.PathEscape(settings(first.DeviceID)), nil).Want(t, 200, "").JSON(t)
		if kept["is_silenced"] != true {
			t.Fatalf("the remaining device's settings: %v", kept)
		}
	})
}
