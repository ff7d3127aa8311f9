package moderation

import (
	"errors"
	"testing"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		content string
		ok      bool
	}{
		{`{}`, true},
		{`{"flood":{"messages":5,"seconds":10},"mentions":{"max":3},"words":["spam"],"blocked_links":["evil.example"],
			"new_accounts":{"min_age_seconds":60},"first_message":{"no_links":true},"classifier":true,
			"policy_lists":["!list:x"],"moderators_room":"!mods:x"}`, true},
		{`{"flood":{"messages":0,"seconds":10}}`, false},
		{`{"flood":{"messages":5,"seconds":99999}}`, false},
		{`{"flood":{"messages":5,"seconds":5,"action":"explode"}}`, false},
		{`{"mentions":{"max":0}}`, false},
		{`{"words":[""]}`, false},
		{`{"policy_lists":["#alias:x"]}`, false},
		{`{"moderators_room":"mods"}`, false},
		{`{"flod":{}}`, false},
		{`{"words":"spam"}`, false},
		{`[]`, false},
	} {
		_, err := ParseConfig([]byte(tc.content))
		if (err == nil) != tc.ok {
			t.Errorf("ParseConfig(%s): %v", tc.content, err)
		}
		var me *mxhttp.Error
		if err != nil && (!errors.As(err, &me) || me.Code != "M_BAD_JSON") {
			t.Errorf("ParseConfig(%s): %v is not M_BAD_JSON", tc.content, err)
		}
	}
}

func TestContainsWord(t *testing.T) {
	for _, tc := range []struct {
		s, w string
		want bool
	}{
		{"you are an ass", "ass", true},
		{"first class", "ass", false},
		{"ass, really", "ass", true},
		{"buy cheap pills", "cheap pills", true},
		{"cheap pillsbury", "cheap pills", false},
	} {
		if got := containsWord(tc.s, tc.w); got != tc.want {
			t.Errorf("containsWord(%q, %q) = %v", tc.s, tc.w, got)
		}
	}
}

func TestHostBlocked(t *testing.T) {
	for _, tc := range []struct {
		host, entry string
		want        bool
	}{
		{"evil.example", "evil.example", true},
		{"www2.evil.example", "evil.example", true},
		{"notevil.example", "evil.example", false},
		{"a.shop", "*.shop", true},
	} {
		if got := hostBlocked(tc.host, tc.entry); got != tc.want {
			t.Errorf("hostBlocked(%q, %q) = %v", tc.host, tc.entry, got)
		}
	}
}
