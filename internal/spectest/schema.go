package spectest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A schema is a compiled JSON Schema, restricted to the keywords the Matrix
// specification uses. Annotations (description, title, example(s), format,
// default, deprecated, x-*) are dropped during compilation.
type schema struct {
	loc string // file#pointer, for messages

	always *bool // boolean schema: true accepts everything, false nothing

	types    []string // nil: any type
	nullable bool     // OpenAPI 3.0 "nullable: true"

	ref *schema

	properties    map[string]*schema
	required      []string
	patternProps  []patternSchema
	additional    *schema // nil: anything allowed
	propertyNames *schema
	minProps      int
	maxProps      int // -1: unlimited

	items       *schema
	prefixItems []*schema
	minItems    int
	maxItems    int // -1: unlimited
	uniqueItems bool

	enum     []any
	hasConst bool
	constVal any

	allOf, anyOf, oneOf []*schema
	not                 *schema

	minimum, maximum *big.Float
	exclMin, exclMax *big.Float

	minLength int
	maxLength int // -1: unlimited
	pattern   *regexp.Regexp
}

type patternSchema struct {
	re *regexp.Regexp
	s  *schema
}

// annotations are keywords that carry no validation meaning of their own.
// ($defs and definitions only hold schemas for $ref to point at.)
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "$defs": true, "definitions": true,
	"title": true, "description": true, "example": true, "examples": true,
	"default": true, "deprecated": true, "format": true,
	"readOnly": true, "writeOnly": true, "contentMediaType": true,
	"contentEncoding": true,
}

// A compiler turns schema values from a docSet into compiled schemas,
// sharing one compiled schema per (file, JSON pointer) location so that
// recursive references terminate.
type compiler struct {
	docs  *docSet
	cache map[string]*schema

	// unknown records keywords that were neither understood nor known
	// annotations, with one location each; tests check that it stays empty.
	unknown map[string]string
	// badPatterns records patterns Go's regexp package cannot compile; they
	// are skipped.
	badPatterns map[string]string
}

func newCompiler(docs *docSet) *compiler {
	return &compiler{
		docs:        docs,
		cache:       make(map[string]*schema),
		unknown:     make(map[string]string),
		badPatterns: make(map[string]string),
	}
}

// compile compiles v, found in file at JSON pointer ptr.
func (c *compiler) compile(file, ptr string, v any) (*schema, error) {
	loc := file + "#" + ptr
	if s, ok := c.cache[loc]; ok {
		return s, nil
	}
	s := &schema{loc: loc, maxProps: -1, maxItems: -1, maxLength: -1}
	c.cache[loc] = s

	switch v := v.(type) {
	case bool:
		s.always = &v
		return s, nil
	case map[string]any:
		if err := c.fill(s, file, ptr, v); err != nil {
			delete(c.cache, loc)
			return nil, err
		}
		return s, nil
	}
	delete(c.cache, loc)
	return nil, fmt.Errorf("%s: schema is %s, want object or boolean", loc, kindOf(v))
}

