package moderation_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/moderation"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

var (
	configType = event.Type{Type: moderation.ConfigType, Class: event.StateEventType}
	userRule   = event.Type{Type: "m.policy.rule.user", Class: event.StateEventType}
	serverRule = event.Type{Type: "m.policy.rule.server", Class: event.StateEventType}
)

// catchUp runs the moderation follower on everything committed.
func catchUp(t *testing.T, n *testnode.Node) {
	t.Helper()
	for {
		more, err := n.Moderation.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

// publicRoom creates a public room as c.
func publicRoom(t *testing.T, c *mautrix.Client, name string) id.RoomID {
	t.Helper()
	return testnode.CreateRoom(t, c, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name})
}

// grant sets a user's power level in a room, as c.
func grant(t *testing.T, c *mautrix.Client, room id.RoomID, user id.UserID, level int) {
	t.Helper()
	var pl event.PowerLevelsEventContent
	if err := c.StateEvent(t.Context(), room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(user, level)
	testnode.SendState(t, c, room, event.StatePowerLevels, "", &pl)
}

// protect configures a room's protections and has the moderation user
// join it with power level 100.
func protect(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID, cfg map[string]any) {
	t.Helper()
	grant(t, c, room, n.Moderation.Bot(), 100)
	testnode.SendState(t, c, room, configType, "", cfg)
	catchUp(t, n)
	if got := n.Rooms.Membership(n.Moderation.Bot(), room); got != "join" {
		t.Fatalf("the moderation user is %q in %s, want join", got, room)
	}
}

// modRoom creates a private moderators' room as c with the moderation
// user invited.
func modRoom(t *testing.T, n *testnode.Node, c *mautrix.Client) id.RoomID {
	t.Helper()
	room := testnode.CreateRoom(t, c, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "mods"})
	testnode.Invite(t, c, room, n.Moderation.Bot())
	return room
}

// notices returns the bodies of the moderation user's messages in a room,
// oldest first, with their event IDs.
func notices(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID) ([]string, []id.EventID) {
	t.Helper()
	resp, err := c.Messages(t.Context(), room, "", "", mautrix.DirectionBackward, nil, 500)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	var ids []id.EventID
	for _, ev := range slices.Backward(resp.Chunk) {
		if ev.Sender == n.Moderation.Bot() && ev.Type == event.EventMessage {
			bodies = append(bodies, ev.Content.Raw["body"].(string))
			ids = append(ids, ev.ID)
		}
	}
	return bodies, ids
}

// wantNotice returns the event ID of the moderation user's newest message
// in the room that contains want.
func wantNotice(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID, want string) id.EventID {
	t.Helper()
	bodies, ids := notices(t, n, c, room)
	for i := len(bodies) - 1; i >= 0; i-- {
		if strings.Contains(bodies[i], want) {
			return ids[i]
		}
	}
	t.Fatalf("no message of the moderation user in %s contains %q; it sent %q", room, want, bodies)
	return ""
}

// wantNoticeMatching returns the event ID of the moderation user's newest
// message in the room that matches the regular expression re.
func wantNoticeMatching(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID, re string) id.EventID {
	t.Helper()
	bodies, ids := notices(t, n, c, room)
	for i := len(bodies) - 1; i >= 0; i-- {
		if regexp.MustCompile(re).MatchString(bodies[i]) {
			return ids[i]
		}
	}
	t.Fatalf("no message of the moderation user in %s matches %s; it sent %q", room, re, bodies)
	return ""
}

func wantMembership(t *testing.T, n *testnode.Node, room id.RoomID, user id.UserID, want string) {
	t.Helper()
	if got := n.Rooms.Membership(user, room); got != want {
		t.Fatalf("%s is %q in %s, want %q", user, got, room, want)
	}
}

// TestPolicyListBanPropagates: a user rule in a list both protected
// rooms follow bans the matching member from both, a member joining
// later is banned as they join, removing the rule lifts the bans, and a
// server rule becomes the rooms' server ACL.
func TestPolicyListBanPropagates(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		spammer := n.Register("spammer")
		late := n.Register("spamlate")
		friend := n.Register("friend")
		list := publicRoom(t, admin, "list")
		mods := modRoom(t, n, admin)
		a, b := publicRoom(t, admin, "a"), publicRoom(t, admin, "b")
		for _, room := range []id.RoomID{a, b} {
			testnode.Join(t, spammer, room)
			testnode.Join(t, friend, room)
			protect(t, n, admin, room, map[string]any{"policy_lists": []id.RoomID{list}, "moderators_room": mods,
				"unban_on_rule_removal": true})
		}

		testnode.SendState(t, admin, list, userRule, "r1", map[string]string{
			"entity": "@spam*:" + n.Accounts.ServerName(), "recommendation": "m.ban", "reason": "spam"})
		catchUp(t, n)
		for _, room := range []id.RoomID{a, b} {
			wantMembership(t, n, room, spammer.UserID, "ban")
			wantMembership(t, n, room, friend.UserID, "join")
		}
		wantNotice(t, n, admin, mods, string(spammer.UserID)+" banned from "+string(a)+" by policy list "+string(list)+
			`, rule "@spam*:`+n.Accounts.ServerName()+`": spam. Undo: react with ↩️`)

		if _, err := late.JoinRoomByID(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		catchUp(t, n)
		wantMembership(t, n, a, late.UserID, "ban")

		testnode.SendState(t, admin, list, serverRule, "s1", map[string]string{"entity": "evil.example", "recommendation": "m.ban"})
		catchUp(t, n)
		for _, room := range []id.RoomID{a, b} {
			var acl event.ServerACLEventContent
			if err := admin.StateEvent(t.Context(), room, event.StateServerACL, "", &acl); err != nil {
				t.Fatalf("server ACL of %s: %v", room, err)
			}
			if !slices.Contains(acl.Deny, "evil.example") || !slices.Contains(acl.Allow, "*") {
				t.Fatalf("server ACL of %s is %+v", room, acl)
			}
		}

		testnode.SendState(t, admin, list, userRule, "r1", map[string]string{})
		catchUp(t, n)
		for _, room := range []id.RoomID{a, b} {
			wantMembership(t, n, room, spammer.UserID, "leave")
		}
		wantMembership(t, n, a, late.UserID, "leave")
	})
}

