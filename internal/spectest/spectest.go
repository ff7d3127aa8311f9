// Package spectest checks JSON bodies exchanged with a homeserver against
// the OpenAPI definitions of the Matrix specification.
//
// A Spec is loaded from a copy of the data files of the matrix-spec
// repository (the directory holding data/api, data/event-schemas and
// data/schemas). Responses are matched to operations by method and
// concrete request path, then validated against the JSON schema the
// specification gives for the response status:
//
//	spec := spectest.LoadDefault(t)
//	if err := spec.ValidateResponse("GET", "/_matrix/client/v3/sync", 200, body); err != nil {
//		t.Error(err)
//	}
//
// Schemas are compiled and checked with
// github.com/santhosh-tekuri/jsonschema as JSON Schema 2020-12, the
// dialect of OpenAPI 3.1, following $ref across files. Annotations such as
// description, example and format are not asserted. oneOf is checked like
// anyOf, because the specification uses it for alternatives that overlap.
// Patterns are compiled with Go's regexp package; Load fails on a pattern
// it cannot compile.
package spectest

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ErrUnknownOperation is returned, wrapped, when a request matches no
// operation of the specification.
var ErrUnknownOperation = errors.New("no such operation in the Matrix spec")

// An Operation is one HTTP endpoint of a Matrix API.
type Operation struct {
	API         string // API directory name: "client-server", "server-server", ...
	Method      string // upper case: "GET", "PUT", ...
	Path        string // templated path including the server base path, e.g. "/_matrix/client/v3/rooms/{roomId}/messages"
	OperationID string
	Deprecated  bool
}

// A Spec holds the compiled operations of a copy of the Matrix
// specification. It is safe for concurrent use.
type Spec struct {
	dir    string
	ops    []*operation
	byID   map[string][]*operation
	events map[string]*jsonschema.Schema // event schemas by event type
}

type operation struct {
	Operation
	segs      []string                      // path split on "/", without the leading ""
	responses map[string]*jsonschema.Schema // by status key ("200", "4XX", "DEFAULT"); nil: no JSON schema
	request   *jsonschema.Schema            // nil: no JSON request body
	examples  []example                     // response examples, for tests
}

type example struct {
	status string
	name   string
	value  any
}

// apiOrder lists the APIs in the order in which they are searched;
// client-server comes first because operation IDs repeat across APIs.
var apiOrder = []string{"client-server", "server-server", "application-service", "identity", "push-gateway"}

