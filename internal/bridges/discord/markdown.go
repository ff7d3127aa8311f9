package discord

import (
	"fmt"
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file turns Discord's markdown into Matrix's HTML and plain body.
// Discord's dialect is not CommonMark: __ is underline, ||…|| a spoiler,
// single newlines are line breaks, "> " quotes one line and ">>> " the rest
// of the message, and <@id>, <#id>, <@&id> and <:name:id> are mentions and
// custom emoji.

// mentionResolver names what Discord's mention syntax refers to. Any
// method may answer "" when it does not know.
type mentionResolver interface {
	// userMention gives the Matrix user ID (for a pill) and display name of
	// a Discord user.
	userMention(discordID string) (mxid, name string)
	// channelName names a Discord channel.
	channelName(discordID string) string
}

type nodeKind int

const (
	nodeText nodeKind = iota
	nodeBold
	nodeItalic
	nodeUnderline
	nodeStrike
	nodeSpoiler
	nodeCode
	nodeCodeBlock
	nodeQuote
	nodeLineBreak
	nodeUserMention
	nodeChannelMention
	nodeRoleMention
	nodeCustomEmoji
	nodeLink
	nodeHeading
	nodeSubtext
	nodeList
	nodeListItem
)

// mdNode is one piece of parsed Discord markdown.
type mdNode struct {
	kind     nodeKind
	text     string // text, code, an ID, an emoji name or a link's URL
	lang     string // a code block's language
	level    int    // a heading's level
	ordered  bool   // whether a list is numbered
	children []mdNode
}

// maxNesting bounds how deep formatting may nest; deeper markup is kept as
// literal text, so hostile input cannot exhaust the stack.
const maxNesting = 16

// discordToMatrix converts a Discord message's content into a Matrix plain
// body and, when it has any formatting, an HTML body ("" if none).
func discordToMatrix(content string, res mentionResolver) (body, formatted string) {
	nodes := parseBlocks(content)
	body = renderPlain(nodes, res)
	if isPlainText(nodes) {
		return body, ""
	}
	return body, renderHTML(nodes, res)
}

func isBlock(kind nodeKind) bool {
	switch kind {
	case nodeQuote, nodeHeading, nodeSubtext, nodeList:
		return true
	}
	return false
}

func isPlainText(nodes []mdNode) bool {
	for _, n := range nodes {
		if n.kind != nodeText && n.kind != nodeLineBreak {
			return false
		}
	}
	return true
}

// parseBlocks splits off the line-based blocks (quotes, headings, subtext,
// lists) and parses everything else inline. Lines inside a ``` code block
// are never blocks.
func parseBlocks(s string) []mdNode {
	var out []mdNode
	var plain []string
	flushPlain := func() {
		if plain != nil {
			out = append(out, parseInline(strings.Join(plain, "\n"), 0)...)
			plain = nil
		}
	}
	lines := strings.Split(s, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !inFence {
			if rest, ok := strings.CutPrefix(line, ">>> "); ok {
				flushPlain()
				quoted := strings.Join(append([]string{rest}, lines[i+1:]...), "\n")
				return append(out, mdNode{kind: nodeQuote, children: parseInline(quoted, 0)})
			}
			if rest, ok := strings.CutPrefix(line, "> "); ok {
				flushPlain()
				quoted := []string{rest}
				for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "> ") {
					i++
					quoted = append(quoted, strings.TrimPrefix(lines[i], "> "))
				}
				out = append(out, mdNode{kind: nodeQuote, children: parseInline(strings.Join(quoted, "\n"), 0)})
				continue
			}
			if n, ok := headingLine(line); ok {
				flushPlain()
				out = append(out, n)
				continue
			}
			if _, ordered, ok := listItem(line); ok {
				flushPlain()
				list := mdNode{kind: nodeList, ordered: ordered}
				for ; i < len(lines); i++ {
					text, itemOrdered, ok := listItem(lines[i])
					if !ok || itemOrdered != ordered {
						break
					}
					list.children = append(list.children, mdNode{kind: nodeListItem, children: parseInline(text, 0)})
				}
				i--
				out = append(out, list)
				continue
			}
		}
		plain = append(plain, line)
		if strings.Count(line, "```")%2 == 1 {
			inFence = !inFence
		}
	}
	flushPlain()
	return out
}

// headingLine reads "# ", "## " and "### " headings and "-# " subtext.
func headingLine(line string) (mdNode, bool) {
	if rest, ok := strings.CutPrefix(line, "-# "); ok && strings.TrimSpace(rest) != "" {
		return mdNode{kind: nodeSubtext, children: parseInline(rest, 0)}, true
	}
	for level := 1; level <= 3; level++ {
		if rest, ok := strings.CutPrefix(line, strings.Repeat("#", level)+" "); ok && strings.TrimSpace(rest) != "" {
			return mdNode{kind: nodeHeading, level: level, children: parseInline(rest, 0)}, true
		}
	}
	return mdNode{}, false
}

