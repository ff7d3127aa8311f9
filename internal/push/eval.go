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
	conds     []compiledCond // override, postcontent and underride
	pattern   *glob          // content
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
			cr.conds = append(cr.conds, internCondition(c))
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

// compiledCond is a compiled condition of a rule. One whose outcome depends
// on the event alone (not on the user whose rules are evaluated) has a
// slot in the event's memo, shared by every user whose rules hold the
// same condition: an event is matched against it once, not once per
// member (see evalCtx.test).
type compiledCond struct {
	match condMatcher
	slot  int // 1 + the index in evalCtx.memo; 0 for none
	// perUser is set when the outcome depends on the user whose rules
	// are evaluated (contains_display_name, thread_subscription).
	perUser bool
}

// sharedConds interns the conditions that depend on the event alone, by
// their JSON, up to maxSharedConditions (the others, such as each user's
// own .m.rule.is_user_mention beyond the bound, are matched each time).
var sharedConds struct {
	sync.Mutex
	byJSON map[string]compiledCond
}

const maxSharedConditions = 4096

func internCondition(c json.RawMessage) compiledCond {
	sharedConds.Lock()
	defer sharedConds.Unlock()
	if cd, ok := sharedConds.byJSON[string(c)]; ok {
		return cd
	}
	match, perUser := compileCondition(c)
	cd := compiledCond{match: match, perUser: perUser}
	if perUser || len(sharedConds.byJSON) >= maxSharedConditions {
		return cd
	}
	if sharedConds.byJSON == nil {
		sharedConds.byJSON = map[string]compiledCond{}
	}
	cd.slot = len(sharedConds.byJSON) + 1
	sharedConds.byJSON[string(c)] = cd
	return cd
}

// test matches the event against c, once per event when c depends on the
// event alone.
func (x *evalCtx) test(c compiledCond) bool {
	if c.slot == 0 {
		return c.match(x)
	}
	if c.slot >= len(x.memo) {
		x.memo = append(x.memo, make([]uint8, c.slot+1-len(x.memo))...)
	}
	switch x.memo[c.slot] {
	case memoFalse:
		return false
	case memoTrue:
		return true
	}
	ok := c.match(x)
	x.memo[c.slot] = memoFalse
	if ok {
		x.memo[c.slot] = memoTrue
	}
	return ok
}

// The states of a memo slot; the zero value is "not matched yet".
const (
	memoFalse = 1 + iota
	memoTrue
)

// compileCondition turns one condition into a matcher; perUser reports
// whether its outcome depends on the user whose rules are evaluated
// (contains_display_name, thread_subscription), not only on the event.
// event_match, event_property_is, event_property_contains, room_member_count
// and MSC4306's thread_subscription are matched here; the other kinds are
// evaluated by mautrix's pushrules. Conditions that do not parse never
// match.
func compileCondition(c json.RawMessage) (match condMatcher, perUser bool) {
	var head struct {
		Kind       string  `json:"kind"`
		Key        string  `json:"key"`
		Pattern    *string `json:"pattern"`
		Subscribed *bool   `json:"subscribed"`
		Is         *string `json:"is"`
	}
	if json.Unmarshal(c, &head) != nil {
		return never, false
	}
	if head.Kind == "room_member_count" {
		if head.Is == nil {
			return never, false
		}
		return compileMemberCount(*head.Is), false
	}
	if head.Kind == threadSubscriptionKind {
		if head.Subscribed == nil {
			return never, false
		}
		want := *head.Subscribed
		return func(x *evalCtx) bool { return x.ev.ThreadID != "" && x.threadSubscribed() == want }, true
	}
	if head.Kind == "event_match" {
		if head.Pattern == nil || head.Key == "" {
			return never, false
		}
		path := splitPath(head.Key)
		g := compileGlob(*head.Pattern, head.Key == "content.body")
		return func(x *evalCtx) bool {
			v, ok := x.stringAt(path)
			return ok && g.match(v)
		}, false
	}
	if head.Kind == "event_property_is" || head.Kind == "event_property_contains" {
		return compileProperty(c, head.Kind == "event_property_is"), false
	}
	var pc pushrules.PushCondition
	if json.Unmarshal(c, &pc) != nil {
		return never, false
	}
	if pc.Kind == pushrules.KindContainsDisplayName {
		return func(x *evalCtx) bool {
			body, ok := x.mev.Content.Raw["body"].(string)
			if ok && !x.mayHaveName(body, x.GetOwnDisplayname()) {
				return false
			}
			return pc.Match(x, x.mev)
		}, true
	}
	return func(x *evalCtx) bool { return pc.Match(x, x.mev) }, false
}

