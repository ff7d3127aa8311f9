package push

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

const (
	alice = id.UserID("@alice:hs")
	bob   = id.UserID("@bob:hs")
	carol = id.UserID("@carol:hs")
)

func TestDefaults(t *testing.T) {
	rs := Defaults(alice)
	want := map[Kind][]string{
		Override: {RuleMaster, RuleSuppressNotices, RuleInviteForMe, RuleMemberEvent, RuleIsUserMention,
			RuleContainsDisplayName, RuleIsRoomMention, RuleRoomNotif, RuleTombstone, RuleReaction,
			RuleServerACL, RuleSuppressEdits, RulePollResponse},
		Content:     {RuleContainsUserName},
		PostContent: {RuleUnsubscribedThread, RuleSubscribedThread},
		Underride: {RuleCall, RuleEncryptedRoomOneToOne, RuleRoomOneToOne, RulePollStartOneToOne, RulePollEndOneToOne,
			RuleMessage, RuleEncrypted, RulePollStart, RulePollEnd},
	}
	for _, k := range Kinds {
		var got []string
		for _, r := range rs.List(k) {
			got = append(got, r.RuleID)
			if !r.Default {
				t.Errorf("%s: default = false", r.RuleID)
			}
			if r.Enabled != (r.RuleID != RuleMaster) {
				t.Errorf("%s: enabled = %v", r.RuleID, r.Enabled)
			}
		}
		if len(got) != len(want[k]) {
			t.Fatalf("%s rules = %v, want %v", k, got, want[k])
		}
		for i := range got {
			if got[i] != want[k][i] {
				t.Errorf("%s rule %d = %s, want %s", k, i, got[i], want[k][i])
			}
		}
	}
	if p := rs.Content[0].Pattern; p != "alice" {
		t.Errorf("contains_user_name pattern = %q", p)
	}
	b, _ := json.Marshal(rs.Find(Override, RuleIsUserMention))
	const wantJSON = `{"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,` +
		`"actions":["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}],` +
		`"conditions":[{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice:hs"}]}`
	if string(b) != wantJSON {
		t.Errorf("is_user_mention =\n%s\nwant\n%s", b, wantJSON)
	}
	b, _ = json.Marshal(rs.Find(Override, RuleMaster))
	if want := `{"rule_id":".m.rule.master","default":true,"enabled":false,"actions":[],"conditions":[]}`; string(b) != want {
		t.Errorf("master = %s, want %s", b, want)
	}
}