var orderedItemRe = regexp.MustCompile(`^\d{1,9}\. `)

// listItem reads a "- item", "* item" or "1. item" line.
func listItem(line string) (text string, ordered, ok bool) {
	if rest, ok := strings.CutPrefix(line, "- "); ok && strings.TrimSpace(rest) != "" {
		return rest, false, true
	}
	if rest, ok := strings.CutPrefix(line, "* "); ok && strings.TrimSpace(rest) != "" {
		return rest, false, true
	}
	if m := orderedItemRe.FindString(line); m != "" && strings.TrimSpace(line[len(m):]) != "" {
		return line[len(m):], true, true
	}
	return "", false, false
}

var (
	userMentionRe    = regexp.MustCompile(`^<@!?(\d{1,20})>`)
	roleMentionRe    = regexp.MustCompile(`^<@&(\d{1,20})>`)
	channelMentionRe = regexp.MustCompile(`^<#(\d{1,20})>`)
	customEmojiRe    = regexp.MustCompile(`^<a?:(\w{1,32}):(\d{1,20})>`)
	angleLinkRe      = regexp.MustCompile(`^<(https?://[^\s>]+)>`)
	maskedLinkRe     = regexp.MustCompile(`^\[([^\[\]\n]+)\]\(<?(https?://[^\s()<>]+)>?\)`)
	bareLinkRe       = regexp.MustCompile(`^https?://[^\s<]+[^\s<.,:;"')\]!?]`)
)

// delimited are the paired markers, longest first so "**" wins over "*".
var delimited = []struct {
	marker string
	kind   nodeKind
}{
	{"**", nodeBold},
	{"__", nodeUnderline},
	{"~~", nodeStrike},
	{"||", nodeSpoiler},
	{"*", nodeItalic},
	{"_", nodeItalic},
}

// parseInline parses inline markup; depth counts enclosing formatting.
func parseInline(s string, depth int) []mdNode {
	var out []mdNode
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			out = append(out, mdNode{kind: nodeText, text: text.String()})
			text.Reset()
		}
	}
	emit := func(n mdNode) {
		flush()
		out = append(out, n)
	}
	for i := 0; i < len(s); {
		rest := s[i:]
		switch c := s[i]; {
		case c == '\\' && len(rest) > 1 && isEscapable(rest[1]):
			text.WriteByte(rest[1])
			i += 2
			continue
		case c == '\n':
			emit(mdNode{kind: nodeLineBreak})
			i++
			continue
		case strings.HasPrefix(rest, "```"):
			if end := strings.Index(rest[3:], "```"); end >= 0 {
				emit(codeBlock(rest[3 : 3+end]))
				i += 3 + end + 3
				continue
			}
		case c == '`':
			if n, consumed := inlineCode(rest); consumed > 0 {
				emit(n)
				i += consumed
				continue
			}
		case c == '<':
			if n, consumed := angleToken(rest); consumed > 0 {
				emit(n)
				i += consumed
				continue
			}
		case c == '[':
			if m := maskedLinkRe.FindStringSubmatch(rest); m != nil && depth < maxNesting {
				emit(mdNode{kind: nodeLink, text: m[2], children: parseInline(m[1], depth+1)})
				i += len(m[0])
				continue
			}
		case c == 'h' && (i == 0 || !isWordByte(s[i-1])):
			if m := bareLinkRe.FindString(rest); m != "" {
				emit(mdNode{kind: nodeLink, text: m, children: []mdNode{{kind: nodeText, text: m}}})
				i += len(m)
				continue
			}
		}
		if n, consumed := delimitedSpan(s, i, depth); consumed > 0 {
			emit(n)
			i += consumed
			continue
		}
		_, size := utf8.DecodeRuneInString(rest)
		text.WriteString(rest[:size])
		i += size
	}
	flush()
	return out
}

