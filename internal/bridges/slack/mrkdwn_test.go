package slack

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
	"maunium.net/go/mautrix/id"
)

var testResolver = mrkdwnResolver{
	User: func(userID string) (id.UserID, string, bool) {
		if userID == "U1" {
			return "@slack_t1-u1:example.org", "Alice", true
		}
		return "", "", false
	},
	Channel: func(channelID string) string {
		if channelID == "C1" {
			return "general"
		}
		return ""
	},
}

func TestMrkdwnToMatrix(t *testing.T) {
	tests := []struct {
		name, in, body, html string
		mentions             []id.UserID
	}{
		{"plain", "hello world", "hello world", "", nil},
		{"escapes", "a &lt;b&gt; &amp; c", "a <b> & c", "", nil},
		{"bold", "this is *bold* text", "this is *bold* text", "this is <strong>bold</strong> text", nil},
		{"italic", "_it_", "_it_", "<em>it</em>", nil},
		{"strike", "~gone~", "~gone~", "<del>gone</del>", nil},
		{"nested", "*bold _and it_*", "*bold _and it_*", "<strong>bold <em>and it</em></strong>", nil},
		{"not a style mid-word", "snake_case_name and 2*3*4", "snake_case_name and 2*3*4", "", nil},
		{"unclosed", "*open only", "*open only", "", nil},
		{"code", "run `rm -rf *bold*` now", "run `rm -rf *bold*` now", "run <code>rm -rf *bold*</code> now", nil},
		{"code escapes", "`a &lt; b`", "`a < b`", "<code>a &lt; b</code>", nil},
		{"pre", "```\nline1\n*x*\n```", "```\nline1\n*x*\n```", "<pre><code>line1\n*x*</code></pre>", nil},
		{"pre between text", "before\n```code```\nafter", "before\n```\ncode\n```\nafter", "before<pre><code>code</code></pre>after", nil},
		{"quote", "&gt; quoted\nnot", "> quoted\nnot", "<blockquote>quoted</blockquote>not", nil},
		{"link", "see <https://example.org/a?b=1&amp;c=2|the site>", "see the site (https://example.org/a?b=1&c=2)",
			`see <a href="https://example.org/a?b=1&amp;c=2">the site</a>`, nil},
		{"bare link", "<https://example.org>", "https://example.org", `<a href="https://example.org">https://example.org</a>`, nil},
		{"mailto", "<mailto:a@example.org|a@example.org>", "a@example.org", `<a href="mailto:a@example.org">a@example.org</a>`, nil},
		{"user mention", "hi <@U1>", "hi Alice", `hi <a href="https://matrix.to/#/@slack_t1-u1:example.org">Alice</a>`, []id.UserID{"@slack_t1-u1:example.org"}},
		{"unknown user", "hi <@U9|bob>", "hi @bob", "", nil},
		{"channel", "in <#C1>", "in #general", "", nil},
		{"channel with label", "in <#C2|random>", "in #random", "", nil},
		{"here", "<!here> look", "@here look", "", nil},
		{"subteam", "<!subteam^S1|@devs> hi", "@devs hi", "", nil},
		{"script is text", "<script>alert(1)</script>", "<script>alert(1)</script>", "", nil},
		{"javascript link is text", "<javascript:alert(1)|x>", "<javascript:alert(1)|x>", "", nil},
		{"html in text", "&lt;b&gt;not bold&lt;/b&gt; *b*", "<b>not bold</b> *b*", "&lt;b&gt;not bold&lt;/b&gt; <strong>b</strong>", nil},
		{"lines", "a\nb", "a\nb", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mrkdwnToMatrix(tt.in, testResolver)
			if got.Body != tt.body {
				t.Errorf("body = %q, want %q", got.Body, tt.body)
			}
			if got.FormattedBody != tt.html {
				t.Errorf("html = %q, want %q", got.FormattedBody, tt.html)
			}
			if !slices.Equal(got.Mentions, tt.mentions) {
				t.Errorf("mentions = %v, want %v", got.Mentions, tt.mentions)
			}
		})
	}
}

