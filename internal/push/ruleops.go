package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

var (
	errRuleNotFound = mxhttp.NotFound("The push rule was not found.")
)

// badRule is the spec's 400 for a rule that cannot be configured (such as
// an unknown before/after rule).
func badRule(format string, args ...any) *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Message: fmt.Sprintf(format, args...)}
}

// ValidateRuleID checks the ID of a user-defined rule: it must not be
// empty, start with a dot (reserved for server-default rules) or contain a
// slash or backslash.
func ValidateRuleID(ruleID string) error {
	switch {
	case ruleID == "":
		return mxhttp.InvalidParam("rule ID must not be empty")
	case isDefaultID(ruleID):
		return mxhttp.InvalidParam("rule IDs starting with a dot are reserved for server-default rules")
	case strings.ContainsAny(ruleID, `/\`):
		return mxhttp.InvalidParam("rule IDs must not contain slashes or backslashes")
	}
	return nil
}

// NewRule is a user-defined rule to add or change with PutRule.
type NewRule struct {
	Actions    []json.RawMessage
	Conditions []json.RawMessage // override and underride
	Pattern    string            // content
	// Before and After place the rule relative to another user-defined rule
	// of the same kind (Before wins when both are set).
	Before, After string
}

// PutRule adds or replaces a user-defined rule. A new rule is enabled and,
// without Before/After, becomes the most important user-defined rule of
// its kind; a replaced rule keeps its enabled flag and, without
// Before/After, its place.
func (s *Service) PutRule(ctx context.Context, user id.UserID, kind Kind, ruleID string, nr NewRule) error {
	if err := ValidateRuleID(ruleID); err != nil {
		return err
	}
	if kind == PostContent {
		// MSC4306: the kind holds server-default rules only, for now.
		return mxhttp.InvalidParam("clients cannot add rules of kind %s", PostContent)
	}
	if kind == Content && nr.Pattern == "" {
		return mxhttp.MissingParam("content rules need a pattern")
	}
	actions, err := validateActions(nr.Actions)
	if err != nil {
		return err
	}
	rule := &Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case Override, Underride:
		if rule.Conditions, err = validateConditions(nr.Conditions); err != nil {
			return err
		}
	case Content:
		rule.Pattern = nr.Pattern
	}
	return s.update(ctx, user, func(u *userRules) (func(context.Context, *storage.Tx) error, error) {
		list := u.custom[kind]
		at := slices.IndexFunc(list, func(r *Rule) bool { return r.RuleID == ruleID })
		if at >= 0 {
			rule.Enabled = list[at].Enabled
			list = slices.Delete(slices.Clone(list), at, at+1)
		} else {
			at = 0
		}
		if anchor := cmpOr(nr.Before, nr.After); anchor != "" {
			if anchor == ruleID {
				return nil, badRule("a rule cannot be placed relative to itself")
			}
			if isDefaultID(anchor) {
				return nil, badRule("rules cannot be placed relative to a server-default rule: %s", anchor)
			}
			i := slices.IndexFunc(list, func(r *Rule) bool { return r.RuleID == anchor })
			if i < 0 {
				return nil, badRule("before/after rule not found: %s", anchor)
			}
			at = i
			if nr.Before == "" {
				at = i + 1
			}
		}
		list = slices.Insert(list, min(at, len(list)), rule)
		u.custom[kind] = list
		return func(ctx context.Context, tx *storage.Tx) error { return writeKind(ctx, tx, user, kind, list) }, nil
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// DeleteRule removes a user-defined rule. Server-default rules cannot be
// deleted.
func (s *Service) DeleteRule(ctx context.Context, user id.UserID, kind Kind, ruleID string) error {
	return s.update(ctx, user, func(u *userRules) (func(context.Context, *storage.Tx) error, error) {
		list := u.custom[kind]
		at := slices.IndexFunc(list, func(r *Rule) bool { return r.RuleID == ruleID })
		if at < 0 {
			if isDefaultID(ruleID) && Defaults(user).Find(kind, ruleID) != nil {
				return nil, mxhttp.InvalidParam("server-default rules cannot be deleted")
			}
			return nil, errRuleNotFound
		}
		list = slices.Delete(slices.Clone(list), at, at+1)
		u.custom[kind] = list
		return func(ctx context.Context, tx *storage.Tx) error { return writeKind(ctx, tx, user, kind, list) }, nil
	})
}

// SetEnabled enables or disables a rule (user-defined or server-default).
func (s *Service) SetEnabled(ctx context.Context, user id.UserID, kind Kind, ruleID string, enabled bool) error {
	return s.modify(ctx, user, kind, ruleID, func(r *Rule) { r.Enabled = enabled },
		func(ch *defaultChange) { ch.enabled = &enabled })
}

// SetActions replaces a rule's actions (user-defined or server-default).
func (s *Service) SetActions(ctx context.Context, user id.UserID, kind Kind, ruleID string, actions []json.RawMessage) error {
	actions, err := validateActions(actions)
	if err != nil {
		return err
	}
	return s.modify(ctx, user, kind, ruleID, func(r *Rule) { r.Actions = actions },
		func(ch *defaultChange) { ch.actions = actions })
}

// modify changes one existing rule: a user-defined one with custom, a
// server-default one with def.
func (s *Service) modify(ctx context.Context, user id.UserID, kind Kind, ruleID string, custom func(*Rule), def func(*defaultChange)) error {
	return s.update(ctx, user, func(u *userRules) (func(context.Context, *storage.Tx) error, error) {
		if isDefaultID(ruleID) {
			if Defaults(user).Find(kind, ruleID) == nil {
				return nil, errRuleNotFound
			}
			ch := u.defaults[ruleID]
			def(&ch)
			u.defaults[ruleID] = ch
			return func(ctx context.Context, tx *storage.Tx) error { return writeDefault(ctx, tx, user, ruleID, ch) }, nil
		}
		list := slices.Clone(u.custom[kind])
		at := slices.IndexFunc(list, func(r *Rule) bool { return r.RuleID == ruleID })
		if at < 0 {
			return nil, errRuleNotFound
		}
		r := list[at].clone()
		custom(r)
		list[at] = r
		u.custom[kind] = list
		return func(ctx context.Context, tx *storage.Tx) error { return writeKind(ctx, tx, user, kind, list) }, nil
	})
}

// update applies mutate to a copy of the user's rules and persists it. The
// new rules are published inside the write, before its stream position
// becomes visible, so a /sync that sees the position sees the rules.
func (s *Service) update(ctx context.Context, user id.UserID, mutate func(*userRules) (func(context.Context, *storage.Tx) error, error)) error {
	s.ruleWriteMu.Lock()
	defer s.ruleWriteMu.Unlock()
	cur := s.rulesOf(user)
	next := cur.copy()
	persist, err := mutate(next)
	if err != nil {
		return err
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := persist(ctx, tx); err != nil {
			return err
		}
		pos := tx.NextPos()
		if _, err := tx.Exec(ctx, `INSERT INTO push_rules_stream (user_id, pos) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET pos = excluded.pos`, user, pos); err != nil {
			return fmt.Errorf("record push rules position: %w", err)
		}
		next.pos = pos
		s.mu.Lock()
		s.users[user] = next
		s.rulesChanged.Add(1)
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		s.mu.Lock()
		s.users[user] = cur
		s.rulesChanged.Add(1)
		s.mu.Unlock()
		return fmt.Errorf("save push rules: %w", err)
	}
	s.wake(user)
	return nil
}

// writeKind replaces the stored list of the user's rules of one kind.
func writeKind(ctx context.Context, tx *storage.Tx, user id.UserID, kind Kind, list []*Rule) error {
	if _, err := tx.Exec(ctx, "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2", user, kind); err != nil {
		return fmt.Errorf("delete push rules: %w", err)
	}
	for i, r := range list {
		actions, err := json.Marshal(r.Actions)
		if err != nil {
			return err
		}
		conditions := ""
		if r.Conditions != nil {
			b, err := json.Marshal(r.Conditions)
			if err != nil {
				return err
			}
			conditions = string(b)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO push_rules (user_id, kind, rule_id, priority, enabled, actions, conditions, pattern)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, user, kind, r.RuleID, i, r.Enabled, string(actions), conditions, r.Pattern); err != nil {
			return fmt.Errorf("insert push rule: %w", err)
		}
	}
	return nil
}

// writeDefault stores the user's change to a server-default rule.
func writeDefault(ctx context.Context, tx *storage.Tx, user id.UserID, ruleID string, ch defaultChange) error {
	var enabled, actions any
	if ch.enabled != nil {
		enabled = *ch.enabled
	}
	if ch.actions != nil {
		b, err := json.Marshal(ch.actions)
		if err != nil {
			return err
		}
		actions = string(b)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO push_rule_defaults (user_id, rule_id, enabled, actions) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, rule_id) DO UPDATE SET enabled = excluded.enabled, actions = excluded.actions`,
		user, ruleID, enabled, actions); err != nil {
		return fmt.Errorf("save push rule default: %w", err)
	}
	return nil
}

// validateActions checks an actions array: strings and objects with a
// set_tweak string. The historical dont_notify and coalesce actions are
// kept as the client gave them: the spec makes them no-ops that servers
// accept rather than refuse, clients that still send them (Complement's
// TestPushRuleCacheHealth among them) read their rule back unchanged, and
// the evaluation ignores them.
func validateActions(actions []json.RawMessage) ([]json.RawMessage, error) {
	if actions == nil {
		return nil, mxhttp.MissingParam("actions is required")
	}
	out := make([]json.RawMessage, 0, len(actions))
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			switch s {
			case "notify", "dont_notify", "coalesce":
				out = append(out, json.RawMessage(strconv.Quote(s)))
			default:
				return nil, mxhttp.BadJSON("unrecognised action %q", s)
			}
			continue
		}
		var t map[string]json.RawMessage
		if json.Unmarshal(a, &t) != nil {
			return nil, mxhttp.BadJSON("actions must be strings or objects")
		}
		var tweak string
		if json.Unmarshal(t["set_tweak"], &tweak) != nil || tweak == "" {
			return nil, mxhttp.BadJSON("action objects need a set_tweak string")
		}
		if v, ok := t["value"]; ok && tweak == "highlight" {
			var b bool
			if json.Unmarshal(v, &b) != nil {
				return nil, mxhttp.BadJSON("the highlight tweak's value must be a boolean")
			}
		}
		out = append(out, compact(a))
	}
	return out, nil
}

