package federation_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// twoNodes starts two federating nodes on SQLite sharing one CA.
func twoNodes(t *testing.T) (a, b *testnode.Node) {
	t.Helper()
	ca := testnode.NewCA(t)
	return testnode.StartFederating(t, testnode.SQLite, ca), testnode.StartFederating(t, testnode.SQLite, ca)
}

// fedStatus returns the status and errcode of a federation client error.
func fedStatus(err error) (int, string) {
	code, status := testnode.ErrCode(err)
	return status, code
}

// TestRemoteProfile: a user on A reads the profile of a user on B through
// A's client API (the whole profile and one field); a user B does not know
// is 404, B's answer to a signed query carries only the field asked for,
// and a server that cannot be reached is 502.
func TestRemoteProfile(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	alice := a.Register("alice")
	bob := b.Register("bob")
	if err := bob.SetDisplayName(ctx, "Bob of B"); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetAvatarURL(ctx, id.MustParseContentURI("mxc://"+b.Config.ServerName+"/avatar")); err != nil {
		t.Fatal(err)
	}

	p, err := alice.GetProfile(ctx, bob.UserID)
	if err != nil {
		t.Fatalf("A's profile of %s: %v", bob.UserID, err)
	}
	if p.DisplayName != "Bob of B" || p.AvatarURL.String() != "mxc://"+b.Config.ServerName+"/avatar" {
		t.Fatalf("A's profile of %s: %+v", bob.UserID, p)
	}
	r := testnode.Call(t, alice, "GET", testnode.V3+"/profile/"+url.PathEscape(string(bob.UserID))+"/displayname", nil).OK(t)
	if r["displayname"] != "Bob of B" || len(r) != 1 {
		t.Fatalf("A's displayname of %s: %v", bob.UserID, r)
	}
	testnode.Call(t, alice, "GET", testnode.V3+"/profile/"+url.PathEscape(string(bob.UserID))+"/m.tz", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")

	nobody := id.NewUserID("nobody", b.Config.ServerName)
	_, err = alice.GetProfile(ctx, nobody)
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	// A user ID whose server is no server name is nobody's: nothing is asked.
	_, err = alice.GetProfile(ctx, "@x:not a server!")
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)

	// B's federation endpoint, asked directly by A.
	var one map[string]any
	err = a.Federation.Client.Query(ctx, b.Config.ServerName, "profile", url.Values{"user_id": {string(bob.UserID)}, "field": {"displayname"}}, &one)
	if err != nil || one["displayname"] != "Bob of B" || len(one) != 1 {
		t.Fatalf("B's query/profile with field=displayname: %v, %v", one, err)
	}
	for _, tt := range []struct {
		name   string
		query  url.Values
		status int
		code   string
	}{
		{"no user_id", url.Values{}, 400, "M_MISSING_PARAM"},
		{"not a user ID", url.Values{"user_id": {"bob"}}, 400, "M_INVALID_PARAM"},
		{"user of another server", url.Values{"user_id": {string(alice.UserID)}}, 400, "M_INVALID_PARAM"},
		{"unknown user", url.Values{"user_id": {string(nobody)}}, 404, "M_NOT_FOUND"},
		{"unset field", url.Values{"user_id": {string(bob.UserID)}, "field": {"m.tz"}}, 404, "M_NOT_FOUND"},
		{"bad field name", url.Values{"user_id": {string(bob.UserID)}, "field": {"Not A Field"}}, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out map[string]any
			err := a.Federation.Client.Query(ctx, b.Config.ServerName, "profile", tt.query, &out)
			if status, code := fedStatus(err); status != tt.status || code != tt.code {
				t.Fatalf("got %d %s (%v), want %d %s", status, code, err, tt.status, tt.code)
			}
		})
	}

	// A user A never asked about, once B is gone: B cannot be reached.
	carol := b.Register("carol")
	b.Stop()
	_, err = alice.GetProfile(ctx, carol.UserID)
	testnode.WantErr(t, err, "M_UNKNOWN", http.StatusBadGateway)
	// What A already asked stays for a short while.
	if p, err := alice.GetProfile(ctx, bob.UserID); err != nil || p.DisplayName != "Bob of B" {
		t.Fatalf("cached profile of %s after B stopped: %+v, %v", bob.UserID, p, err)
	}
}

