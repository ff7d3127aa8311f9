package push

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/sync"
)

// backends runs test against SQLite and PostgreSQL.
func backends(t *testing.T, test func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, t.TempDir()+"/db") })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.Start(t)) })
}

func openDB(t *testing.T, dsn string) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, append(slices.Clone(accounts.Migrations), Migrations...)); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db
}

// openRoomsDB is openDB with the rooms package's tables too, for tests
// that write events and rooms themselves.
func openRoomsDB(t *testing.T, dsn string) *storage.DB {
	t.Helper()
	db := openDB(t, dsn)
	if err := db.Migrate(context.Background(), rooms.Migrations); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db
}

func loadService(t *testing.T, db *storage.DB, acc *accounts.Service, fr *fakeRooms) *Service {
	t.Helper()
	s := New(db, nil, acc, fr, Options{})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// openService opens dsn's database, closed at the test's end, and a
// loaded Service on it whose rooms hold the events the test adds.
func openService(t *testing.T, dsn string) (*storage.DB, *fakeRooms, *Service) {
	t.Helper()
	db := openDB(t, dsn)
	t.Cleanup(func() { db.Close() })
	fr := &fakeRooms{events: map[id.EventID]*rooms.Event{}}
	return db, fr, loadService(t, db, nil, fr)
}

func ruleIDs(list []*Rule) []string {
	var out []string
	for _, r := range list {
		out = append(out, r.RuleID)
	}
	return out
}

func rawList(s ...string) []json.RawMessage {
	out := []json.RawMessage{}
	for _, x := range s {
		out = append(out, json.RawMessage(x))
	}
	return out
}

func TestStorageRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, fr, s := openService(t, dsn)

		put := func(kind Kind, ruleID string, nr NewRule) {
			t.Helper()
			if nr.Actions == nil {
				nr.Actions = rawList(`"notify"`)
			}
			if err := s.PutRule(ctx, alice, kind, ruleID, nr); err != nil {
				t.Fatalf("PutRule %s: %v", ruleID, err)
			}
		}
		put(Override, "r1", NewRule{Conditions: rawList(`{"kind":"event_match","key":"content.body","pattern":"beer"}`)})
		put(Override, "r0", NewRule{Before: "r1", Conditions: rawList(`{"kind":"event_property_is","key":"content.x","value":null}`)})
		put(Override, "r2", NewRule{After: "r0"})
		put(Content, "cake", NewRule{Pattern: "cake*lie", Actions: rawList(`"notify"`, `{"set_tweak":"sound","value":"cakealarm.wav"}`)})
		put(Room, string(testRoom), NewRule{Actions: rawList()})
		if err := s.SetEnabled(ctx, alice, Override, "r2", false); err != nil {
			t.Fatal(err)
		}
		if err := s.SetActions(ctx, alice, Underride, RuleMessage, rawList(`"notify"`, `{"set_tweak":"highlight","value":false}`)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetEnabled(ctx, alice, Override, RuleReaction, false); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRule(ctx, alice, Override, "x", NewRule{Actions: rawList(), After: "nope"}); err == nil {
			t.Error("PutRule after an unknown rule succeeded")
		}
		rs := s.Rules(alice)
		if got, want := ruleIDs(rs.Override)[:4], []string{RuleMaster, "r0", "r2", "r1"}; !slices.Equal(got, want) {
			t.Errorf("override order = %v, want %v", got, want)
		}
		pos := s.RulesPos(alice)
		if pos == 0 {
			t.Error("RulesPos = 0 after changes")
		}

		// Unread counts: a message, a threaded reply, and a highlight.
		members := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join", "@dave:remote": "join"}}
		send := func(pos int64, evID id.EventID, sender id.UserID, content string, thread id.EventID) {
			ev := mkEvent("m.room.message", sender, nil, content)
			ev.ID, ev.Pos, ev.ThreadID = evID, pos, thread
			fr.events[evID] = ev
			s.OnEvent(ev, members)
		}
		send(10, "$a", bob, `{"msgtype":"m.text","body":"one"}`, "")
		send(11, "$b", bob, `{"msgtype":"m.text","body":"two","m.mentions":{"user_ids":["@alice:hs"]}}`, "")
		send(12, "$c", bob, `{"msgtype":"m.text","body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":"$a"}}`, "$a")
		// A reply to a threaded event counts in the thread (one hop).
		ev := mkEvent("m.room.message", bob, nil, `{"body":"r"}`)
		ev.ID, ev.Pos, ev.RelatesTo = "$d", 13, "$c"
		s.OnEvent(ev, members)

		checkCounts := func(s *Service, wantMain sync.Counts, wantThread *sync.Counts) {
			t.Helper()
			main, threads := s.Counts(alice, testRoom)
			if main != wantMain {
				t.Errorf("main counts = %+v, want %+v", main, wantMain)
			}
			got := threads["$a"]
			if (got == nil) != (wantThread == nil) || got != nil && *got != *wantThread {
				t.Errorf("thread counts = %+v, want %+v", got, wantThread)
			}
		}
		// The room rule (actions []) overrides the underride rules... but
		// override and content rules come first: only the mention notifies.
		checkCounts(s, sync.Counts{NotificationCount: 1, HighlightCount: 1}, nil)
		if err := s.DeleteRule(ctx, alice, Room, string(testRoom)); err != nil {
			t.Fatal(err)
		}
		send(14, "$e", bob, `{"msgtype":"m.text","body":"three"}`, "")
		send(15, "$f", bob, `{"msgtype":"m.text","body":"four","m.relates_to":{"rel_type":"m.thread","event_id":"$a"}}`, "$a")
		checkCounts(s, sync.Counts{NotificationCount: 2, HighlightCount: 1}, &sync.Counts{NotificationCount: 1})
		if main, _ := s.Counts(bob, testRoom); main != (sync.Counts{}) {
			t.Errorf("sender counts = %+v", main)
		}

		// Everything survives a restart.
		s2 := loadService(t, db, nil, fr)
		a, _ := json.Marshal(s.Rules(alice))
		b, _ := json.Marshal(s2.Rules(alice))
		if !bytes.Equal(a, b) {
			t.Errorf("rules after reload:\n%s\nwant\n%s", b, a)
		}
		if s2.RulesPos(alice) != s.RulesPos(alice) {
			t.Errorf("RulesPos after reload = %d, want %d", s2.RulesPos(alice), s.RulesPos(alice))
		}
		checkCounts(s2, sync.Counts{NotificationCount: 2, HighlightCount: 1}, &sync.Counts{NotificationCount: 1})
		s = s2 // send uses s

		// Receipts: main timeline, then everything.
		if err := s.MarkRead(ctx, alice, testRoom, "main", 14); err != nil {
			t.Fatal(err)
		}
		checkCounts(s, sync.Counts{}, &sync.Counts{NotificationCount: 1})
		// A late hook for an event the receipt covers is ignored.
		send(9, "$old", bob, `{"msgtype":"m.text","body":"late"}`, "")
		checkCounts(s, sync.Counts{}, &sync.Counts{NotificationCount: 1})
		// Sending in the thread reads the thread.
		send(16, "$g", alice, `{"body":"reply","m.relates_to":{"rel_type":"m.thread","event_id":"$a"}}`, "$a")
		checkCounts(s, sync.Counts{}, nil)
		send(17, "$h", bob, `{"msgtype":"m.text","body":"five"}`, "")
		if err := s.MarkRead(ctx, alice, testRoom, "", 17); err != nil {
			t.Fatal(err)
		}
		checkCounts(s, sync.Counts{}, nil)
		checkCounts(loadService(t, db, nil, fr), sync.Counts{}, nil)
	})
}

