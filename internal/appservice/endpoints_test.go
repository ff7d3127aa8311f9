package appservice_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/testnode"
)

// fakeAppservice plays an appservice's side of the Application Service
// API: it checks the hs_token and answers with handler.
func fakeAppservice(t *testing.T, hsToken string, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+hsToken {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
			return
		}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTimestampMassaging(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
	bot := asClient(t, n, "as-bridge", "")
	room, err := bot.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	const ts = 1262304000000 // 2010-01-01, a bridged message's time
	msg, err := bot.SendMessageEvent(t.Context(), room.RoomID, event.EventMessage,
		map[string]any{"msgtype": "m.text", "body": "old"}, mautrix.ReqSendEvent{Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	state := testnode.Call(t, bot, "PUT", testnode.V3+"/rooms/"+url.PathEscape(string(room.RoomID))+"/state/m.room.topic/?ts=1262304000001",
		map[string]any{"topic": "old topic"}).OK(t)

	alice := n.Register("alice")
	for evID, want := range map[id.EventID]int64{msg.EventID: ts, id.EventID(state["event_id"].(string)): ts + 1} {
		ev, err := bot.GetEvent(t.Context(), room.RoomID, evID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Timestamp != want {
			t.Errorf("event %s has origin_server_ts %d, want %d", evID, ev.Timestamp, want)
		}
	}

	// A user's ts is ignored; a bad one from an appservice is refused.
	aliceRoom, err := alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	own, err := alice.SendMessageEvent(t.Context(), aliceRoom.RoomID, event.EventMessage,
		map[string]any{"msgtype": "m.text", "body": "now"}, mautrix.ReqSendEvent{Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := alice.GetEvent(t.Context(), aliceRoom.RoomID, own.EventID); err != nil || ev.Timestamp == ts {
		t.Errorf("a user's ts was applied: %v %v", ev, err)
	}
	testnode.Call(t, bot, "PUT", testnode.V3+"/rooms/"+url.PathEscape(string(room.RoomID))+"/send/m.room.message/t1?ts=yesterday",
		map[string]any{"body": "x"}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
}

func TestPing(t *testing.T) {
	var lastTxn atomic.Value
	status := atomic.Int32{}
	status.Store(http.StatusOK)
	srv := fakeAppservice(t, "hs-bridge", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/_matrix/app/v1/ping" {
			http.NotFound(w, r)
			return
		}
		var body struct {
			TransactionID string `json:"transaction_id"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		lastTxn.Store(body.TransactionID)
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{}`))
	})
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	n := testnode.Start(t, testnode.SQLite,
		withRegistration("bridge.yaml", registrationYAML("bridge", srv.URL, "")),
		withRegistration("nourl.yaml", registrationYAML("nourl", "", "")),
		withRegistration("down.yaml", registrationYAML("down", downURL, "")))
	bot := asClient(t, n, "as-bridge", "")

	resp, err := bot.AppservicePing(t.Context(), "bridge", "txn-42")
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if resp.DurationMS < 0 || lastTxn.Load() != "txn-42" {
		t.Errorf("ping answer %+v, the appservice saw transaction %v", resp, lastTxn.Load())
	}

	status.Store(http.StatusUnauthorized)
	r := testnode.Call(t, bot, "POST", "/_matrix/client/v1/appservice/bridge/ping", map[string]any{}).Want(t, http.StatusBadGateway, "M_BAD_STATUS")
	if got := r.JSON(t)["status"]; got != float64(http.StatusUnauthorized) {
		t.Errorf("M_BAD_STATUS status = %v", got)
	}

	testnode.Call(t, bot, "POST", "/_matrix/client/v1/appservice/nourl/ping", map[string]any{}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	testnode.Call(t, asClient(t, n, "as-nourl", ""), "POST", "/_matrix/client/v1/appservice/nourl/ping", map[string]any{}).Want(t, http.StatusBadRequest, "M_URL_NOT_SET")
	testnode.Call(t, asClient(t, n, "as-down", ""), "POST", "/_matrix/client/v1/appservice/down/ping", map[string]any{}).Want(t, http.StatusBadGateway, "M_CONNECTION_FAILED")
	testnode.Call(t, n.Register("alice"), "POST", "/_matrix/client/v1/appservice/bridge/ping", map[string]any{}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
}

func TestNetworkRoomDirectory(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
	bot := asClient(t, n, "as-bridge", "")
	portal, err := bot.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Name: "portal"})
	if err != nil {
		t.Fatal(err)
	}
	alice := n.Register("alice")
	matrixRoom, err := alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Name: "matrix", Visibility: "public"})
	if err != nil {
		t.Fatal(err)
	}
	path := "/_matrix/client/v3/directory/list/appservice/irc/" + url.PathEscape(string(portal.RoomID))
	testnode.Call(t, alice, "PUT", path, map[string]any{"visibility": "public"}).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	testnode.Call(t, bot, "PUT", path, map[string]any{"visibility": "open"}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	testnode.Call(t, bot, "PUT", "/_matrix/client/v3/directory/list/appservice/irc/!nope:localhost", map[string]any{"visibility": "public"}).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	testnode.Call(t, bot, "PUT", path, map[string]any{"visibility": "public"}).OK(t)

	list := func(body map[string]any) []id.RoomID {
		t.Helper()
		resp := testnode.Call(t, alice, "POST", testnode.V3+"/publicRooms", body).OK(t)
		var out []id.RoomID
		for _, c := range resp["chunk"].([]any) {
			out = append(out, id.RoomID(c.(map[string]any)["room_id"].(string)))
		}
		return out
	}
	wantRooms := func(name string, got []id.RoomID, want ...id.RoomID) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: rooms %v, want %v", name, got, want)
		}
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				t.Fatalf("%s: rooms %v, want %v", name, got, want)
			}
		}
	}
	wantRooms("matrix directory", list(map[string]any{}), matrixRoom.RoomID)
	wantRooms("irc network", list(map[string]any{"third_party_instance_id": "bridge|irc"}), portal.RoomID)
	wantRooms("other network", list(map[string]any{"third_party_instance_id": "bridge|slack"}))
	wantRooms("all networks", list(map[string]any{"include_all_networks": true}), matrixRoom.RoomID, portal.RoomID)

	testnode.Call(t, bot, "PUT", path, map[string]any{"visibility": "private"}).OK(t)
	wantRooms("irc network after unpublishing", list(map[string]any{"third_party_instance_id": "bridge|irc"}))
}