// TestNodeListPublishedAndApplied: a rule an admin publishes through the
// admin API lands in the node's own list room and applies to every
// protected room, even one that names no list.
func TestNodeListPublishedAndApplied(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	spammer := n.Register("spammer")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, spammer, room)
	protect(t, n, admin, room, map[string]any{"words": []string{"unused"}})

	path := "/_matrixos/admin/v1/moderation/rules/user/" + string(spammer.UserID)
	body := n.Do(t, "PUT", path, admin.AccessToken, map[string]string{"reason": "spam"}, testnode.NoSpecCheck()).OK(t)
	list := id.RoomID(body["list_room"].(string))
	catchUp(t, n)
	wantMembership(t, n, room, spammer.UserID, "ban")
	testnode.Join(t, admin, list)
	var rule map[string]any
	if err := admin.StateEvent(t.Context(), list, userRule, "rule:"+string(spammer.UserID), &rule); err != nil {
		t.Fatalf("the rule is not readable in the node's list %s: %v", list, err)
	}
	if rule["entity"] != string(spammer.UserID) || rule["recommendation"] != "m.ban" {
		t.Fatalf("published rule %v", rule)
	}
	settings := n.Do(t, "GET", "/_matrixos/admin/v1/moderation", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)
	if settings["list_room"] != string(list) {
		t.Fatalf("settings %v", settings)
	}
	acts := n.Do(t, "GET", "/_matrixos/admin/v1/moderation/actions", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)
	if got := acts["actions"].([]any); len(got) == 0 || got[0].(map[string]any)["action"] != "ban" {
		t.Fatalf("action log %v", acts)
	}
	n.Do(t, "PUT", "/_matrixos/admin/v1/moderation/rules/person/x", admin.AccessToken, map[string]string{}, testnode.NoSpecCheck()).
		Want(t, 400, "M_INVALID_PARAM")
	n.Do(t, "PUT", "/_matrixos/admin/v1/moderation/rules/server/*", admin.AccessToken, map[string]string{}, testnode.NoSpecCheck()).
		Want(t, 400, "M_INVALID_PARAM")
	user := n.Register("user")
	n.Do(t, "GET", "/_matrixos/admin/v1/moderation", user.AccessToken, nil, testnode.NoSpecCheck()).Want(t, 403, "M_FORBIDDEN")
}

