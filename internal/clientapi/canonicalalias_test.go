package clientapi_test

import (
	"net/url"
	"reflect"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

func aliasPath(alias string) string {
	return testnode.V3 + "/directory/room/" + url.PathEscape(alias)
}

func canonicalAliasPath(roomID any) string {
	return testnode.V3 + "/rooms/" + url.PathEscape(roomID.(string)) + "/state/m.room.canonical_alias/"
}

// TestCanonicalAliasValidation: an m.room.canonical_alias naming an alias that is
// malformed (M_INVALID_PARAM), missing, deleted, of another room or of another
// server (M_BAD_ALIAS) is refused, as alias and as alt alias, while aliases that
// point to the room, and those already in the event, are accepted. Mirrors
// Complement's TestRoomCanonicalAlias.
func TestCanonicalAliasValidation(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{"preset": "public_chat"}).OK(t)["room_id"]
	other := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{}).OK(t)["room_id"]
	for alias, roomID := range map[string]any{"#here:localhost": room, "#here2:localhost": room, "#there:localhost": other, "#gone:localhost": room} {
		testnode.Call(t, alice, "PUT", aliasPath(alias), map[string]any{"room_id": roomID}).OK(t)
	}
	testnode.Call(t, alice, "DELETE", aliasPath("#gone:localhost"), nil).OK(t)

	for _, tc := range []struct {
		name    string
		content map[string]any
		code    string
	}{
		{"missing", map[string]any{"alias": "#nowhere:localhost"}, "M_BAD_ALIAS"},
		{"invalid", map[string]any{"alias": "%invalid:localhost"}, "M_INVALID_PARAM"},
		{"no server", map[string]any{"alias": "#invalid"}, "M_INVALID_PARAM"},
		{"deleted", map[string]any{"alias": "#gone:localhost"}, "M_BAD_ALIAS"},
		{"other room", map[string]any{"alias": "#there:localhost"}, "M_BAD_ALIAS"},
		{"other server", map[string]any{"alias": "#here:elsewhere.example"}, "M_BAD_ALIAS"},
		{"alt missing", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#nowhere:localhost"}}, "M_BAD_ALIAS"},
		{"alt invalid", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"%invalid:localhost"}}, "M_INVALID_PARAM"},
		{"alt other room", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#there:localhost"}}, "M_BAD_ALIAS"},
		{"alias of wrong type", map[string]any{"alias": 5}, "M_BAD_JSON"},
		{"accepted", map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#here:localhost", "#here2:localhost"}}, ""},
		{"empty", map[string]any{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := testnode.Call(t, alice, "PUT", canonicalAliasPath(room), tc.content)
			if tc.code == "" {
				res.OK(t)
				return
			}
			res.Want(t, 400, tc.code)
		})
	}

	// Aliases already in the event are not checked again. Bob, a member without
	// the power to send m.room.canonical_alias, deletes the alias he made: the
	// deletion stands, the event keeps the alias, and alice may still send an
	// event that keeps it.
	bob := n.Register("bob")
	testnode.Call(t, bob, "POST", testnode.V3+"/join/"+url.PathEscape(room.(string)), map[string]any{}).OK(t)
	testnode.Call(t, bob, "PUT", aliasPath("#bobs:localhost"), map[string]any{"room_id": room}).OK(t)
	testnode.Call(t, alice, "PUT", canonicalAliasPath(room), map[string]any{"alias": "#here:localhost", "alt_aliases": []string{"#bobs:localhost"}}).OK(t)
	testnode.Call(t, bob, "DELETE", aliasPath("#bobs:localhost"), nil).OK(t)
	testnode.Call(t, alice, "GET", aliasPath("#bobs:localhost"), nil).Want(t, 404, "M_NOT_FOUND")
	wantContent(t, alice, room, map[string]any{"alias": "#here:localhost", "alt_aliases": []any{"#bobs:localhost"}})
	testnode.Call(t, alice, "PUT", canonicalAliasPath(room), map[string]any{"alt_aliases": []string{"#bobs:localhost", "#here:localhost"}}).OK(t)
}

// TestDeleteAliasUpdatesCanonicalAlias: deleting an alias removes it from the
// room's m.room.canonical_alias, as alias and as alt alias. Mirrors Complement's
// TestRoomDeleteAlias/Parallel/Can_delete_canonical_alias.
func TestDeleteAliasUpdatesCanonicalAlias(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{}).OK(t)["room_id"]
	for _, alias := range []string{"#main:localhost", "#alt:localhost"} {
		testnode.Call(t, alice, "PUT", aliasPath(alias), map[string]any{"room_id": room}).OK(t)
	}
	testnode.Call(t, alice, "PUT", canonicalAliasPath(room), map[string]any{
		"alias": "#main:localhost", "alt_aliases": []string{"#main:localhost", "#alt:localhost"},
	}).OK(t)

	testnode.Call(t, alice, "DELETE", aliasPath("#alt:localhost"), nil).OK(t)
	wantContent(t, alice, room, map[string]any{"alias": "#main:localhost", "alt_aliases": []any{"#main:localhost"}})
	testnode.Call(t, alice, "DELETE", aliasPath("#main:localhost"), nil).OK(t)
	wantContent(t, alice, room, map[string]any{})
}

// wantContent fails unless the room's m.room.canonical_alias content is want.
func wantContent(t *testing.T, c *mautrix.Client, roomID any, want map[string]any) {
	t.Helper()
	if got := testnode.Call(t, c, "GET", canonicalAliasPath(roomID), nil).OK(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("m.room.canonical_alias = %v, want %v", got, want)
	}
}

// TestCanonicalAliasOfAnotherServer: an alias of another server is accepted
// in m.room.canonical_alias when that server answers that it points to the
// room, and refused with M_BAD_ALIAS when it names another room, is unknown
// there, or its server cannot be reached.
func TestCanonicalAliasOfAnotherServer(t *testing.T) {
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.Call(t, bob, "POST", testnode.V3+"/join/"+url.PathEscape(string(room))+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}).OK(t)
	bobsRoom := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{})
	onB := func(localpart string) string { return "#" + localpart + ":" + b.Config.ServerName }
	testnode.Call(t, bob, "PUT", aliasPath(onB("shared")), map[string]any{"room_id": room}).OK(t)
	testnode.Call(t, bob, "PUT", aliasPath(onB("bobs")), map[string]any{"room_id": bobsRoom}).OK(t)

	for name, alias := range map[string]string{
		"other room":  onB("bobs"),
		"unknown":     onB("nowhere"),
		"unreachable": "#shared:127.0.0.1:1",
	} {
		res := testnode.Call(t, alice, "PUT", canonicalAliasPath(string(room)), map[string]any{"alias": alias})
		if res.Status != 400 || res.JSON(t)["errcode"] != "M_BAD_ALIAS" {
			t.Fatalf("%s (%s): %d %s, want 400 M_BAD_ALIAS", name, alias, res.Status, res.Body)
		}
	}
	testnode.Call(t, alice, "PUT", canonicalAliasPath(string(room)), map[string]any{"alias": onB("shared")}).OK(t)
	wantContent(t, alice, string(room), map[string]any{"alias": onB("shared")})
}