func (c *compiler) fill(s *schema, file, ptr string, m map[string]any) error {
	at := func(kw string) string { return ptr + "/" + escapePointer(kw) }
	sub := func(kw string) (*schema, error) { return c.compile(file, at(kw), m[kw]) }
	list := func(kw string) ([]*schema, error) {
		arr, ok := m[kw].([]any)
		if !ok {
			return nil, fmt.Errorf("%s#%s: %s is %s, want array", file, at(kw), kw, kindOf(m[kw]))
		}
		out := make([]*schema, len(arr))
		for i, e := range arr {
			var err error
			if out[i], err = c.compile(file, at(kw)+"/"+strconv.Itoa(i), e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	schemaMap := func(kw string) (map[string]*schema, error) {
		mm, ok := m[kw].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s#%s: %s is %s, want object", file, at(kw), kw, kindOf(m[kw]))
		}
		out := make(map[string]*schema, len(mm))
		for name, e := range mm {
			var err error
			if out[name], err = c.compile(file, at(kw)+"/"+escapePointer(name), e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	bad := func(kw string) error {
		return fmt.Errorf("%s#%s: invalid value %v for %s", file, at(kw), m[kw], kw)
	}

	// Visit keywords in a fixed order so that errors are deterministic.
	var err error
	for _, kw := range slices.Sorted(maps.Keys(m)) {
		val := m[kw]
		switch kw {
		case "$ref":
			ref, ok := val.(string)
			if !ok {
				return bad(kw)
			}
			target, tptr, tv, err := c.docs.resolve(file, ref)
			if err != nil {
				return err
			}
			if s.ref, err = c.compile(target, tptr, tv); err != nil {
				return err
			}
		case "type":
			switch t := val.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for _, e := range t {
					name, ok := e.(string)
					if !ok {
						return bad(kw)
					}
					s.types = append(s.types, name)
				}
			default:
				return bad(kw)
			}
			for _, t := range s.types {
				switch t {
				case "null", "boolean", "object", "array", "number", "integer", "string":
				default:
					return fmt.Errorf("%s#%s: unknown type %q", file, at(kw), t)
				}
			}
		case "nullable":
			s.nullable, _ = val.(bool)
		case "properties":
			s.properties, err = schemaMap(kw)
		case "patternProperties":
			var pm map[string]*schema
			if pm, err = schemaMap(kw); err != nil {
				break
			}
			for _, p := range slices.Sorted(maps.Keys(pm)) {
				re := c.regexp(file, at(kw)+"/"+escapePointer(p), p)
				s.patternProps = append(s.patternProps, patternSchema{re, pm[p]})
			}
		case "additionalProperties":
			s.additional, err = sub(kw)
		case "propertyNames":
			s.propertyNames, err = sub(kw)
		case "required":
			arr, ok := val.([]any)
			if !ok {
				return bad(kw)
			}
			for _, e := range arr {
				name, ok := e.(string)
				if !ok {
					return bad(kw)
				}
				s.required = append(s.required, name)
			}
		case "items":
			if _, ok := val.([]any); ok { // draft 4 tuple form
				s.prefixItems, err = list(kw)
			} else {
				s.items, err = sub(kw)
			}
		case "prefixItems":
			s.prefixItems, err = list(kw)
		case "enum":
			arr, ok := val.([]any)
			if !ok {
				return bad(kw)
			}
			s.enum = arr
		case "const":
			s.hasConst, s.constVal = true, val
		case "allOf":
			s.allOf, err = list(kw)
		case "anyOf":
			s.anyOf, err = list(kw)
		case "oneOf":
			s.oneOf, err = list(kw)
		case "not":
			s.not, err = sub(kw)
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			if _, ok := val.(bool); ok && strings.HasPrefix(kw, "exclusive") {
				break // OpenAPI 3.0 boolean form; handled below
			}
			n, ok := val.(json.Number)
			if !ok {
				return bad(kw)
			}
			f := numberValue(n)
			if f == nil {
				return bad(kw)
			}
			switch kw {
			case "minimum":
				s.minimum = f
			case "maximum":
				s.maximum = f
			case "exclusiveMinimum":
				s.exclMin = f
			case "exclusiveMaximum":
				s.exclMax = f
			}
		case "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties":
			n, ok := val.(json.Number)
			if !ok {
				return bad(kw)
			}
			i, perr := strconv.Atoi(string(n))
			if perr != nil || i < 0 {
				return bad(kw)
			}
			switch kw {
			case "minLength":
				s.minLength = i
			case "maxLength":
				s.maxLength = i
			case "minItems":
				s.minItems = i
			case "maxItems":
				s.maxItems = i
			case "minProperties":
				s.minProps = i
			case "maxProperties":
				s.maxProps = i
			}
		case "uniqueItems":
			s.uniqueItems, _ = val.(bool)
		case "pattern":
			p, ok := val.(string)
			if !ok {
				return bad(kw)
			}
			s.pattern = c.regexp(file, at(kw), p)
		default:
			if !annotations[kw] && !strings.HasPrefix(kw, "x-") {
				if _, ok := c.unknown[kw]; !ok {
					c.unknown[kw] = file + "#" + at(kw)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	// OpenAPI 3.0 spelled exclusive bounds as booleans modifying minimum
	// and maximum.
	if m["exclusiveMinimum"] == true && s.minimum != nil {
		s.exclMin, s.minimum = s.minimum, nil
	}
	if m["exclusiveMaximum"] == true && s.maximum != nil {
		s.exclMax, s.maximum = s.maximum, nil
	}
	return nil
}

// regexp compiles an ECMA-262 pattern with Go's regexp package. A pattern
// that Go cannot compile is recorded and yields nil, meaning "skip".
func (c *compiler) regexp(file, ptr, p string) *regexp.Regexp {
	re, err := regexp.Compile(p)
	if err != nil {
		c.badPatterns[p] = file + "#" + ptr
		return nil
	}
	return re
}

func escapePointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// isInteger reports whether n has no fractional part.
func isInteger(n json.Number) bool {
	if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return true
	}
	f, _, err := big.ParseFloat(string(n), 10, 256, big.ToNearestEven)
	return err == nil && f.IsInt()
}

// numberValue returns n as a big.Float, or nil if n is not a number.
func numberValue(n json.Number) *big.Float {
	f, _, err := big.ParseFloat(string(n), 10, 256, big.ToNearestEven)
	if err != nil {
		return nil
	}
	return f
}
