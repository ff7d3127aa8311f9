package push

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestSharedEvaluationExact is a differential test of the shared
// evaluation of the predefined rules: for random rule sets (users with
// rules of their own, with predefined rules turned off or given other
// actions, with a rule added and deleted again, and unchanged users) and
// random events, OnAccept's outcome notifies exactly the users, with
// exactly the rules, actions and highlights, that evaluating each
// member's whole ruleset on its own gives.
func TestSharedEvaluationExact(t *testing.T) {
	for _, threadRules := range []bool{false, true} {
		t.Run(fmt.Sprintf("thread_rules=%v", threadRules), func(t *testing.T) {
			testSharedEvaluationExact(t, threadRules, rand.New(rand.NewPCG(7, uint64(len(t.Name())))))
		})
	}
}

// words make up display names, localparts and message bodies, so that
// bodies name members now and then.
var words = []string{"ann", "bob", "Bob", "carl", "dee", "eve", "Eve Ng", "ng", "@room", "beer", "hi", "x.y", "fern!", "gus"}

func testSharedEvaluationExact(t *testing.T, threadRules bool, rng *rand.Rand) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	fr := &fakeRooms{names: map[id.UserID]string{}, levels: map[id.UserID]int{}}
	s := New(db, nil, nil, fr, Options{ThreadSubscriptionRules: threadRules})
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var users []id.UserID
	for i := range 40 {
		local := strings.ToLower(strings.NewReplacer(" ", "", "!", "", "@", "").Replace(words[rng.IntN(len(words))]))
		u := id.UserID(fmt.Sprintf("@%s%d:hs", local, i))
		if rng.IntN(3) == 0 {
			u = id.UserID(fmt.Sprintf("@%s:hs", local)) // a bare localpart, which bodies name
			if slices.Contains(users, u) {
				continue
			}
		}
		users = append(users, u)
		if rng.IntN(3) > 0 {
			fr.names[u] = words[rng.IntN(len(words))]
		}
		if rng.IntN(4) == 0 {
			fr.levels[u] = 50
		}
	}
	subscribed := map[id.UserID]bool{}
	for _, u := range users {
		subscribed[u] = rng.IntN(2) == 0
	}
	s.ThreadSubscribed = func(user id.UserID, _ id.RoomID, _ id.EventID) bool { return subscribed[user] }
	changed := map[id.UserID]bool{}
	for _, u := range users {
		switch rng.IntN(6) {
		case 0, 1:
			changed[u] = true
			customize(t, s, u, rng)
		case 2: // a rule added and deleted again: the rules are unchanged
			if err := s.PutRule(ctx, u, Override, "gone", NewRule{Actions: rawList(`"notify"`)}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRule(ctx, u, Override, "gone"); err != nil {
				t.Fatal(err)
			}
		}
	}
	shared, hitRules := 0, map[string]bool{}
	for i := range 400 {
		ev := randomEvent(rng, users, i)
		joined := users[:2+rng.IntN(len(users)-1)]
		if rng.IntN(4) == 0 {
			joined = users[:2] // one-to-one rules
		}
		info := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{}}
		for _, u := range joined {
			info.Members[u] = "join"
		}
		info.Members[ev.Sender] = "join"
		if i%2 == 1 {
			// With the state after the event: the members are
			// evaluated from the room's roster (roster.go).
			info = withState(info, fr.names, ev)
		}
		got := s.outcome(ctx, ev, info)
		want := fullOutcome(t, s, ev, info)
		if got == nil {
			got = &eventOutcome{}
		}
		byUser := func(a, b hit) int { return strings.Compare(string(a.user), string(b.user)) }
		slices.SortFunc(got.hits, byUser)
		slices.SortFunc(want, byUser)
		if len(got.hits) != len(want) {
			t.Fatalf("event %d %s %s: %d notified, want %d", i, ev.Type, ev.PDU.Content, len(got.hits), len(want))
		}
		for j, h := range got.hits {
			w := want[j]
			if h.user != w.user || h.rule.rule.RuleID != w.rule.rule.RuleID ||
				h.rule.actionsJSON != w.rule.actionsJSON || h.rule.highlight != w.rule.highlight {
				t.Fatalf("event %d %s %s: %s notified by %s %s, want %s by %s %s", i, ev.Type, ev.PDU.Content,
					h.user, h.rule.rule.RuleID, h.rule.actionsJSON, w.user, w.rule.rule.RuleID, w.rule.actionsJSON)
			}
			hitRules[h.rule.rule.RuleID] = true
			if !changed[h.user] {
				shared++
			}
		}
	}
	// The events must have exercised the shared path and the rules that
	// depend on the member, not only the plain message rule.
	if shared == 0 {
		t.Fatal("no member with unchanged rules was notified")
	}
	for _, id := range []string{RuleMessage, RuleIsUserMention, RuleContainsDisplayName, RuleContainsUserName, RuleInviteForMe, RuleRoomOneToOne} {
		if !hitRules[id] {
			t.Errorf("no notification by %s; rules that notified: %v", id, hitRules)
		}
	}
}