// TestBanRefusedWithoutPower: without the ban power level the moderation
// user bans nobody and says so in the moderators' room.
func TestBanRefusedWithoutPower(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	spammer := n.Register("spammer")
	mods := modRoom(t, n, admin)
	list := publicRoom(t, admin, "list")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, spammer, room)
	testnode.SendState(t, admin, room, configType, "", map[string]any{"policy_lists": []id.RoomID{list}, "moderators_room": mods})
	catchUp(t, n)
	wantMembership(t, n, room, n.Moderation.Bot(), "join")
	testnode.SendState(t, admin, list, userRule, "r1", map[string]string{"entity": string(spammer.UserID), "recommendation": "m.ban"})
	catchUp(t, n)
	wantMembership(t, n, room, spammer.UserID, "join")
	wantNotice(t, n, admin, mods, "⚠️ Could not ban "+string(spammer.UserID)+" from "+string(room)+" (policy list "+string(list)+
		`, rule "`+string(spammer.UserID)+`"): the moderation user may not ban in `+string(room))
}

// TestFloodIsStopped: a user over the flood limit is muted (power level
// below events_default), their next message refused, and a reaction to
// the report in the moderators' room unmutes them.
func TestFloodIsStopped(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		flooder := n.Register("flooder")
		calm := n.Register("calm")
		mods := modRoom(t, n, admin)
		room := publicRoom(t, admin, "a")
		testnode.Join(t, flooder, room)
		testnode.Join(t, calm, room)
		protect(t, n, admin, room, map[string]any{"flood": map[string]int{"messages": 3, "seconds": 60}, "moderators_room": mods})
		testnode.SendText(t, calm, room, "hello")
		// The fourth message is over the limit; the follower, running
		// meanwhile, may mute before the test's catchUp.
		for i := range 4 {
			testnode.SendText(t, flooder, room, "spam "+string(rune('a'+i)))
		}
		catchUp(t, n)
		_, err := flooder.SendText(t.Context(), room, "still here?")
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)
		testnode.SendText(t, calm, room, "I can still talk")
		wantNotice(t, n, admin, room, string(flooder.UserID)+": you are muted by the flood protection: 4 messages in 60 s (the limit is 3).")
		// The report names who, which protection, why, and both ways to
		// undo it.
		report := wantNoticeMatching(t, n, admin, mods, "^"+regexp.QuoteMeta(string(flooder.UserID)+" muted in "+string(room)+
			" by the flood protection: 4 messages in 60 s (the limit is 3). Undo: react with ↩️ to this message, or send \"!assistant mod undo ")+
			`\d+`+regexp.QuoteMeta(`" in `+string(room)+".")+"$")

		if _, err := admin.SendReaction(t.Context(), mods, report, "↩️"); err != nil {
			t.Fatal(err)
		}
		catchUp(t, n)
		testnode.SendText(t, flooder, room, "sorry")
		wantNotice(t, n, admin, mods, "Undone by "+string(admin.UserID))
	})
}

