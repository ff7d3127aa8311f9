package push

import (
	"strings"
	"unicode"
)

// An event without m.mentions has the legacy mention rules asked for
// every member: does the body name the member's localpart
// (.m.rule.contains_user_name) or display name
// (.m.rule.contains_display_name)? In a room of thousands that is a search
// of the body per member and rule. Once enough members have asked, the
// body is indexed instead: the set of its substrings that run from a
// boundary to a boundary, which is every substring such a match can be. A
// member whose localpart or display name is not in the set is then known
// not to match; one that is, is matched as before, so the index only ever
// saves a search and never changes an outcome.

// bodyIndexAfter is how many searches an event's body answers before it
// is indexed: a room of a few members does not pay for the index.
const bodyIndexAfter = 16

// maxBodySubstrings bounds the substrings an index holds: a body with more
// is searched member by member.
const maxBodySubstrings = 2048

// maxNameBody bounds the bodies indexed for display names: the search for
// repeated substrings (see nameSubstrings) grows with the cube of the
// length.
const maxNameBody = 256

// bodyIndex is the index of one event's body, made on demand.
type bodyIndex struct {
	searches int
	made     bool
	// words are the ASCII-lowercased substrings between word boundaries
	// (glob.go's containsWord); nil when the body is not ASCII or has
	// too many.
	words map[string]struct{}
	// names are the substrings between display-name boundaries
	// (mautrix's contains_display_name); nil when there are too many, or
	// when the body repeats a substring back to back before a boundary,
	// where mautrix's search also matches a name that no boundary starts
	// (see nameSubstrings).
	names map[string]struct{}
}

// mayHaveWord reports whether the ASCII word, lowercased, may match body
// as containsWord matches it: false only when it cannot.
func (x *evalCtx) mayHaveWord(body, lowerWord string) bool {
	return mayHave(x.bodyIndexed(body), lowerWord, func(bi *bodyIndex) map[string]struct{} { return bi.words })
}

// mayHaveName reports whether mautrix's contains_display_name may match
// name in body: false only when it cannot.
func (x *evalCtx) mayHaveName(body, name string) bool {
	return mayHave(x.bodyIndexed(body), name, func(bi *bodyIndex) map[string]struct{} { return bi.names })
}

// mayHave reports whether the set of an index that set picks holds s;
// true without an index or a set.
func mayHave(bi *bodyIndex, s string, set func(*bodyIndex) map[string]struct{}) bool {
	if bi == nil || set(bi) == nil {
		return true
	}
	_, ok := set(bi)[s]
	return ok
}

// bodyIndexed counts a search of body and returns its index once enough
// searches have asked; nil before.
func (x *evalCtx) bodyIndexed(body string) *bodyIndex {
	bi := &x.body
	if !bi.made {
		if bi.searches++; bi.searches < bodyIndexAfter {
			return nil
		}
		bi.made = true
		bi.words = wordSubstrings(body)
		bi.names = nameSubstrings(body)
	}
	return bi
}

// wordSubstrings returns the substrings of body, lowercased, that start
// at a word boundary and end at one (see containsWord); nil when body is
// not ASCII or has more than maxBodySubstrings of them.
func wordSubstrings(body string) map[string]struct{} {
	if !isASCII(body) {
		return nil
	}
	lower := strings.ToLower(body)
	return boundedSubstrings(lower, func(i int) bool { return !isWordByte(body[i]) })
}

// nameSubstrings returns the substrings of body that start and end at a
// display-name boundary as mautrix's contains_display_name finds them
// (the start or end of body, or a byte next to it that is a space or a
// punctuation mark read as a rune); nil when there are more than
// maxBodySubstrings, or when some substring of body is followed at once by
// itself and then by a boundary: mautrix goes on searching after an
// occurrence that failed from its end, taking that as a start, so a name
// repeated back to back matches there.
func nameSubstrings(body string) map[string]struct{} {
	if len(body) > maxNameBody {
		return nil
	}
	for j := 2; j <= len(body); j++ {
		if j < len(body) && !nameBoundary(body[j]) {
			continue
		}
		for l := 1; 2*l <= j; l++ {
			if body[j-2*l:j-l] == body[j-l:j] {
				return nil
			}
		}
	}
	return boundedSubstrings(body, func(i int) bool { return nameBoundary(body[i]) })
}

// nameBoundary is mautrix's test of the byte next to a display name.
func nameBoundary(b uint8) bool {
	return unicode.IsSpace(rune(b)) || unicode.IsPunct(rune(b))
}

// boundedSubstrings returns the substrings s[i:j], i < j, where i is 0 or
// follows a byte at which boundary holds and j is len(s) or a byte at
// which it holds; nil when there are more than maxBodySubstrings.
func boundedSubstrings(s string, boundary func(i int) bool) map[string]struct{} {
	starts, ends := []int{0}, []int{}
	for i := range len(s) {
		if boundary(i) {
			ends = append(ends, i)
			starts = append(starts, i+1)
		}
	}
	ends = append(ends, len(s))
	if len(starts)*len(ends) > 2*maxBodySubstrings {
		return nil
	}
	out := make(map[string]struct{}, len(starts)*len(ends)/2)
	for _, i := range starts {
		for _, j := range ends {
			if i < j {
				out[s[i:j]] = struct{}{}
			}
		}
	}
	return out
}
