package spectest

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A Violation is one way in which a JSON document fails to match a schema.
type Violation struct {
	// Pointer is the RFC 6901 JSON pointer of the offending value within
	// the document; "" is the document itself.
	Pointer string
	// Message describes the problem.
	Message string
}

func (v Violation) String() string {
	p := v.Pointer
	if p == "" {
		p = "(root)"
	}
	return p + ": " + v.Message
}

// A ValidationError reports every violation found in a JSON document.
type ValidationError struct {
	// Context says what was validated, for example
	// "login (POST /_matrix/client/v3/login) response 200".
	Context    string
	Violations []Violation
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spectest: %s: ", e.Context)
	if len(e.Violations) == 1 {
		b.WriteString(e.Violations[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, "%d violations:", len(e.Violations))
	for _, v := range e.Violations {
		b.WriteString("\n\t")
		b.WriteString(v.String())
	}
	return b.String()
}

// validate checks the generic JSON value v against s and returns the
// violations found, in document order of discovery.
func validate(s *schema, v any) []Violation {
	var vs []Violation
	s.validate(v, "", &vs)
	return vs
}

func (s *schema) validate(v any, ptr string, vs *[]Violation) {
	add := func(format string, args ...any) {
		*vs = append(*vs, Violation{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	if s.always != nil {
		if !*s.always {
			add("no value is allowed here")
		}
		return
	}
	if s.ref != nil {
		s.ref.validate(v, ptr, vs)
	}
	if s.types != nil && !(v == nil && s.nullable) && !s.typeMatches(v) {
		want := strings.Join(s.types, " or ")
		if s.nullable {
			want += " or null"
		}
		add("got %s, want %s", kindOf(v), want)
		return // further keywords would only repeat the mismatch
	}
	if s.enum != nil && !slices.ContainsFunc(s.enum, func(e any) bool { return equal(e, v) }) {
		add("value %s is not one of %s", short(v), short(s.enum))
	}
	if s.hasConst && !equal(s.constVal, v) {
		add("value %s is not %s", short(v), short(s.constVal))
	}

	switch v := v.(type) {
	case map[string]any:
		s.validateObject(v, ptr, vs)
	case []any:
		s.validateArray(v, ptr, vs)
	case string:
		n := utf8.RuneCountInString(v)
		if n < s.minLength {
			add("string length %d is less than minLength %d", n, s.minLength)
		}
		if s.maxLength >= 0 && n > s.maxLength {
			add("string length %d exceeds maxLength %d", n, s.maxLength)
		}
		if s.pattern != nil && !s.pattern.MatchString(v) {
			add("string %s does not match pattern %q", short(v), s.pattern)
		}
	case json.Number:
		f := numberValue(v)
		switch {
		case f == nil:
			add("malformed number %q", v)
		case s.minimum != nil && f.Cmp(s.minimum) < 0:
			add("%s is less than minimum %s", v, s.minimum.Text('g', -1))
		case s.exclMin != nil && f.Cmp(s.exclMin) <= 0:
			add("%s is not greater than %s", v, s.exclMin.Text('g', -1))
		case s.maximum != nil && f.Cmp(s.maximum) > 0:
			add("%s is greater than maximum %s", v, s.maximum.Text('g', -1))
		case s.exclMax != nil && f.Cmp(s.exclMax) >= 0:
			add("%s is not less than %s", v, s.exclMax.Text('g', -1))
		}
	}

	for _, sub := range s.allOf {
		sub.validate(v, ptr, vs)
	}
	if s.anyOf != nil {
		s.validateAny("anyOf", s.anyOf, v, ptr, vs)
	}
	if s.oneOf != nil {
		// The spec uses oneOf where the alternatives overlap (for example
		// "any object, or a state event" in rooms.yaml), meaning "either".
		// Requiring exactly one match would reject valid responses, so
		// oneOf is checked like anyOf.
		s.validateAny("oneOf", s.oneOf, v, ptr, vs)
	}
	if s.not != nil && len(validate(s.not, v)) == 0 {
		add("value must not match the schema at %s", s.not.loc)
	}
}

// acceptsType reports whether the type keywords of s, and of the schemas it
// references or includes with allOf, accept v.
func (s *schema) acceptsType(v any) bool {
	if s.always != nil {
		return *s.always
	}
	if s.types != nil && !(v == nil && s.nullable) && !s.typeMatches(v) {
		return false
	}
	if s.ref != nil && !s.ref.acceptsType(v) {
		return false
	}
	for _, sub := range s.allOf {
		if !sub.acceptsType(v) {
			return false
		}
	}
	return true
}

func (s *schema) typeMatches(v any) bool {
	k := kindOf(v)
	for _, t := range s.types {
		if t == k || t == "number" && k == "integer" {
			return true
		}
	}
	return false
}

func (s *schema) validateObject(m map[string]any, ptr string, vs *[]Violation) {
	add := func(format string, args ...any) {
		*vs = append(*vs, Violation{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	for _, name := range s.required {
		if _, ok := m[name]; !ok {
			add("missing required property %q", name)
		}
	}
	if len(m) < s.minProps {
		add("object has %d properties, fewer than minProperties %d", len(m), s.minProps)
	}
	if s.maxProps >= 0 && len(m) > s.maxProps {
		add("object has %d properties, more than maxProperties %d", len(m), s.maxProps)
	}
	// Skipping an uncompilable pattern must not turn its properties into
	// "additional" ones.
	checkAdditional := s.additional != nil
	for _, pp := range s.patternProps {
		if pp.re == nil {
			checkAdditional = false
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		val := m[name]
		p := ptr + "/" + escapePointer(name)
		if s.propertyNames != nil {
			for _, v := range validate(s.propertyNames, name) {
				add("property name %q: %s", name, v.Message)
			}
		}
		matched := false
		if ps, ok := s.properties[name]; ok {
			ps.validate(val, p, vs)
			matched = true
		}
		for _, pp := range s.patternProps {
			if pp.re != nil && pp.re.MatchString(name) {
				pp.s.validate(val, p, vs)
				matched = true
			}
		}
		if !matched && checkAdditional {
			if a := s.additional; a.always != nil && !*a.always {
				*vs = append(*vs, Violation{Pointer: p, Message: "property is not allowed (additionalProperties is false)"})
			} else {
				a.validate(val, p, vs)
			}
		}
	}
}

func (s *schema) validateArray(a []any, ptr string, vs *[]Violation) {
	add := func(format string, args ...any) {
		*vs = append(*vs, Violation{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	if len(a) < s.minItems {
		add("array has %d items, fewer than minItems %d", len(a), s.minItems)
	}
	if s.maxItems >= 0 && len(a) > s.maxItems {
		add("array has %d items, more than maxItems %d", len(a), s.maxItems)
	}
	for i, e := range a {
		p := ptr + "/" + strconv.Itoa(i)
		switch {
		case i < len(s.prefixItems):
			s.prefixItems[i].validate(e, p, vs)
		case s.items != nil:
			s.items.validate(e, p, vs)
		}
	}
	if s.uniqueItems {
		for i := range a {
			for j := i + 1; j < len(a); j++ {
				if equal(a[i], a[j]) {
					add("items %d and %d are equal (uniqueItems)", i, j)
				}
			}
		}
	}
}

// validateAny reports a violation unless v matches at least one of alts.
// The violations of the closest alternative are included to explain why.
func (s *schema) validateAny(kw string, alts []*schema, v any, ptr string, vs *[]Violation) {
	var best []Violation
	bestIdx, bestTypeOK := -1, false
	for i, alt := range alts {
		sub := validate(alt, v)
		if len(sub) == 0 {
			return
		}
		// validate reports pointers relative to v; rebase them.
		for j := range sub {
			sub[j].Pointer = ptr + sub[j].Pointer
		}
		// The closest alternative is one that accepts v's type, then one
		// with the fewest violations.
		ok := alt.acceptsType(v)
		if bestIdx < 0 || ok && !bestTypeOK || ok == bestTypeOK && len(sub) < len(best) {
			best, bestIdx, bestTypeOK = sub, i, ok
		}
	}
	*vs = append(*vs, Violation{Pointer: ptr, Message: fmt.Sprintf(
		"value matches none of the %d %s alternatives; closest is %s[%d]:", len(alts), kw, kw, bestIdx)})
	for _, b := range best {
		b.Message = fmt.Sprintf("(%s[%d]) %s", kw, bestIdx, b.Message)
		*vs = append(*vs, b)
	}
}

// equal reports whether two generic JSON values are equal, comparing
// numbers by value.
func equal(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		fa, fb := numberValue(a), numberValue(b)
		return fa != nil && fb != nil && fa.Cmp(fb) == 0
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// short renders v as compact JSON, truncated for use in messages.
func short(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const max = 80
	if len(data) > max {
		return string(data[:max-3]) + "..."
	}
	return string(data)
}