// TestProtectionsRedact: each content protection redacts the message it
// refuses, and leaves ordinary ones and exempt senders alone.
func TestProtectionsRedact(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, user, room)
	protect(t, n, admin, room, map[string]any{
		"mentions":      map[string]int{"max": 2},
		"words":         []string{"badword"},
		"blocked_links": []string{"evil.example"},
		"first_message": map[string]bool{"no_links": true},
	})
	server := n.Accounts.ServerName()
	first := testnode.SendText(t, user, room, "hi, see https://fine.example/page")
	ok := testnode.SendText(t, user, room, "an ordinary message about class")
	link := testnode.SendText(t, user, room, "look at https://www.evil.example/x")
	word := testnode.SendText(t, user, room, "what a BadWord!")
	many := testnode.SendText(t, user, room, "@a:"+server+" @b:"+server+" @c:"+server+" hello")
	okLink := testnode.SendText(t, user, room, "now https://fine.example/page is fine")
	exempt := testnode.SendText(t, admin, room, "the admin may say badword")
	catchUp(t, n)
	// One run in 15 to 45 under load found a message unredacted right
	// after catchUp, with no refusal logged; the cause is not found (a
	// read racing the redaction's cache update, or an event seen by the
	// background follower instead). Each expected redaction therefore gets
	// a few seconds, and the messages that must stay are checked after.
	want := map[id.EventID]bool{first: true, ok: false, link: true, word: true, many: true, okLink: false, exempt: false}
	for _, redacted := range []bool{true, false} {
		for evID, w := range want {
			if w != redacted {
				continue
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				ev, err := n.Rooms.Event(t.Context(), evID)
				if err != nil {
					t.Fatal(err)
				}
				got := ev.RedactedBy != ""
				if got == redacted {
					break
				}
				if !redacted || time.Now().After(deadline) {
					t.Errorf("%s (%s): redacted %v, want %v", evID, ev.Content(), got, redacted)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// TestNewAccountsLimited: messages of accounts younger than the limit
// are redacted.
func TestNewAccountsLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, user, room)
	protect(t, n, admin, room, map[string]any{"new_accounts": map[string]int{"min_age_seconds": 3600}})
	evID := testnode.SendText(t, user, room, "hello")
	catchUp(t, n)
	ev, err := n.Rooms.Event(t.Context(), evID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.RedactedBy == "" {
		t.Fatal("a new account's message was not redacted")
	}
	wantNotice(t, n, admin, room, "too new")
}

// TestClassifierLearnsFromRedactions: spam a moderator redacts teaches
// the classifier, which then redacts and reports new spam of that kind
// and leaves ordinary messages alone; a reaction to the report restores
// the message.
func TestClassifierLearnsFromRedactions(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		user := n.Register("user")
		spammer := n.Register("spammer")
		mods := modRoom(t, n, admin)
		room := publicRoom(t, admin, "a")
		testnode.Join(t, user, room)
		testnode.Join(t, spammer, room)
		protect(t, n, admin, room, map[string]any{"classifier": true, "moderators_room": mods})
		ham := []string{
			"good morning everyone, how was the weekend?", "did anyone get the build working on arm64 yet",
			"I pushed a fix for the login bug, can someone review it", "the meeting moved to 3pm tomorrow",
			"thanks, that worked for me", "lunch at the usual place?", "can you share the slides from yesterday",
			"the tests are failing on main again, looking into it", "we need two more volunteers for saturday",
			"the server was down for about ten minutes this morning", "let's move this discussion to the dev room",
		}
		spam := []string{
			"FREE BITCOIN giveaway! send 0.1 btc and get 1 btc back at https://btc-double.io",
			"double your bitcoin now!!! https://btc-double.io/now", "bitcoin doubler legit 100% instant payout https://btc-double.io/legit",
			"earn free usdt every day just by clicking ads https://usdt-clicks.io", "claim your free airdrop tokens before they run out https://airdrop-claim.io",
			"crypto signals group, 300% profit guaranteed, join https://t.me/pumpsignals",
		}
		for _, m := range ham {
			testnode.SendText(t, user, room, m)
		}
		for _, m := range spam {
			evID := testnode.SendText(t, spammer, room, m)
			catchUp(t, n)
			if _, err := admin.RedactEvent(t.Context(), room, evID); err != nil {
				t.Fatal(err)
			}
		}
		catchUp(t, n)
		if h, s := n.Moderation.ClassifierDocs(); s != int64(len(spam)) || h != int64(len(ham)) {
			t.Fatalf("classifier learnt %d ham and %d spam, want %d and %d", h, s, len(ham), len(spam))
		}

		newSpam := testnode.SendText(t, spammer, room, "free bitcoin giveaway, double your btc at https://btc-double.io/free")
		newHam := testnode.SendText(t, user, room, "can someone review the fix for the build on main")
		catchUp(t, n)
		for evID, want := range map[id.EventID]bool{newSpam: true, newHam: false} {
			ev, err := n.Rooms.Event(t.Context(), evID)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.RedactedBy != ""; got != want {
				t.Errorf("%s: redacted %v, want %v", evID, got, want)
			}
		}
		report := wantNotice(t, n, admin, mods, string(spammer.UserID)+"'s message "+string(newSpam)+" in "+string(room)+
			" redacted by the spam classifier: ")

		if _, err := admin.SendReaction(t.Context(), mods, report, "↩️"); err != nil {
			t.Fatal(err)
		}
		catchUp(t, n)
		wantNotice(t, n, admin, room, "Restored by "+string(admin.UserID)+": "+string(spammer.UserID)+" wrote: free bitcoin giveaway")
	})
}

// TestReportsReachModerators: users' reports of an event and of a room
// are posted to the moderators' room the node names.
func TestReportsReachModerators(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		user := n.Register("user")
		mods := modRoom(t, n, admin)
		n.Do(t, "PUT", "/_matrixos/admin/v1/moderation", admin.AccessToken, map[string]any{"moderators_room": mods}, testnode.NoSpecCheck()).OK(t)
		room := publicRoom(t, admin, "a")
		testnode.Join(t, user, room)
		evID := testnode.SendText(t, admin, room, "something offensive")
		testnode.Call(t, user, "POST", "/_matrix/client/v3/rooms/"+string(room)+"/report/"+string(evID),
			map[string]any{"reason": "rude"}).OK(t)
		catchUp(t, n)
		wantNotice(t, n, admin, mods, "reported event "+string(evID)+" by "+string(admin.UserID)+" in "+string(room)+": rude")
		testnode.Call(t, user, "POST", "/_matrix/client/v3/rooms/"+string(room)+"/report", map[string]any{"reason": "bad room"}).OK(t)
		catchUp(t, n)
		wantNotice(t, n, admin, mods, "reported the room "+string(room)+": bad room")
	})
}

