package moderation

import (
	"encoding/json"
	"net"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Policy rule kinds, by the entity they name.
const (
	KindUser   = "user"
	KindRoom   = "room"
	KindServer = "server"
)

// RecommendationBan is the one recommendation the spec defines.
const RecommendationBan = "m.ban"

// ruleTypes maps the state event types of policy rules, the spec's and
// the older ones lists still carry, to their kind.
var ruleTypes = map[string]string{
	"m.policy.rule.user":             KindUser,
	"m.policy.rule.room":             KindRoom,
	"m.policy.rule.server":           KindServer,
	"m.room.rule.user":               KindUser,
	"m.room.rule.room":               KindRoom,
	"m.room.rule.server":             KindServer,
	"org.matrix.mjolnir.rule.user":   KindUser,
	"org.matrix.mjolnir.rule.room":   KindRoom,
	"org.matrix.mjolnir.rule.server": KindServer,
}

// RuleType is the state event type the node publishes rules of a kind as.
func RuleType(kind string) string { return "m.policy.rule." + kind }

// Rule is one policy rule of a list room.
type Rule struct {
	List           id.RoomID
	Type           string // the state event type
	StateKey       string
	Kind           string
	Entity         string
	Reason         string
	Recommendation string
}

// key identifies the rule within the lists (a rule is replaced by the
// next state event of its type and state key).
// It is stored in the action log, so it holds no NUL (PostgreSQL
// refuses one in text).
func (r Rule) key() string { return mustJSON([]string{string(r.List), r.Type, r.StateKey}) }

// bans reports whether the rule asks for a ban.
func (r Rule) bans() bool {
	return r.Recommendation == RecommendationBan || r.Recommendation == "org.matrix.mjolnir.ban"
}

// parseRule reads a policy rule state event; ok is false for an event that
// is no rule (another type) or a removed one (empty content or no entity).
func parseRule(list id.RoomID, evType, stateKey string, content []byte) (Rule, bool) {
	kind, isRule := ruleTypes[evType]
	if !isRule {
		return Rule{}, false
	}
	var c struct {
		Entity         string `json:"entity"`
		Reason         string `json:"reason"`
		Recommendation string `json:"recommendation"`
	}
	if json.Unmarshal(content, &c) != nil || c.Entity == "" || c.Recommendation == "" {
		return Rule{}, false
	}
	return Rule{List: list, Type: evType, StateKey: stateKey, Kind: kind, Entity: c.Entity,
		Reason: c.Reason, Recommendation: c.Recommendation}, true
}

// isRuleType reports whether evType is a policy rule's type.
func isRuleType(evType string) bool { _, ok := ruleTypes[evType]; return ok }

// matches reports whether the rule's entity, a glob where * matches any
// run of characters and ? one character, matches s.
func (r Rule) matches(s string) bool { return globMatch(r.Entity, s) }

// globMatch matches s against a glob of * and ? in linear time (no
// regular expressions: an entity comes from another server's list).
func globMatch(glob, s string) bool {
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(glob) && (glob[gi] == '?' || glob[gi] == s[si]):
			gi++
			si++
		case gi < len(glob) && glob[gi] == '*':
			star, mark = gi, si
			gi++
		case star >= 0:
			gi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for gi < len(glob) && glob[gi] == '*' {
		gi++
	}
	return gi == len(glob)
}

// serverOf returns a user ID's server name.
func serverOf(u id.UserID) string {
	_, hs, err := u.Parse()
	if err != nil {
		return ""
	}
	return hs
}

// userBanned returns the first user rule that bans u. Server rules become
// the room's server ACL instead, which keeps the server's users out.
func userBanned(rules []Rule, u id.UserID) (Rule, bool) {
	for _, r := range rules {
		if r.bans() && r.Kind == KindUser && r.matches(string(u)) {
			return r, true
		}
	}
	return Rule{}, false
}

// deniedServers returns the server names (globs) the server rules ban,
// without this node's own name: a list must not cut the node off.
func deniedServers(rules []Rule, own string) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rules {
		if !r.bans() || r.Kind != KindServer || seen[r.Entity] || bansServer(r.Entity, own) {
			continue
		}
		seen[r.Entity] = true
		out = append(out, r.Entity)
	}
	return out
}

// bansServer reports whether a server rule's entity matches a server
// name as a server ACL would: without the name's port, ignoring case.
func bansServer(entity, serverName string) bool {
	return globMatch(strings.ToLower(entity), serverHost(serverName))
}

// serverHost returns a server name's host, lower case, without a port.
func serverHost(serverName string) string {
	host := strings.ToLower(serverName)
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}
