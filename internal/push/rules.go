package push

import (
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"
)

// Kind is a push rule kind.
type Kind string

// The rule kinds, in the order they are checked.
const (
	Override Kind = "override"
	Content  Kind = "content"
	// PostContent holds MSC4306's thread subscription rules, between the
	// content rules (keyword mentions still notify) and the room rules (a
	// muted room does not mute a subscribed thread). Only server-default
	// rules live there: a client cannot add one.
	PostContent Kind = "postcontent"
	Room        Kind = "room"
	Sender      Kind = "sender"
	Underride   Kind = "underride"
)

// Kinds lists the rule kinds in priority order.
var Kinds = []Kind{Override, Content, PostContent, Room, Sender, Underride}

// ParseKind reports whether s names a rule kind.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, slices.Contains(Kinds, k)
}

// hasConditions reports whether rules of kind k carry conditions.
func (k Kind) hasConditions() bool { return k == Override || k == PostContent || k == Underride }

// Rule is a push rule as the Client-Server API shows it. Actions and
// conditions are kept as the JSON the client sent, so they round-trip
// exactly (tweaks are opaque to the server).
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Actions    []json.RawMessage `json:"actions"`
	Conditions []json.RawMessage `json:"conditions,omitzero"`
	Pattern    string            `json:"pattern,omitempty"`
}

func (r *Rule) clone() *Rule {
	c := *r
	c.Actions = slices.Clone(r.Actions)
	if c.Actions == nil {
		c.Actions = []json.RawMessage{}
	}
	if r.Conditions != nil {
		c.Conditions = slices.Clone(r.Conditions)
	}
	return &c
}

// Ruleset is the "global" ruleset: every rule of a user by kind, each list
// in priority order.
type Ruleset struct {
	Override    []*Rule `json:"override"`
	Content     []*Rule `json:"content"`
	PostContent []*Rule `json:"postcontent"`
	Room        []*Rule `json:"room"`
	Sender      []*Rule `json:"sender"`
	Underride   []*Rule `json:"underride"`
}

// List returns the rules of one kind.
func (rs *Ruleset) List(k Kind) []*Rule {
	switch k {
	case Override:
		return rs.Override
	case Content:
		return rs.Content
	case PostContent:
		return rs.PostContent
	case Room:
		return rs.Room
	case Sender:
		return rs.Sender
	case Underride:
		return rs.Underride
	}
	return nil
}

func (rs *Ruleset) set(k Kind, rules []*Rule) {
	if rules == nil {
		rules = []*Rule{}
	}
	switch k {
	case Override:
		rs.Override = rules
	case Content:
		rs.Content = rules
	case PostContent:
		rs.PostContent = rules
	case Room:
		rs.Room = rules
	case Sender:
		rs.Sender = rules
	case Underride:
		rs.Underride = rules
	}
}

// Find returns the rule of kind k with the given ID, or nil.
func (rs *Ruleset) Find(k Kind, ruleID string) *Rule {
	for _, r := range rs.List(k) {
		if r.RuleID == ruleID {
			return r
		}
	}
	return nil
}