// withState returns info with the state after ev: a member event for
// each of its members, with their display names, and ev when it is a
// member event.
func withState(info *rooms.RoomInfo, names map[id.UserID]string, ev *rooms.Event) *rooms.RoomInfo {
	var evs []*rooms.Event
	for u, m := range info.Members {
		if ev.StateKey != nil && ev.Type == "m.room.member" && *ev.StateKey == string(u) {
			continue
		}
		content := map[string]any{"membership": m}
		if name, ok := names[u]; ok {
			content["displayname"] = name
		}
		c, _ := json.Marshal(content)
		member := mkEvent("m.room.member", u, ptr(string(u)), string(c))
		member.ID = id.EventID("$member-" + string(u) + "-" + m)
		evs = append(evs, member)
	}
	if ev.StateKey != nil && ev.Type == "m.room.member" {
		evs = append(evs, ev)
	}
	return rooms.InfoWithState(info.ID, id.RoomV11, evs)
}

// fullOutcome evaluates, with a context of its own, every recipient's
// whole ruleset for ev, as the service did before the shared evaluation.
func fullOutcome(t *testing.T, s *Service, ev *rooms.Event, info *rooms.RoomInfo) []hit {
	t.Helper()
	ctx := context.Background()
	users, joined := recipients(ev, info, func(u id.UserID) bool { return u.Homeserver() == "hs" })
	x, err := s.evalCtx(ctx, ev, joined, info)
	if err != nil {
		t.Fatal(err)
	}
	var hits []hit
	for _, u := range users {
		_, cs := s.rulesOf(u).build(s, u)
		x.user = u
		if r := cs.matchRule(x); r != nil && r.notify {
			hits = append(hits, hit{user: u, rule: r})
		}
	}
	return hits
}