// validateConditions checks override/underride conditions: objects with a
// kind, field types as the spec gives them, and non-compound values.
// Conditions of unknown kinds are kept; they never match.
func validateConditions(conds []json.RawMessage) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(conds))
	for _, c := range conds {
		var f struct {
			Kind    *string         `json:"kind"`
			Key     *string         `json:"key"`
			Pattern *string         `json:"pattern"`
			Is      *string         `json:"is"`
			Value   json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(c, &f); err != nil {
			return nil, mxhttp.BadJSON("invalid condition: %v", err)
		}
		if f.Kind == nil || *f.Kind == "" {
			return nil, mxhttp.BadJSON("conditions need a kind")
		}
		if v := strings.TrimSpace(string(f.Value)); v != "" && (v[0] == '{' || v[0] == '[') {
			return nil, mxhttp.BadJSON("condition values must not be objects or arrays")
		}
		switch *f.Kind {
		case "event_match":
			if f.Key == nil || f.Pattern == nil {
				return nil, mxhttp.BadJSON("event_match conditions need a key and a pattern")
			}
		case "event_property_is", "event_property_contains":
			if f.Key == nil || f.Value == nil {
				return nil, mxhttp.BadJSON("%s conditions need a key and a value", *f.Kind)
			}
		case "room_member_count":
			if f.Is == nil {
				return nil, mxhttp.BadJSON("room_member_count conditions need is")
			}
		case "sender_notification_permission":
			if f.Key == nil {
				return nil, mxhttp.BadJSON("sender_notification_permission conditions need a key")
			}
		}
		out = append(out, compact(c))
	}
	return out, nil
}

func compact(b json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}
