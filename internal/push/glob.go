package push

import (
	"regexp"
	"strings"
	"sync"
)

// glob is a compiled glob-style pattern (appendix "Glob-style matching":
// * matches any run of characters, ? exactly one), matched
// case-insensitively.
type glob struct {
	exact string         // pattern without wildcards, matched whole
	re    *regexp.Regexp // otherwise
	// word is an ASCII pattern without wildcards matched as a word
	// (re matches the same): matched without re in an ASCII value, as
	// .m.rule.contains_user_name is for every member and message.
	word string
	// lowerWord is word lowercased, for evalCtx.mayHaveWord.
	lowerWord string
}

var globCache sync.Map // globKey -> *glob

type globKey struct {
	pattern string
	words   bool
}

// compileGlob compiles pattern. With words set the pattern must match a
// substring that starts and ends at word boundaries (start or end of the
// value, or a character outside [A-Za-z0-9_]), as for content.body;
// otherwise it must match the entire value.
func compileGlob(pattern string, words bool) *glob {
	key := globKey{pattern, words}
	if g, ok := globCache.Load(key); ok {
		return g.(*glob)
	}
	g := &glob{}
	if !words && !strings.ContainsAny(pattern, "*?") {
		g.exact = pattern
	} else {
		var b strings.Builder
		b.WriteString(`(?is)`)
		if words {
			b.WriteString(`(?:^|[^A-Za-z0-9_])`)
		} else {
			b.WriteString(`^`)
		}
		for _, r := range pattern {
			switch r {
			case '*':
				b.WriteString(`.*`)
			case '?':
				b.WriteString(`.`)
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		if words {
			b.WriteString(`(?:[^A-Za-z0-9_]|$)`)
		} else {
			b.WriteString(`$`)
		}
		g.re = regexp.MustCompile(b.String()) // quoted literals and .* only
		if words && pattern != "" && !strings.ContainsAny(pattern, "*?") && isASCII(pattern) {
			g.word, g.lowerWord = pattern, strings.ToLower(pattern)
		}
	}
	if len(pattern) < 256 {
		globCache.Store(key, g)
	}
	return g
}

func (g *glob) match(s string) bool {
	if g.re == nil {
		return strings.EqualFold(s, g.exact)
	}
	if g.word != "" && isASCII(s) {
		return containsWord(s, g.word)
	}
	return g.re.MatchString(s)
}

// containsWord reports whether s contains word, ASCII case-insensitively,
// with a word boundary (the start or end of s, or a character outside
// [A-Za-z0-9_]) on either side. Both are ASCII.
func containsWord(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if !strings.EqualFold(s[i:i+len(word)], word) {
			continue
		}
		if (i == 0 || !isWordByte(s[i-1])) && (i+len(word) == len(s) || !isWordByte(s[i+len(word)])) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// splitPath splits a dot-separated property path (appendix "Dot-separated
// property paths"): "\." is a literal dot and "\\" a literal backslash.
func splitPath(key string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}
