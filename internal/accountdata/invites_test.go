package accountdata

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"hs1", "hs1", true},
		{"hs1", "hs12", false},
		{"hs*", "hs2", true},
		{"hs*", "h", false},
		{"*", "", true},
		{"?", "", false},
		{"@user-?*", "@user-1:hs1", true},
		{"@user-?*", "@user-", false},
		{"*.example.org", "a.b.example.org", true},
		{"*.example.org", "example.org", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
	} {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// TestInviteFilterAction follows MSC4155's order of evaluation as
// Complement's TestInviteFiltering checks it: user rules before server
// rules, and allow over ignore over block within each.
func TestInviteFilterAction(t *testing.T) {
	const bob, evil = id.UserID("@bob:hs2"), id.UserID("@evil:hs2")
	for _, c := range []struct {
		name    string
		filter  inviteFilter
		inviter id.UserID
		want    InviteAction
	}{
		{"no rules", inviteFilter{}, bob, InviteAllow},
		{"blocked user", inviteFilter{BlockedUsers: []string{string(bob)}}, bob, InviteBlock},
		{"other user", inviteFilter{BlockedUsers: []string{string(bob)}}, evil, InviteAllow},
		{"ignored user", inviteFilter{IgnoredUsers: []string{string(bob)}}, bob, InviteIgnore},
		{"blocked server", inviteFilter{BlockedServers: []string{"hs2"}}, evil, InviteBlock},
		{"ignored server", inviteFilter{IgnoredServers: []string{"hs2"}}, evil, InviteIgnore},
		{"server glob", inviteFilter{BlockedServers: []string{"hs*"}}, "@a:hs1", InviteBlock},
		{"allowed user on blocked server", inviteFilter{AllowedUsers: []string{string(bob)}, BlockedServers: []string{"hs2"}}, bob, InviteAllow},
		{"blocked user on allowed server", inviteFilter{BlockedUsers: []string{string(evil)}, AllowedServers: []string{"hs2"}}, evil, InviteBlock},
		{"allowed over ignored", inviteFilter{IgnoredUsers: []string{string(bob)}, AllowedUsers: []string{string(bob)}}, bob, InviteAllow},
		{"allowed over blocked", inviteFilter{BlockedUsers: []string{string(evil)}, AllowedUsers: []string{string(bob), string(evil)}}, evil, InviteAllow},
		{"ignored over blocked", inviteFilter{IgnoredServers: []string{"hs2"}, BlockedServers: []string{"hs2"}}, bob, InviteIgnore},
		{"user over server", inviteFilter{IgnoredServers: []string{"hs2"}, BlockedUsers: []string{string(bob)}}, bob, InviteBlock},
	} {
		if got := c.filter.action(c.inviter); got != c.want {
			t.Errorf("%s: action(%s) = %v, want %v", c.name, c.inviter, got, c.want)
		}
	}
}
