package slack

import (
	"strings"
)

// Slack names reactions by shortcode ("thumbsup"), Matrix by the emoji
// itself. emojiByName covers Slack's common shortcodes (and their aliases);
// a Slack reaction outside it reaches Matrix as ":name:", which comes back
// as the same shortcode, so custom emoji round-trip too.
var emojiByName = map[string]string{
	"+1": "👍", "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎",
	"heart": "❤️", "smile": "😄", "smiley": "😃", "grinning": "😀", "laughing": "😆",
	"joy": "😂", "rofl": "🤣", "slightly_smiling_face": "🙂", "wink": "😉", "blush": "😊",
	"heart_eyes": "😍", "thinking_face": "🤔", "neutral_face": "😐", "expressionless": "😑",
	"unamused": "😒", "sweat_smile": "😅", "sob": "😭", "cry": "😢", "scream": "😱",
	"angry": "😠", "rage": "😡", "open_mouth": "😮", "astonished": "😲", "flushed": "😳",
	"sunglasses": "😎", "stuck_out_tongue": "😛", "upside_down_face": "🙃", "sleeping": "😴",
	"clap": "👏", "wave": "👋", "raised_hands": "🙌", "pray": "🙏", "ok_hand": "👌",
	"muscle": "💪", "point_up": "☝️", "point_right": "👉", "point_left": "👈", "eyes": "👀",
	"fire": "🔥", "tada": "🎉", "rocket": "🚀", "star": "⭐", "sparkles": "✨", "100": "💯",
	"white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌", "warning": "⚠️",
	"question": "❓", "exclamation": "❗", "bulb": "💡", "memo": "📝", "pushpin": "📌",
	"hourglass": "⌛", "coffee": "☕", "beer": "🍺", "pizza": "🍕", "cake": "🍰",
	"broken_heart": "💔", "yellow_heart": "💛", "green_heart": "💚", "blue_heart": "💙",
	"purple_heart": "💜", "see_no_evil": "🙈", "skull": "💀", "ghost": "👻", "poop": "💩",
	"hankey": "💩", "thumbs_up": "👍", "raised_hand": "✋", "facepalm": "🤦", "shrug": "🤷",
	"party_popper": "🎉", "sunny": "☀️", "zap": "⚡", "snowflake": "❄️", "rainbow": "🌈",
	"checkered_flag": "🏁", "trophy": "🏆", "bug": "🐛", "lock": "🔒", "key": "🔑",
}

// nameByEmoji is the inverse, preferring the names Slack itself uses.
var nameByEmoji = func() map[string]string {
	preferred := map[string]string{"👍": "+1", "👎": "-1", "🎉": "tada", "💩": "poop"}
	out := map[string]string{}
	for name, emoji := range emojiByName {
		if p, ok := preferred[emoji]; ok {
			out[emoji] = p
			continue
		}
		if cur, ok := out[emoji]; !ok || name < cur {
			out[emoji] = name
		}
	}
	return out
}()

// emojiForSlack returns the Matrix reaction key for a Slack reaction name.
// Skin tones ("+1::skin-tone-2") are dropped.
func emojiForSlack(name string) string {
	base, _, _ := strings.Cut(name, "::")
	if emoji, ok := emojiByName[base]; ok {
		return emoji
	}
	return ":" + base + ":"
}

// slackNameForEmoji returns the Slack reaction name for a Matrix reaction
// key: a known emoji (with or without the variation selector) or a
// ":shortcode:". ok is false for anything else.
func slackNameForEmoji(key string) (string, bool) {
	if name, ok := nameByEmoji[key]; ok {
		return name, true
	}
	if name, ok := nameByEmoji[strings.TrimSuffix(key, "\ufe0f")]; ok {
		return name, true
	}
	if name, ok := nameByEmoji[key+"\ufe0f"]; ok {
		return name, true
	}
	if inner, ok := strings.CutPrefix(key, ":"); ok {
		if name, ok := strings.CutSuffix(inner, ":"); ok && validSlackEmojiName(name) {
			return name, true
		}
	}
	return "", false
}

func validSlackEmojiName(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-'", r)) {
			return false
		}
	}
	return true
}
