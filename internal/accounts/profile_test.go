package accounts_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestProfile(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		profile := "/_matrix/client/v3/profile/" + string(alice.UserID)

		// New users get their localpart as display name.
		p, err := bob.GetProfile(ctx, alice.UserID)
		if err != nil || p.DisplayName != alice.UserID.Localpart() {
			t.Fatalf("initial profile %+v, %v", p, err)
		}
		if err := alice.SetDisplayName(ctx, "Alice W."); err != nil {
			t.Fatal(err)
		}
		avatar := id.ContentURI{Homeserver: "localhost", FileID: "abc"}
		if err := alice.SetAvatarURL(ctx, avatar); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetProfileField(ctx, "org.example.pronouns", map[string]any{"en": "she/her"}); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetProfileField(ctx, "m.tz", "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
		p, err = bob.GetProfile(ctx, alice.UserID)
		if err != nil || p.DisplayName != "Alice W." || p.AvatarURL != avatar {
			t.Fatalf("profile %+v, %v", p, err)
		}
		m := wantOK(t, n.Do(t, "GET", profile, "", nil))
		if m["m.tz"] != "Europe/Berlin" || m["org.example.pronouns"].(map[string]any)["en"] != "she/her" {
			t.Fatalf("full profile %v", m)
		}
		m = wantOK(t, n.Do(t, "GET", profile+"/displayname", "", nil))
		if m["displayname"] != "Alice W." {
			t.Fatalf("displayname field %v", m)
		}
		wantOK(t, n.Do(t, "GET", profile+"/avatar_url", "", nil))
		m = wantOK(t, n.Do(t, "GET", profile+"/org.example.pronouns", "", nil))
		if len(m) != 1 || m["org.example.pronouns"] == nil {
			t.Fatalf("custom field %v", m)
		}
		wantOK(t, n.Do(t, "DELETE", profile+"/org.example.pronouns", alice.AccessToken, nil))
		wantErr(t, n.Do(t, "GET", profile+"/org.example.pronouns", "", nil), http.StatusNotFound, "M_NOT_FOUND")
		// Deleting what is not there is fine.
		wantOK(t, n.Do(t, "DELETE", profile+"/org.example.pronouns", alice.AccessToken, nil))

		// An avatar_url that is no mxc:// URI is kept as given
		// (Complement's TestAvatarUrlUpdate sets "LemurLover").
		wantOK(t, n.Do(t, "PUT", profile+"/avatar_url", alice.AccessToken, map[string]any{"avatar_url": "LemurLover"}))
		if m := wantOK(t, n.Do(t, "GET", profile+"/avatar_url", "", nil)); m["avatar_url"] != "LemurLover" {
			t.Fatalf("avatar_url after setting a non-mxc value: %v", m)
		}

		bad := []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"other user's profile", "PUT", profile + "/displayname", bob.AccessToken, map[string]any{"displayname": "evil"}, 403, "M_FORBIDDEN"},
			{"other user's field delete", "DELETE", profile + "/m.tz", bob.AccessToken, nil, 403, "M_FORBIDDEN"},
			{"no token", "PUT", profile + "/displayname", "", map[string]any{"displayname": "x"}, 401, "M_MISSING_TOKEN"},
			{"key missing from body", "PUT", profile + "/displayname", alice.AccessToken, map[string]any{"other": "x"}, 400, "M_MISSING_PARAM"},
			{"wrong value type", "PUT", profile + "/displayname", alice.AccessToken, map[string]any{"displayname": 5}, 400, "M_BAD_JSON"},
			{"invalid key", "PUT", profile + "/Bad-Key", alice.AccessToken, map[string]any{"Bad-Key": 1}, 400, "M_INVALID_PARAM"},
			{"key too long", "PUT", profile + "/org.example." + strings.Repeat("a", 260), alice.AccessToken, map[string]any{}, 400, "M_KEY_TOO_LARGE"},
			{"profile too large", "PUT", profile + "/org.example.big", alice.AccessToken, map[string]any{"org.example.big": strings.Repeat("x", 70000)}, 400, "M_PROFILE_TOO_LARGE"},
			{"not json", "PUT", profile + "/displayname", alice.AccessToken, "{", 400, "M_NOT_JSON"},
			{"unknown user", "GET", "/_matrix/client/v3/profile/@nobody:localhost", "", nil, 404, "M_NOT_FOUND"},
			{"unset field", "GET", profile + "/org.example.none", "", nil, 404, "M_NOT_FOUND"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				wantErr(t, n.Do(t, tc.method, tc.path, tc.token, tc.body), tc.status, tc.code)
			})
		}
	})
}