// TestRemoteAlias: a user on A resolves an alias of B through A's client
// API and through ResolveAlias (what joining by alias uses), getting B's
// room and B among its servers; an unknown alias of B is 404, a malformed
// one 400, and B's signed directory query refuses bad input.
func TestRemoteAlias(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	alice := a.Register("alice")
	bob := b.Register("bob")
	roomID := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lobby"})
	alias := id.NewRoomAlias("lobby", b.Config.ServerName)

	got, err := alice.ResolveAlias(ctx, alias)
	if err != nil {
		t.Fatalf("A resolving %s: %v", alias, err)
	}
	if got.RoomID != roomID || len(got.Servers) == 0 || got.Servers[0] != b.Config.ServerName {
		t.Fatalf("A resolving %s: %+v; want %s on %s", alias, got, roomID, b.Config.ServerName)
	}
	room, servers, err := a.Node.Client.ResolveAlias(ctx, alias)
	if err != nil || room != roomID || len(servers) != 1 || servers[0] != b.Config.ServerName {
		t.Fatalf("A's ResolveAlias(%s) = %s, %v, %v", alias, room, servers, err)
	}

	_, err = alice.ResolveAlias(ctx, id.NewRoomAlias("nowhere", b.Config.ServerName))
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	testnode.Call(t, alice, "GET", testnode.V3+"/directory/room/"+url.PathEscape("#x:not a server!"), nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	for _, tt := range []struct {
		name   string
		query  url.Values
		status int
		code   string
	}{
		{"no room_alias", url.Values{}, 400, "M_MISSING_PARAM"},
		{"not an alias", url.Values{"room_alias": {"lobby"}}, 400, "M_INVALID_PARAM"},
		{"alias of another server", url.Values{"room_alias": {"#lobby:" + a.Config.ServerName}}, 400, "M_INVALID_PARAM"},
		{"unknown alias", url.Values{"room_alias": {"#nowhere:" + b.Config.ServerName}}, 404, "M_NOT_FOUND"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out map[string]any
			err := a.Federation.Client.Query(ctx, b.Config.ServerName, "directory", tt.query, &out)
			if status, code := fedStatus(err); status != tt.status || code != tt.code {
				t.Fatalf("got %d %s (%v), want %d %s", status, code, err, tt.status, tt.code)
			}
		})
	}
}