func isEscapable(c byte) bool {
	return strings.IndexByte("\\*_~`|>#-[]()<:", c) >= 0
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// codeBlock reads the inside of ```…```: an optional language on the first
// line, then the code.
func codeBlock(inner string) mdNode {
	if first, code, ok := strings.Cut(inner, "\n"); ok && first != "" && !strings.ContainsAny(first, " \t`") && len(first) <= 32 {
		return mdNode{kind: nodeCodeBlock, lang: first, text: code}
	}
	return mdNode{kind: nodeCodeBlock, text: strings.TrimPrefix(inner, "\n")}
}

// inlineCode reads `code` or “code“.
func inlineCode(rest string) (mdNode, int) {
	fence := "`"
	if strings.HasPrefix(rest, "``") {
		fence = "``"
	}
	end := strings.Index(rest[len(fence):], fence)
	if end <= 0 {
		return mdNode{}, 0
	}
	code := rest[len(fence) : len(fence)+end]
	if strings.TrimSpace(code) == "" {
		return mdNode{}, 0
	}
	return mdNode{kind: nodeCode, text: code}, len(fence) + end + len(fence)
}

// angleToken reads mentions, custom emoji and <url> links.
func angleToken(rest string) (mdNode, int) {
	if m := userMentionRe.FindStringSubmatch(rest); m != nil {
		return mdNode{kind: nodeUserMention, text: m[1]}, len(m[0])
	}
	if m := roleMentionRe.FindStringSubmatch(rest); m != nil {
		return mdNode{kind: nodeRoleMention, text: m[1]}, len(m[0])
	}
	if m := channelMentionRe.FindStringSubmatch(rest); m != nil {
		return mdNode{kind: nodeChannelMention, text: m[1]}, len(m[0])
	}
	if m := customEmojiRe.FindStringSubmatch(rest); m != nil {
		return mdNode{kind: nodeCustomEmoji, text: m[1]}, len(m[0])
	}
	if m := angleLinkRe.FindStringSubmatch(rest); m != nil {
		return mdNode{kind: nodeLink, text: m[1], children: []mdNode{{kind: nodeText, text: m[1]}}}, len(m[0])
	}
	return mdNode{}, 0
}

// delimitedSpan reads **bold**, __underline__, ~~strike~~, ||spoiler||,
// *italic* or _italic_ starting at s[i], if it closes.
func delimitedSpan(s string, i, depth int) (mdNode, int) {
	if depth >= maxNesting {
		return mdNode{}, 0
	}
	rest := s[i:]
	for _, d := range delimited {
		if !strings.HasPrefix(rest, d.marker) {
			continue
		}
		if d.marker == "_" && i > 0 && isWordByte(s[i-1]) {
			return mdNode{}, 0
		}
		end := closingMarker(rest[len(d.marker):], d.marker)
		if end < 0 {
			continue
		}
		inner := rest[len(d.marker) : len(d.marker)+end]
		after := len(d.marker) + end + len(d.marker)
		if d.marker == "_" && after < len(rest) && isWordByte(rest[after]) {
			continue
		}
		if d.kind == nodeItalic && d.marker == "*" && unicode.IsSpace(rune(inner[0])) {
			continue
		}
		return mdNode{kind: d.kind, children: parseInline(inner, depth+1)}, after
	}
	return mdNode{}, 0
}

// closingMarker finds where marker closes a span whose content is s: not
// at the start (spans are never empty), skipping code spans and escapes,
// and at the end of a run of the marker's character (so "***x***" closes
// "**" after "*x*").
func closingMarker(s, marker string) int {
	for j := 1; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++
			continue
		case s[j] == '`':
			if _, consumed := inlineCode(s[j:]); consumed > 0 {
				j += consumed - 1
				continue
			}
		}
		if !strings.HasPrefix(s[j:], marker) {
			continue
		}
		for j+len(marker) < len(s) && s[j+len(marker)] == marker[0] && len(marker) == 2 {
			j++
		}
		return j
	}
	return -1
}

// renderHTML renders nodes as Matrix HTML.
func renderHTML(nodes []mdNode, res mentionResolver) string {
	var b strings.Builder
	writeHTML(&b, nodes, res)
	return b.String()
}

var htmlTags = map[nodeKind]string{
	nodeBold: "strong", nodeItalic: "em", nodeUnderline: "u", nodeStrike: "del", nodeQuote: "blockquote",
}

