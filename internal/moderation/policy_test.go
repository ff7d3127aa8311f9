package moderation

import "testing"

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, s string
		want    bool
	}{
		{"@spam*:example.org", "@spammer:example.org", true},
		{"@spam*:example.org", "@ham:example.org", false},
		{"*.evil.example", "a.b.evil.example", true},
		{"*.evil.example", "evil.example", false},
		{"evil.example", "evil.example", true},
		{"?ob", "bob", true},
		{"?ob", "boob", false},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"**********b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	} {
		if got := globMatch(tc.glob, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.glob, tc.s, got, tc.want)
		}
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		evType, content string
		ok              bool
		kind            string
	}{
		{"m.policy.rule.user", `{"entity":"@a:x","recommendation":"m.ban","reason":"spam"}`, true, KindUser},
		{"org.matrix.mjolnir.rule.server", `{"entity":"x","recommendation":"m.ban"}`, true, KindServer},
		{"m.policy.rule.user", `{}`, false, ""},
		{"m.policy.rule.user", `{"entity":"@a:x"}`, false, ""},
		{"m.room.message", `{"entity":"@a:x","recommendation":"m.ban"}`, false, ""},
	} {
		r, ok := parseRule("!list:x", tc.evType, "k", []byte(tc.content))
		if ok != tc.ok || r.Kind != tc.kind {
			t.Errorf("parseRule(%s, %s) = %+v, %v", tc.evType, tc.content, r, ok)
		}
	}
}

func TestDeniedServersSparesOwnServer(t *testing.T) {
	rules := []Rule{
		{Kind: KindServer, Entity: "evil.example", Recommendation: RecommendationBan},
		{Kind: KindServer, Entity: "*", Recommendation: RecommendationBan},
		{Kind: KindServer, Entity: "other.example", Recommendation: "org.example.watch"},
	}
	got := deniedServers(rules, "home.example")
	if len(got) != 1 || got[0] != "evil.example" {
		t.Fatalf("deniedServers = %q, want [evil.example]", got)
	}
}

// TestDeniedServersSparesOwnName: a server rule matching the node's own
// name is left out of the ACL whatever the name's port and case.
func TestDeniedServersSparesOwnName(t *testing.T) {
	rules := []Rule{
		{Kind: KindServer, Entity: "Example.ORG", Recommendation: RecommendationBan},
		{Kind: KindServer, Entity: "*.example.org", Recommendation: RecommendationBan},
		{Kind: KindServer, Entity: "evil.example", Recommendation: RecommendationBan},
	}
	for _, own := range []string{"example.org", "example.org:8448", "EXAMPLE.org:443"} {
		got := deniedServers(rules, own)
		if len(got) != 2 || got[0] != "*.example.org" || got[1] != "evil.example" {
			t.Errorf("own name %s: denied %v, want [*.example.org evil.example]", own, got)
		}
	}
	if got := deniedServers(rules[:1], "[::1]:8448"); len(got) != 1 {
		t.Errorf("an IPv6 own name: denied %v", got)
	}
}