// TestOpenIDUserInfoOverFederation: a token a user of A requested is
// checked on A's federation listener, without X-Matrix (as a third party
// asks), and by B's federation client; an unknown token is 401.
func TestOpenIDUserInfoOverFederation(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	alice := a.Register("alice")
	tok, err := alice.RequestOpenIDToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := a.FederationDo(t, "GET", "/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok.AccessToken), nil).OK(t)
	if r["sub"] != string(alice.UserID) {
		t.Fatalf("userinfo on A's federation listener: %v", r)
	}
	info, err := b.Federation.Client.GetOpenIDUserInfo(ctx, a.Config.ServerName, tok.AccessToken)
	if err != nil || info.Sub != alice.UserID {
		t.Fatalf("B checking alice's token with A: %+v, %v", info, err)
	}
	a.FederationDo(t, "GET", "/_matrix/federation/v1/openid/userinfo?access_token=nope", nil).Want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	a.FederationDo(t, "GET", "/_matrix/federation/v1/openid/userinfo", nil).Want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}

// TestRemotePublicRooms: a user on A lists B's room directory through A's
// client API: pages with limit and since, a filter (sent as POST); B's
// federation endpoints refuse bad input, and A refuses a server name that
// is no server name.
func TestRemotePublicRooms(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	alice := a.Register("alice")
	bob := b.Register("bob")
	bobby := b.Register("bobby")
	big := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Gardening club"})
	testnode.Join(t, bobby, big)
	small := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Chess"})
	testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Not published"})
	bName := b.Config.ServerName

	first, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: bName, Limit: 1})
	if err != nil {
		t.Fatalf("A listing B's directory: %v", err)
	}
	if len(first.Chunk) != 1 || first.Chunk[0].RoomID != big || first.NextBatch == "" || first.TotalRoomCountEstimate != 2 {
		t.Fatalf("first page of B's directory: %+v", first)
	}
	second, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: bName, Limit: 1, Since: first.NextBatch})
	if err != nil || len(second.Chunk) != 1 || second.Chunk[0].RoomID != small || second.NextBatch != "" {
		t.Fatalf("second page of B's directory: %+v, %v", second, err)
	}
	found, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: bName, Filter: &mautrix.PublicRoomsFilter{GenericSearchTerm: "chess"}})
	if err != nil || len(found.Chunk) != 1 || found.Chunk[0].RoomID != small {
		t.Fatalf("B's directory filtered for chess: %+v, %v", found, err)
	}

	_, err = alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: "not a server!"})
	testnode.WantErr(t, err, "M_INVALID_PARAM", http.StatusBadRequest)

	for _, tt := range []struct {
		name   string
		method string
		query  url.Values
		body   any
		code   string
	}{
		{"bad limit", "GET", url.Values{"limit": {"many"}}, nil, "M_INVALID_PARAM"},
		{"bad since", "GET", url.Values{"since": {"yesterday"}}, nil, "M_INVALID_PARAM"},
		{"bad include_all_networks", "GET", url.Values{"include_all_networks": {"maybe"}}, nil, "M_INVALID_PARAM"},
		{"body not an object", "POST", nil, []int{1}, "M_BAD_JSON"},
		{"negative limit", "POST", nil, map[string]any{"limit": -1}, "M_INVALID_PARAM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := a.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
				ServerName: bName, Method: tt.method, Path: federation.URLPath{"v1", "publicRooms"},
				Query: tt.query, Authenticate: true, RequestJSON: tt.body,
			})
			if status, code := fedStatus(err); status != http.StatusBadRequest || code != tt.code {
				t.Fatalf("got %d %s (%v), want 400 %s", status, code, err, tt.code)
			}
		})
	}
}

// TestFederationHierarchy: B answers A's hierarchy request for a public
// space with its children: summaries of those A may preview, the ID of an
// invite-only one among the inaccessible children, nothing about a child B
// does not know; suggested_only keeps the suggested child only. A space A
// may not preview, or that B does not know, is 404.
func TestFederationHierarchy(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	bob := b.Register("bob")
	bName := b.Config.ServerName
	space := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Space", CreationContent: map[string]any{"type": "m.space"}})
	public := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Public"})
	private := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Private"})
	readable := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Readable",
		InitialState: []*event.Event{{Type: event.StateHistoryVisibility, Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityWorldReadable}}}}})
	unknown := id.RoomID("!unknown:" + bName)
	for _, child := range []struct {
		room      id.RoomID
		suggested bool
	}{{public, true}, {private, false}, {readable, false}, {unknown, false}} {
		testnode.SendState(t, bob, space, event.StateSpaceChild, string(child.room), map[string]any{"via": []string{bName}, "suggested": child.suggested})
	}
	privateSpace := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", CreationContent: map[string]any{"type": "m.space"}})

	type response struct {
		Room struct {
			RoomID        id.RoomID        `json:"room_id"`
			RoomType      string           `json:"room_type"`
			ChildrenState []map[string]any `json:"children_state"`
		} `json:"room"`
		Children []struct {
			RoomID id.RoomID `json:"room_id"`
			Name   string    `json:"name"`
		} `json:"children"`
		InaccessibleChildren []id.RoomID `json:"inaccessible_children"`
	}
	hierarchy := func(room id.RoomID, q url.Values) (response, error) {
		var out response
		_, _, err := a.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: bName, Method: "GET", Path: federation.URLPath{"v1", "hierarchy", room},
			Query: q, Authenticate: true, ResponseJSON: &out,
		})
		return out, err
	}
	got, err := hierarchy(space, nil)
	if err != nil {
		t.Fatal(err)
	}
	var children []id.RoomID
	for _, c := range got.Children {
		children = append(children, c.RoomID)
	}
	if got.Room.RoomID != space || got.Room.RoomType != "m.space" || len(got.Room.ChildrenState) != 4 ||
		!slices.Equal(sorted(children), sorted([]id.RoomID{public, readable})) ||
		!slices.Equal(got.InaccessibleChildren, []id.RoomID{private}) {
		t.Fatalf("hierarchy of the space: %+v", got)
	}
	got, err = hierarchy(space, url.Values{"suggested_only": {"true"}})
	if err != nil || len(got.Children) != 1 || got.Children[0].RoomID != public || len(got.Room.ChildrenState) != 1 || len(got.InaccessibleChildren) != 0 {
		t.Fatalf("suggested_only hierarchy: %+v, %v", got, err)
	}

	for _, tt := range []struct {
		name   string
		room   id.RoomID
		query  url.Values
		status int
		code   string
	}{
		{"space A may not preview", privateSpace, nil, 404, "M_NOT_FOUND"},
		{"unknown room", unknown, nil, 404, "M_NOT_FOUND"},
		{"bad suggested_only", space, url.Values{"suggested_only": {"yes"}}, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hierarchy(tt.room, tt.query)
			if status, code := fedStatus(err); status != tt.status || code != tt.code {
				t.Fatalf("got %d %s (%v), want %d %s", status, code, err, tt.status, tt.code)
			}
		})
	}
}

