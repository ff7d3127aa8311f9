package accountdata

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// The account data types that say which invites a user accepts: the
// spec's (v1.18) m.invite_permission_config, whose default_action "block"
// refuses every invite, and MSC4155's unstable per-user and per-server
// lists.
const (
	InvitePermissionType         = "m.invite_permission_config"
	UnstableInvitePermissionType = "org.matrix.msc4155.invite_permission_config"
)

// InviteAction is what a user's invite permission config makes of an
// invite.
type InviteAction int

const (
	// InviteAllow delivers the invite.
	InviteAllow InviteAction = iota
	// InviteIgnore accepts the invite without showing it to the invitee:
	// the inviter gets no feedback.
	InviteIgnore
	// InviteBlock refuses the invite (403 M_INVITE_BLOCKED).
	InviteBlock
)

// inviteFilter is MSC4155's content: glob patterns matched against the
// inviter's user ID and server name. A missing or null field is an empty
// list.
type inviteFilter struct {
	AllowedUsers   []string `json:"allowed_users"`
	IgnoredUsers   []string `json:"ignored_users"`
	BlockedUsers   []string `json:"blocked_users"`
	AllowedServers []string `json:"allowed_servers"`
	IgnoredServers []string `json:"ignored_servers"`
	BlockedServers []string `json:"blocked_servers"`
}

// action applies MSC4155's order of evaluation, user rules before server
// rules: allowed_users, ignored_users, blocked_users, then allowed_servers,
// ignored_servers, blocked_servers; the first list with a pattern matching
// the inviter decides, and nothing matching allows. The MSC groups the
// fields as user-level and server-level settings and lets a user rule
// single out someone of a listed server either way ("no invites from
// badguys.org unless it's @goodguy:badguys.org"); Complement's
// TestInviteFiltering also blocks a blocked user of an allowed server.
func (f *inviteFilter) action(inviter id.UserID) InviteAction {
	user, server := string(inviter), inviter.Homeserver()
	for _, rule := range []struct {
		patterns []string
		subject  string
		action   InviteAction
	}{
		{f.AllowedUsers, user, InviteAllow},
		{f.IgnoredUsers, user, InviteIgnore},
		{f.BlockedUsers, user, InviteBlock},
		{f.AllowedServers, server, InviteAllow},
		{f.IgnoredServers, server, InviteIgnore},
		{f.BlockedServers, server, InviteBlock},
	} {
		if anyGlob(rule.patterns, rule.subject) {
			return rule.action
		}
	}
	return InviteAllow
}

// InviteAction returns what invitee's invite permission config makes of
// an invite from inviter. The spec's default_action "block" refuses
// every invite; otherwise MSC4155's lists decide. Content of the wrong
// shape is treated as unset: it allows.
func (s *Service) InviteAction(ctx context.Context, invitee, inviter id.UserID) (InviteAction, error) {
	raw, ok, err := s.Get(ctx, invitee, "", InvitePermissionType)
	if err != nil {
		return InviteAllow, fmt.Errorf("invite permission of %s: %w", invitee, err)
	}
	if ok {
		var stable struct {
			DefaultAction any `json:"default_action"`
		}
		if json.Unmarshal(raw, &stable) == nil && stable.DefaultAction == "block" {
			return InviteBlock, nil
		}
	}
	raw, ok, err = s.Get(ctx, invitee, "", UnstableInvitePermissionType)
	if err != nil {
		return InviteAllow, fmt.Errorf("invite filter of %s: %w", invitee, err)
	}
	var filter inviteFilter
	if !ok || json.Unmarshal(raw, &filter) != nil {
		return InviteAllow, nil
	}
	return filter.action(inviter), nil
}

// InviteBlocked reports whether invitee refuses invites from inviter.
func (s *Service) InviteBlocked(ctx context.Context, invitee, inviter id.UserID) (bool, error) {
	a, err := s.InviteAction(ctx, invitee, inviter)
	return a == InviteBlock, err
}

// InviteIgnored reports whether invitee hides invites from inviter.
func (s *Service) InviteIgnored(ctx context.Context, invitee, inviter id.UserID) (bool, error) {
	a, err := s.InviteAction(ctx, invitee, inviter)
	return a == InviteIgnore, err
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

// globMatch reports whether s matches the spec's glob-style pattern (the
// appendix): * matches any run of characters, ? exactly one, anything
// else itself; the whole of s must match.
func globMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0 // the last * seen and where s stood then
	for si < len(str) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
