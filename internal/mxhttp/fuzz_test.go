package mxhttp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// request is a struct with the kinds of fields handlers decode into.
type request struct {
	Type     string            `json:"type"`
	Count    int               `json:"count"`
	Limit    *int64            `json:"limit"`
	Flag     bool              `json:"flag"`
	Names    []string          `json:"names"`
	Nested   *request          `json:"nested"`
	Extra    map[string]any    `json:"extra"`
	Raw      json.RawMessage   `json:"raw"`
	Contents map[string]string `json:"contents"`
}

var unmarshalSeeds = []string{
	``, `{}`, `{"type":"m.text","count":3,"flag":true}`, `{"names":["a","b"],"nested":{"type":"x"}}`,
	`[]`, `null`, `"str"`, `{`, `{"count":"3"}`, `{"count":1e99}`, `{"limit":-1}`,
	`{"type":"a\u0000b"}`, `{"type":"a\\u0000b"}`, "{\"type\":\"\xff\"}", `{"extra":{"k":[1,{"x":null}]}}`,
	`{"raw":{"a":1}}`, `{"contents":{"a":1}}`, `{"type":"\ud800"}`, `{"a":1,"a":2}`, ` {"type":"x"} `,
	`{"type":"x"}{}`, `{"nested":{"nested":{"nested":{}}}}`, `{"count":1.5}`,
}

// FuzzUnmarshal checks that Unmarshal never panics, answers every failure
// with a 400 Matrix error, and lets no NUL through.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range unmarshalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&request{}, &map[string]any{}, &map[string]json.RawMessage{}} {
			err := mxhttp.Unmarshal(b, v)
			if err != nil {
				var me *mxhttp.Error
				if !errors.As(err, &me) || me.Status != http.StatusBadRequest || (me.Code != "M_NOT_JSON" && me.Code != "M_BAD_JSON") {
					t.Fatalf("Unmarshal(%q) = %v, want a 400 M_NOT_JSON or M_BAD_JSON", b, err)
				}
				continue
			}
			if m, ok := v.(*map[string]any); ok && containsNUL(*m) {
				t.Fatalf("Unmarshal(%q) let a NUL through: %q", b, *m)
			}
		}
	})
}

func containsNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.ContainsRune(x, 0)
	case []any:
		for _, e := range x {
			if containsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) || containsNUL(e) {
				return true
			}
		}
	}
	return false
}

// FuzzDecodeJSON runs request bodies through DecodeJSON inside Handle and
// checks that the answer is always 200 or a 4xx Matrix error.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range unmarshalSeeds {
		f.Add([]byte(s))
	}
	h := mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req request
		if err := mxhttp.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		return req, nil
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("POST", "/x", bytes.NewReader(b)))
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("body %q: status %d: %s", b, rec.Code, rec.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %q: response is not a JSON object: %s", b, rec.Body)
		}
		if rec.Code != http.StatusOK {
			if code, _ := m["errcode"].(string); !strings.HasPrefix(code, "M_") {
				t.Fatalf("body %q: error without errcode: %s", b, rec.Body)
			}
		}
	})
}

// FuzzCheckRequest sends odd paths and query strings through CheckRequest:
// whatever passes must be valid UTF-8 without NUL.
func FuzzCheckRequest(f *testing.F) {
	for _, s := range []string{"/a/b", "/%FF", "/a%00b", "/x?y=%FF", "/x?%00=1", "/x?a=b&c=d", "/%E2%82%AC?q=%E2%82%AC", "/x?a=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.NewRequest("GET", "http://node"+target, nil)
		if err != nil {
			return
		}
		reached := false
		h := mxhttp.CheckRequest(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			if strings.ContainsRune(r.URL.Path, 0) || !utf8.ValidString(r.URL.Path) {
				t.Fatalf("%q reached the handler with path %q", target, r.URL.Path)
			}
			for k, vs := range r.URL.Query() {
				for _, v := range append(vs, k) {
					if strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
						t.Fatalf("%q reached the handler with query %q", target, v)
					}
				}
			}
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !reached && rec.Code != http.StatusBadRequest {
			t.Fatalf("%q refused with %d", target, rec.Code)
		}
	})
}
