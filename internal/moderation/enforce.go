package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// rulesOf returns a list room's rules, read from its current state the
// first time and kept up to date from its rule events while it is
// followed (writeWatch forgets those of a list no longer followed).
func (s *Service) rulesOf(ctx context.Context, list id.RoomID) (map[string]Rule, error) {
	if rules, ok := s.lists[list]; ok {
		return rules, nil
	}
	state, err := s.opts.Rooms.CurrentState(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("read policy list %s: %w", list, err)
	}
	rules := map[string]Rule{}
	for _, ev := range state {
		if ev.StateKey == nil {
			continue
		}
		if r, ok := parseRule(list, ev.Type, *ev.StateKey, ev.Content()); ok {
			rules[r.key()] = r
		}
	}
	s.lists[list] = rules
	return rules, nil
}

// rulesFor returns every rule that applies to a protected room.
func (s *Service) rulesFor(ctx context.Context, cfg *Config) []Rule {
	var out []Rule
	for _, l := range s.listsOf(cfg) {
		rules, err := s.rulesOf(ctx, l)
		if err != nil {
			// A list the node is not in yet: nothing to apply.
			s.log.Debug("moderation: policy list unreadable", "room_id", l, "err", err)
			continue
		}
		for _, r := range rules {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Rule) int {
		if a.key() < b.key() {
			return -1
		}
		if a.key() > b.key() {
			return 1
		}
		return 0
	})
	return out
}

// ruleChanged re-reads one rule of a list from the list's current state
// (the event read may be older than it) and applies the lists again to
// every protected room that follows the list.
func (s *Service) ruleChanged(ctx context.Context, list id.RoomID, evType, stateKey string) error {
	rules, err := s.rulesOf(ctx, list)
	if err != nil {
		return err
	}
	key := Rule{List: list, Type: evType, StateKey: stateKey}.key()
	ev, err := s.opts.Rooms.StateEvent(ctx, list, evType, stateKey)
	if err != nil {
		return fmt.Errorf("read policy rule in %s: %w", list, err)
	}
	if r, ok := ruleFromEvent(list, ev); ok {
		rules[key] = r
	} else {
		delete(rules, key)
	}
	if err := s.refreshRoomBans(ctx); err != nil {
		return err
	}
	for roomID, cfg := range s.configs {
		if slices.Contains(s.listsOf(cfg), list) {
			if err := s.enforce(ctx, roomID); err != nil {
				return err
			}
		}
	}
	return nil
}

// ruleRedacted handles a redaction in a policy list: a redacted rule
// has no entity left, so it is lifted like one whose content was
// emptied.
func (s *Service) ruleRedacted(ctx context.Context, ev storedEvent) error {
	redacts := gjson.GetBytes(ev.json, "redacts").Str
	if redacts == "" {
		redacts = ev.content().Get("redacts").Str // room version 11 and later
	}
	if redacts == "" {
		return nil
	}
	target, err := s.opts.Rooms.Event(ctx, id.EventID(redacts))
	var unknown *mxhttp.Error
	if errors.As(err, &unknown) {
		return nil // an event this node does not have (or holds back)
	}
	if err != nil {
		return fmt.Errorf("read the event redacted in policy list %s: %w", ev.roomID, err)
	}
	if target.RoomID != ev.roomID || target.StateKey == nil || !isRuleType(target.Type) {
		return nil
	}
	return s.ruleChanged(ctx, ev.roomID, target.Type, *target.StateKey)
}

func ruleFromEvent(list id.RoomID, ev *rooms.Event) (Rule, bool) {
	if ev == nil || ev.StateKey == nil {
		return Rule{}, false
	}
	return parseRule(list, ev.Type, *ev.StateKey, ev.Content())
}