func TestProfileUpdatesMemberEvents(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		var roomIDs []id.RoomID
		for range 2 {
			room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			roomIDs = append(roomIDs, room.RoomID)
		}
		member := func(rid id.RoomID) *event.MemberEventContent {
			t.Helper()
			var c event.MemberEventContent
			if err := bob.StateEvent(ctx, rid, event.StateMember, string(alice.UserID), &c); err != nil {
				t.Fatal(err)
			}
			return &c
		}
		for _, rid := range roomIDs {
			if c := member(rid); c.Displayname != alice.UserID.Localpart() {
				t.Fatalf("member displayname at join = %q", c.Displayname)
			}
		}
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		avatar := id.ContentURI{Homeserver: "localhost", FileID: "pic"}
		if err := alice.SetAvatarURL(ctx, avatar); err != nil {
			t.Fatal(err)
		}
		for _, rid := range roomIDs {
			c := member(rid)
			if c.Membership != event.MembershipJoin || c.Displayname != "Alice Liddell" || c.AvatarURL != avatar.CUString() {
				t.Fatalf("member event in %s after profile change: %+v", rid, c)
			}
		}
		// Removing the display name removes it from the member events.
		wantOK(t, n.Do(t, "DELETE", "/_matrix/client/v3/profile/"+string(alice.UserID)+"/displayname", alice.AccessToken, nil))
		for _, rid := range roomIDs {
			if c := member(rid); c.Displayname != "" || c.AvatarURL != avatar.CUString() {
				t.Fatalf("member event after removing the display name: %+v", c)
			}
		}
		// Custom fields do not touch rooms.
		before, err := bob.Messages(ctx, roomIDs[0], "", "", mautrix.DirectionBackward, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.SetProfileField(ctx, "m.tz", "UTC"); err != nil {
			t.Fatal(err)
		}
		after, err := bob.Messages(ctx, roomIDs[0], "", "", mautrix.DirectionBackward, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if before.Chunk[0].ID != after.Chunk[0].ID {
			t.Fatal("a custom profile field sent a room event")
		}
	})
}

// TestUnsetAvatarAndDisplayName: a user's avatar_url or displayname that
// is not set reads as empty (200, the field absent), as Synapse answers,
// so that mautrix bridges, which read the current avatar before setting
// one and stop on any error, can give their bot and ghosts avatars; a
// custom field not set and any field of an unknown user are still 404.
func TestUnsetAvatarAndDisplayName(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	bob := n.Register("bob")
	// mautrix-go answers a 404 as empty since v0.33; the bridges built on
	// earlier versions (mautrix-whatsapp v0.2511.0 is on v0.26) do not.
	if m := wantOK(t, n.Do(t, "GET", "/_matrix/client/v3/profile/"+string(bob.UserID)+"/avatar_url", "", nil)); len(m) != 0 {
		t.Errorf("an avatar not set reads as %v, want {}", m)
	}
	wantOK(t, n.Do(t, "DELETE", "/_matrix/client/v3/profile/"+string(bob.UserID)+"/displayname", bob.AccessToken, nil))
	if m := wantOK(t, n.Do(t, "GET", "/_matrix/client/v3/profile/"+string(bob.UserID)+"/displayname", "", nil)); len(m) != 0 {
		t.Errorf("a display name removed reads as %v, want {}", m)
	}
	avatar := id.ContentURI{Homeserver: "localhost", FileID: "bob"}
	if err := bob.SetAvatarURL(ctx, avatar); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.GetAvatarURL(ctx, bob.UserID); err != nil || got != avatar {
		t.Errorf("avatar after setting it: %v, %v", got, err)
	}
	wantErr(t, n.Do(t, "GET", "/_matrix/client/v3/profile/@nobody:localhost/avatar_url", "", nil), http.StatusNotFound, "M_NOT_FOUND")
}