// TestBadConfigRefused: a protections event or node settings that do not
// parse are refused with the spec's errors and change nothing.
func TestBadConfigRefused(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	room := publicRoom(t, admin, "a")
	for _, bad := range []string{
		`{"flood":{"messages":0,"seconds":10}}`, `{"words":"spam"}`, `{"policy_lists":["#alias:x"]}`, `{"unknown":true}`,
	} {
		_, err := admin.SendStateEvent(t.Context(), room, configType, "", json.RawMessage(bad))
		testnode.WantErr(t, err, "M_BAD_JSON", 400)
	}
	if ev, err := n.Rooms.StateEvent(t.Context(), room, moderation.ConfigType, ""); err != nil || ev != nil {
		t.Fatalf("a refused configuration was stored: %v, %v", ev, err)
	}
	for _, bad := range []map[string]any{{"moderators_room": "mods"}, {"policy_lists": []string{"#a:x"}}} {
		n.Do(t, "PUT", "/_matrixos/admin/v1/moderation", admin.AccessToken, bad, testnode.NoSpecCheck()).Want(t, 400, "M_INVALID_PARAM")
	}
}

// TestModCommand: "!assistant mod" is registered with the node's
// assistant, refuses non-moderators, shows the room's protections, lists
// and undoes actions, and lets a server admin ban through the node's
// list.
func TestModCommand(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	if err := n.Assistant.Register(n.Moderation.Command()); !errors.Is(err, assistant.ErrCommandTaken) {
		t.Fatalf("registering mod again: %v, want ErrCommandTaken (the node registers it)", err)
	}
	admin := n.RegisterAdmin("admin")
	flooder := n.Register("flooder")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, flooder, room)
	protect(t, n, admin, room, map[string]any{"flood": map[string]int{"messages": 1, "seconds": 60}, "classifier": true})
	cmd := n.Moderation.Command()
	run := func(sender id.UserID, args, want string) string {
		t.Helper()
		reply, err := cmd.Run(t.Context(), room, sender, args)
		if err != nil {
			t.Fatalf("mod %s: %v", args, err)
		}
		if !strings.Contains(reply.Text, want) {
			t.Fatalf("mod %s answered %q, want it to contain %q", args, reply.Text, want)
		}
		return reply.Text
	}
	run(flooder.UserID, "status", "Only this room's moderators")
	run(admin.UserID, "status", "Protections on: classifier, flood.")

	testnode.SendText(t, flooder, room, "one")
	testnode.SendText(t, flooder, room, "two")
	catchUp(t, n)
	_, err := flooder.SendText(t.Context(), room, "three")
	testnode.WantErr(t, err, "M_FORBIDDEN", 403)
	log := run(admin.UserID, "log", "mute "+string(flooder.UserID))
	actionID := strings.TrimSpace(strings.Split(strings.Split(log, "\n")[1], ":")[0])
	run(admin.UserID, "undo "+actionID, "Undone: mute")
	testnode.SendText(t, flooder, room, "back again")
	run(admin.UserID, "undo "+actionID, "already undone")
	run(admin.UserID, "undo 9999", "No action 9999")

	victim := n.Register("victim")
	testnode.Join(t, victim, room)
	run(admin.UserID, "ban user "+string(victim.UserID)+" spam", "Published: ban user")
	catchUp(t, n)
	wantMembership(t, n, room, victim.UserID, "ban")

	grant(t, admin, room, flooder.UserID, 50) // a room moderator, not a server admin
	run(flooder.UserID, "ban server evil.example", "Only server admins")
}

// actionUndone reports whether the newest logged action of a kind is
// undone, read through the admin API.
func actionUndone(t *testing.T, n *testnode.Node, admin *mautrix.Client, kind string) bool {
	t.Helper()
	acts := n.Do(t, "GET", "/_matrixos/admin/v1/moderation/actions", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)
	for _, a := range acts["actions"].([]any) {
		if a := a.(map[string]any); a["action"] == kind {
			return a["undone"].(bool)
		}
	}
	t.Fatalf("no %s action in the log %v", kind, acts)
	return false
}

