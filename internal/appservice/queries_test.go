package appservice_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestUserAndAliasQueries: an unknown user or alias in an appservice's
// namespaces is asked of the appservice, which creates it and answers 200.
func TestUserAndAliasQueries(t *testing.T) {
	var node atomic.Pointer[testnode.Node]
	var userQueries, aliasQueries atomic.Int32
	srv := fakeAppservice(t, "hs-bridge", func(w http.ResponseWriter, r *http.Request) {
		n := node.Load()
		bot := asClient(t, n, "as-bridge", "")
		switch {
		case strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/users/"):
			userQueries.Add(1)
			user := id.UserID(strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1/users/"))
			if user != "@bridge_known:localhost" {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"errcode":"M_NOT_FOUND"}`))
				return
			}
			if _, _, err := bot.Register(r.Context(), &mautrix.ReqRegister[any]{Username: user.Localpart(), Type: mautrix.AuthTypeAppservice, InhibitLogin: true}); err != nil {
				t.Errorf("the appservice registers %s: %v", user, err)
			}
		case strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/rooms/"):
			aliasQueries.Add(1)
			alias := id.RoomAlias(strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1/rooms/"))
			if alias != "#bridge_portal:localhost" {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"errcode":"M_NOT_FOUND"}`))
				return
			}
			if _, err := bot.CreateRoom(r.Context(), &mautrix.ReqCreateRoom{RoomAliasName: "bridge_portal", Preset: "public_chat"}); err != nil {
				t.Errorf("the appservice creates %s: %v", alias, err)
			}
		default:
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{}`))
	})
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", srv.URL, "")))
	node.Store(n)
	alice := n.Register("alice")

	// Profiles.
	if _, err := alice.GetProfile(t.Context(), "@bridge_known:localhost"); err != nil {
		t.Fatalf("profile of a user the appservice creates: %v", err)
	}
	_, err := alice.GetProfile(t.Context(), "@bridge_unknown:localhost")
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	_, err = alice.GetProfile(t.Context(), "@nobody:localhost")
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	if got := userQueries.Load(); got != 2 {
		t.Errorf("%d user queries, want 2 (none for a user outside the namespaces)", got)
	}

	// Aliases: resolving and joining.
	resp, err := alice.ResolveAlias(t.Context(), "#bridge_portal:localhost")
	if err != nil {
		t.Fatalf("resolve an alias the appservice creates: %v", err)
	}
	if _, err := alice.JoinRoom(t.Context(), "#bridge_portal:localhost", nil); err != nil {
		t.Fatalf("join by that alias: %v", err)
	}
	if m := n.Rooms.Membership(alice.UserID, resp.RoomID); m != "join" {
		t.Errorf("alice's membership %q", m)
	}
	_, err = alice.ResolveAlias(t.Context(), "#bridge_none:localhost")
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	if got := aliasQueries.Load(); got != 2 {
		t.Errorf("%d alias queries, want 2 (the second resolve finds the alias created)", got)
	}

	// Invites: the ghost is created before the invite.
	room, err := alice.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InviteUser(t.Context(), room.RoomID, &mautrix.ReqInviteUser{UserID: "@bridge_known2:localhost"}); err != nil {
		t.Fatal(err)
	}
	if got := userQueries.Load(); got != 3 {
		t.Errorf("%d user queries after the invite, want 3", got)
	}
}

func TestThirdPartyForwarding(t *testing.T) {
	var seenQuery atomic.Value
	srv := fakeAppservice(t, "hs-irc", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_matrix/app/v1/thirdparty/protocol/irc":
			json.NewEncoder(w).Encode(map[string]any{
				"user_fields": []string{"network", "nickname"}, "location_fields": []string{"network", "channel"},
				"icon": "mxc://localhost/irc", "field_types": map[string]any{},
				"instances": []any{map[string]any{"desc": "Libera", "network_id": "libera", "fields": map[string]any{"network": "libera.chat"}}},
			})
		case "/_matrix/app/v1/thirdparty/location/irc":
			seenQuery.Store(r.URL.RawQuery)
			json.NewEncoder(w).Encode([]any{map[string]any{"alias": "#irc_libera_#go:localhost", "protocol": "irc", "fields": map[string]any{"channel": "#go"}}})
		case "/_matrix/app/v1/thirdparty/user":
			json.NewEncoder(w).Encode([]any{map[string]any{"userid": r.URL.Query().Get("userid"), "protocol": "irc", "fields": map[string]any{"nickname": "gopher"}}})
		default:
			http.NotFound(w, r)
		}
	})
	slow := fakeAppservice(t, "hs-slow", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	n := testnode.Start(t, testnode.SQLite,
		withRegistration("irc.yaml", registrationYAML("irc", srv.URL, "")),
		withRegistration("slow.yaml", strings.Replace(registrationYAML("slow", slow.URL, ""), "protocols: [slow]", "protocols: [irc]", 1)))
	alice := n.Register("alice")
	const tp = "/_matrix/client/v3/thirdparty"

	protocols := testnode.Call(t, alice, "GET", tp+"/protocols", nil).OK(t)
	irc, ok := protocols["irc"].(map[string]any)
	if !ok {
		t.Fatalf("protocols: %v", protocols)
	}
	instances := irc["instances"].([]any)
	if len(instances) != 1 || instances[0].(map[string]any)["instance_id"] != "irc|libera" {
		t.Errorf("instances %v", instances)
	}
	testnode.Call(t, alice, "GET", tp+"/protocol/irc", nil).OK(t)
	testnode.Call(t, alice, "GET", tp+"/protocol/xmpp", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")

	r := testnode.Call(t, alice, "GET", tp+"/location/irc?"+url.Values{"channel": {"#go"}}.Encode(), nil)
	locations := testnode.Decode[[]map[string]any](t, r.Body)
	if r.Status != http.StatusOK || len(locations) != 1 || locations[0]["alias"] != "#irc_libera_#go:localhost" {
		t.Fatalf("location lookup: %d %s", r.Status, r.Body)
	}
	if seenQuery.Load() != "channel=%23go" {
		t.Errorf("the appservice got the query %v", seenQuery.Load())
	}
	// A token given in the query authenticates the caller and is never
	// passed on to the appservice.
	seenQuery.Store("")
	q := url.Values{"channel": {"#go"}, "access_token": {alice.AccessToken}}
	if r := n.Do(t, "GET", tp+"/location/irc?"+q.Encode(), "", nil); r.Status != http.StatusOK {
		t.Fatalf("location lookup with the token in the query: %d %s", r.Status, r.Body)
	}
	if seenQuery.Load() != "channel=%23go" {
		t.Errorf("with the token in the query, the appservice got the query %v", seenQuery.Load())
	}
	r = testnode.Call(t, alice, "GET", tp+"/user?userid=@irc_gopher:localhost", nil)
	users := testnode.Decode[[]map[string]any](t, r.Body)
	if len(users) != 1 || users[0]["userid"] != "@irc_gopher:localhost" {
		t.Fatalf("reverse user lookup: %s", r.Body)
	}
}

// TestQueriesBounded: an anonymous client cannot make the node hammer a
// bridge with lookups of users and aliases that do not exist: an
// appservice's "no" is remembered (asking again does not reach it), and
// the lookups that do reach it take from the requester's rate limit
// (429 M_LIMIT_EXCEEDED past it), per client IP without an access token
// and per user with one.
func TestQueriesBounded(t *testing.T) {
	var queries atomic.Int32
	srv := fakeAppservice(t, "hs-bridge", func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errcode":"M_NOT_FOUND"}`))
	})
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", srv.URL, "")), func(c *config.Config) {
		c.RateLimit = true
	})
	frozen := time.Now()
	n.RateLimit.SetClock(func() time.Time { return frozen })
	alice := n.Register("alice")
	lookup := func(token, alias string) int {
		return n.Do(t, "GET", "/_matrix/client/v3/directory/room/"+url.PathEscape(alias), token, nil, testnode.NoSpecCheck()).Status
	}

	for range 5 {
		if status := lookup("", "#bridge_same:localhost"); status != http.StatusNotFound {
			t.Fatalf("lookup of an alias the appservice does not know: %d, want 404", status)
		}
	}
	if got := queries.Load(); got != 1 {
		t.Errorf("5 lookups of one alias asked the appservice %d times, want once (its no is remembered)", got)
	}

	limited := 0
	for i := range 40 {
		switch status := lookup("", fmt.Sprintf("#bridge_a%d:localhost", i)); status {
		case http.StatusTooManyRequests:
			limited++
		case http.StatusNotFound:
		default:
			t.Fatalf("lookup %d: %d", i, status)
		}
	}
	anonymous := queries.Load()
	if limited == 0 || anonymous > 25 {
		t.Errorf("40 lookups of distinct aliases by one client IP asked the appservice %d times, %d refused; want a limit", anonymous, limited)
	}
	// A user has a bucket of their own.
	if status := lookup(alice.AccessToken, "#bridge_alice:localhost"); status != http.StatusNotFound {
		t.Errorf("alice's lookup: %d, want 404 (the anonymous bucket is not hers)", status)
	}
	if got := queries.Load(); got != anonymous+1 {
		t.Errorf("alice's lookup asked the appservice %d times, want once", got-anonymous)
	}
}
