package push

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/matrixos/matrixos/internal/rooms"
)

// Outcome is what a user's rules decide for an event.
type Outcome struct {
	RuleID    string // the matching rule, "" if none matched
	Notify    bool
	Highlight bool
}

// compiledRule is a rule ready for evaluation.
type compiledRule struct {
	rule      *Rule
	kind      Kind
	legacy    bool
	conds     []condMatcher // override, postcontent and underride
	pattern   *glob         // content
	notify    bool
	highlight bool
	// actionsJSON is rule.Actions encoded, as a notification records it.
	actionsJSON string
}

type condMatcher func(x *evalCtx) bool

// compiledSet is a user's whole ruleset compiled, kinds in priority order.
type compiledSet struct {
	lists [][]*compiledRule
}

func compile(rs *Ruleset) *compiledSet {
	cs := &compiledSet{}
	for _, k := range Kinds {
		var list []*compiledRule
		for _, r := range rs.List(k) {
			if !r.Enabled {
				continue
			}
			list = append(list, compileRule(k, r))
		}
		cs.lists = append(cs.lists, list)
	}
	return cs
}

func compileRule(k Kind, r *Rule) *compiledRule {
	cr := &compiledRule{rule: r, kind: k, legacy: r.Default && legacyMentionRule(r.RuleID)}
	cr.notify, cr.highlight = actionFlags(r.Actions)
	cr.actionsJSON = "[]"
	if b, err := json.Marshal(r.Actions); err == nil && r.Actions != nil {
		cr.actionsJSON = string(b)
	}
	switch {
	case k == Content:
		cr.pattern = compileGlob(r.Pattern, true)
	case k.hasConditions():
		for _, c := range r.Conditions {
			cr.conds = append(cr.conds, compileCondition(c))
		}
	}
	return cr
}

// actionFlags reads the notify action and the highlight tweak (true when
// given without a value). Historical actions are ignored.
func actionFlags(actions []json.RawMessage) (notify, highlight bool) {
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			if s == "notify" {
				notify = true
			}
			continue
		}
		var t struct {
			SetTweak string           `json:"set_tweak"`
			Value    *json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) == nil && t.SetTweak == "highlight" {
			highlight = t.Value == nil || string(*t.Value) == "true"
		}
	}
	return notify, highlight
}

func never(*evalCtx) bool { return false }

// compileCondition turns one condition into a matcher. event_match and
// MSC4306's thread_subscription are matched here; the other kinds are
// evaluated by mautrix's pushrules. Conditions that do not parse never
// match.
func compileCondition(c json.RawMessage) condMatcher {
	var head struct {
		Kind       string  `json:"kind"`
		Key        string  `json:"key"`
		Pattern    *string `json:"pattern"`
		Subscribed *bool   `json:"subscribed"`
		Is         *string `json:"is"`
	}
	if json.Unmarshal(c, &head) != nil {
		return never
	}
	if head.Kind == "room_member_count" {
		if head.Is == nil {
			return never
		}
		return compileMemberCount(*head.Is)
	}
	if head.Kind == threadSubscriptionKind {
		if head.Subscribed == nil {
			return never
		}
		want := *head.Subscribed
		return func(x *evalCtx) bool { return x.ev.ThreadID != "" && x.threadSubscribed() == want }
	}
	if head.Kind == "event_match" {
		if head.Pattern == nil || head.Key == "" {
			return never
		}
		path := splitPath(head.Key)
		g := compileGlob(*head.Pattern, head.Key == "content.body")
		return func(x *evalCtx) bool {
			v, ok := x.stringAt(path)
			return ok && g.match(v)
		}
	}
	var pc pushrules.PushCondition
	if json.Unmarshal(c, &pc) != nil {
		return never
	}
	return func(x *evalCtx) bool { return pc.Match(x, x.mev) }
}