// TestUndoNeedsModerator: only a ↩️ reaction, in the action's own
// moderators' room, from a user who may ban in the room acted in, undoes
// an action; a member of the moderators' room without that power, another
// key, or a moderator reacting from another moderators' room undo
// nothing.
func TestUndoNeedsModerator(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	flooder := n.Register("flooder")
	helper := n.Register("helper")
	mods := modRoom(t, n, admin)
	testnode.Invite(t, admin, mods, helper.UserID)
	testnode.Join(t, helper, mods)
	room := publicRoom(t, admin, "a")
	testnode.Join(t, flooder, room)
	protect(t, n, admin, room, map[string]any{"flood": map[string]int{"messages": 1, "seconds": 60}, "moderators_room": mods})
	otherMods := modRoom(t, n, admin)
	other := publicRoom(t, admin, "b")
	protect(t, n, admin, other, map[string]any{"words": []string{"unused"}, "moderators_room": otherMods})

	testnode.SendText(t, flooder, room, "one")
	testnode.SendText(t, flooder, room, "two")
	catchUp(t, n)
	report := wantNotice(t, n, admin, mods, string(flooder.UserID)+" muted in "+string(room)+" by the flood protection: ")
	for _, r := range []struct {
		who  *mautrix.Client
		room id.RoomID
		key  string
	}{
		{helper, mods, moderation.UndoKey},     // no ban power in the room acted in
		{admin, mods, "👍"},                     // not the undo key
		{admin, otherMods, moderation.UndoKey}, // another moderators' room
	} {
		if _, err := r.who.SendReaction(t.Context(), r.room, report, r.key); err != nil {
			t.Fatal(err)
		}
		catchUp(t, n)
		if actionUndone(t, n, admin, moderation.ActionMute) {
			t.Fatalf("%s reacting %q in %s undid the mute", r.who.UserID, r.key, r.room)
		}
	}
	if _, err := admin.SendReaction(t.Context(), mods, report, "↩"); err != nil {
		t.Fatal(err)
	}
	catchUp(t, n)
	if !actionUndone(t, n, admin, moderation.ActionMute) {
		t.Fatal("the room's moderator reacting ↩ in its moderators' room did not undo the mute")
	}
	wantNotice(t, n, admin, mods, "Undone by "+string(admin.UserID))
}

// TestClassifierLearnsOnlyInAdminRooms: a room whose protections a local
// user who is no server admin set uses the classifier without teaching
// it: neither its messages nor its moderators' redactions are learnt,
// while a room a server admin protects teaches it both.
func TestClassifierLearnsOnlyInAdminRooms(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	owner := n.Register("owner")
	user := n.Register("user")
	spammer := n.Register("spammer")
	approved := publicRoom(t, admin, "approved")
	own := publicRoom(t, owner, "own")
	for _, room := range []id.RoomID{approved, own} {
		testnode.Join(t, user, room)
		testnode.Join(t, spammer, room)
	}
	protect(t, n, admin, approved, map[string]any{"classifier": true})
	protect(t, n, owner, own, map[string]any{"classifier": true})

	for _, c := range []struct {
		room id.RoomID
		mod  *mautrix.Client
	}{{own, owner}, {approved, admin}} {
		for _, m := range []string{"good morning everyone", "the build is green again", "lunch at noon?"} {
			testnode.SendText(t, user, c.room, m)
		}
		spam := testnode.SendText(t, spammer, c.room, "free bitcoin at https://btc-double.io")
		catchUp(t, n)
		if _, err := c.mod.RedactEvent(t.Context(), c.room, spam); err != nil {
			t.Fatal(err)
		}
		catchUp(t, n)
	}
	if ham, spam := n.Moderation.ClassifierDocs(); ham != 3 || spam != 1 {
		t.Fatalf("the classifier learnt %d ham and %d spam, want 3 and 1 (the admin's room only)", ham, spam)
	}
}

