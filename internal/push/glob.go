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
	return g.re.MatchString(s)
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
