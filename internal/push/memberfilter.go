package push

import (
	"encoding/json"
	"sync"
)

// In a big room most members' per-member rules are the legacy mention
// rules, .m.rule.contains_user_name and .m.rule.contains_display_name,
// and most events name few members or none. Asking each member's own
// compiled rule (a few scattered pieces of memory per member) costs more
// than the answer: with the room's roster, the plan of an event instead
// looks the body's indexed substrings (bodyindex.go) up in the roster's
// members by localpart and by display name, once, and marks the members
// the rule may match; only those have their rule matched, as before.

// memberFilterKind says what of a member a per-member rule needs to find
// in the body.
type memberFilterKind uint8

const (
	filterNone        memberFilterKind = iota
	filterLocalpart                    // a content rule whose pattern is the member's (ASCII) word
	filterDisplayName                  // a rule with a contains_display_name condition
)

// filterKindOf returns the filter of the per-member rule r (the template's
// rule), whose conditions at the indices own depend on the member, and
// the keys of those that are event_property_contains conditions (which
// match no one when the event has no list there).
func filterKindOf(r *compiledRule, own []int) (kind memberFilterKind, lists []string) {
	if r.kind == Content {
		kind = filterLocalpart
	}
	for _, j := range own {
		var head struct {
			Kind string `json:"kind"`
			Key  string `json:"key"`
		}
		if json.Unmarshal(r.rule.Conditions[j], &head) != nil {
			continue
		}
		switch head.Kind {
		case "contains_display_name":
			kind = filterDisplayName
		case "event_property_contains":
			if head.Key != "" {
				lists = append(lists, head.Key)
			}
		}
	}
	return kind, lists
}

// minFilteredMembers is the roster size from which events filter members.
const minFilteredMembers = bodyIndexAfter

// memberSet is a set of roster members, by index.
type memberSet []uint64

func newMemberSet(n int) memberSet { return make(memberSet, (n+63)/64) }

func (m memberSet) add(i int)      { m[i/64] |= 1 << (i % 64) }
func (m memberSet) has(i int) bool { return m[i/64]&(1<<(i%64)) != 0 }

// rosterIndex is what a roster's members are found by from a body: by
// the lowercased word of each per-member content rule, and by display
// name.
type rosterIndex struct {
	mu sync.Mutex
	// words holds, per per-member rule (its index in
	// defaultTemplate.perMember), the members by their rule's lowercased
	// word; unindexed, the members whose rule has no such word (a
	// pattern that is not a plain ASCII word), which are always matched.
	words     map[int]map[string][]int
	unindexed map[int][]int
	namesOnce sync.Once
	byName    map[string][]int
}

// byWord returns the members by the word of their per-member rule j.
func (r *roster) byWord(j int) (map[string][]int, []int) {
	ri := &r.index
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if m, ok := ri.words[j]; ok {
		return m, ri.unindexed[j]
	}
	if ri.words == nil {
		ri.words, ri.unindexed = map[int]map[string][]int{}, map[int][]int{}
	}
	m := map[string][]int{}
	for i := range r.members {
		mem := &r.members[i]
		if !mem.unchanged {
			continue // evaluated with their whole ruleset, not the plan
		}
		if rule := mem.shared[j]; rule.pattern != nil && rule.pattern.word != "" {
			m[rule.pattern.lowerWord] = append(m[rule.pattern.lowerWord], i)
		} else {
			ri.unindexed[j] = append(ri.unindexed[j], i)
		}
	}
	ri.words[j] = m
	return m, ri.unindexed[j]
}

// membersByName returns the members by display name (those without one
// are in no list: contains_display_name matches no one without a name).
func (r *roster) membersByName(names func(i int) string) map[string][]int {
	ri := &r.index
	ri.namesOnce.Do(func() {
		ri.byName = map[string][]int{}
		for i := range r.members {
			if n := names(i); n != "" {
				ri.byName[n] = append(ri.byName[n], i)
			}
		}
	})
	return ri.byName
}

// memberFilter returns the roster members that the per-member rule j,
// whose filter is kind, may match for the event of x; nil when all may.
func (x *evalCtx) memberFilter(j int, kind memberFilterKind) memberSet {
	r := x.roster
	if r == nil || kind == filterNone || len(r.members) < minFilteredMembers {
		return nil
	}
	set := newMemberSet(len(r.members))
	body, ok := x.content["body"].(string)
	if !ok {
		return set // neither rule matches an event without a body
	}
	switch kind {
	case filterLocalpart:
		words := wordSubstrings(body)
		if words == nil {
			return nil
		}
		byWord, always := r.byWord(j)
		for _, i := range always {
			set.add(i)
		}
		for w := range words {
			for _, i := range byWord[w] {
				set.add(i)
			}
		}
	case filterDisplayName:
		if x.rosterName == nil {
			return nil
		}
		names := nameSubstrings(body)
		if names == nil {
			return nil
		}
		byName := r.membersByName(x.rosterName)
		for n := range names {
			for _, i := range byName[n] {
				set.add(i)
			}
		}
	}
	return set
}