// customize gives u random changes: rules of its own of every kind and
// changes to predefined rules.
func customize(t *testing.T, s *Service, u id.UserID, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	actions := [][]json.RawMessage{
		rawList(`"notify"`),
		rawList(`"notify"`, `{"set_tweak":"highlight"}`),
		rawList(`"notify"`, `{"set_tweak":"sound","value":"ping"}`),
		rawList(),
	}
	conds := []string{
		`{"kind":"event_match","key":"content.body","pattern":"*beer*"}`,
		`{"kind":"event_match","key":"type","pattern":"m.room.message"}`,
		`{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}`,
		`{"kind":"room_member_count","is":">3"}`,
		`{"kind":"contains_display_name"}`,
		`{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"` + string(u) + `"}`,
		`{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true}`,
	}
	for n := rng.IntN(3); n > 0; n-- {
		kind := []Kind{Override, Underride, Content, Room, Sender}[rng.IntN(5)]
		nr := NewRule{Actions: actions[rng.IntN(len(actions))]}
		ruleID := fmt.Sprintf("r%d", rng.IntN(5))
		switch kind {
		case Override, Underride:
			nr.Conditions = rawList(conds[rng.IntN(len(conds))])
			if rng.IntN(2) == 0 {
				nr.Conditions = append(nr.Conditions, json.RawMessage(conds[rng.IntN(len(conds))]))
			}
		case Content:
			nr.Pattern = words[rng.IntN(len(words))]
		case Room:
			ruleID = string(testRoom)
		case Sender:
			ruleID = fmt.Sprintf("@%s:hs", words[rng.IntN(5)])
		}
		if err := s.PutRule(ctx, u, kind, ruleID, nr); err != nil {
			t.Fatal(err)
		}
	}
	defaults := []struct {
		kind Kind
		id   string
	}{
		{Override, RuleMaster}, {Override, RuleIsUserMention}, {Override, RuleContainsDisplayName},
		{Override, RuleSuppressNotices}, {Content, RuleContainsUserName}, {Underride, RuleMessage},
		{Underride, RuleRoomOneToOne}, {PostContent, RuleSubscribedThread},
	}
	for n := rng.IntN(3); n > 0; n-- {
		d := defaults[rng.IntN(len(defaults))]
		var err error
		if rng.IntN(2) == 0 {
			err = s.SetEnabled(ctx, u, d.kind, d.id, d.id != RuleMaster && rng.IntN(2) == 0)
		} else {
			err = s.SetActions(ctx, u, d.kind, d.id, actions[rng.IntN(len(actions))])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// randomEvent makes an event of a random type and content from a random
// sender among users.
func randomEvent(rng *rand.Rand, users []id.UserID, i int) *rooms.Event {
	sender := users[rng.IntN(len(users))]
	var body []string
	for n := 1 + rng.IntN(4); n > 0; n-- {
		w := words[rng.IntN(len(words))]
		if rng.IntN(4) == 0 {
			w = users[rng.IntN(len(users))].Localpart()
		}
		body = append(body, w)
	}
	content := map[string]any{"body": strings.Join(body, []string{" ", ", ", ""}[rng.IntN(3)])}
	content["msgtype"] = []string{"m.text", "m.text", "m.notice"}[rng.IntN(3)]
	switch rng.IntN(4) {
	case 0:
		mentioned := []string{}
		for n := rng.IntN(3); n > 0; n-- {
			mentioned = append(mentioned, string(users[rng.IntN(len(users))]))
		}
		content["m.mentions"] = map[string]any{"user_ids": mentioned}
	case 1:
		content["m.mentions"] = map[string]any{"room": rng.IntN(2) == 0}
	}
	if rng.IntN(8) == 0 {
		content["m.relates_to"] = map[string]any{"rel_type": "m.replace", "event_id": "$orig"}
	}
	typ := "m.room.message"
	var stateKey *string
	switch rng.IntN(10) {
	case 0:
		typ = "m.room.encrypted"
	case 1:
		typ = "m.reaction"
	case 2:
		typ = pollStartType
	case 3:
		typ = "m.room.member"
		stateKey = ptr(string(users[rng.IntN(len(users))]))
		content = map[string]any{"membership": []string{"invite", "invite", "join"}[rng.IntN(3)]}
	case 4:
		typ = "m.room.tombstone"
		stateKey = ptr("")
	case 5:
		typ = "m.call.invite"
	}
	raw, err := json.Marshal(content)
	if err != nil {
		panic(err)
	}
	ev := mkEvent(typ, sender, stateKey, string(raw))
	ev.ID = id.EventID(fmt.Sprintf("$ev%d", i))
	if typ == "m.room.message" && rng.IntN(4) == 0 {
		ev.ThreadID = "$root"
	}
	return ev
}

// BenchmarkOutcomeBigRoom evaluates a message without m.mentions for a
// room of 2,000 members with unchanged rules: shared is OnAccept's
// evaluation, roster the same with the room's state (as a send has it),
// full evaluates each member's whole ruleset.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench OutcomeBigRoom -benchmem ./internal/push/
func BenchmarkOutcomeBigRoom(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, b.TempDir()+"/db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations); err != nil {
		b.Fatal(err)
	}
	names := map[id.UserID]string{}
	info := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{}}
	for i := range 2000 {
		u := id.UserID(fmt.Sprintf("@member%d:hs", i))
		info.Members[u] = "join"
		names[u] = fmt.Sprintf("Member %d", i)
	}
	s := New(db, nil, nil, &fakeRooms{}, Options{DisplayName: func(_ context.Context, _ id.RoomID, u id.UserID) string { return names[u] }})
	if err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	ev := mkEvent("m.room.message", "@member1:hs", nil, `{"msgtype":"m.text","body":"hello everyone"}`)
	b.Run("shared", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if o := s.outcome(ctx, ev, info); o == nil || len(o.hits) != 1999 {
				b.Fatalf("outcome %+v, want 1,999 notified", o)
			}
		}
	})
	// As a send has it: the room's state after the event, its members
	// from the room's roster (roster.go).
	// The display names are those of the member events, as on the node.
	withNames := withState(info, names, ev)
	fromState := New(db, nil, nil, &fakeRooms{}, Options{})
	if err := fromState.Load(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("roster", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			if o := fromState.outcome(ctx, ev, withNames); o == nil || len(o.hits) != 1999 {
				b.Fatalf("outcome %+v, want 1,999 notified", o)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			users, joined := recipients(ev, info, func(id.UserID) bool { return true })
			x, err := s.evalCtx(ctx, ev, joined, info)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for _, u := range users {
				_, cs := s.rulesOf(u).build(s, u)
				x.user = u
				if r := cs.matchRule(x); r != nil && r.notify {
					n++
				}
			}
			if n != 1999 {
				b.Fatalf("%d notified, want 1,999", n)
			}
		}
	})
}

// reportCPU reports the process's CPU time per op (the machine may be
// loaded: wall time is not the benchmark's own) when the func it returns
// is called.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}
