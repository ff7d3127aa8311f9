package discord

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

type fakeResolver struct{}

func (fakeResolver) userMention(discordID string) (string, string) {
	if discordID == "42" {
		return "@discord_42:example.org", "Alice"
	}
	return "", ""
}

func (fakeResolver) channelName(discordID string) string {
	if discordID == "7" {
		return "general"
	}
	return ""
}

func TestDiscordToMatrix(t *testing.T) {
	tests := []struct {
		name, in, body, html string
	}{
		{"plain", "hello world", "hello world", ""},
		{"plain lines", "a\nb", "a\nb", ""},
		{"html is escaped", "<b>x</b> & y", "<b>x</b> & y", ""},
		{"bold", "**bold** text", "bold text", "<strong>bold</strong> text"},
		{"italic star", "an *italic* word", "an italic word", "an <em>italic</em> word"},
		{"italic underscore", "an _italic_ word", "an italic word", "an <em>italic</em> word"},
		{"snake_case is not italic", "snake_case_name", "snake_case_name", ""},
		{"underline", "__under__", "under", "<u>under</u>"},
		{"strike", "~~gone~~", "gone", "<del>gone</del>"},
		{"spoiler", "||secret||", "secret", "<span data-mx-spoiler>secret</span>"},
		{"bold italic", "***both***", "both", "<strong><em>both</em></strong>"},
		{"nested", "**bold _and italic_**", "bold and italic", "<strong>bold <em>and italic</em></strong>"},
		{"unclosed", "**not closed", "**not closed", ""},
		{"escaped", `\*not italic\*`, "*not italic*", ""},
		{"inline code keeps markup", "`**x** <y>`", "`**x** <y>`", "<code>**x** &lt;y&gt;</code>"},
		{"code block with language", "```go\nfmt.Println(1)\n```", "```go\nfmt.Println(1)\n```", `<pre><code class="language-go">fmt.Println(1)` + "\n" + `</code></pre>`},
		{"code block plain", "```\na *b*\n```", "```\na *b*\n```", "<pre><code>a *b*\n</code></pre>"},
		{"quote", "> quoted\nafter", "> quoted\nafter", "<blockquote>quoted</blockquote>after"},
		{"quote after text", "before\n> q1\n> q2", "before\n> q1\n> q2", "before<blockquote>q1<br>q2</blockquote>"},
		{"rest quote", ">>> all\nof this", "> all\n> of this", "<blockquote>all<br>of this</blockquote>"},
		{"user mention", "hi <@42>!", "hi @Alice!", `hi <a href="https://matrix.to/#/@discord_42:example.org">Alice</a>!`},
		{"nick mention", "<@!42>", "@Alice", `<a href="https://matrix.to/#/@discord_42:example.org">Alice</a>`},
		{"unknown mention", "<@99>", "@99", "@99"},
		{"channel mention", "see <#7>", "see #general", "see #general"},
		{"role mention", "<@&5>", "@role-5", "@role-5"},
		{"custom emoji", "nice <:pog:123456>", "nice :pog:", "nice :pog:"},
		{"animated emoji", "<a:dance:99>", ":dance:", ":dance:"},
		{"bare link", "go to https://example.com/a?b=c.", "go to https://example.com/a?b=c.", `go to <a href="https://example.com/a?b=c">https://example.com/a?b=c</a>.`},
		{"masked link", "[site](https://example.com)", "site (https://example.com)", `<a href="https://example.com">site</a>`},
		{"angle link", "<https://example.com>", "https://example.com", `<a href="https://example.com">https://example.com</a>`},
		{"link with underscores", "https://x.org/a_b_c", "https://x.org/a_b_c", `<a href="https://x.org/a_b_c">https://x.org/a_b_c</a>`},
		{"javascript link is text", "[x](javascript:alert(1))", "[x](javascript:alert(1))", ""},
		{"line breaks", "**a**\nb", "a\nb", "<strong>a</strong><br>b"},
		{"heading", "# Title\nbody", "# Title\nbody", "<h1>Title</h1>body"},
		{"small heading", "text\n### small", "text\n### small", "text<h3>small</h3>"},
		{"not a heading", "#hashtag and #### four", "#hashtag and #### four", ""},
		{"subtext", "-# fine print", "fine print", "<sub>fine print</sub><br>"},
		{"list", "- one\n- **two**", "- one\n- two", "<ul><li>one</li><li><strong>two</strong></li></ul>"},
		{"star list", "* a\n* b\nafter", "- a\n- b\nafter", "<ul><li>a</li><li>b</li></ul>after"},
		{"ordered list", "1. a\n2. b", "1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"},
		{"blocks inside code are code", "```\n# not a heading\n> nor a quote\n- nor a list\n```", "```\n# not a heading\n> nor a quote\n- nor a list\n```", "<pre><code># not a heading\n&gt; nor a quote\n- nor a list\n</code></pre>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, formatted := discordToMatrix(tt.in, fakeResolver{})
			if body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			if formatted != tt.html {
				t.Errorf("html = %q, want %q", formatted, tt.html)
			}
		})
	}
}

// FuzzDiscordToMatrix checks that any input converts without panicking,
// to valid UTF-8, and to HTML whose tags all balance (nothing from the
// input escapes into markup).
func FuzzDiscordToMatrix(f *testing.F) {
	for _, seed := range []string{"**a**", "*a **b** c*", "||x||", "```go\nx```", "> a\n>>> b", "<@1><#2><:e:3>", "[a](https://b)", `\**`, "__*~~||`", strings.Repeat("**", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !utf8.ValidString(in) {
			return
		}
		body, formatted := discordToMatrix(in, fakeResolver{})
		if !utf8.ValidString(body) || !utf8.ValidString(formatted) {
			t.Fatalf("invalid UTF-8 from %q", in)
		}
		assertBalancedHTML(t, in, formatted)
	})
}