var methods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// Load reads and compiles the specification in dir, the directory holding
// data/api.
func Load(dir string) (*Spec, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	apiRoot := filepath.Join(dir, "data", "api")
	entries, err := os.ReadDir(apiRoot)
	if err != nil {
		return nil, fmt.Errorf("spectest: loading spec: %w", err)
	}
	var apis []string
	for _, e := range entries {
		if e.IsDir() {
			apis = append(apis, e.Name())
		}
	}
	slices.SortFunc(apis, func(a, b string) int {
		ia, ib := slices.Index(apiOrder, a), slices.Index(apiOrder, b)
		if ia < 0 {
			ia = len(apiOrder)
		}
		if ib < 0 {
			ib = len(apiOrder)
		}
		if ia != ib {
			return ia - ib
		}
		return strings.Compare(a, b)
	})
	if !slices.Contains(apis, "client-server") {
		return nil, fmt.Errorf("spectest: loading spec: %s has no client-server API", apiRoot)
	}

	l := &loader{docs: newDocSet()}
	l.c = newCompiler(l.docs)
	s := &Spec{dir: dir, byID: make(map[string][]*operation), events: make(map[string]*jsonschema.Schema)}
	for _, api := range apis {
		files, err := filepath.Glob(filepath.Join(apiRoot, api, "*.yaml"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			ops, err := l.loadFile(api, f)
			if err != nil {
				return nil, fmt.Errorf("spectest: loading spec: %w", err)
			}
			s.ops = append(s.ops, ops...)
		}
	}
	for _, op := range s.ops {
		s.byID[op.OperationID] = append(s.byID[op.OperationID], op)
	}

	eventFiles, err := filepath.Glob(filepath.Join(dir, "data", "event-schemas", "schema", "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range eventFiles {
		sch, err := l.c.compile(f, "")
		if err != nil {
			return nil, fmt.Errorf("spectest: loading spec: %w", err)
		}
		s.events[strings.TrimSuffix(filepath.Base(f), ".yaml")] = sch
	}
	return s, nil
}

// A loader builds operations from OpenAPI files.
type loader struct {
	docs *docSet
	c    *compiler
}

func (l *loader) loadFile(api, file string) ([]*operation, error) {
	doc, err := l.docs.load(file)
	if err != nil {
		return nil, err
	}
	root, _ := doc.(map[string]any)
	if _, ok := root["openapi"]; !ok {
		return nil, nil // not an OpenAPI document
	}
	base, err := basePath(root["servers"])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	paths, _ := root["paths"].(map[string]any)
	var ops []*operation
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		item, _ := paths[p].(map[string]any)
		itemPtr := "/paths/" + escapePointer(p)
		itemBase := base
		if srv, ok := item["servers"]; ok {
			if itemBase, err = basePath(srv); err != nil {
				return nil, fmt.Errorf("%s#%s: %w", file, itemPtr, err)
			}
		}
		for _, m := range methods {
			raw, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			opBase := itemBase
			if srv, ok := raw["servers"]; ok {
				if opBase, err = basePath(srv); err != nil {
					return nil, fmt.Errorf("%s#%s/%s: %w", file, itemPtr, m, err)
				}
			}
			op, err := l.operation(file, itemPtr+"/"+m, raw)
			if err != nil {
				return nil, err
			}
			op.API = api
			op.Method = strings.ToUpper(m)
			// The spec pads some path keys with a space to tell apart
			// two operations on the same path and method.
			op.Path = strings.TrimSuffix(opBase, "/") + strings.TrimSpace(p)
			op.segs = strings.Split(op.Path, "/")[1:]
			ops = append(ops, op)
		}
	}
	return ops, nil
}

func (l *loader) operation(file, ptr string, raw map[string]any) (*operation, error) {
	op := &operation{responses: make(map[string]*jsonschema.Schema)}
	op.OperationID, _ = raw["operationId"].(string)
	op.Deprecated, _ = raw["deprecated"].(bool)
	if op.OperationID == "" {
		return nil, fmt.Errorf("%s#%s: operation has no operationId", file, ptr)
	}

	if rb, ok := raw["requestBody"]; ok {
		f, p, v, err := l.deref(file, ptr+"/requestBody", rb)
		if err != nil {
			return nil, err
		}
		if op.request, _, err = l.mediaSchema(f, p, v); err != nil {
			return nil, err
		}
	}

	responses, _ := raw["responses"].(map[string]any)
	for _, status := range slices.Sorted(maps.Keys(responses)) {
		f, p, v, err := l.deref(file, ptr+"/responses/"+escapePointer(status), responses[status])
		if err != nil {
			return nil, err
		}
		sch, exs, err := l.mediaSchema(f, p, v)
		if err != nil {
			return nil, err
		}
		op.responses[strings.ToUpper(status)] = sch
		for _, e := range exs {
			e.status = status
			op.examples = append(op.examples, e)
		}
	}
	return op, nil
}

// deref follows v's "$ref", if any, returning the file and pointer where
// the resulting value lives.
func (l *loader) deref(file, ptr string, v any) (string, string, any, error) {
	for range 16 {
		m, ok := v.(map[string]any)
		if !ok {
			return file, ptr, v, nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return file, ptr, v, nil
		}
		var err error
		if file, ptr, v, err = l.docs.resolve(file, ref); err != nil {
			return "", "", nil, err
		}
	}
	return "", "", nil, fmt.Errorf("%s#%s: too many levels of $ref", file, ptr)
}

// mediaSchema compiles the JSON schema of a request body or response
// object and collects its examples. It returns a nil schema if there is no
// JSON content.
func (l *loader) mediaSchema(file, ptr string, v any) (*jsonschema.Schema, []example, error) {
	m, _ := v.(map[string]any)
	content, _ := m["content"].(map[string]any)
	typ := jsonMediaType(content)
	if typ == "" {
		return nil, nil, nil
	}
	media, _ := content[typ].(map[string]any)
	ptr += "/content/" + escapePointer(typ)
	if _, ok := media["schema"]; !ok {
		return nil, nil, nil
	}
	sch, err := l.c.compile(file, ptr+"/schema")
	if err != nil {
		return nil, nil, err
	}

	var exs []example
	if ex, ok := media["example"]; ok {
		val, err := l.docs.resolveExample(file, ex)
		if err != nil {
			return nil, nil, err
		}
		exs = append(exs, example{name: "example", value: val})
	}
	named, _ := media["examples"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(named)) {
		f, _, ev, err := l.deref(file, ptr+"/examples/"+escapePointer(name), named[name])
		if err != nil {
			return nil, nil, err
		}
		em, _ := ev.(map[string]any)
		raw, ok := em["value"]
		if !ok {
			continue // externalValue, or no value
		}
		val, err := l.docs.resolveExample(f, raw)
		if err != nil {
			return nil, nil, err
		}
		exs = append(exs, example{name: name, value: val})
	}
	return sch, exs, nil
}

// jsonMediaType returns the JSON media type among the keys of content,
// preferring application/json, or "" if there is none.
func jsonMediaType(content map[string]any) string {
	if _, ok := content["application/json"]; ok {
		return "application/json"
	}
	for _, k := range slices.Sorted(maps.Keys(content)) {
		mt, _, _ := strings.Cut(k, ";")
		mt = strings.TrimSpace(mt)
		if mt == "application/json" || strings.HasSuffix(mt, "+json") {
			return k
		}
	}
	return ""
}

// basePath returns the path part of the first entry of an OpenAPI
// servers list, with server variables replaced by their defaults.
func basePath(servers any) (string, error) {
	list, _ := servers.([]any)
	if len(list) == 0 {
		return "", nil
	}
	srv, _ := list[0].(map[string]any)
	u, _ := srv["url"].(string)
	vars, _ := srv["variables"].(map[string]any)
	for name, v := range vars {
		vm, _ := v.(map[string]any)
		def, ok := vm["default"].(string)
		if !ok {
			return "", fmt.Errorf("server variable %q has no default", name)
		}
		u = strings.ReplaceAll(u, "{"+name+"}", def)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("bad server URL %q: %w", u, err)
	}
	return parsed.Path, nil
}

// Operations returns the operations of the named API ("client-server",
// "server-server", "application-service", "identity", "push-gateway"),
// or of every API if api is "", sorted by API, path and method.
func (s *Spec) Operations(api string) []Operation {
	var out []Operation
	for _, op := range s.ops {
		if api == "" || op.API == api {
			out = append(out, op.Operation)
		}
	}
	slices.SortFunc(out, func(a, b Operation) int {
		if c := strings.Compare(a.API, b.API); c != 0 {
			return c
		}
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return slices.Index(methods, strings.ToLower(a.Method)) - slices.Index(methods, strings.ToLower(b.Method))
	})
	return out
}

// ValidateResponse validates the JSON body of a response with the given
// status to the request method and path. The path is a concrete request
// path such as "/_matrix/client/v3/rooms/!abc:localhost/messages"; a query
// string is ignored. It is matched against the paths of every API, client-
// server first, with literal path segments preferred over parameters.
//
// The response is looked up by exact status, then by status range ("4XX"),
// then as "default". ValidateResponse returns nil if the specification
// gives no JSON schema for the response, an error wrapping
// ErrUnknownOperation if no operation matches, and a *ValidationError
// listing every violation if the body does not match its schema.
//
// A few paths carry two operations for the same method, such as
// POST /rooms/{roomId}/invite (by user ID or by third-party ID); a body
// valid for either is accepted.
func (s *Spec) ValidateResponse(method, path string, status int, body []byte) error {
	ops, err := s.match(method, path)
	if err != nil {
		return err
	}
	return firstValid(ops, func(op *operation) error { return op.validateResponse(status, body) })
}

// ValidateOperation is like ValidateResponse but finds the operation by its
// operationId. Operation IDs are unique within an API but not across APIs;
// the client-server API is searched first, and an ID may be qualified with
// its API as in "identity/getVersions".
func (s *Spec) ValidateOperation(operationID string, status int, body []byte) error {
	op, err := s.byOperationID(operationID)
	if err != nil {
		return err
	}
	return op.validateResponse(status, body)
}

// ValidateRequest validates a JSON request body sent with the given method
// to path, matched as by ValidateResponse. It returns nil if the operation
// takes no JSON body.
func (s *Spec) ValidateRequest(method, path string, body []byte) error {
	ops, err := s.match(method, path)
	if err != nil {
		return err
	}
	return firstValid(ops, func(op *operation) error {
		if op.request == nil {
			return nil
		}
		return check(op.request, body, fmt.Sprintf("%s (%s %s) request body", op.OperationID, op.Method, op.Path))
	})
}

// firstValid returns nil if check accepts any of ops, and otherwise the
// errors from all of them.
func firstValid(ops []*operation, check func(*operation) error) error {
	var errs []error
	for _, op := range ops {
		err := check(op)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// ValidateEvent validates an event against the schema the specification
// gives for eventType in data/event-schemas/schema, such as "m.room.member"
// or "m.room.message$m.text". If eventType names no variant, the variant
// named by the event's content.msgtype or content.method (as for
// m.room.message and m.key.verification.start) is used where one exists.
// It returns an error wrapping ErrUnknownOperation if there is no schema
// for the type.
func (s *Spec) ValidateEvent(eventType string, event []byte) error {
	sch, ok := s.events[eventType]
	if !ok {
		return fmt.Errorf("spectest: event type %q: %w", eventType, ErrUnknownOperation)
	}
	context := "event " + eventType
	v, err := decodeJSON(event)
	if err != nil {
		return fmt.Errorf("spectest: %s: invalid JSON: %w", context, err)
	}
	if !strings.Contains(eventType, "$") {
		obj, _ := v.(map[string]any)
		content, _ := obj["content"].(map[string]any)
		for _, key := range []string{"msgtype", "method"} {
			if variant, ok := content[key].(string); ok {
				if vs, ok := s.events[eventType+"$"+variant]; ok {
					sch, context = vs, context+"$"+variant
					break
				}
			}
		}
	}
	if vs := validate(sch, v); len(vs) > 0 {
		return &ValidationError{Context: context, Violations: vs}
	}
	return nil
}

func (op *operation) validateResponse(status int, body []byte) error {
	sch, ok := op.responses[strconv.Itoa(status)]
	if !ok {
		sch, ok = op.responses[strconv.Itoa(status/100)+"XX"]
	}
	if !ok {
		sch = op.responses["DEFAULT"]
	}
	if sch == nil {
		return nil
	}
	return check(sch, body, fmt.Sprintf("%s (%s %s) response %d", op.OperationID, op.Method, op.Path, status))
}

// check decodes body and validates it against sch.
func check(sch *jsonschema.Schema, body []byte, context string) error {
	v, err := decodeJSON(body)
	if err != nil {
		return fmt.Errorf("spectest: %s: invalid JSON body: %w", context, err)
	}
	if vs := validate(sch, v); len(vs) > 0 {
		return &ValidationError{Context: context, Violations: vs}
	}
	return nil
}

func (s *Spec) byOperationID(id string) (*operation, error) {
	api := ""
	if a, rest, ok := strings.Cut(id, "/"); ok {
		api, id = a, rest
	}
	for _, op := range s.byID[id] {
		if api == "" || op.API == api {
			return op, nil
		}
	}
	return nil, fmt.Errorf("spectest: operationId %q: %w", id, ErrUnknownOperation)
}

// match finds the operations for a concrete request path: usually one,
// but the spec defines two for a few paths.
func (s *Spec) match(method, path string) ([]*operation, error) {
	method = strings.ToUpper(method)
	path, _, _ = strings.Cut(path, "?")
	path, _, _ = strings.Cut(path, "#")
	ops, allowed := s.matchPath(method, path)
	if ops == nil && len(allowed) == 0 {
		// Servers commonly accept a path with or without a trailing slash.
		alt := path + "/"
		if strings.HasSuffix(path, "/") {
			alt = strings.TrimSuffix(path, "/")
		}
		ops, allowed = s.matchPath(method, alt)
	}
	if ops != nil {
		return ops, nil
	}
	if len(allowed) > 0 {
		return nil, fmt.Errorf("spectest: %s %s: %w (the path allows %s)", method, path, ErrUnknownOperation, strings.Join(allowed, ", "))
	}
	return nil, fmt.Errorf("spectest: %s %s: %w", method, path, ErrUnknownOperation)
}

// matchPath returns the operations for method with the most specific path
// template matching path, or else the methods that matching paths allow.
func (s *Spec) matchPath(method, path string) ([]*operation, []string) {
	if !strings.HasPrefix(path, "/") {
		return nil, nil
	}
	segs := strings.Split(path[1:], "/")
	for i, seg := range segs {
		if u, err := url.PathUnescape(seg); err == nil {
			segs[i] = u
		}
	}
	var best []*operation
	var allowed []string
	for _, op := range s.ops {
		if !op.matches(segs) {
			continue
		}
		if op.Method != method {
			if !slices.Contains(allowed, op.Method) {
				allowed = append(allowed, op.Method)
			}
			continue
		}
		switch {
		case best == nil || moreSpecific(op.segs, best[0].segs):
			best = []*operation{op}
		case !moreSpecific(best[0].segs, op.segs):
			best = append(best, op)
		}
	}
	return best, allowed
}

func (op *operation) matches(segs []string) bool {
	if len(segs) != len(op.segs) {
		return false
	}
	for i, t := range op.segs {
		if !isParam(t) && t != segs[i] {
			return false
		}
	}
	return true
}

// moreSpecific reports whether template a beats template b, both matching
// the same path: at the first segment where they differ in kind, a literal
// beats a parameter.
func moreSpecific(a, b []string) bool {
	for i := range a {
		pa, pb := isParam(a[i]), isParam(b[i])
		if pa != pb {
			return !pa
		}
	}
	return false
}

func isParam(seg string) bool {
	return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}")
}

// defaultSpec caches the specification loaded by LoadDefault.
var defaultSpec struct {
	once sync.Once
	spec *Spec
	err  error
}

var errNoSpecDir = errors.New("Matrix spec directory not found (set MATRIX_SPEC_DIR)")

// LoadDefault returns the specification found by Dir, loading it once per
// process. If no specification is found, it skips the test, or fails it
// when the CI environment variable is set; it fails the test if the
// specification does not load.
func LoadDefault(tb testing.TB) *Spec {
	tb.Helper()
	defaultSpec.once.Do(func() {
		dir, err := Dir()
		if err != nil {
			defaultSpec.err = err
			return
		}
		defaultSpec.spec, defaultSpec.err = Load(dir)
	})
	switch err := defaultSpec.err; {
	case errors.Is(err, errNoSpecDir) && os.Getenv("CI") == "":
		tb.Skip(err)
	case err != nil:
		tb.Fatal(err)
	}
	return defaultSpec.spec
}

// Dir locates the specification: the directory named by the environment
// variable MATRIX_SPEC_DIR if set, otherwise the first directory
// shared/matrix-spec found in the working directory or one of its
// ancestors. For a test in a repository at <root>, that is
// <root>/../shared/matrix-spec (or <root>/shared/matrix-spec).
func Dir() (string, error) {
	if d := os.Getenv("MATRIX_SPEC_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "data", "api")); err != nil {
			return "", fmt.Errorf("spectest: MATRIX_SPEC_DIR: %w", err)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("spectest: %w", err)
	}
	for d := wd; ; {
		cand := filepath.Join(d, "shared", "matrix-spec")
		if fi, err := os.Stat(filepath.Join(cand, "data", "api")); err == nil && fi.IsDir() {
			return cand, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("spectest: searching from %s: %w", wd, errNoSpecDir)
}
