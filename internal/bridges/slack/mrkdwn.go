package slack

import (
	"context"
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// Slack's message text is "mrkdwn": *bold*, _italic_, ~strike~, `code`,
// ```preformatted```, "> " quotes, and angle-bracket entities (<@U123> a user,
// <#C123|name> a channel, <!here> a broadcast, <https://x|label> a link),
// with &, < and > escaped as &amp;, &lt; and &gt;.

// mrkdwnResolver names the Slack users and channels a message mentions.
type mrkdwnResolver struct {
	// User returns the Matrix user a Slack user appears as and their name;
	// ok is false for a user the bridge cannot name (the ID is shown).
	User func(slackUserID string) (mxid id.UserID, name string, ok bool)
	// Channel returns a channel's name, or "" when unknown.
	Channel func(channelID string) string
}

// matrixText is a Slack message converted for Matrix.
type matrixText struct {
	Body          string
	FormattedBody string // HTML; "" when the text has no formatting
	Mentions      []id.UserID
}

// mrkdwnToMatrix converts Slack mrkdwn to a Matrix plain body and HTML.
// Every piece of text is HTML-escaped, so no input yields markup of its own.
func mrkdwnToMatrix(text string, r mrkdwnResolver) matrixText {
	c := mrkdwnConverter{resolver: r}
	c.blocks(text)
	out := matrixText{Body: c.plain.String(), Mentions: c.mentions}
	if c.formatted {
		out.FormattedBody = c.html.String()
	}
	return out
}

type mrkdwnConverter struct {
	resolver  mrkdwnResolver
	plain     strings.Builder
	html      strings.Builder
	formatted bool
	mentions  []id.UserID
}

// blocks splits text into ``` code blocks, "> " quotes and plain lines.
func (c *mrkdwnConverter) blocks(text string) {
	for text != "" {
		start := strings.Index(text, "```")
		if start < 0 {
			c.lines(text)
			return
		}
		end := strings.Index(text[start+3:], "```")
		if end < 0 {
			c.lines(text)
			return
		}
		c.lines(strings.TrimSuffix(text[:start], "\n"))
		if c.plain.Len() > 0 {
			c.plain.WriteString("\n")
		}
		c.codeBlock(text[start+3 : start+3+end])
		text = strings.TrimPrefix(text[start+3+end+3:], "\n")
		if text != "" {
			c.plain.WriteString("\n")
		}
	}
}

func (c *mrkdwnConverter) codeBlock(code string) {
	code = strings.TrimSuffix(strings.TrimPrefix(code, "\n"), "\n")
	plain := unescapeSlack(code)
	c.formatted = true
	c.plain.WriteString("```\n" + plain + "\n```")
	c.html.WriteString("<pre><code>" + html.EscapeString(plain) + "</code></pre>")
}

// lines converts text outside code blocks line by line; consecutive quoted
// lines ("&gt; " as Slack sends it, or "> ") form one blockquote.
func (c *mrkdwnConverter) lines(text string) {
	if text == "" {
		return
	}
	lines := strings.Split(text, "\n")
	inQuote := false
	for i, line := range lines {
		quoted, isQuote := cutQuote(line)
		if i > 0 {
			c.plain.WriteString("\n")
		}
		switch {
		case isQuote && !inQuote:
			c.formatted = true
			c.html.WriteString("<blockquote>")
			inQuote = true
		case !isQuote && inQuote:
			c.html.WriteString("</blockquote>")
			inQuote = false
		case i > 0:
			c.html.WriteString("<br>")
		}
		if isQuote {
			c.plain.WriteString("> ")
			line = quoted
		}
		c.inline(line)
	}
	if inQuote {
		c.html.WriteString("</blockquote>")
	}
}

func cutQuote(line string) (string, bool) {
	for _, prefix := range []string{"&gt; ", "&gt;", "> "} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return rest, true
		}
	}
	return line, false
}