// allowedTags are the tags the converter may emit.
var allowedTags = map[string]bool{"h1": true, "h2": true, "h3": true, "sub": true, "ul": true, "ol": true, "li": true, "strong": true, "em": true, "u": true, "del": true, "span": true, "code": true, "pre": true, "blockquote": true, "br": true, "a": true}

func assertBalancedHTML(t *testing.T, in, formatted string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(formatted))
	var stack []string
	for {
		switch z.Next() {
		case html.ErrorToken:
			if len(stack) != 0 {
				t.Fatalf("%q -> %q: unclosed %v", in, formatted, stack)
			}
			return
		case html.StartTagToken:
			name, _ := z.TagName()
			if !allowedTags[string(name)] {
				t.Fatalf("%q -> %q: unexpected tag %s", in, formatted, name)
			}
			if string(name) != "br" {
				stack = append(stack, string(name))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("%q -> %q: unbalanced </%s>", in, formatted, name)
			}
			stack = stack[:len(stack)-1]
		}
	}
}

func TestDeepNestingStaysBounded(t *testing.T) {
	in := strings.Repeat("||", 5000) + "x" + strings.Repeat("||", 5000)
	_, formatted := discordToMatrix(in, nil)
	depth, deepest := 0, 0
	z := html.NewTokenizer(strings.NewReader(formatted))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		switch tt {
		case html.StartTagToken:
			depth++
			deepest = max(deepest, depth)
		case html.EndTagToken:
			depth--
		}
	}
	if deepest == 0 || deepest > maxNesting {
		t.Fatalf("nesting depth %d, want 1 to %d", deepest, maxNesting)
	}
}

func TestMatrixToDiscord(t *testing.T) {
	ghosts := func(userID id.UserID) (string, bool) {
		if after, ok := strings.CutPrefix(string(userID), "@discord_"); ok {
			return strings.TrimSuffix(after, ":example.org"), true
		}
		return "", false
	}
	tests := []struct {
		name          string
		content       event.MessageEventContent
		want          string
		wantMentioned []string
	}{
		{"plain", event.MessageEventContent{Body: "hello"}, "hello", nil},
		{"plain markup is escaped", event.MessageEventContent{Body: "2*3*4 a_b ~x~ `c` <@1> [l]"}, `2\*3\*4 a\_b \~x\~ \` + "`c\\`" + ` \<@1> \[l]`, nil},
		{"plain quote is escaped", event.MessageEventContent{Body: "> not a quote\n# nor a heading"}, "\\> not a quote\n\\# nor a heading", nil},
		{"plain lists are escaped", event.MessageEventContent{Body: "- a\n1. b\n-# c"}, "\\- a\n1\\. b\n\\-# c", nil},
		{"bold italic", html5("<strong>b</strong> <em>i</em>"), "**b** *i*", nil},
		{"underline strike", html5("<u>u</u> <del>s</del>"), "__u__ ~~s~~", nil},
		{"spoiler", html5(`<span data-mx-spoiler>s</span>`), "||s||", nil},
		{"inline code not escaped", html5("<code>a*b</code>"), "`a*b`", nil},
		{"code block", html5(`<pre><code class="language-go">x := 1` + "\n" + `</code></pre>`), "```go\nx := 1\n```", nil},
		{"link", html5(`<a href="https://example.com">site</a>`), "[site](https://example.com)", nil},
		{"bare link", html5(`<a href="https://example.com">https://example.com</a>`), "https://example.com", nil},
		{"ghost pill", html5(`hi <a href="https://matrix.to/#/@discord_42:example.org">Alice</a>`), "hi <@42>", []string{"42"}},
		{"matrix user pill", html5(`hi <a href="https://matrix.to/#/@bob:example.org">Bob</a>`), "hi Bob", nil},
		{"quote", html5("<blockquote>q</blockquote>after"), "> q\nafter", nil},
		{"text in html is escaped", html5("a_b*c"), `a\_b\*c`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, mentioned := htmlToDiscord(&tt.content, ghosts)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if strings.Join(mentioned, ",") != strings.Join(tt.wantMentioned, ",") {
				t.Errorf("mentioned %v, want %v", mentioned, tt.wantMentioned)
			}
		})
	}
}

func html5(formatted string) event.MessageEventContent {
	return event.MessageEventContent{Body: "fallback", Format: event.FormatHTML, FormattedBody: formatted}
}

// TestRoundTrip checks that Discord markup survives Discord -> Matrix ->
// Discord.
func TestRoundTrip(t *testing.T) {
	for _, in := range []string{"**bold** and *it*", "__u__ ~~s~~ ||sp||", "`code`", "[site](https://example.com)"} {
		body, formatted := discordToMatrix(in, fakeResolver{})
		back, _ := htmlToDiscord(&event.MessageEventContent{Body: body, Format: event.FormatHTML, FormattedBody: formatted}, func(id.UserID) (string, bool) { return "", false })
		again, againHTML := discordToMatrix(back, fakeResolver{})
		if again != body || againHTML != formatted {
			t.Errorf("%q -> %q -> %q: got (%q, %q), want (%q, %q)", in, formatted, back, again, againHTML, body, formatted)
		}
	}
}

func TestIsEmoji(t *testing.T) {
	for key, want := range map[string]bool{
		"👍": true, "❤️": true, "🏳️‍🌈": true, "1️⃣": true,
		"": false, "+1": false, "ok": false, "mxc://x/y": false, ":custom:": false,
	} {
		if got := isEmoji(key); got != want {
			t.Errorf("isEmoji(%q) = %v, want %v", key, got, want)
		}
	}
}