// compileProperty compiles an event_property_is (is) or
// event_property_contains condition as mautrix's pushrules evaluates them,
// except that the value at the key is looked up once per event (see
// evalCtx.property), not once per member: .m.rule.is_user_mention is a
// condition of its own for each user.
func compileProperty(c json.RawMessage, is bool) condMatcher {
	var cond struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	if json.Unmarshal(c, &cond) != nil || cond.Key == "" {
		return never
	}
	return func(x *evalCtx) bool {
		val, ok := x.property(cond.Key)
		if !ok {
			return false
		}
		if is {
			return valueEquals(val, cond.Value)
		}
		list, ok := val.([]any)
		if !ok {
			return false
		}
		for _, item := range list {
			if valueEquals(item, cond.Value) {
				return true
			}
		}
		return false
	}
}

// valueEquals compares two JSON values as mautrix's pushrules does:
// numbers by their integer value (Matrix allows only integers), anything
// else with ==.
func valueEquals(a, b any) bool {
	fa, aNum := a.(float64)
	fb, bNum := b.(float64)
	if aNum && bNum {
		return int64(fa) == int64(fb)
	}
	return a == b
}

// propertyValue is a value looked up at a key of the event.
type propertyValue struct {
	val any
	ok  bool
}

// property returns the value at an event_property_* key (dotted, with
// backslash escapes), looked up once per event.
func (x *evalCtx) property(key string) (any, bool) {
	if v, ok := x.props[key]; ok {
		return v.val, v.ok
	}
	val, ok := x.lookupProperty(key)
	if x.props == nil {
		x.props = map[string]propertyValue{}
	}
	x.props[key] = propertyValue{val, ok}
	return val, ok
}

// lookupProperty finds the value at key as mautrix's pushrules does: the
// top-level fields by name, content by its path, where a dotted part that
// is no object key is tried joined with the next one.
func (x *evalCtx) lookupProperty(key string) (any, bool) {
	top, sub, _ := strings.Cut(key, ".")
	switch top {
	case "type":
		return x.ev.Type, true
	case "sender":
		return string(x.ev.Sender), true
	case "room_id":
		return string(x.ev.RoomID), true
	case "state_key":
		if x.ev.StateKey == nil {
			return nil, false
		}
		return *x.ev.StateKey, true
	case "content":
		return nestedGet(x.content, splitEscaped(sub))
	}
	return nil, false
}

// splitEscaped splits a key at dots that no backslash escapes.
func splitEscaped(s string) []string {
	var parts []string
	var part []byte
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '.':
			parts = append(parts, string(part))
			part = part[:0]
		case s[i] == '\\' && i+1 < len(s):
			i++
			part = append(part, s[i])
		default:
			part = append(part, s[i])
		}
	}
	return append(parts, string(part))
}

// nestedGet reads the value at path in data; where path[0] leads nowhere,
// it tries path[0] and path[1] joined by a dot (content.m.relates_to
// written without escapes).
func nestedGet(data map[string]any, path []string) (any, bool) {
	val, ok := data[path[0]]
	if len(path) == 1 {
		return val, ok
	}
	if m, isMap := val.(map[string]any); ok && isMap {
		if v, found := nestedGet(m, path[1:]); found {
			return v, true
		}
	}
	joined := append([]string{path[0] + "." + path[1]}, path[2:]...)
	return nestedGet(data, joined)
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
			if !x.test(c) {
				return false
			}
		}
		return true
	case Content:
		body, ok := x.content["body"].(string)
		if ok && r.pattern.word != "" && !x.mayHaveWord(body, r.pattern.lowerWord) {
			return false
		}
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

	user id.UserID
	// member is the index of user in the room's roster, when ownName
	// is set: it returns the member's display name from the roster.
	// roster is set for the members of a roster (member is -1 for
	// another user), rosterName when ownName reads the roster's names.
	member      int
	roster      *roster
	rosterName  func(i int) string
	ownName     func() string
	displayName func(user id.UserID) string
	powerLevels func() *event.PowerLevelsEventContent
	// subscribed reports whether user is subscribed to the event's
	// thread (MSC4306); nil when no one is.
	subscribed func(user id.UserID) bool

	plOnce sync.Once
	pl     *event.PowerLevelsEventContent
	// props holds the values looked up at event_property_* keys.
	props map[string]propertyValue
	// memo holds the outcomes of the conditions that depend on the event
	// alone, by their slot (see compiledCond).
	memo []uint8
	// body indexes the body for the members' mention rules
	// (bodyindex.go).
	body bodyIndex
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
	if x.ownName != nil {
		return x.ownName()
	}
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