func sorted(ids []id.RoomID) []id.RoomID {
	return slices.Sorted(slices.Values(ids))
}

// TestRemoteHierarchy: a user on A walks a space of A whose child is a
// space of B that A does not know: A asks B, and the page lists B's space
// with its children state and B's public child, but not B's invite-only
// one. The user also gets room summaries of B's rooms through A.
func TestRemoteHierarchy(t *testing.T) {
	a, b := twoNodes(t)
	alice := a.Register("alice")
	bob := b.Register("bob")
	bName := b.Config.ServerName
	spaceB := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "B's space", CreationContent: map[string]any{"type": "m.space"}})
	publicB := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "B's public room"})
	privateB := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "B's private room"})
	for _, child := range []id.RoomID{publicB, privateB} {
		testnode.SendState(t, bob, spaceB, event.StateSpaceChild, string(child), map[string]any{"via": []string{bName}})
	}
	spaceA := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "A's space", CreationContent: map[string]any{"type": "m.space"}})
	testnode.SendState(t, alice, spaceA, event.StateSpaceChild, string(spaceB), map[string]any{"via": []string{bName}})

	r := testnode.Call(t, alice, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(string(spaceA))+"/hierarchy", nil)
	page := testnode.Decode[struct {
		Rooms []struct {
			RoomID        id.RoomID        `json:"room_id"`
			Name          string           `json:"name"`
			ChildrenState []map[string]any `json:"children_state"`
		} `json:"rooms"`
	}](t, r.Body)
	var got []id.RoomID
	for _, room := range page.Rooms {
		got = append(got, room.RoomID)
	}
	if !slices.Equal(got, []id.RoomID{spaceA, spaceB, publicB}) {
		t.Fatalf("hierarchy of A's space: %s", r.Body)
	}
	if page.Rooms[1].Name != "B's space" || len(page.Rooms[1].ChildrenState) != 2 || page.Rooms[2].Name != "B's public room" {
		t.Fatalf("B's rooms in A's hierarchy: %s", r.Body)
	}

	// Room summaries of B's rooms, through A, by room ID with via and by
	// B's alias; none for B's private room, nor for a caller without a
	// token (A asks other servers only for its users).
	summary := func(target string, query string) *testnode.Response {
		return testnode.Call(t, alice, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(target)+query, nil)
	}
	s := summary(string(publicB), "?via="+url.QueryEscape(bName)).OK(t)
	if s["room_id"] != string(publicB) || s["name"] != "B's public room" || s["membership"] != "leave" {
		t.Fatalf("summary of B's public room: %v", s)
	}
	if _, err := bob.CreateAlias(context.Background(), id.NewRoomAlias("bpublic", bName), publicB); err != nil {
		t.Fatal(err)
	}
	s = summary("#bpublic:"+bName, "").OK(t)
	if s["room_id"] != string(publicB) {
		t.Fatalf("summary of B's alias: %v", s)
	}
	summary(string(privateB), "?via="+url.QueryEscape(bName)).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	a.Do(t, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(string(publicB))+"?via="+url.QueryEscape(bName), "", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
}

