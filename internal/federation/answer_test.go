package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestStateAnswersStreamed: A's send_join (v1 and v2, with and without
// omit_members) and /state answers, written as streams, are byte for byte
// what mxhttp.WriteJSON writes for the answer built whole (the way they
// were written before), with characters that JSON escapes for HTML in
// the room's state and a member of B in it.
func TestStateAnswersStreamed(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Topic: "<b>bold</b> & é ☃ \u2028 \"quoted\""})
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	aName := a.Config.ServerName
	for i, tc := range []struct {
		v    int
		omit bool
	}{{2, false}, {2, true}, {1, false}} {
		carol := id.UserID(fmt.Sprintf("@carol%d:%s", i, c.Config.ServerName))
		tmpl, err := c.Federation.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: carol, Via: aName, SupportedVersions: []id.RoomVersion{id.RoomV12}})
		if err != nil {
			t.Fatalf("make_join: %v", err)
		}
		evID, signed, err := c.Rooms.SignTemplate(tmpl.RoomVersion, tmpl.Event)
		if err != nil {
			t.Fatalf("sign the join: %v", err)
		}
		servers := slices.Clone(a.Rooms.JoinedServers(ctx, roomID))
		got, _, err := c.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: aName, Method: http.MethodPut, Path: federation.URLPath{"v" + strconv.Itoa(tc.v), "send_join", roomID, evID},
			Query: url.Values{"omit_members": {strconv.FormatBool(tc.omit)}}, Authenticate: true, RequestJSON: signed,
		})
		if err != nil {
			t.Fatalf("send_join v%d omit_members=%v: %v", tc.v, tc.omit, err)
		}
		state, chain, err := a.Rooms.StateBefore(ctx, roomID, evID, tc.omit)
		if err != nil {
			t.Fatalf("A's state before the join: %v", err)
		}
		joined, err := a.Rooms.FederationEvent(ctx, evID)
		if err != nil {
			t.Fatalf("the join on A: %v", err)
		}
		whole := map[string]any{"origin": aName, "state": state, "auth_chain": chain, "event": json.RawMessage(joined.JSON), "members_omitted": tc.omit}
		if tc.omit {
			whole["servers_in_room"] = servers
		}
		var want any = whole
		if tc.v == 1 {
			want = []any{http.StatusOK, whole}
		}
		wantSameAnswer(t, fmt.Sprintf("send_join v%d omit_members=%v", tc.v, tc.omit), got, want)
	}

	join, err := a.Rooms.StateEvent(ctx, roomID, "m.room.member", string(bob.UserID))
	if err != nil {
		t.Fatalf("bob's join on A: %v", err)
	}
	got, _, err := b.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
		ServerName: aName, Method: http.MethodGet, Path: federation.URLPath{"v1", "state", roomID},
		Query: url.Values{"event_id": {string(join.ID)}}, Authenticate: true,
	})
	if err != nil {
		t.Fatalf("/state: %v", err)
	}
	state, chain, err := a.Rooms.StateBefore(ctx, roomID, join.ID, false)
	if err != nil {
		t.Fatalf("A's state before bob's join: %v", err)
	}
	wantSameAnswer(t, "/state", got, map[string]any{"pdus": state, "auth_chain": chain})
	// The topic is in it, its characters escaped as json.Marshal escapes
	// them.
	if !strings.Contains(string(got), `\u003cb\u003ebold\u003c/b\u003e \u0026 é ☃ \u2028 \"quoted\"`) {
		t.Errorf("/state: the topic is not in the answer as json.Marshal writes it: %.2000s", got)
	}
}

// wantSameAnswer fails the test unless got is what mxhttp.WriteJSON
// writes for want.
func wantSameAnswer(t *testing.T, what string, got []byte, want any) {
	t.Helper()
	rec := httptest.NewRecorder()
	mxhttp.WriteJSON(rec, http.StatusOK, want)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: encoding the whole answer failed: %s", what, rec.Body)
	}
	if wantBytes := rec.Body.Bytes(); string(got) != string(wantBytes) {
		t.Errorf("%s: the streamed answer differs from the whole one:\n got %.600s\nwant %.600s", what, got, wantBytes)
	}
}