func TestMatrixToMrkdwn(t *testing.T) {
	ghosts := func(mxid id.UserID) (string, bool) {
		if mxid == "@slack_t1-u1:example.org" {
			return "U1", true
		}
		return "", false
	}
	tests := []struct{ name, body, html, want string }{
		{"plain escaped", "a <b> & c", "", "a &lt;b&gt; &amp; c"},
		{"bold italic strike", "", "<strong>b</strong> <em>i</em> <del>s</del>", "*b* _i_ ~s~"},
		{"style around spaces", "", "x <b> y </b> z", "x *y* z"},
		{"code", "", "run <code>a &lt; b</code>", "run `a &lt; b`"},
		{"pre", "", "<pre><code>line1\nline2\n</code></pre>", "```\nline1\nline2\n```"},
		{"link", "", `<a href="https://example.org/?a=1&amp;b=2">site</a>`, "<https://example.org/?a=1&amp;b=2|site>"},
		{"bare link", "", `<a href="https://example.org">https://example.org</a>`, "<https://example.org>"},
		{"ghost pill", "", `hi <a href="https://matrix.to/#/@slack_t1-u1:example.org">Alice</a>`, "hi <@U1>"},
		{"matrix user pill", "", `hi <a href="https://matrix.to/#/@bob:example.org">Bob</a>`, "hi Bob"},
		{"quote", "", "<blockquote>quoted</blockquote>after", "> quoted\nafter"},
		{"html escapes", "", "&lt;script&gt; &amp;", "&lt;script&gt; &amp;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matrixToMrkdwn(tt.body, tt.html, ghosts); got != tt.want {
				t.Errorf("matrixToMrkdwn(%q, %q) = %q, want %q", tt.body, tt.html, got, tt.want)
			}
		})
	}
}

// FuzzMrkdwnToMatrix checks that any Slack text converts without a panic to
// HTML that only uses the tags the converter writes, and that the plain
// body keeps valid UTF-8 when the input is.
func FuzzMrkdwnToMatrix(f *testing.F) {
	for _, seed := range []string{
		"*b* _i_ ~s~ `c`", "```pre```", "&gt; q", "<@U1> <#C1|x> <!here>", "<https://a|b>", "<<>>", "*_~`",
		"```unterminated", "<@", "a\n\n&gt;\n```\n```", "<javascript:x|y>", "*a _b* c_",
	} {
		f.Add(seed)
	}
	allowed := map[string]bool{"strong": true, "em": true, "del": true, "code": true, "pre": true, "blockquote": true, "a": true, "br": true}
	f.Fuzz(func(t *testing.T, in string) {
		got := mrkdwnToMatrix(in, testResolver)
		if utf8.ValidString(in) && !utf8.ValidString(got.Body) {
			t.Fatalf("body of %q is not UTF-8: %q", in, got.Body)
		}
		z := html.NewTokenizer(strings.NewReader(got.FormattedBody))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				break
			}
			if tt == html.StartTagToken || tt == html.EndTagToken || tt == html.SelfClosingTagToken {
				name, hasAttr := z.TagName()
				if !allowed[string(name)] {
					t.Fatalf("mrkdwn %q gave HTML with <%s>: %q", in, name, got.FormattedBody)
				}
				for hasAttr {
					var key, val []byte
					key, val, hasAttr = z.TagAttr()
					if string(name) != "a" || string(key) != "href" {
						t.Fatalf("mrkdwn %q gave attribute %s on <%s>", in, key, name)
					}
					if !isLinkTarget(string(val)) && !strings.HasPrefix(string(val), "https://matrix.to/") {
						t.Fatalf("mrkdwn %q gave a link to %q", in, val)
					}
				}
			}
		}
	})
}

// TestMrkdwnToMatrixLongInputIsLinear checks that pathological text (many
// unclosed markers in one line) converts quickly.
func TestMrkdwnToMatrixLongInputIsLinear(t *testing.T) {
	for _, unit := range []string{"*a ", "<", "`", "_x ~y "} {
		in := strings.Repeat(unit, maxIncomingText/len(unit))
		got := mrkdwnToMatrix(in, testResolver)
		if got.Body == "" {
			t.Fatalf("empty body for %q...", unit)
		}
	}
}
