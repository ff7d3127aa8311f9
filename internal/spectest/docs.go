package spectest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A docSet loads spec files on demand and resolves references between them.
// Documents are held in the generic form produced by encoding/json with
// UseNumber: map[string]any, []any, string, json.Number, bool and nil.
//
// A docSet is not safe for concurrent use; Load uses it only while building
// a Spec.
type docSet struct {
	docs map[string]any // by absolute, cleaned file name
}

func newDocSet() *docSet { return &docSet{docs: make(map[string]any)} }

// load returns the parsed contents of the named file.
func (d *docSet) load(file string) (any, error) {
	if v, ok := d.docs[file]; ok {
		return v, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var v any
	if strings.HasSuffix(file, ".json") {
		v, err = decodeJSON(data)
	} else {
		v, err = decodeYAML(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := amend(file, v); err != nil {
		return nil, err
	}
	d.docs[file] = v
	return v, nil
}

// resolve resolves the reference ref found in file to the referenced file
// name, the JSON pointer of the target within it and the target itself.
func (d *docSet) resolve(file, ref string) (target, ptr string, v any, err error) {
	name, frag, _ := strings.Cut(ref, "#")
	target = file
	if name != "" {
		if strings.Contains(name, "://") {
			return "", "", nil, fmt.Errorf("%s: unsupported remote reference %q", file, ref)
		}
		target = filepath.Join(filepath.Dir(file), filepath.FromSlash(name))
	}
	doc, err := d.load(target)
	if err != nil {
		return "", "", nil, fmt.Errorf("resolving %q in %s: %w", ref, file, err)
	}
	if frag, err = url.PathUnescape(frag); err != nil {
		return "", "", nil, fmt.Errorf("resolving %q in %s: %w", ref, file, err)
	}
	v, err = lookupPointer(doc, frag)
	if err != nil {
		return "", "", nil, fmt.Errorf("resolving %q in %s: %w", ref, file, err)
	}
	return target, frag, v, nil
}

// lookupPointer returns the value that the JSON pointer ptr selects in doc.
func lookupPointer(doc any, ptr string) (any, error) {
	if ptr == "" {
		return doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("invalid JSON pointer %q", ptr)
	}
	v := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, fmt.Errorf("JSON pointer %q: no member %q", ptr, tok)
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("JSON pointer %q: bad index %q", ptr, tok)
			}
			v = x[i]
		default:
			return nil, fmt.Errorf("JSON pointer %q: cannot index into %s", ptr, kindOf(v))
		}
	}
	return v, nil
}

// resolveExample returns a copy of the example value v, found in file, with
// every object holding a "$ref" member replaced by the referenced value and
// the object's other members laid over it. This is how the spec's own
// tooling renders examples: siblings of "$ref" override top-level members
// of the referenced value.
func (d *docSet) resolveExample(file string, v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		if ref, ok := x["$ref"].(string); ok {
			target, _, rv, err := d.resolve(file, ref)
			if err != nil {
				return nil, err
			}
			rv, err = d.resolveExample(target, rv)
			if err != nil {
				return nil, err
			}
			m, ok := rv.(map[string]any)
			if !ok {
				if len(x) == 1 {
					return rv, nil
				}
				return nil, fmt.Errorf("%s: example $ref %q with siblings is not an object", file, ref)
			}
			for k, e := range m {
				out[k] = e
			}
		}
		for k, e := range x {
			if k == "$ref" {
				continue
			}
			r, err := d.resolveExample(file, e)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := d.resolveExample(file, e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// decodeJSON decodes a single JSON value, keeping numbers as json.Number.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("invalid JSON: data after top-level value")
	}
	return v, nil
}

// decodeYAML decodes a YAML document into the same generic form as
// decodeJSON.
func decodeYAML(data []byte) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	if n.Kind == 0 {
		return nil, nil
	}
	return fromNode(&n)
}

func fromNode(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return fromNode(n.Content[0])
	case yaml.AliasNode:
		return fromNode(n.Alias)
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := fromNode(c)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: non-scalar mapping key", k.Line)
			}
			val, err := fromNode(v)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, err
			}
			return b, nil
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				// Too large for int64: keep the literal digits.
				return json.Number(strings.ReplaceAll(n.Value, "_", "")), nil
			}
			return json.Number(strconv.FormatInt(i, 10)), nil
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, err
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
		default:
			return n.Value, nil
		}
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node kind %v", n.Line, n.Kind)
}

// kindOf names the JSON type of a generic value.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