// Predefined rule IDs (server-default rules; all start with a dot).
const (
	RuleMaster                = ".m.rule.master"
	RuleSuppressNotices       = ".m.rule.suppress_notices"
	RuleInviteForMe           = ".m.rule.invite_for_me"
	RuleMemberEvent           = ".m.rule.member_event"
	RuleIsUserMention         = ".m.rule.is_user_mention"
	RuleContainsDisplayName   = ".m.rule.contains_display_name"
	RuleIsRoomMention         = ".m.rule.is_room_mention"
	RuleRoomNotif             = ".m.rule.roomnotif"
	RuleTombstone             = ".m.rule.tombstone"
	RuleReaction              = ".m.rule.reaction"
	RuleServerACL             = ".m.rule.room.server_acl"
	RuleSuppressEdits         = ".m.rule.suppress_edits"
	RuleContainsUserName      = ".m.rule.contains_user_name"
	RuleCall                  = ".m.rule.call"
	RuleEncryptedRoomOneToOne = ".m.rule.encrypted_room_one_to_one"
	RuleRoomOneToOne          = ".m.rule.room_one_to_one"
	RuleMessage               = ".m.rule.message"
	RuleEncrypted             = ".m.rule.encrypted"

	// The poll rules of MSC3930, under its unstable prefix: poll starts and
	// ends notify like messages, responses never do.
	RulePollResponse      = ".org.matrix.msc3930.rule.poll_response"
	RulePollStartOneToOne = ".org.matrix.msc3930.rule.poll_start_one_to_one"
	RulePollEndOneToOne   = ".org.matrix.msc3930.rule.poll_end_one_to_one"
	RulePollStart         = ".org.matrix.msc3930.rule.poll_start"
	RulePollEnd           = ".org.matrix.msc3930.rule.poll_end"
	pollStartType         = "org.matrix.msc3381.poll.start"
	pollEndType           = "org.matrix.msc3381.poll.end"
	pollResponseType      = "org.matrix.msc3381.poll.response"

	// The thread subscription rules of MSC4306, under its unstable
	// prefix: a message in a thread the user has not subscribed to does
	// not notify (unless an earlier rule, a mention, made it), one in a
	// subscribed thread does.
	RuleUnsubscribedThread = ".io.element.msc4306.rule.unsubscribed_thread"
	RuleSubscribedThread   = ".io.element.msc4306.rule.subscribed_thread"
	// threadSubscriptionKind is the condition those rules use: whether
	// the event is in a thread and the user is (or is not) subscribed.
	threadSubscriptionKind = "io.element.msc4306.thread_subscription"
)

// legacyMentionRule reports whether id is one of the rules deprecated in
// v1.7, which apply only to events without an m.mentions property.
func legacyMentionRule(ruleID string) bool {
	return ruleID == RuleContainsDisplayName || ruleID == RuleContainsUserName || ruleID == RuleRoomNotif
}

// condition is a push condition, for building the predefined rules.
type condition struct {
	Kind    string  `json:"kind"`
	Key     string  `json:"key,omitempty"`
	Pattern *string `json:"pattern,omitempty"`
	Is      string  `json:"is,omitempty"`
	Value   any     `json:"value,omitempty"`
	// Subscribed is the thread_subscription condition's argument.
	Subscribed *bool `json:"subscribed,omitempty"`
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with values that always encode
	}
	return b
}

func eventMatch(key, pattern string) json.RawMessage {
	return raw(condition{Kind: "event_match", Key: key, Pattern: &pattern})
}

func propertyIs(key string, value any) json.RawMessage {
	return raw(condition{Kind: "event_property_is", Key: key, Value: value})
}

func propertyContains(key string, value any) json.RawMessage {
	return raw(condition{Kind: "event_property_contains", Key: key, Value: value})
}

func memberCount(is string) json.RawMessage {
	return raw(condition{Kind: "room_member_count", Is: is})
}

func threadSubscription(subscribed bool) json.RawMessage {
	return raw(condition{Kind: threadSubscriptionKind, Subscribed: &subscribed})
}

func senderPermission(key string) json.RawMessage {
	return raw(condition{Kind: "sender_notification_permission", Key: key})
}

var (
	actNotify    = json.RawMessage(`"notify"`)
	actHighlight = json.RawMessage(`{"set_tweak":"highlight"}`)
)

func actSound(v string) json.RawMessage {
	return raw(map[string]string{"set_tweak": "sound", "value": v})
}

func acts(a ...json.RawMessage) []json.RawMessage {
	if a == nil {
		return []json.RawMessage{}
	}
	return a
}

func conds(c ...json.RawMessage) []json.RawMessage {
	if c == nil {
		return []json.RawMessage{}
	}
	return c
}

func defRule(ruleID string, enabled bool, conditions, actions []json.RawMessage) *Rule {
	return &Rule{RuleID: ruleID, Default: true, Enabled: enabled, Conditions: conditions, Actions: actions}
}