func TestMasterRule(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	s := loadService(t, db, nil, &fakeRooms{})
	if err := s.SetEnabled(ctx, alice, Override, RuleMaster, true); err != nil {
		t.Fatal(err)
	}
	ev := mkEvent("m.room.message", bob, nil, `{"body":"hi","m.mentions":{"user_ids":["@alice:hs"]}}`)
	got, err := s.Evaluate(ctx, alice, ev, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Outcome{RuleID: RuleMaster}) {
		t.Errorf("Evaluate with master enabled = %+v", got)
	}
	// A user override rule still ranks below the master rule.
	if err := s.PutRule(ctx, alice, Override, "all", NewRule{Actions: rawList(`"notify"`)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Evaluate(ctx, alice, ev, 2); got.RuleID != RuleMaster {
		t.Errorf("matched %s, want the master rule", got.RuleID)
	}
}

func TestSyncSources(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	fr := &fakeRooms{events: map[id.EventID]*rooms.Event{}}
	s := loadService(t, db, nil, fr)

	accountData := func(since int64) bool {
		req := &sync.Request{User: alice, Since: sync.Token{Pos: since}, To: sync.Token{Pos: db.Visible()}, FullState: since == 0}
		resp := &sync.Response{}
		if err := s.RulesSource().Fill(ctx, req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.AccountData.Empty() {
			return false
		}
		b, _ := json.Marshal(resp.AccountData.Events[0])
		if !strings.Contains(string(b), `"type":"m.push_rules"`) || !strings.Contains(string(b), `"global":{"override":`) {
			t.Errorf("account data = %s", b)
		}
		return true
	}
	if !accountData(0) {
		t.Error("no m.push_rules on initial sync")
	}
	before := db.Visible()
	if before > 0 && accountData(before) {
		t.Error("m.push_rules on an incremental sync without changes")
	}
	if err := s.SetEnabled(ctx, alice, Override, RuleMaster, false); err != nil {
		t.Fatal(err)
	}
	if !accountData(before) {
		t.Error("no m.push_rules after a change")
	}
	if accountData(db.Visible()) {
		t.Error("m.push_rules again after the change was synced")
	}

	members := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join"}}
	since := db.Visible()
	ev := mkEvent("m.room.message", bob, nil, `{"msgtype":"m.text","body":"x","m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}`)
	ev.ID, ev.Pos, ev.ThreadID = "$t", since+1, "$root"
	s.OnEvent(ev, members)
	ev = mkEvent("m.room.message", bob, nil, `{"msgtype":"m.text","body":"y"}`)
	ev.ID, ev.Pos = "$m", since+2
	s.OnEvent(ev, members)

	fill := func(threaded bool) *sync.JoinedRoom {
		req := &sync.Request{User: alice, Since: sync.Token{Pos: since}, To: sync.Token{Pos: db.Visible()}, Joined: []id.RoomID{testRoom}}
		if threaded {
			req.Filter = &sync.Filter{Room: &sync.RoomFilter{Timeline: &sync.RoomEventFilter{UnreadThreadNotifications: true}}}
		}
		resp := &sync.Response{}
		if err := s.CountsSource().Fill(ctx, req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.Rooms == nil || resp.Rooms.Join[testRoom] == nil {
			t.Fatal("room with changed counts missing from the response")
		}
		return resp.Rooms.Join[testRoom]
	}
	jr := fill(false)
	if *jr.UnreadNotifications != (sync.Counts{NotificationCount: 2}) || jr.UnreadThreadNotifications != nil {
		t.Errorf("unthreaded counts = %+v, %v", jr.UnreadNotifications, jr.UnreadThreadNotifications)
	}
	jr = fill(true)
	if *jr.UnreadNotifications != (sync.Counts{NotificationCount: 1}) || jr.UnreadThreadNotifications["$root"] == nil ||
		*jr.UnreadThreadNotifications["$root"] != (sync.Counts{NotificationCount: 1}) {
		t.Errorf("threaded counts = %+v, %v", jr.UnreadNotifications, jr.UnreadThreadNotifications)
	}
}

func TestHandlers(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	acc := accounts.New(db, slog.New(slog.DiscardHandler), accounts.Options{ServerName: "hs"})
	uid, err := acc.CreateUser(ctx, "alice", "password", false)
	if err != nil {
		t.Fatal(err)
	}
	login, err := acc.NewSession(ctx, uid, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	s := loadService(t, db, acc, &fakeRooms{})
	mux := http.NewServeMux()
	s.Routes(mux)
	spec := spectest.LoadDefault(t)

	do := func(method, path, body string, wantStatus int, wantCode string) []byte {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+login.AccessToken)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != wantStatus {
			t.Fatalf("%s %s = %d %s, want %d", method, path, rec.Code, rec.Body, wantStatus)
		}
		if wantCode != "" && !strings.Contains(rec.Body.String(), `"`+wantCode+`"`) {
			t.Errorf("%s %s = %s, want %s", method, path, rec.Body, wantCode)
		}
		if err := spec.ValidateResponse(method, strings.SplitN(path, "?", 2)[0], rec.Code, rec.Body.Bytes()); err != nil {
			t.Errorf("%s %s: %v", method, path, err)
		}
		return rec.Body.Bytes()
	}
	const p = "/_matrix/client/v3/pushrules"
	do("GET", p+"/", "", 200, "")
	do("GET", p, "", 200, "")
	do("GET", p+"/global/", "", 200, "")
	do("PUT", p+"/global/content/nocake", `{"pattern":"cake*lie","actions":["notify"]}`, 200, "")
	do("PUT", p+"/global/content/first", `{"pattern":"tea","actions":["notify"]}`, 200, "")
	do("PUT", p+"/global/content/second?after=first", `{"pattern":"time","actions":[]}`, 200, "")
	body := do("GET", p+"/global/content/nocake", "", 200, "")
	if want := `{"rule_id":"nocake","default":false,"enabled":true,"actions":["notify"],"pattern":"cake*lie"}`; string(body) != want {
		t.Errorf("GET rule = %s, want %s", body, want)
	}
	var all struct {
		Global Ruleset `json:"global"`
	}
	json.Unmarshal(do("GET", p+"/", "", 200, ""), &all)
	if got, want := ruleIDs(all.Global.Content), []string{"first", "second", "nocake", RuleContainsUserName}; !slices.Equal(got, want) {
		t.Errorf("content rules = %v, want %v", got, want)
	}
	do("PUT", p+"/global/content/nocake/enabled", `{"enabled":false}`, 200, "")
	if body := do("GET", p+"/global/content/nocake/enabled", "", 200, ""); string(body) != `{"enabled":false}` {
		t.Errorf("enabled = %s", body)
	}
	do("PUT", p+"/global/override/.m.rule.master/enabled", `{"enabled":true}`, 200, "")
	do("PUT", p+"/global/underride/.m.rule.message/actions", `{"actions":["notify",{"set_tweak":"sound","value":"x"}]}`, 200, "")
	if body := do("GET", p+"/global/underride/.m.rule.message/actions", "", 200, ""); string(body) != `{"actions":["notify",{"set_tweak":"sound","value":"x"}]}` {
		t.Errorf("actions = %s", body)
	}
	do("PUT", p+"/global/override/cond", `{"actions":["dont_notify"],"conditions":[{"kind":"event_property_is","key":"content.x","value":false}]}`, 200, "")
	// The historical dont_notify is kept as given (Complement's
	// TestPushRuleCacheHealth reads it back) and notifies nothing.
	if body := do("GET", p+"/global/override/cond", "", 200, ""); string(body) != `{"rule_id":"cond","default":false,"enabled":true,"actions":["dont_notify"],"conditions":[{"kind":"event_property_is","key":"content.x","value":false}]}` {
		t.Errorf("rule with conditions = %s", body)
	}
	if notify, highlight := actionFlags([]json.RawMessage{json.RawMessage(`"dont_notify"`), json.RawMessage(`"coalesce"`)}); notify || highlight {
		t.Errorf("historical actions notify %t, highlight %t; want neither", notify, highlight)
	}
	do("DELETE", p+"/global/content/nocake", "", 200, "")

	// Errors.
	do("GET", p+"/global/content/nocake", "", 404, "M_NOT_FOUND")
	do("DELETE", p+"/global/content/nocake", "", 404, "M_NOT_FOUND")
	// No rule exists in a kind the server does not know (Complement's
	// disableMsc4306PushRules probes postcontent and moves on at 404), but
	// creating a rule in one is a bad request.
	do("GET", p+"/global/bogus/x", "", 404, "M_NOT_FOUND")
	do("GET", p+"/global/bogus/x/enabled", "", 404, "M_NOT_FOUND")
	do("PUT", p+"/global/bogus/x/enabled", `{"enabled":false}`, 404, "M_NOT_FOUND")
	do("PUT", p+"/global/bogus/x/actions", `{"actions":[]}`, 404, "M_NOT_FOUND")
	do("DELETE", p+"/global/bogus/x", "", 404, "M_NOT_FOUND")
	do("PUT", p+"/global/bogus/x", `{"actions":[]}`, 400, "M_INVALID_PARAM")
	do("PUT", p+"/global/override/.m.rule.mine", `{"actions":[]}`, 400, "M_INVALID_PARAM")
	do("PUT", p+"/global/override/a%2Fb", `{"actions":[]}`, 400, "M_INVALID_PARAM")
	do("PUT", p+"/global/override/a%5Cb", `{"actions":[]}`, 400, "M_INVALID_PARAM")
	do("DELETE", p+"/global/override/.m.rule.master", "", 400, "M_INVALID_PARAM")
	do("PUT", p+"/global/content/x?before=missing", `{"pattern":"x","actions":[]}`, 400, "M_UNKNOWN")
	do("PUT", p+"/global/content/x?before=.m.rule.contains_user_name", `{"pattern":"x","actions":[]}`, 400, "M_UNKNOWN")
	do("PUT", p+"/global/content/x", `{"actions":[]}`, 400, "M_MISSING_PARAM")
	do("PUT", p+"/global/override/x", `{"conditions":[]}`, 400, "M_MISSING_PARAM")
	do("PUT", p+"/global/override/x", `{"actions":["bogus"]}`, 400, "M_BAD_JSON")
	do("PUT", p+"/global/override/x", `{"actions":[],"conditions":[{"key":"type"}]}`, 400, "M_BAD_JSON")
	do("PUT", p+"/global/override/x", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"k","value":{"a":1}}]}`, 400, "M_BAD_JSON")
	do("PUT", p+"/global/override/x", `not json`, 400, "M_NOT_JSON")
	do("PUT", p+"/global/override/nope/enabled", `{"enabled":true}`, 404, "M_NOT_FOUND")
	do("PUT", p+"/global/override/.m.rule.nope/actions", `{"actions":[]}`, 404, "M_NOT_FOUND")
	do("PUT", p+"/global/override/.m.rule.master/enabled", `{}`, 400, "M_MISSING_PARAM")
	do("GET", p+"/global/override/.m.rule.master/enabled", "", 200, "")

	req := httptest.NewRequest("GET", p+"/", nil)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Errorf("unauthenticated GET = %d", rec.Code)
	}
}
