package push

import (
	"bytes"

	"maunium.net/go/mautrix/id"
)

// Members whose rules are the service's predefined ones, unchanged (no
// rule of their own, no change to a predefined rule), share one
// evaluation per event: the predefined rules are walked once and the
// rules that are the same for everyone matched once (defaultPlan); only
// the conditions that depend on the member (their ID in m.mentions or as
// an invite's state key, their display name, their localpart, their
// thread subscriptions) are matched for each member, from the member's
// own few compiled rules (memberRules). A member with unchanged rules
// never has the whole ruleset compiled for evaluation, so a room of
// thousands of members costs neither the compile on its first event nor
// the memory of a ruleset per member.

// templateRule is what the shared evaluation knows of one predefined
// rule.
type templateRule struct {
	// perMember is set for a rule that depends on the member: its
	// pattern or some condition names the user, or a condition asks
	// about them (display name, thread subscription).
	perMember bool
	// member is the rule's index in defaultTemplate.perMember.
	member int
	// common are the conditions of a per-member rule that are the same
	// for every user: when one of them fails, the rule matches no one.
	common []compiledCond
	// own are the indices, in the rule's Conditions, of those that
	// depend on the member.
	own []int
	// filter says how a big room's members the rule may match are found
	// from the body (memberfilter.go).
	filter memberFilterKind
	// lists are the keys of its own event_property_contains conditions:
	// with no list at one of them, the rule matches no one.
	lists []string
}

// defaultTemplate is the predefined ruleset compiled once for the
// shared evaluation; rules parallels set.lists.
type defaultTemplate struct {
	set   *compiledSet
	rules [][]templateRule
	// perMember lists the per-member rules in priority order.
	perMember []ruleRef
}

// ruleRef locates a rule in a compiledSet: list (kind) and index.
type ruleRef struct{ kind, index int }

// The two users whose predefined rules are compared to find the rules
// that depend on the user: they differ in localpart and server.
const (
	probeUserA = id.UserID("@probe-a:a.invalid")
	probeUserB = id.UserID("@probe-b:b.invalid")
)

// newDefaultTemplate compiles the service's predefined rules and finds
// which of them depend on the member, by building them for two users and
// comparing each rule's conditions and pattern.
func newDefaultTemplate(s *Service) *defaultTemplate {
	_, a := (&userRules{}).build(s, probeUserA)
	_, b := (&userRules{}).build(s, probeUserB)
	t := &defaultTemplate{set: a, rules: make([][]templateRule, len(a.lists))}
	for k, list := range a.lists {
		t.rules[k] = make([]templateRule, len(list))
		for i, r := range list {
			tr := templateRuleOf(r, b.lists[k][i])
			if tr.perMember {
				tr.filter, tr.lists = filterKindOf(r, tr.own)
				tr.member = len(t.perMember)
				t.perMember = append(t.perMember, ruleRef{k, i})
			}
			t.rules[k][i] = tr
		}
	}
	return t
}

// templateRuleOf compares rule r of one user with the same rule of
// another (other).
func templateRuleOf(r, other *compiledRule) templateRule {
	if r.rule.RuleID != other.rule.RuleID || len(r.conds) != len(other.conds) {
		// Not expected of the predefined rules: matched per member
		// with all of its conditions.
		tr := templateRule{perMember: true}
		for j := range r.conds {
			tr.own = append(tr.own, j)
		}
		return tr
	}
	tr := templateRule{perMember: r.rule.Pattern != other.rule.Pattern}
	for j, c := range r.conds {
		if c.perUser || !bytes.Equal(r.rule.Conditions[j], other.rule.Conditions[j]) {
			tr.perMember = true
			tr.own = append(tr.own, j)
			continue
		}
		tr.common = append(tr.common, c)
	}
	if !tr.perMember {
		tr.common = nil
	}
	return tr
}

// memberRules are a member's own versions of the template's per-member
// rules (in defaultTemplate.perMember's order), each with only the
// conditions that depend on the member: the plan has matched the others.
type memberRules []*compiledRule

// memberRules compiles the per-member rules of user, whose rules are the
// predefined ones unchanged.
func (t *defaultTemplate) memberRules(s *Service, user id.UserID) memberRules {
	d := s.defaults(user)
	out := make(memberRules, len(t.perMember))
	for j, ref := range t.perMember {
		kind := Kinds[ref.kind]
		r := d.Find(kind, t.set.lists[ref.kind][ref.index].rule.RuleID)
		if r == nil {
			// The predefined rules of every user have the same IDs.
			out[j] = &compiledRule{rule: &Rule{}, kind: Room}
			continue
		}
		out[j] = compileMemberRule(kind, r, t.rules[ref.kind][ref.index].own)
	}
	return out
}

// compileMemberRule compiles r with only its conditions at the indices
// own, which are not interned: each is the member's own.
func compileMemberRule(k Kind, r *Rule, own []int) *compiledRule {
	bare := *r
	bare.Conditions = nil
	cr := compileRule(k, &bare)
	cr.rule = r
	for _, j := range own {
		match, perUser := compileCondition(r.Conditions[j])
		cr.conds = append(cr.conds, compiledCond{match: match, perUser: perUser})
	}
	return cr
}

// defaultPlan is the predefined rules' verdict on one event, for every
// member whose rules are the predefined ones: the per-member rules that
// may match (their indices in defaultTemplate.perMember), in priority
// order, then the first rule that matches whoever the member is (nil when
// none does).
type defaultPlan struct {
	steps []int
	// filters parallels steps: the roster members the step's rule may
	// match, nil for all (see memberfilter.go).
	filters  []memberSet
	fallback *compiledRule
}

// plan walks the predefined rules once for the event of x (x.user is
// not consulted).
func (t *defaultTemplate) plan(x *evalCtx) *defaultPlan {
	p := &defaultPlan{}
	for k, list := range t.set.lists {
		for i, r := range list {
			tr := t.rules[k][i]
			if !tr.perMember {
				if r.matches(x) {
					p.fallback = r
					return p
				}
				continue
			}
			if tr.mayMatch(r, x) {
				p.steps = append(p.steps, tr.member)
				p.filters = append(p.filters, x.memberFilter(tr.member, tr.filter))
			}
		}
	}
	return p
}

// mayMatch reports whether the per-member rule r may match the event of
// x for some member: the legacy mention rules are off for events with
// m.mentions, and every condition common to all users must hold.
func (tr templateRule) mayMatch(r *compiledRule, x *evalCtx) bool {
	if r.legacy && x.hasMentions {
		return false
	}
	for _, c := range tr.common {
		if !x.test(c) {
			return false
		}
	}
	for _, key := range tr.lists {
		if val, ok := x.property(key); !ok {
			return false
		} else if list, ok := val.([]any); !ok || len(list) == 0 {
			return false
		}
	}
	return true
}

// match returns the rule that decides the event for the member whose
// per-member rules are mr (x.user set to them): the first step that
// matches, else the plan's fallback.
func (p *defaultPlan) match(mr memberRules, x *evalCtx) *compiledRule {
	for k, j := range p.steps {
		if f := p.filters[k]; f != nil && x.member >= 0 && !f.has(x.member) {
			continue
		}
		if r := mr[j]; r.matches(x) {
			return r
		}
	}
	return p.fallback
}