// enforce applies a protected room's policy lists to it: it bans the
// members a user rule matches, sets the server ACL from the server rules
// and, when the room asks, lifts the bans of rules that are gone. An
// action the moderation user lacks the power for is reported, not
// retried.
func (s *Service) enforce(ctx context.Context, roomID id.RoomID) error {
	cfg := s.configs[roomID]
	if cfg == nil {
		return nil
	}
	rules := s.rulesFor(ctx, cfg)
	members := s.opts.Rooms.Members(ctx, roomID)
	users := make([]id.UserID, 0, len(members))
	for u, m := range members {
		if m != "ban" && m != "leave" && u != s.Bot() {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	for _, u := range users {
		if r, ok := userBanned(rules, u); ok {
			if err := s.banByRule(ctx, cfg, roomID, u, r); err != nil {
				return err
			}
		}
	}
	if err := s.applyACL(ctx, cfg, roomID, rules); err != nil {
		return err
	}
	if cfg.UnbanOnRuleRemoval {
		return s.liftStaleBans(ctx, roomID, rules)
	}
	return nil
}

// banByRule bans a user a rule matches, redacting their recent messages
// when the room asks; a refusal (power) is reported and not an error.
func (s *Service) banByRule(ctx context.Context, cfg *Config, roomID id.RoomID, u id.UserID, r Rule) error {
	reason := "policy list " + string(r.List)
	if r.Reason != "" {
		reason += ": " + r.Reason
	}
	a, err := s.ban(ctx, roomID, u, reason, r.key())
	if err != nil {
		s.refused(ctx, roomID, fmt.Sprintf("ban %s from %s (%s)", u, roomID, describeRule(r)), err)
		return nil
	}
	s.report(ctx, a, fmt.Sprintf("%s banned from %s by %s.", u, roomID, describeRule(r)))
	if cfg.RedactOnBan {
		s.redactRecent(ctx, roomID, u, reason)
	}
	return nil
}

// redactRecent redacts the user's messages the follower still remembers
// in the room.
func (s *Service) redactRecent(ctx context.Context, roomID id.RoomID, u id.UserID, reason string) {
	for _, m := range s.recent[roomID] {
		if m.sender != u || m.redacted {
			continue
		}
		if _, err := s.redact(ctx, roomID, m.eventID, u, reason, m.body); err != nil {
			s.refused(ctx, roomID, fmt.Sprintf("redact the recent messages of %s in %s (%s)", u, roomID, reason), err)
			return
		}
		m.redacted = true
	}
}

// liftStaleBans unbans the users the moderation user banned by a rule
// when no rule bans them any more.
func (s *Service) liftStaleBans(ctx context.Context, roomID id.RoomID, rules []Rule) error {
	bans, err := s.queryActions(ctx, "SELECT "+actionColumns+` FROM moderation_actions
		WHERE room_id = $1 AND action = $2 AND rule <> '' AND NOT undone ORDER BY id`, roomID, ActionBan)
	if err != nil {
		return err
	}
	for _, a := range bans {
		u := id.UserID(a.Target)
		if _, still := userBanned(rules, u); still {
			continue
		}
		if err := s.unban(ctx, roomID, u, "the policy rule that banned them was removed"); err != nil {
			s.refused(ctx, roomID, fmt.Sprintf("unban %s in %s (the policy rule that banned them was removed)", u, roomID), err)
			continue
		}
		if err := s.setUndone(ctx, a.ID); err != nil {
			return err
		}
	}
	return nil
}

// aclKey names the setting that holds the ACL entries the moderation user
// added to a room.
func aclKey(roomID id.RoomID) string { return "acl " + string(roomID) }

// applyACL sets the room's m.room.server_acl deny list to what it holds
// besides the moderation user's earlier entries, plus the servers the
// rules ban now. Without UnbanOnRuleRemoval the earlier entries stay.
func (s *Service) applyACL(ctx context.Context, cfg *Config, roomID id.RoomID, rules []Rule) error {
	want := deniedServers(rules, s.opts.Accounts.ServerName())
	prevJSON, _, err := s.setting(ctx, aclKey(roomID))
	if err != nil {
		return err
	}
	var prev []string
	if prevJSON != "" {
		json.Unmarshal([]byte(prevJSON), &prev)
	}
	if len(want) == 0 && len(prev) == 0 {
		return nil
	}
	cur, err := s.opts.Rooms.StateEvent(ctx, roomID, "m.room.server_acl", "")
	if err != nil {
		return fmt.Errorf("read server ACL of %s: %w", roomID, err)
	}
	acl := map[string]any{"allow": []string{"*"}, "allow_ip_literals": true}
	var deny []string
	if cur != nil {
		if err := json.Unmarshal(cur.Content(), &acl); err != nil {
			return fmt.Errorf("server ACL of %s: %w", roomID, err)
		}
		for _, d := range gjson.GetBytes(cur.Content(), "deny").Array() {
			deny = append(deny, d.Str)
		}
	}
	ours := want
	if !cfg.UnbanOnRuleRemoval {
		ours = union(prev, want)
	}
	newDeny := union(without(deny, prev), ours)
	if slices.Equal(sorted(newDeny), sorted(deny)) {
		return s.setSetting(ctx, aclKey(roomID), mustJSON(ours))
	}
	what := fmt.Sprintf("deny %v in the server ACL of %s (server rules of its policy lists)", newDeny, roomID)
	if _, err := s.mayAct(ctx, roomID, "set the server ACL", stateLevel("m.room.server_acl")); err != nil {
		s.refused(ctx, roomID, what, err)
		return nil
	}
	acl["deny"] = newDeny
	b, _ := json.Marshal(acl)
	sk := ""
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.server_acl", StateKey: &sk, Sender: s.Bot(), Content: b}); err != nil {
		// The room refused it (power levels changed since mayAct, a
		// bad ACL kept from before): told, not retried.
		s.refused(ctx, roomID, what, err)
		return nil
	}
	a, err := s.logAction(ctx, Action{RoomID: roomID, Action: ActionACL, Target: mustJSON(newDeny), Reason: "policy lists"})
	if err != nil {
		return err
	}
	s.report(ctx, a, fmt.Sprintf("The server ACL of %s now denies %v, by the server rules of its policy lists.", roomID, newDeny))
	return s.setSetting(ctx, aclKey(roomID), mustJSON(ours))
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func without(a, remove []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(remove, x) {
			out = append(out, x)
		}
	}
	return out
}

func sorted(a []string) []string {
	b := slices.Clone(a)
	slices.Sort(b)
	return b
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// memberChanged bans a user who joins (or is invited to) a protected room
// while a rule bans them, and learns from a moderator's ban.
func (s *Service) memberChanged(ctx context.Context, cfg *Config, ev storedEvent) error {
	if !ev.stateKey.Valid {
		return nil
	}
	u := id.UserID(ev.stateKey.String)
	switch ev.content().Get("membership").Str {
	case "join", "invite", "knock":
		if s.opts.Rooms.Membership(u, ev.roomID) == "ban" {
			return nil
		}
		if r, ok := userBanned(s.rulesFor(ctx, cfg), u); ok {
			return s.banByRule(ctx, cfg, ev.roomID, u, r)
		}
	case "ban":
		if cfg.Classifier && ev.sender != u {
			s.learnFromBan(ev.roomID, ev.sender, u)
		}
	}
	return nil
}
