package spectest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileFiles writes files into a temporary directory and compiles the
// schema in the first one, "main.yaml".
func compileFiles(t *testing.T, files map[string]string) *jsonschema.Schema {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := newCompiler(newDocSet()).compile(filepath.Join(dir, "main.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchemaKeywords(t *testing.T) {
	type check struct {
		json string
		want string // "" if valid, else a substring of the violations
	}
	tests := []struct {
		name   string
		schema string
		checks []check
	}{
		{"type list and null", `type: [string, "null"]`, []check{
			{`"a"`, ""}, {`null`, ""}, {`1`, "got number, want null or string"},
		}},
		{"integer", "type: integer", []check{
			{`2`, ""}, {`2.0`, ""}, {`2.5`, "got number, want integer"},
		}},
		{"integer and number", "type: object\nproperties: {i: {type: integer}, n: {type: number}}", []check{
			{`{"i": 3, "n": 3}`, ""}, {`{"i": 3e2, "n": 0.5}`, ""}, {`{"i": 1.5}`, "/i: got number, want integer"}, {`{"n": "1"}`, "/n: got string, want number"},
		}},
		{"annotations ignored", "type: string\nformat: mx-user-id\ndescription: d\ntitle: t\nexample: 1\nexamples: [1]\nx-foo: {type: integer}", []check{
			{`"x"`, ""},
		}},
		{"required and additionalProperties false", "type: object\nproperties: {a: {}}\nrequired: [a]\nadditionalProperties: false", []check{
			{`{"a": 1}`, ""}, {`{}`, `missing required property "a"`}, {`{"a": 1, "b~/": 2}`, "(root): additional properties 'b~/' not allowed"},
		}},
		{"additionalProperties schema", "type: object\nadditionalProperties: {type: boolean}", []check{
			{`{"x": true}`, ""}, {`{"x": 1}`, "/x: got number, want boolean"},
		}},
		{"patternProperties", "type: object\npatternProperties: {'^@': {type: string}}\nadditionalProperties: false", []check{
			{`{"@a:b": "x"}`, ""}, {`{"@a:b": 1}`, "/@a:b: got number"}, {`{"a": "x"}`, "additional properties 'a' not allowed"},
		}},
		{"enum and const", "type: object\nproperties: {e: {enum: [a, 1, null]}, c: {const: {k: [1]}}}", []check{
			{`{"e": "a", "c": {"k": [1.0]}}`, ""}, {`{"e": 1.0}`, ""}, {`{"e": null}`, ""}, {`{"e": "b"}`, "/e: value must be one of"}, {`{"c": {"k": [2]}}`, "/c: 'const' failed"},
		}},
		{"items and sizes", "type: array\nitems: {type: string, minLength: 2, maxLength: 3}\nminItems: 1\nmaxItems: 2\nuniqueItems: true", []check{
			{`["ab", "xyz"]`, ""}, {`[]`, "minItems: got 0, want 1"}, {`["ab","ab"]`, "items at 0 and 1 are equal"}, {`["a"]`, "/0: minLength: got 1, want 2"}, {`["ab","cd","ef"]`, "maxItems: got 3, want 2"}, {`["éèà"]`, ""},
		}},
		{"numeric bounds", "type: object\nproperties: {a: {minimum: 1, maximum: 3}, b: {exclusiveMinimum: 0, exclusiveMaximum: 1}}", []check{
			{`{"a": 1, "b": 0.5}`, ""}, {`{"a": 3.5}`, "/a: maximum: got 3.5, want 3"}, {`{"a": 0}`, "/a: minimum: got 0, want 1"}, {`{"b": 0}`, "/b: exclusiveMinimum: got 0, want 0"}, {`{"b": 1}`, "/b: exclusiveMaximum: got 1, want 1"},
		}},
		{"pattern", `pattern: "^\\$"`, []check{
			{`"$e"`, ""}, {`"e"`, `'e' does not match pattern '^\\$'`}, {`5`, ""},
		}},
		{"allOf", "allOf: [{type: object, required: [a]}, {required: [b]}]", []check{
			{`{"a":1,"b":2}`, ""}, {`{}`, `"a"`}, {`{"a":1}`, `missing required property "b"`},
		}},
		{"anyOf", "anyOf: [{type: string}, {type: object, required: [k]}]", []check{
			{`"s"`, ""}, {`{"k":1}`, ""}, {`{}`, `(anyOf[1]) missing required property "k"`},
		}},
		{"overlapping oneOf is anyOf", "oneOf: [{type: object}, {type: object, required: [type]}]", []check{
			{`{"type":"x"}`, ""}, {`[]`, "none of the 2 anyOf alternatives"},
		}},
		{"not", "not: {type: string}", []check{{`1`, ""}, {`"s"`, "'not' failed"}}},
		{"propertyNames and object sizes", "propertyNames: {pattern: '^[a-z]+$'}\nminProperties: 1\nmaxProperties: 1", []check{
			{`{"ab": 1}`, ""}, {`{"A": 1}`, `'A' does not match pattern '^[a-z]+$'`}, {`{}`, "minProperties: got 0, want 1"},
		}},
		{"boolean schemas", "type: object\nproperties: {yes: true, no: false}", []check{
			{`{"yes": [1]}`, ""}, {`{"no": 1}`, "/no: false schema"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compileFiles(t, map[string]string{"main.yaml": tt.schema})
			for _, ck := range tt.checks {
				v, err := decodeJSON([]byte(ck.json))
				if err != nil {
					t.Fatal(err)
				}
				var msgs []string
				for _, vi := range validate(s, v) {
					msgs = append(msgs, vi.String())
				}
				got := strings.Join(msgs, "\n")
				switch {
				case ck.want == "" && got != "":
					t.Errorf("%s: unexpected violations:\n%s", ck.json, got)
				case ck.want != "" && !strings.Contains(got, ck.want):
					t.Errorf("%s: violations %q do not contain %q", ck.json, got, ck.want)
				}
			}
		})
	}
}

// TestUncompilablePattern: a pattern Go's regexp package cannot compile
// fails compilation instead of being skipped silently.
func TestUncompilablePattern(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "main.yaml")
	if err := os.WriteFile(main, []byte("type: string\npattern: '(?<=a)b'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newCompiler(newDocSet()).compile(main, "")
	if err == nil || !strings.Contains(err.Error(), "(?<=a)b") {
		t.Fatalf("compile: %v, want an error naming the pattern", err)
	}
}

func TestSchemaRefs(t *testing.T) {
	s := compileFiles(t, map[string]string{
		"main.yaml": `
type: object
properties:
  event: {$ref: "defs/event.yaml"}
  tree: {$ref: "#/$defs/node"}
  local: {$ref: "defs/event.yaml#/allOf/1/properties/content"}
$defs:
  node:
    type: object
    properties:
      children: {type: array, items: {$ref: "#/$defs/node"}}
      name: {type: string}
`,
		"defs/event.yaml": `
allOf:
  - $ref: ../core/base.yaml
  - type: object
    properties:
      content: {type: object, required: [body]}
`,
		"core/base.yaml": `
type: object
required: [type]
properties:
  type: {type: string}
`,
	})
	tests := []struct{ json, want string }{
		{`{"event": {"type": "m", "content": {"body": 1}}, "tree": {"children": [{"children": [{"name": "x"}]}]}}`, ""},
		{`{"event": {"content": {}}}`, `/event: missing required property "type"`},
		{`{"event": {"type": 1, "content": {}}}`, `/event/content: missing required property "body"`},
		{`{"tree": {"children": [{"children": [{"name": 1}]}]}}`, "/tree/children/0/children/0/name: got number, want string"},
		{`{"local": []}`, "/local: got array, want object"},
	}
	for _, tt := range tests {
		v, err := decodeJSON([]byte(tt.json))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, vi := range validate(s, v) {
			msgs = append(msgs, vi.String())
		}
		got := strings.Join(msgs, "\n")
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("%s: violations %q, want %q", tt.json, got, tt.want)
		}
	}
}

func TestResolveExample(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"ex/base.json":  `{"type": "base", "content": {"key": "value"}, "sender": "@a:x"}`,
		"ex/event.yaml": `{"$ref": "base.json", "type": "m.thing", "content": {"body": "hi"}}`,
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(text), 0o644)
	}
	d := newDocSet()
	v, err := d.resolveExample(filepath.Join(dir, "main.yaml"), map[string]any{
		"events": []any{map[string]any{"$ref": "ex/event.yaml", "room_id": "!r:x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	want := `{"events":[{"content":{"body":"hi"},"room_id":"!r:x","sender":"@a:x","type":"m.thing"}]}`
	if got != want {
		t.Errorf("resolved example = %s, want %s", got, want)
	}
}