// Defaults returns the spec's (v1.19) predefined rules for user, in
// priority order, with MSC3930's poll rules where Synapse puts them and
// MSC4306's thread subscription rules in their postcontent kind (whether
// those start enabled is the service's choice, see
// [Options.ThreadSubscriptionRules]). .m.rule.master comes first among the override rules;
// user-defined rules are inserted after it (see [Service.Rules]).
func Defaults(user id.UserID) *Ruleset {
	uid := string(user)
	return &Ruleset{
		Override: []*Rule{
			defRule(RuleMaster, false, conds(), acts()),
			defRule(RuleSuppressNotices, true, conds(eventMatch("content.msgtype", "m.notice")), acts()),
			defRule(RuleInviteForMe, true, conds(
				eventMatch("type", "m.room.member"),
				eventMatch("content.membership", "invite"),
				eventMatch("state_key", uid),
			), acts(actNotify, actSound("default"))),
			defRule(RuleMemberEvent, true, conds(eventMatch("type", "m.room.member")), acts()),
			defRule(RuleIsUserMention, true, conds(propertyContains(`content.m\.mentions.user_ids`, uid)),
				acts(actNotify, actSound("default"), actHighlight)),
			defRule(RuleContainsDisplayName, true, conds(raw(condition{Kind: "contains_display_name"})),
				acts(actNotify, actSound("default"), actHighlight)),
			defRule(RuleIsRoomMention, true, conds(propertyIs(`content.m\.mentions.room`, true), senderPermission("room")),
				acts(actNotify, actHighlight)),
			defRule(RuleRoomNotif, true, conds(eventMatch("content.body", "@room"), senderPermission("room")),
				acts(actNotify, actHighlight)),
			defRule(RuleTombstone, true, conds(eventMatch("type", "m.room.tombstone"), eventMatch("state_key", "")),
				acts(actNotify, actHighlight)),
			defRule(RuleReaction, true, conds(eventMatch("type", "m.reaction")), acts()),
			defRule(RuleServerACL, true, conds(eventMatch("type", "m.room.server_acl"), eventMatch("state_key", "")), acts()),
			defRule(RuleSuppressEdits, true, conds(propertyIs(`content.m\.relates_to.rel_type`, "m.replace")), acts()),
			defRule(RulePollResponse, true, conds(eventMatch("type", pollResponseType)), acts()),
		},
		Content: []*Rule{{
			RuleID: RuleContainsUserName, Default: true, Enabled: true, Pattern: user.Localpart(),
			Actions: acts(actNotify, actSound("default"), actHighlight),
		}},
		PostContent: []*Rule{
			defRule(RuleUnsubscribedThread, true, conds(threadSubscription(false)), acts()),
			defRule(RuleSubscribedThread, true, conds(threadSubscription(true)), acts(actNotify, actSound("default"))),
		},
		Room:   []*Rule{},
		Sender: []*Rule{},
		Underride: []*Rule{
			defRule(RuleCall, true, conds(eventMatch("type", "m.call.invite")), acts(actNotify, actSound("ring"))),
			defRule(RuleEncryptedRoomOneToOne, true, conds(memberCount("2"), eventMatch("type", "m.room.encrypted")),
				acts(actNotify, actSound("default"))),
			defRule(RuleRoomOneToOne, true, conds(memberCount("2"), eventMatch("type", "m.room.message")),
				acts(actNotify, actSound("default"))),
			defRule(RulePollStartOneToOne, true, conds(memberCount("2"), eventMatch("type", pollStartType)),
				acts(actNotify, actSound("default"))),
			defRule(RulePollEndOneToOne, true, conds(memberCount("2"), eventMatch("type", pollEndType)),
				acts(actNotify, actSound("default"))),
			defRule(RuleMessage, true, conds(eventMatch("type", "m.room.message")), acts(actNotify)),
			defRule(RuleEncrypted, true, conds(eventMatch("type", "m.room.encrypted")), acts(actNotify)),
			defRule(RulePollStart, true, conds(eventMatch("type", pollStartType)), acts(actNotify)),
			defRule(RulePollEnd, true, conds(eventMatch("type", pollEndType)), acts(actNotify)),
		},
	}
}

// isDefaultID reports whether ruleID is reserved for server-default rules.
func isDefaultID(ruleID string) bool { return len(ruleID) > 0 && ruleID[0] == '.' }