// inline converts one line: entities, `code` and the *_~ styles.
func (c *mrkdwnConverter) inline(line string) {
	for i := 0; i < len(line); {
		ch := line[i]
		switch {
		case ch == '<':
			end := strings.IndexByte(window(line, i), '>')
			if end > 0 {
				c.entity(line[i+1 : i+end])
				i += end + 1
				continue
			}
		case ch == '`':
			end := strings.IndexByte(window(line, i+1), '`')
			if end > 0 {
				code := unescapeSlack(line[i+1 : i+1+end])
				c.formatted = true
				c.plain.WriteString("`" + code + "`")
				c.html.WriteString("<code>" + html.EscapeString(code) + "</code>")
				i += end + 2
				continue
			}
		case ch == '*' || ch == '_' || ch == '~':
			if end := styleEnd(line, i); end > 0 {
				tag := map[byte]string{'*': "strong", '_': "em", '~': "del"}[ch]
				c.formatted = true
				c.plain.WriteByte(ch)
				c.html.WriteString("<" + tag + ">")
				c.inline(line[i+1 : end])
				c.html.WriteString("</" + tag + ">")
				c.plain.WriteByte(ch)
				i = end + 1
				continue
			}
		}
		// Plain text up to the next special character.
		next := i + 1
		for next < len(line) && !strings.ContainsRune("<`*_~", rune(line[next])) {
			next++
		}
		c.text(line[i:next])
		i = next
	}
}

// maxSpan bounds how far a closing marker (>, `, *, _ or ~) is looked for,
// so that converting a line costs O(len × maxSpan), not O(len²).
const maxSpan = 4096

// window is line from i on, at most maxSpan bytes.
func window(line string, i int) string {
	return line[i:min(len(line), i+maxSpan)]
}

// styleEnd finds the closing marker of a style opened at line[open]: the
// opener must start a word and be followed by non-space; the closer must
// follow non-space and end a word. It returns -1 when there is none.
func styleEnd(line string, open int) int {
	marker := line[open]
	if open > 0 && !isBoundary(lastRune(line[:open])) {
		return -1
	}
	if open+1 >= len(line) || line[open+1] == ' ' || line[open+1] == marker {
		return -1
	}
	for j := open + 2; j < len(line) && j-open <= maxSpan; j++ {
		if line[j] != marker || line[j-1] == ' ' {
			continue
		}
		if j+1 < len(line) {
			r, _ := utf8.DecodeRuneInString(line[j+1:])
			if !isBoundary(r) {
				continue
			}
		}
		return j
	}
	return -1
}