// TestFederationQueriesMatchSpec: the answers of the query, directory,
// publicRooms, hierarchy and userinfo endpoints, success and error, match
// the spec's schemas (FederationDo checks each against the spec).
func TestFederationQueriesMatchSpec(t *testing.T) {
	a, b := twoNodes(t)
	bob := b.Register("bob")
	bName := b.Config.ServerName
	if err := bob.SetDisplayName(context.Background(), "Bob"); err != nil {
		t.Fatal(err)
	}
	space := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Space",
		RoomAliasName: "space", CreationContent: map[string]any{"type": "m.space"}})
	child := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Child"})
	testnode.SendState(t, bob, space, event.StateSpaceChild, string(child), map[string]any{"via": []string{bName}})
	tok, err := bob.RequestOpenIDToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	key := a.Node.Federation.Client.Key
	for _, tt := range []struct {
		method, uri string
		body        any
		status      int
	}{
		{"GET", "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape(string(bob.UserID)), nil, 200},
		{"GET", "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape("@nobody:"+bName), nil, 404},
		{"GET", "/_matrix/federation/v1/query/directory?room_alias=" + url.QueryEscape("#space:"+bName), nil, 200},
		{"GET", "/_matrix/federation/v1/query/directory?room_alias=" + url.QueryEscape("#nowhere:"+bName), nil, 404},
		{"GET", "/_matrix/federation/v1/publicRooms?limit=1", nil, 200},
		{"POST", "/_matrix/federation/v1/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "space"}}, 200},
		{"GET", "/_matrix/federation/v1/hierarchy/" + url.PathEscape(string(space)), nil, 200},
		{"GET", "/_matrix/federation/v1/hierarchy/" + url.PathEscape("!unknown:"+bName), nil, 404},
	} {
		t.Run(tt.method+" "+tt.uri, func(t *testing.T) {
			auth := xmatrix(t, key, a.Config.ServerName, bName, tt.method, tt.uri, tt.body)
			r := b.FederationDo(t, tt.method, tt.uri, tt.body, testnode.Header("Authorization", auth))
			if r.Status != tt.status {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, tt.status)
			}
		})
	}
	r := b.FederationDo(t, "GET", "/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok.AccessToken), nil).OK(t)
	if r["sub"] != string(bob.UserID) {
		t.Fatalf("userinfo: %v", r)
	}
}

// TestRemoteRestrictedSummaryAfterJoin mirrors Complement's
// TestRestrictedRoomsSpacesSummaryFederation: B's room is restricted to
// A's space, which B does not know yet, so B refuses A a summary of it;
// once a user of B joins the space, B knows that A's alice is in it, and
// A's next request is asked of B again (a refusal is not kept) and answers.
func TestRemoteRestrictedSummaryAfterJoin(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	alice, charlie := a.Register("alice"), b.Register("charlie")
	space := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Space", CreationContent: map[string]any{"type": "m.space"}})
	room := testnode.CreateRoom(t, charlie, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Room", RoomVersion: id.RoomV8,
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted",
			"allow":     []map[string]any{{"type": "m.room_membership", "room_id": space, "via": []string{a.Config.ServerName}}},
		}}}},
	})
	summary := func() *testnode.Response {
		return testnode.Call(t, alice, "GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(string(room))+"?via="+url.QueryEscape(b.Config.ServerName), nil)
	}
	summary().Want(t, http.StatusNotFound, "M_NOT_FOUND")
	if _, err := charlie.JoinRoom(ctx, string(space), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatal(err)
	}
	if s := summary().OK(t); s["room_id"] != string(room) || s["name"] != "Room" {
		t.Fatalf("summary of B's restricted room once B knows the space: %v", s)
	}
}