func TestEvaluateDefaults(t *testing.T) {
	fr := &fakeRooms{
		names:  map[id.UserID]string{alice: "Alice Liddell"},
		levels: map[id.UserID]int{carol: 100},
	}
	s := New(nil, nil, nil, fr, Options{})
	empty, aliceKey := "", string(alice)
	tests := []struct {
		name      string
		typ       string
		sender    id.UserID
		stateKey  *string
		content   string
		members   int
		rule      string
		notify    bool
		highlight bool
	}{
		{"group message", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"hello"}`, 3, RuleMessage, true, false},
		{"one-to-one message", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"hello"}`, 2, RuleRoomOneToOne, true, false},
		{"notice", "m.room.message", bob, nil, `{"msgtype":"m.notice","body":"beep"}`, 2, RuleSuppressNotices, false, false},
		{"user mention", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["@alice:hs"]}}`, 3, RuleIsUserMention, true, true},
		{"mentions someone else", "m.room.message", bob, nil, `{"body":"alice and Alice Liddell","m.mentions":{"user_ids":["@carol:hs"]}}`, 3, RuleMessage, true, false},
		{"legacy user name", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"hey ALICE!"}`, 3, RuleContainsUserName, true, true},
		{"legacy display name", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"ping Alice Liddell."}`, 3, RuleContainsDisplayName, true, true},
		{"user name inside a word", "m.room.message", bob, nil, `{"msgtype":"m.text","body":"malice_x"}`, 3, RuleMessage, true, false},
		{"encrypted one-to-one", "m.room.encrypted", bob, nil, `{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"}`, 2, RuleEncryptedRoomOneToOne, true, false},
		{"encrypted group", "m.room.encrypted", bob, nil, `{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"}`, 5, RuleEncrypted, true, false},
		{"room mention by admin", "m.room.message", carol, nil, `{"body":"all","m.mentions":{"room":true}}`, 3, RuleIsRoomMention, true, true},
		{"room mention without power", "m.room.message", bob, nil, `{"body":"all","m.mentions":{"room":true}}`, 3, RuleMessage, true, false},
		{"legacy @room by admin", "m.room.message", carol, nil, `{"body":"hey @room!"}`, 3, RuleRoomNotif, true, true},
		{"legacy @room with mentions", "m.room.message", carol, nil, `{"body":"hey @room!","m.mentions":{}}`, 3, RuleMessage, true, false},
		{"reaction", "m.reaction", bob, nil, `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}`, 2, RuleReaction, false, false},
		{"edit", "m.room.message", bob, nil, `{"body":"* hi alice","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`, 2, RuleSuppressEdits, false, false},
		{"tombstone", "m.room.tombstone", carol, &empty, `{"body":"moved","replacement_room":"!new:hs"}`, 3, RuleTombstone, true, true},
		{"tombstone with a state key", "m.room.tombstone", carol, ptr("x"), `{"replacement_room":"!new:hs"}`, 3, "", false, false},
		{"member event", "m.room.member", bob, ptr(string(bob)), `{"membership":"join"}`, 3, RuleMemberEvent, false, false},
		{"invite for me", "m.room.member", bob, &aliceKey, `{"membership":"invite"}`, 3, RuleInviteForMe, true, false},
		{"call", "m.call.invite", bob, nil, `{"call_id":"1","version":"1"}`, 3, RuleCall, true, false},
		{"server acl", "m.room.server_acl", carol, &empty, `{"allow":["*"]}`, 3, RuleServerACL, false, false},
		{"topic", "m.room.topic", carol, &empty, `{"topic":"hi"}`, 3, "", false, false},
		// MSC3930's poll rules (Complement's msc3930 TestPollsLocalPushRules).
		{"poll start one-to-one", "org.matrix.msc3381.poll.start", bob, nil, `{"org.matrix.msc3381.poll.start":{}}`, 2, RulePollStartOneToOne, true, false},
		{"poll end one-to-one", "org.matrix.msc3381.poll.end", bob, nil, `{}`, 2, RulePollEndOneToOne, true, false},
		{"poll start group", "org.matrix.msc3381.poll.start", bob, nil, `{}`, 3, RulePollStart, true, false},
		{"poll end group", "org.matrix.msc3381.poll.end", bob, nil, `{}`, 5, RulePollEnd, true, false},
		{"poll response", "org.matrix.msc3381.poll.response", bob, nil, `{}`, 2, RulePollResponse, false, false},
		{"message type prefix only", "m.room.message.extra", bob, nil, `{"body":"x"}`, 3, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := mkEvent(tt.typ, tt.sender, tt.stateKey, tt.content)
			got, err := s.Evaluate(context.Background(), alice, ev, tt.members)
			if err != nil {
				t.Fatal(err)
			}
			want := Outcome{RuleID: tt.rule, Notify: tt.notify, Highlight: tt.highlight}
			if got != want {
				t.Errorf("Evaluate = %+v, want %+v", got, want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, value string
		words, want    bool
	}{
		{"lunc?*", "Lunch plans", false, true},
		{"lunc?*", "LUNCH", false, true},
		{"lunc?*", " lunch", false, false},
		{"lunc?*", "lunc", false, false},
		{"m.notice", "m.notice", false, true},
		{"m.notice", "m.noticeX", false, false},
		{"", "", false, true},
		{"", "x", false, false},
		{"ex*ple", "An example event.", true, true},
		{"ex*ple", "exple", true, true},
		{"ex*ple", "An exciting triple-whammy", true, true},
		{"cake", "pancakes", true, false},
		{"@room", "hi @room", true, true},
		{"@room", "a@roomy", true, false},
		{"alice", "hey ALICE!", true, true},
		{"alice", "alice", true, true},
		{"alice", "alice_b", true, false},
		{"alice", "xalice alice", true, true},
		{"alice", "malice", true, false},
		{"alice", "hé alice", true, true},
		{"alice", "héalice", true, true}, // é is no word character
	}
	for _, tt := range tests {
		g := compileGlob(tt.pattern, tt.words)
		if got := g.match(tt.value); got != tt.want {
			t.Errorf("glob(%q, words=%v).match(%q) = %v, want %v", tt.pattern, tt.words, tt.value, got, tt.want)
		}
		// A literal word is matched without the regular expression in an
		// ASCII value; the expression must agree.
		if g.re != nil {
			if got := g.re.MatchString(tt.value); got != tt.want {
				t.Errorf("glob(%q, words=%v) expression on %q = %v, want %v", tt.pattern, tt.words, tt.value, got, tt.want)
			}
		}
	}
}

func TestSplitPath(t *testing.T) {
	tests := map[string][]string{
		"content.body":                   {"content", "body"},
		`content.m\.relates_to.rel_type`: {"content", "m.relates_to", "rel_type"},
		`content.a\\b`:                   {"content", `a\b`},
		`content.m\.mentions.user_ids`:   {"content", "m.mentions", "user_ids"},
	}
	for in, want := range tests {
		got := splitPath(in)
		if len(got) != len(want) {
			t.Errorf("splitPath(%q) = %q, want %q", in, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("splitPath(%q) = %q, want %q", in, got, want)
			}
		}
	}
}

// TestThreadSubscriptionRules: MSC4306's postcontent rules. Enabled, a
// message in a thread the user has not subscribed to does not notify
// unless it mentions them, one in a subscribed thread does; disabled (the
// node's default), thread messages notify as any message does. Clients
// cannot add rules of the postcontent kind.
func TestThreadSubscriptionRules(t *testing.T) {
	const thread = id.EventID("$root")
	subscribed := func(user id.UserID, roomID id.RoomID, th id.EventID) bool {
		return user == alice && roomID == testRoom && th == thread
	}
	tests := []struct {
		name      string
		enabled   bool
		user      id.UserID
		thread    id.EventID
		content   string
		rule      string
		notify    bool
		highlight bool
	}{
		{"subscribed thread", true, alice, thread, `{"msgtype":"m.text","body":"hi"}`, RuleSubscribedThread, true, false},
		{"unsubscribed thread", true, carol, thread, `{"msgtype":"m.text","body":"hi"}`, RuleUnsubscribedThread, false, false},
		{"mention in an unsubscribed thread", true, carol, thread,
			`{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["@carol:hs"]}}`, RuleIsUserMention, true, true},
		{"main timeline", true, carol, "", `{"msgtype":"m.text","body":"hi"}`, RuleMessage, true, false},
		{"rules off: unsubscribed thread", false, carol, thread, `{"msgtype":"m.text","body":"hi"}`, RuleMessage, true, false},
		{"rules off: subscribed thread", false, alice, thread, `{"msgtype":"m.text","body":"hi"}`, RuleMessage, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(nil, nil, nil, &fakeRooms{}, Options{ThreadSubscriptionRules: tt.enabled})
			s.ThreadSubscribed = subscribed
			ev := mkEvent("m.room.message", bob, nil, tt.content)
			ev.ThreadID = tt.thread
			got, err := s.Evaluate(context.Background(), tt.user, ev, 3)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Outcome{RuleID: tt.rule, Notify: tt.notify, Highlight: tt.highlight}); got != want {
				t.Errorf("Evaluate = %+v, want %+v", got, want)
			}
			if r := s.Rules(tt.user).Find(PostContent, RuleSubscribedThread); r == nil || r.Enabled != tt.enabled {
				t.Errorf("listed %s = %+v, want enabled %v", RuleSubscribedThread, r, tt.enabled)
			}
		})
	}
	s := New(nil, nil, nil, &fakeRooms{}, Options{})
	err := s.PutRule(context.Background(), alice, PostContent, "mine", NewRule{Actions: []json.RawMessage{actNotify}})
	var mxErr *mxhttp.Error
	if !errors.As(err, &mxErr) || mxErr.Status != 400 || mxErr.Code != "M_INVALID_PARAM" {
		t.Fatalf("PutRule(postcontent) = %v, want 400 M_INVALID_PARAM", err)
	}
}

