package spectest

import (
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A compiler compiles the JSON schemas found in spec files with
// github.com/santhosh-tekuri/jsonschema. The files, and the files their
// $refs name, are read through a docSet, so YAML works as well as JSON.
//
// The schemas are JSON Schema 2020-12, the dialect of OpenAPI 3.1, with
// one change: oneOf is read as anyOf. The specification uses oneOf where
// the alternatives overlap (for example "any object, or a state event" in
// rooms.yaml), meaning "either"; requiring exactly one match would reject
// valid bodies. Annotations such as format are not asserted.
type compiler struct {
	js *jsonschema.Compiler
}

func newCompiler(docs *docSet) *compiler {
	js := jsonschema.NewCompiler()
	js.UseLoader(docLoader{docs})
	return &compiler{js: js}
}

// compile compiles the schema in file at JSON pointer ptr ("" for the
// whole file).
func (c *compiler) compile(file, ptr string) (*jsonschema.Schema, error) {
	loc := (&url.URL{Scheme: "file", Path: filepath.ToSlash(file), Fragment: ptr}).String()
	s, err := c.js.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compiling the schema at %s#%s: %w", file, ptr, err)
	}
	return s, nil
}

// A docLoader hands the jsonschema compiler the files of a docSet.
type docLoader struct{ docs *docSet }

func (l docLoader) Load(loc string) (any, error) {
	file, err := jsonschema.FileLoader{}.ToFile(loc)
	if err != nil {
		return nil, err
	}
	doc, err := l.docs.load(filepath.Clean(file))
	if err != nil {
		return nil, err
	}
	return oneOfAsAnyOf(doc), nil
}

// oneOfAsAnyOf returns a copy of the generic document v in which every
// object member named oneOf is named anyOf instead.
func oneOfAsAnyOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k == "oneOf" {
				k = "anyOf"
			}
			out[k] = oneOfAsAnyOf(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = oneOfAsAnyOf(e)
		}
		return out
	}
	return v
}