func isBoundary(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

func (c *mrkdwnConverter) text(s string) {
	plain := unescapeSlack(s)
	c.plain.WriteString(plain)
	c.html.WriteString(html.EscapeString(plain))
}

// entity converts the inside of <...>.
func (c *mrkdwnConverter) entity(inner string) {
	target, label, _ := strings.Cut(inner, "|")
	switch {
	case strings.HasPrefix(target, "@"):
		c.userMention(target[1:], label)
	case strings.HasPrefix(target, "#"):
		name := label
		if name == "" && c.resolver.Channel != nil {
			name = c.resolver.Channel(target[1:])
		}
		if name == "" {
			name = target[1:]
		}
		c.text("#" + name)
	case strings.HasPrefix(target, "!"):
		c.special(target[1:], label)
	case isLinkTarget(target):
		href := unescapeSlack(target)
		text := unescapeSlack(label)
		if text == "" {
			text = strings.TrimPrefix(href, "mailto:")
		}
		c.formatted = true
		if text == href || text == strings.TrimPrefix(href, "mailto:") {
			c.plain.WriteString(text)
		} else {
			c.plain.WriteString(text + " (" + href + ")")
		}
		c.html.WriteString(`<a href="` + html.EscapeString(href) + `">` + html.EscapeString(text) + "</a>")
	default:
		// Not an entity Slack would send: keep it as text.
		c.text("<" + inner + ">")
	}
}

func isLinkTarget(target string) bool {
	lower := strings.ToLower(target)
	for _, scheme := range []string{"http://", "https://", "mailto:", "ftp://", "tel:"} {
		if strings.HasPrefix(lower, scheme) {
			return true
		}
	}
	return false
}

func (c *mrkdwnConverter) userMention(userID, label string) {
	var (
		mxid id.UserID
		name string
		ok   bool
	)
	if c.resolver.User != nil {
		mxid, name, ok = c.resolver.User(userID)
	}
	if name == "" {
		name = unescapeSlack(label)
	}
	if name == "" {
		name = userID
	}
	if !ok || mxid == "" {
		c.text("@" + name)
		return
	}
	c.formatted = true
	c.mentions = append(c.mentions, mxid)
	c.plain.WriteString(name)
	c.html.WriteString(`<a href="` + html.EscapeString(mxid.URI().MatrixToURL()) + `">` + html.EscapeString(name) + "</a>")
}

// special converts <!here>, <!channel>, <!everyone>, <!subteam^ID|@team>
// and <!date^...|fallback>.
func (c *mrkdwnConverter) special(command, label string) {
	name, _, _ := strings.Cut(command, "^")
	switch name {
	case "here", "channel", "everyone":
		c.text("@" + name)
	default:
		if label != "" {
			c.text(label)
		} else {
			c.text("<!" + command + ">")
		}
	}
}

var slackUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

func unescapeSlack(s string) string { return slackUnescaper.Replace(s) }

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeSlack escapes the three characters Slack reserves in message text.
func escapeSlack(s string) string { return slackEscaper.Replace(s) }

// matrixToMrkdwn converts a Matrix message's text to Slack mrkdwn: the HTML
// when there is one (styles, links, code, quotes, pills), else the plain
// body escaped. ghostSlackID maps a Matrix user to the Slack user they stand
// for (a bridged ghost) so that a pill becomes a real Slack mention.
func matrixToMrkdwn(body, formattedBody string, ghostSlackID func(id.UserID) (string, bool)) string {
	if formattedBody == "" {
		return escapeSlack(body)
	}
	parser := &format.HTMLParser{
		TabsToSpaces:   4,
		Newline:        "\n",
		HorizontalLine: "\n---\n",
		TextConverter:  func(s string, _ format.Context) string { return escapeSlack(s) },
		BoldConverter:  func(s string, _ format.Context) string { return wrapStyle("*", s) },
		ItalicConverter: func(s string, _ format.Context) string {
			return wrapStyle("_", s)
		},
		StrikethroughConverter: func(s string, _ format.Context) string { return wrapStyle("~", s) },
		MonospaceConverter:     func(s string, _ format.Context) string { return "`" + s + "`" },
		MonospaceBlockConverter: func(code, _ string, _ format.Context) string {
			return "```\n" + strings.TrimSuffix(code, "\n") + "\n```"
		},
		LinkConverter: func(text, href string, _ format.Context) string {
			href = escapeSlack(href)
			if text == href || text == "" {
				return "<" + href + ">"
			}
			return "<" + href + "|" + strings.ReplaceAll(text, "|", "¦") + ">"
		},
		PillConverter: func(displayname, mxid, _ string, _ format.Context) string {
			if slackID, ok := ghostSlackID(id.UserID(mxid)); ok {
				return "<@" + slackID + ">"
			}
			if displayname == "" {
				displayname = escapeSlack(mxid)
			}
			return displayname
		},
	}
	return parser.Parse(formattedBody, format.NewContext(context.Background()))
}

// wrapStyle puts a style marker around s, keeping its outer spaces outside
// (Slack does not style "* bold *").
func wrapStyle(marker, s string) string {
	trimmed := strings.TrimSpace(s)
	if trimmed == "" {
		return s
	}
	lead := s[:strings.Index(s, trimmed)]
	trail := s[len(lead)+len(trimmed):]
	return lead + marker + trimmed + marker + trail
}
