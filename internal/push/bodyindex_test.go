package push

import (
	"math/rand/v2"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/pushrules"
)

// nameRoom is a pushrules.Room whose user has one display name.
type nameRoom struct{ name string }

func (r nameRoom) GetOwnDisplayname() string { return r.name }
func (r nameRoom) GetMemberCount() int       { return 2 }

// TestBodyIndexNeverHides checks the body index against the searches it
// saves, over random bodies and names from a small alphabet (so that
// names recur, back to back too, and boundaries are frequent): whenever
// containsWord or mautrix's contains_display_name matches, the index
// holds the word or the name, so a member it rules out never matched.
func TestBodyIndexNeverHides(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2000))
	alphabet := []string{"a", "b", "B", "_", " ", ".", "-", "é", "\u00a0", "!", "1"}
	str := func(max int) string {
		var b strings.Builder
		for n := 1 + rng.IntN(max); n > 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	cond := &pushrules.PushCondition{Kind: pushrules.KindContainsDisplayName}
	indexed, ruledOut := 0, 0
	for range 20000 {
		body := str(12)
		words, names := wordSubstrings(body), nameSubstrings(body)
		if words != nil || names != nil {
			indexed++
		}
		for range 8 {
			name := str(4)
			if rng.IntN(3) == 0 { // a substring of the body
				i := rng.IntN(len(body))
				name = body[i : i+1+rng.IntN(len(body)-i)]
			}
			ev := &event.Event{Content: event.Content{Raw: map[string]any{"body": body}}}
			if _, ok := names[name]; names != nil && !ok {
				ruledOut++
				if cond.Match(nameRoom{name}, ev) {
					t.Fatalf("body %q: display name %q matches but is not indexed", body, name)
				}
			}
			if !isASCII(name) || !isASCII(body) || strings.ContainsAny(name, "*?") {
				continue
			}
			if _, ok := words[strings.ToLower(name)]; words != nil && !ok && containsWord(body, name) {
				t.Fatalf("body %q: word %q matches but is not indexed", body, name)
			}
		}
	}
	if indexed < 1000 || ruledOut < 1000 {
		t.Fatalf("only %d bodies indexed and %d names ruled out: the test exercises too little", indexed, ruledOut)
	}
}