// compileMemberCount compiles a room_member_count condition's "is": a
// decimal number, optionally after ==, <, >, >= or <= (== when none). A
// malformed one never matches. (Parsed once per rule, instead of once per
// member and event.)
func compileMemberCount(is string) condMatcher {
	op, num := "==", is
	for _, prefix := range []string{"==", ">=", "<=", "<", ">"} {
		if rest, ok := strings.CutPrefix(is, prefix); ok {
			op, num = prefix, rest
			break
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
		return never
	}
	cmp := map[string]func(int) bool{
		"==": func(c int) bool { return c == n },
		"<":  func(c int) bool { return c < n },
		">":  func(c int) bool { return c > n },
		">=": func(c int) bool { return c >= n },
		"<=": func(c int) bool { return c <= n },
	}[op]
	return func(x *evalCtx) bool { return cmp(x.memberCount) }
}

func (r *compiledRule) matches(x *evalCtx) bool {
	if r.legacy && x.hasMentions {
		return false
	}
	switch r.kind {
	case Override, PostContent, Underride:
		for _, c := range r.conds {
			if !c(x) {
				return false
			}
		}
		return true
	case Content:
		body, ok := x.content["body"].(string)
		return ok && r.pattern.match(body)
	case Room:
		return r.rule.RuleID == string(x.ev.RoomID)
	case Sender:
		return r.rule.RuleID == string(x.ev.Sender)
	}
	return false
}

// evalCtx is one event being evaluated for one user at a time. It
// implements mautrix's pushrules.Room (and PowerLevelfulRoom).
type evalCtx struct {
	ev          *rooms.Event
	mev         *event.Event
	content     map[string]any
	hasMentions bool
	memberCount int

	user        id.UserID
	displayName func(user id.UserID) string
	powerLevels func() *event.PowerLevelsEventContent
	// subscribed reports whether user is subscribed to the event's
	// thread (MSC4306); nil when no one is.
	subscribed func(user id.UserID) bool

	plOnce sync.Once
	pl     *event.PowerLevelsEventContent
}

// newEvalCtx prepares ev for evaluation in a room with memberCount joined
// members.
func newEvalCtx(ev *rooms.Event, memberCount int) (*evalCtx, error) {
	var content map[string]any
	var rawContent []byte
	if ev.PDU != nil {
		rawContent = ev.PDU.Content
	}
	if len(rawContent) > 0 {
		if err := json.Unmarshal(rawContent, &content); err != nil {
			return nil, fmt.Errorf("event %s content: %w", ev.ID, err)
		}
	}
	if content == nil {
		content = map[string]any{}
	}
	_, mentions := content["m.mentions"]
	x := &evalCtx{
		ev: ev, content: content, hasMentions: mentions, memberCount: memberCount,
		mev: &event.Event{
			StateKey: ev.StateKey, Sender: ev.Sender, Type: event.Type{Type: ev.Type},
			Timestamp: ev.TS, ID: ev.ID, RoomID: ev.RoomID,
			Content: event.Content{VeryRaw: rawContent, Raw: content},
		},
	}
	return x, nil
}

// stringAt returns the string at a property path of the event.
func (x *evalCtx) stringAt(path []string) (string, bool) {
	if len(path) == 1 {
		switch path[0] {
		case "type":
			return x.ev.Type, true
		case "sender":
			return string(x.ev.Sender), true
		case "room_id":
			return string(x.ev.RoomID), true
		case "state_key":
			if x.ev.StateKey == nil {
				return "", false
			}
			return *x.ev.StateKey, true
		}
		return "", false
	}
	if path[0] != "content" {
		return "", false
	}
	var cur any = x.content
	for _, p := range path[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[p]; !ok {
			return "", false
		}
	}
	s, ok := cur.(string)
	return s, ok
}

// GetOwnDisplayname is the evaluated user's display name in the room.
func (x *evalCtx) GetOwnDisplayname() string {
	if x.displayName == nil {
		return ""
	}
	return x.displayName(x.user)
}

// threadSubscribed reports whether the evaluated user is subscribed to
// the event's thread.
func (x *evalCtx) threadSubscribed() bool {
	return x.subscribed != nil && x.subscribed(x.user)
}

// GetMemberCount is the room's joined member count.
func (x *evalCtx) GetMemberCount() int { return x.memberCount }

// GetPowerLevels returns the room's power levels (read once per event).
func (x *evalCtx) GetPowerLevels() *event.PowerLevelsEventContent {
	x.plOnce.Do(func() {
		if x.powerLevels != nil {
			x.pl = x.powerLevels()
		}
	})
	return x.pl
}

var _ pushrules.PowerLevelfulRoom = (*evalCtx)(nil)