// TestNetworkDirectoryRestricted: an appservice may publish in its
// networks' directories only rooms that are its business: with one of its
// users joined, in its room namespaces, or with an alias in its alias
// namespaces; any other room, a private one of a user's included, is 403.
// The rooms an appservice published stop being listed once its
// registration file is removed and the registrations are reloaded.
func TestNetworkDirectoryRestricted(t *testing.T) {
	sharedAliases := "  - exclusive: false\n    regex: '#shared_.+:localhost'\n"
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", "", sharedAliases)))
	bot := asClient(t, n, "as-bridge", "")
	alice := n.Register("alice")
	publish := func(roomID id.RoomID, visibility string) *testnode.Response {
		return testnode.Call(t, bot, "PUT", "/_matrix/client/v3/directory/list/appservice/irc/"+url.PathEscape(string(roomID)), map[string]any{"visibility": visibility})
	}
	createRoom := func(c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
		t.Helper()
		resp, err := c.CreateRoom(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.RoomID
	}

	private := createRoom(alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	publish(private, "public").Want(t, http.StatusForbidden, "M_FORBIDDEN")
	publish(private, "private").OK(t) // taking a room out is always allowed

	portal := createRoom(bot, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	publish(portal, "public").OK(t)

	// A room of alice's with an alias in the bridge's (shared) alias
	// namespace.
	aliased := createRoom(alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	publish(aliased, "public").Want(t, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.CreateAlias(t.Context(), "#shared_aliased:localhost", aliased); err != nil {
		t.Fatal(err)
	}
	publish(aliased, "public").OK(t)

	listed := func() int {
		t.Helper()
		resp := testnode.Call(t, alice, "POST", testnode.V3+"/publicRooms", map[string]any{"include_all_networks": true}).OK(t)
		return len(resp["chunk"].([]any))
	}
	if got := listed(); got != 2 {
		t.Fatalf("%d rooms listed in all networks, want the 2 the bridge published", got)
	}
	if err := os.Remove(filepath.Join(appservice.Dir(n.Config.DataDir), "bridge.yaml")); err != nil {
		t.Fatal(err)
	}
	n.Appservices.Reload(t.Context())
	if got := listed(); got != 0 {
		t.Errorf("%d rooms of a removed appservice still listed in all networks", got)
	}
}

func TestExclusiveAliases(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
	alice := n.Register("alice")
	room, err := alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.CreateAlias(t.Context(), "#bridge_chat:localhost", room.RoomID)
	testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
	_, err = alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{RoomAliasName: "bridge_other"})
	testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
	if _, err := alice.CreateAlias(t.Context(), "#chat:localhost", room.RoomID); err != nil {
		t.Fatalf("an alias outside the namespaces: %v", err)
	}

	bot := asClient(t, n, "as-bridge", "")
	if _, err := bot.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{RoomAliasName: "bridge_portal"}); err != nil {
		t.Fatalf("the appservice creates its own alias: %v", err)
	}
}
