package spectest

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
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

var english = message.NewPrinter(language.English)

// validate checks the generic JSON value v (as decodeJSON returns it)
// against s and returns the violations found, ordered by pointer.
func validate(s *jsonschema.Schema, v any) []Violation {
	err := s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Message: err.Error()}}
	}
	var vs []Violation
	collect(ve, "", &vs)
	slices.SortStableFunc(vs, func(a, b Violation) int { return strings.Compare(a.Pointer, b.Pointer) })
	return vs
}

// collect appends the violations at the leaves of the error tree e, each
// message preceded by prefix.
func collect(e *jsonschema.ValidationError, prefix string, vs *[]Violation) {
	add := func(msg string) {
		*vs = append(*vs, Violation{Pointer: pointer(e.InstanceLocation), Message: prefix + msg})
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, name := range k.Missing {
			add(fmt.Sprintf("missing required property %q", name))
		}
		return
	case *kind.AnyOf:
		add(fmt.Sprintf("value matches none of the %d anyOf alternatives", len(e.Causes)))
		for i, c := range e.Causes {
			collect(c, fmt.Sprintf("%s(anyOf[%d]) ", prefix, i), vs)
		}
		return
	}
	if len(e.Causes) == 0 {
		add(e.ErrorKind.LocalizedString(english))
		return
	}
	for _, c := range e.Causes {
		collect(c, prefix, vs)
	}
}

// pointer returns the JSON pointer of an instance location.
func pointer(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		b.WriteString("/")
		b.WriteString(escapePointer(tok))
	}
	return b.String()
}

func escapePointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}
