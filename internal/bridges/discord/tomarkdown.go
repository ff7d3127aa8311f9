package discord

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// This file turns Matrix message bodies into Discord markdown.

// ghostParser tells whether a Matrix user is a Discord ghost, and which.
type ghostParser func(userID id.UserID) (discordID string, ok bool)

const mentionsKey = "discord_mentions"

// matrixToDiscord converts a Matrix body (its HTML when it has one) to
// Discord markdown, returning the Discord users it pings.
func (c *Client) matrixToDiscord(content *event.MessageEventContent) (string, []string) {
	return htmlToDiscord(content, func(userID id.UserID) (string, bool) {
		ghost, ok := c.connector.br.Matrix.ParseGhostMXID(userID)
		return string(ghost), ok
	})
}

func htmlToDiscord(content *event.MessageEventContent, ghosts ghostParser) (string, []string) {
	if content.Format != event.FormatHTML || content.FormattedBody == "" {
		return escapeDiscord(content.Body), nil
	}
	ctx := format.NewContext(context.Background())
	mentioned := &[]string{}
	ctx.ReturnData[mentionsKey] = mentioned
	text := newDiscordParser(ghosts).Parse(content.FormattedBody, ctx)
	return text, *mentioned
}

func newDiscordParser(ghosts ghostParser) *format.HTMLParser {
	return &format.HTMLParser{
		TabsToSpaces:   4,
		Newline:        "\n",
		HorizontalLine: "\n---\n",
		PillConverter: func(displayname, mxid, eventID string, ctx format.Context) string {
			if eventID == "" && strings.HasPrefix(mxid, "@") {
				if discordID, ok := ghosts(id.UserID(mxid)); ok && isSnowflake(discordID) {
					mentioned := ctx.ReturnData[mentionsKey].(*[]string)
					if !slices.Contains(*mentioned, discordID) {
						*mentioned = append(*mentioned, discordID)
					}
					return "<@" + discordID + ">"
				}
				return displayname
			}
			return format.DefaultPillConverter(displayname, mxid, eventID, ctx)
		},
		BoldConverter:          wrap("**"),
		ItalicConverter:        wrap("*"),
		StrikethroughConverter: wrap("~~"),
		UnderlineConverter:     wrap("__"),
		SpoilerConverter: func(text, reason string, ctx format.Context) string {
			return "||" + text + "||"
		},
		LinkConverter: func(text, href string, ctx format.Context) string {
			if text == href || text == escapeDiscord(href) {
				return href
			}
			return fmt.Sprintf("[%s](%s)", text, href)
		},
		MonospaceConverter: func(code string, ctx format.Context) string {
			if strings.Contains(code, "`") {
				return "`` " + code + " ``"
			}
			return "`" + code + "`"
		},
		MonospaceBlockConverter: func(code, language string, ctx format.Context) string {
			code = strings.ReplaceAll(code, "```", "`\u200b``")
			if !strings.HasSuffix(code, "\n") {
				code += "\n"
			}
			return "```" + language + "\n" + code + "```"
		},
		TextConverter: func(text string, ctx format.Context) string {
			if ctx.TagStack.Has("code") || ctx.TagStack.Has("pre") {
				return text
			}
			return escapeDiscord(text)
		},
	}
}

func wrap(marker string) format.TextConverter {
	return func(text string, ctx format.Context) string {
		if text == "" {
			return ""
		}
		return marker + text + marker
	}
}

// discordEscaper backslash-escapes what Discord would read as inline markup
// or as a mention, so that Matrix text arrives as typed. Pings are governed
// by allowed_mentions, not by the text.
var discordEscaper = strings.NewReplacer(
	`\`, `\\`, `*`, `\*`, `_`, `\_`, `~`, `\~`, "`", "\\`", `|`, `\|`, `<`, `\<`, `[`, `\[`,
)

// escapeDiscord escapes inline markup, and quotes, headings, subtext and
// list markers at the start of a line.
func escapeDiscord(text string) string {
	lines := strings.Split(discordEscaper.Replace(text), "\n")
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		indent := line[:len(line)-len(trimmed)]
		switch {
		case strings.HasPrefix(trimmed, ">"), strings.HasPrefix(trimmed, "#"),
			strings.HasPrefix(trimmed, "- "), strings.HasPrefix(trimmed, "-#"):
			lines[i] = indent + `\` + trimmed
		case orderedItemRe.MatchString(trimmed):
			dot := strings.IndexByte(trimmed, '.')
			lines[i] = indent + trimmed[:dot] + `\` + trimmed[dot:]
		}
	}
	return strings.Join(lines, "\n")
}