// TestFailingEventSkipped: an event whose handling keeps failing (here
// storing the ACL the moderation user set, refused by a trigger) is tried
// a few times and then skipped: the message before it in the batch is not
// handled again (its sender warned once) and the one after it is handled.
func TestFailingEventSkipped(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	if err := n.Moderation.Close(t.Context()); err != nil { // the test steps the follower itself
		t.Fatal(err)
	}
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	list := publicRoom(t, admin, "list")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, user, room)
	protect(t, n, admin, room, map[string]any{"words": []string{"badword"}, "policy_lists": []id.RoomID{list}})
	err := n.DB.Write(t.Context(), func(tx *storage.Tx) error {
		_, err := tx.Exec(t.Context(), `CREATE TRIGGER moderation_test_failure BEFORE INSERT ON moderation_settings
			WHEN NEW.name LIKE 'acl %' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	before := testnode.SendText(t, user, room, "badword one")
	testnode.SendState(t, admin, list, serverRule, "s1", map[string]string{"entity": "evil.example", "recommendation": "m.ban"})
	after := testnode.SendText(t, user, room, "badword two")
	failures := 0
	for more := true; more; {
		if failures > 10 {
			t.Fatalf("the follower is stalled: %d failed steps", failures)
		}
		if more, err = n.Moderation.Step(t.Context()); err != nil {
			failures, more = failures+1, true
		}
	}
	if failures == 0 {
		t.Fatal("the injected failure did not happen")
	}
	for _, evID := range []id.EventID{before, after} {
		ev, err := n.Rooms.Event(t.Context(), evID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.RedactedBy == "" {
			t.Errorf("%s was not redacted", evID)
		}
	}
	bodies, _ := notices(t, n, admin, room)
	warnings := 0
	for _, b := range bodies {
		if strings.HasPrefix(b, string(user.UserID)+": your message was removed") {
			warnings++
		}
	}
	if warnings != 2 {
		t.Fatalf("%s was warned %d times for two messages: %q", user.UserID, warnings, bodies)
	}
}

// floodBridge is an appservice whose bot sets its messages'
// origin_server_ts (?ts=), as bridges do.
const floodBridge = `id: floodbridge
url: null
as_token: as-floodbridge
hs_token: hs-floodbridge
sender_localpart: floodbridgebot
rate_limited: false
namespaces:
  users:
  - exclusive: true
    regex: '@floodbridge_.+:localhost'
`

// actionsOf returns the logged actions of a kind against a target.
func actionsOf(t *testing.T, n *testnode.Node, admin *mautrix.Client, kind string, target id.UserID) int {
	t.Helper()
	acts := n.Do(t, "GET", "/_matrixos/admin/v1/moderation/actions?limit=1000", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)
	count := 0
	for _, a := range acts["actions"].([]any) {
		if a := a.(map[string]any); a["action"] == kind && a["target"] == string(target) {
			count++
		}
	}
	return count
}

// TestFloodBacklog: the flood window counts when the node received the
// messages, not the timestamps a bridge set an hour apart; read as one
// backlog, a flood in redact mode warns and reports once, and a flood in
// mute mode mutes once, not again for the messages sent before the mute.
func TestFloodBacklog(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"floodbridge.yaml": floodBridge}))
	if err := n.Moderation.Close(t.Context()); err != nil { // the test steps the follower itself
		t.Fatal(err)
	}
	admin := n.RegisterAdmin("admin")
	flooder := n.Register("flooder")
	mods := modRoom(t, n, admin)
	redactRoom, muteRoom, bridged := publicRoom(t, admin, "redact"), publicRoom(t, admin, "mute"), publicRoom(t, admin, "bridged")
	bridge := n.Client()
	bridge.AccessToken, bridge.UserID = "as-floodbridge", id.UserID("@floodbridgebot:"+n.Accounts.ServerName())
	testnode.Join(t, bridge, bridged)
	testnode.Join(t, flooder, redactRoom)
	testnode.Join(t, flooder, muteRoom)
	flood := func(action string) map[string]any {
		return map[string]any{"flood": map[string]any{"messages": 2, "seconds": 600, "action": action}, "moderators_room": mods}
	}
	protect(t, n, admin, redactRoom, flood("redact"))
	protect(t, n, admin, muteRoom, flood("mute"))
	protect(t, n, admin, bridged, flood("mute"))

	start := time.Now().Add(-24 * time.Hour).UnixMilli()
	for i := range 3 {
		_, err := bridge.SendMessageEvent(t.Context(), bridged, event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": fmt.Sprint("bridged ", i)}, mautrix.ReqSendEvent{Timestamp: start + int64(i)*3_600_000})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		testnode.SendText(t, flooder, redactRoom, fmt.Sprint("redact me ", i))
		testnode.SendText(t, flooder, muteRoom, fmt.Sprint("mute me ", i))
	}
	catchUp(t, n)

	if got := actionsOf(t, n, admin, moderation.ActionMute, bridge.UserID); got != 1 {
		t.Errorf("the bridge bot flooding with timestamps an hour apart was muted %d times, want 1", got)
	}
	if got := actionsOf(t, n, admin, moderation.ActionRedact, flooder.UserID); got != 4 {
		t.Errorf("%d of the flooder's messages redacted in redact mode, want 4", got)
	}
	bodies, _ := notices(t, n, admin, redactRoom)
	if warned := len(slices.DeleteFunc(bodies, func(b string) bool { return !strings.Contains(b, "your message was removed") })); warned != 1 {
		t.Errorf("the flooder was warned %d times in redact mode, want once", warned)
	}
	if got := actionsOf(t, n, admin, moderation.ActionMute, flooder.UserID); got != 1 {
		t.Errorf("the flooder was muted %d times, want once", got)
	}
}

// TestProtectionsOffForgetsMessages: the messages the follower remembers
// of a room (the admin API counts them) are dropped when the room turns
// its protections off.
func TestProtectionsOffForgetsMessages(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, user, room)
	protect(t, n, admin, room, map[string]any{"words": []string{"unused"}})
	for _, m := range []string{"one", "two", "three"} {
		testnode.SendText(t, user, room, m)
	}
	catchUp(t, n)
	remembered := func() any {
		return n.Do(t, "GET", "/_matrixos/admin/v1/moderation", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)["remembered_messages"]
	}
	if got := remembered(); got != 3.0 {
		t.Fatalf("remembered_messages %v, want 3", got)
	}
	testnode.SendState(t, admin, room, configType, "", map[string]any{})
	catchUp(t, n)
	if got := remembered(); got != 0.0 {
		t.Fatalf("remembered_messages %v after the protections went off, want 0", got)
	}
}

// TestReportsRateLimited: with rate limiting on, a user's reports past
// the burst get 429 M_LIMIT_EXCEEDED; those before it reach the
// moderators' room through the follower.
func TestReportsRateLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.RateLimit = true })
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	mods := modRoom(t, n, admin)
	n.Do(t, "PUT", "/_matrixos/admin/v1/moderation", admin.AccessToken, map[string]any{"moderators_room": mods}, testnode.NoSpecCheck()).OK(t)
	room := publicRoom(t, admin, "a")
	testnode.Join(t, user, room)
	path := "/_matrix/client/v3/rooms/" + string(room) + "/report"
	for i := range node.ReportsBurst {
		testnode.Call(t, user, "POST", path, map[string]any{"reason": fmt.Sprint("report ", i)}).OK(t)
	}
	testnode.Call(t, user, "POST", path, map[string]any{"reason": "one too many"}).Want(t, 429, "M_LIMIT_EXCEEDED")
	testnode.Call(t, user, "POST", "/_matrix/client/v3/users/"+string(admin.UserID)+"/report",
		map[string]any{"reason": "and another"}).Want(t, 429, "M_LIMIT_EXCEEDED")
	catchUp(t, n)
	wantNotice(t, n, admin, mods, fmt.Sprintf("reported the room %s: report %d", room, node.ReportsBurst-1))
}

// TestListFollowedAgainReadAfresh: a rule added to a list while no room
// followed it applies once a room follows the list again (its rules are
// read afresh, not taken from what was read before).
func TestListFollowedAgainReadAfresh(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	first, second := n.Register("first"), n.Register("second")
	list := publicRoom(t, admin, "list")
	room := publicRoom(t, admin, "a")
	testnode.Join(t, first, room)
	testnode.Join(t, second, room)
	following := map[string]any{"policy_lists": []id.RoomID{list}}
	protect(t, n, admin, room, following)
	testnode.SendState(t, admin, list, userRule, "r1", map[string]string{"entity": string(first.UserID), "recommendation": "m.ban"})
	catchUp(t, n)
	wantMembership(t, n, room, first.UserID, "ban")

	testnode.SendState(t, admin, room, configType, "", map[string]any{"words": []string{"unused"}})
	catchUp(t, n)
	testnode.SendState(t, admin, list, userRule, "r2", map[string]string{"entity": string(second.UserID), "recommendation": "m.ban"})
	catchUp(t, n)
	wantMembership(t, n, room, second.UserID, "join")
	testnode.SendState(t, admin, room, configType, "", following)
	catchUp(t, n)
	wantMembership(t, n, room, second.UserID, "ban")
}