// TestMemberCountCondition: room_member_count, compiled once per rule,
// matches as mautrix's per-call evaluation does, for every operator and
// for malformed values.
func TestMemberCountCondition(t *testing.T) {
	for _, is := range []string{"2", "==2", "<2", ">2", ">=2", "<=2", "10", ">=10", "", "x", "==", "2x", "+2", "-1", "=2", "<<2"} {
		cond := compileMemberCount(is)
		oracle := pushrules.PushCondition{Kind: pushrules.KindRoomMemberCount, MemberCountCondition: is}
		for count := range 12 {
			x := &evalCtx{memberCount: count, mev: &event.Event{}}
			if got, want := cond(x), oracle.Match(x, x.mev); got != want {
				t.Errorf("is %q with %d members: %v, mautrix says %v", is, count, got, want)
			}
		}
	}
}

// TestOutcomePerMember evaluates one event for several members at once, as
// a send does: conditions that depend on the event alone are matched once
// and shared, while each member's mention, display name and user name
// still decide for that member alone.
func TestOutcomePerMember(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	carol, dave, erin := id.UserID("@carol:hs"), id.UserID("@dave:hs"), id.UserID("@erin:hs")
	fr := &fakeRooms{names: map[id.UserID]string{carol: "Carol C"}}
	s := loadService(t, db, nil, fr)
	// alice and erin share a custom condition; only alice's highlights.
	beer := NewRule{Conditions: rawList(`{"kind":"event_match","key":"content.body","pattern":"*beer*"}`)}
	beer.Actions = rawList(`"notify"`, `{"set_tweak":"highlight"}`)
	if err := s.PutRule(ctx, alice, Override, "beer", beer); err != nil {
		t.Fatal(err)
	}
	beer.Actions = rawList()
	if err := s.PutRule(ctx, erin, Override, "beer", beer); err != nil {
		t.Fatal(err)
	}
	info := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join", carol: "join", dave: "join", erin: "join"}}
	tests := []struct {
		content string
		want    map[id.UserID]bool // notified user: highlighted
	}{
		{`{"msgtype":"m.text","body":"hello"}`, map[id.UserID]bool{alice: false, bob: false, carol: false, erin: false}},
		{`{"msgtype":"m.text","body":"hi carol c, and bob"}`, map[id.UserID]bool{alice: false, bob: true, carol: true, erin: false}},
		{`{"msgtype":"m.text","body":"beer?"}`, map[id.UserID]bool{alice: true, bob: false, carol: false}},
		{`{"msgtype":"m.text","body":"hi carol c","m.mentions":{"user_ids":["@erin:hs"]}}`, map[id.UserID]bool{alice: false, bob: false, carol: false, erin: true}},
		{`{"msgtype":"m.notice","body":"bob"}`, map[id.UserID]bool{}},
	}
	for _, tt := range tests {
		ev := mkEvent("m.room.message", dave, nil, tt.content)
		o := s.outcome(ctx, ev, info)
		got := map[id.UserID]bool{}
		if o != nil {
			for _, h := range o.hits {
				got[h.user] = h.rule.highlight
			}
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("%s: notified %v, want %v", tt.content, got, tt.want)
		}
	}
}

// TestNameCacheByEventID: the display-name cache is keyed by the member
// event's ID, not by the *rooms.Event (which it would keep alive): another
// copy of the same event is answered from the cache.
func TestNameCacheByEventID(t *testing.T) {
	member := func(name string) *rooms.Event {
		return &rooms.Event{ID: "$member", PDU: &pdu.PDU{Content: json.RawMessage(`{"membership":"join","displayname":"` + name + `"}`)}}
	}
	var c nameCache
	if got := c.of(member("Bob")); got != "Bob" {
		t.Fatalf("name %q, want Bob", got)
	}
	if got := c.of(member("Other copy")); got != "Bob" {
		t.Fatalf("a copy of the cached event gave %q, want the cached Bob", got)
	}
}