func writeHTML(b *strings.Builder, nodes []mdNode, res mentionResolver) {
	for _, n := range nodes {
		switch n.kind {
		case nodeText:
			b.WriteString(html.EscapeString(n.text))
		case nodeLineBreak:
			b.WriteString("<br>")
		case nodeBold, nodeItalic, nodeUnderline, nodeStrike, nodeQuote:
			tag := htmlTags[n.kind]
			b.WriteString("<" + tag + ">")
			writeHTML(b, n.children, res)
			b.WriteString("</" + tag + ">")
		case nodeHeading:
			tag := fmt.Sprintf("h%d", n.level)
			b.WriteString("<" + tag + ">")
			writeHTML(b, n.children, res)
			b.WriteString("</" + tag + ">")
		case nodeSubtext:
			b.WriteString("<sub>")
			writeHTML(b, n.children, res)
			b.WriteString("</sub><br>")
		case nodeList, nodeListItem:
			tag := "li"
			if n.kind == nodeList {
				tag = map[bool]string{false: "ul", true: "ol"}[n.ordered]
			}
			b.WriteString("<" + tag + ">")
			writeHTML(b, n.children, res)
			b.WriteString("</" + tag + ">")
		case nodeSpoiler:
			b.WriteString("<span data-mx-spoiler>")
			writeHTML(b, n.children, res)
			b.WriteString("</span>")
		case nodeCode:
			b.WriteString("<code>" + html.EscapeString(n.text) + "</code>")
		case nodeCodeBlock:
			if n.lang != "" {
				b.WriteString(`<pre><code class="language-` + html.EscapeString(n.lang) + `">`)
			} else {
				b.WriteString("<pre><code>")
			}
			b.WriteString(html.EscapeString(n.text) + "</code></pre>")
		case nodeUserMention:
			mxid, name := resolveUser(res, n.text)
			if mxid == "" {
				b.WriteString(html.EscapeString("@" + name))
				continue
			}
			b.WriteString(`<a href="https://matrix.to/#/` + html.EscapeString(mxid) + `">` + html.EscapeString(name) + `</a>`)
		case nodeChannelMention, nodeRoleMention, nodeCustomEmoji:
			b.WriteString(html.EscapeString(plainToken(n, res)))
		case nodeLink:
			b.WriteString(`<a href="` + html.EscapeString(n.text) + `">`)
			writeHTML(b, n.children, res)
			b.WriteString("</a>")
		}
	}
}

// renderPlain renders nodes as a plain-text body: markup dropped, mentions
// and emoji by name, masked links with their URL.
func renderPlain(nodes []mdNode, res mentionResolver) string {
	var b strings.Builder
	writePlain(&b, nodes, res)
	if len(nodes) > 0 && isBlock(nodes[len(nodes)-1].kind) {
		return strings.TrimSuffix(b.String(), "\n")
	}
	return b.String()
}

func writePlain(b *strings.Builder, nodes []mdNode, res mentionResolver) {
	for _, n := range nodes {
		switch n.kind {
		case nodeText:
			b.WriteString(n.text)
		case nodeLineBreak:
			b.WriteByte('\n')
		case nodeQuote, nodeHeading, nodeSubtext, nodeList:
			// A block is on lines of its own.
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
				b.WriteByte('\n')
			}
			writePlainBlock(b, n, res)
			b.WriteByte('\n')
		case nodeCode:
			b.WriteString("`" + n.text + "`")
		case nodeCodeBlock:
			b.WriteString("```" + n.lang + "\n" + n.text + "```")
		case nodeUserMention:
			_, name := resolveUser(res, n.text)
			b.WriteString("@" + name)
		case nodeChannelMention, nodeRoleMention, nodeCustomEmoji:
			b.WriteString(plainToken(n, res))
		case nodeLink:
			var text strings.Builder
			writePlain(&text, n.children, res)
			if text.String() == n.text {
				b.WriteString(n.text)
			} else {
				b.WriteString(text.String() + " (" + n.text + ")")
			}
		default:
			writePlain(b, n.children, res)
		}
	}
}

// writePlainBlock writes a block's lines: quotes with "> ", headings with
// their #s, list items with "- " or their number.
func writePlainBlock(b *strings.Builder, n mdNode, res mentionResolver) {
	switch n.kind {
	case nodeQuote:
		var inner strings.Builder
		writePlain(&inner, n.children, res)
		for i, line := range strings.Split(inner.String(), "\n") {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString("> " + line)
		}
	case nodeHeading:
		b.WriteString(strings.Repeat("#", n.level) + " ")
		writePlain(b, n.children, res)
	case nodeSubtext:
		writePlain(b, n.children, res)
	case nodeList:
		for i, item := range n.children {
			if i > 0 {
				b.WriteByte('\n')
			}
			if n.ordered {
				fmt.Fprintf(b, "%d. ", i+1)
			} else {
				b.WriteString("- ")
			}
			writePlain(b, item.children, res)
		}
	}
}

func resolveUser(res mentionResolver, discordID string) (mxid, name string) {
	if res != nil {
		mxid, name = res.userMention(discordID)
	}
	if name == "" {
		name = discordID
	}
	return mxid, name
}

func plainToken(n mdNode, res mentionResolver) string {
	switch n.kind {
	case nodeChannelMention:
		name := ""
		if res != nil {
			name = res.channelName(n.text)
		}
		if name == "" {
			name = n.text
		}
		return "#" + name
	case nodeRoleMention:
		return "@role-" + n.text
	default:
		return ":" + n.text + ":"
	}
}
