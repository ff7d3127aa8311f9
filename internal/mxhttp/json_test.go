package mxhttp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		body, code string // code "" means success
	}{
		{``, ""},
		{`  {}  `, ""},
		{`{"type":"x","count":2}`, ""},
		{`{"type":"a\\u0000b"}`, ""}, // an escaped backslash, then "u0000"
		{`{"type":"a\\\u0000b"}`, "M_BAD_JSON"},
		{`{`, "M_NOT_JSON"},
		{`{"type":"x"} {}`, "M_NOT_JSON"},
		{"{\"type\":\"\xff\"}", "M_NOT_JSON"},
		{`[]`, "M_BAD_JSON"},
		{`null`, "M_BAD_JSON"},
		{`"x"`, "M_BAD_JSON"},
		{`{"type":1}`, "M_BAD_JSON"},
		{`{"count":"2"}`, "M_BAD_JSON"},
		{`{"type":"a\u0000b"}`, "M_BAD_JSON"},
		{`{"a\u0000":1}`, "M_BAD_JSON"},
	} {
		var v request
		err := mxhttp.Unmarshal([]byte(tc.body), &v)
		var me *mxhttp.Error
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("Unmarshal(%q) = %v, want success", tc.body, err)
		case tc.code != "" && (!errors.As(err, &me) || me.Code != tc.code || me.Status != 400):
			t.Errorf("Unmarshal(%q) = %v, want 400 %s", tc.body, err, tc.code)
		}
	}
}

func TestDecodeJSONTooLarge(t *testing.T) {
	r := httptest.NewRequest("POST", "/x", strings.NewReader(`{"type":"`+strings.Repeat("x", mxhttp.MaxBodyBytes)+`"}`))
	var v request
	var me *mxhttp.Error
	if err := mxhttp.DecodeJSON(r, &v); !errors.As(err, &me) || me.Status != 413 || me.Code != "M_TOO_LARGE" {
		t.Fatalf("DecodeJSON of an oversized body = %v, want 413 M_TOO_LARGE", err)
	}
}

// TestWriteJSONMatchesMarshal checks that WriteJSON, which encodes into
// reused buffers, writes exactly what json.Marshal gives, the second time
// (into a buffer a larger answer grew) as the first.
func TestWriteJSONMatchesMarshal(t *testing.T) {
	type event struct {
		Content  json.RawMessage `json:"content"`
		StateKey *string         `json:"state_key,omitempty"`
		Unsigned map[string]any  `json:"unsigned,omitempty"`
	}
	empty := ""
	for _, v := range []any{
		map[string]any{"html": "<b>&</b>", "invalid": "a\xffb", "line": "\u2028", "n": 1.5},
		event{Content: json.RawMessage(`{ "body" : "spaced <b>" }`), StateKey: &empty},
		[]any{event{Unsigned: map[string]any{"b": 2, "a": []byte("raw")}}, nil},
		map[string]any{"big": strings.Repeat("x", 1<<20)},
		map[string]any{"small": true},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			rec := httptest.NewRecorder()
			mxhttp.WriteJSON(rec, 200, v)
			if got := rec.Body.String(); got != string(want) {
				t.Fatalf("WriteJSON(%T) = %.200q, json.Marshal gives %.200q", v, got, want)
			}
			if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(want)) {
				t.Errorf("Content-Length %s, want %d", cl, len(want))
			}
		}
	}
}

// TestCheckObject checks that CheckObject answers a body as Unmarshal into
// a map would, and decodes nothing: an event's content is checked on every
// send and passed on as it came.
func TestCheckObject(t *testing.T) {
	for _, body := range []string{
		``, `  {}  `, `{"msgtype":"m.text","body":"hi"}`, `{"a":{"b":[1,2,{"c":null}]}}`,
		`{"type":"a\\\u0000b"}`, `{`, `{"type":"x"} {}`, "{\"type\":\"\xff\"}", `[]`, `null`, `"x"`,
		`{"type":"a\u0000b"}`, `{"a\u0000":1}`,
	} {
		var m map[string]json.RawMessage
		want, got := mxhttp.Unmarshal([]byte(body), &m), mxhttp.CheckObject([]byte(body))
		var wantErr, gotErr *mxhttp.Error
		errors.As(want, &wantErr)
		errors.As(got, &gotErr)
		if (want == nil) != (got == nil) || (want != nil && (gotErr == nil || wantErr == nil || gotErr.Code != wantErr.Code)) {
			t.Errorf("CheckObject(%q) = %v, Unmarshal into a map = %v", body, got, want)
		}
	}
	body := []byte(`{"msgtype":"m.text","body":"hello","m.relates_to":{"rel_type":"m.thread","event_id":"$x"}}`)
	if n := testing.AllocsPerRun(100, func() { mxhttp.CheckObject(body) }); n != 0 {
		t.Errorf("CheckObject allocates %.0f times per call, want 0", n)
	}
}

// uiaError is a CustomError, as the 401 of User-Interactive
// Authentication is.
type uiaError struct{}

func (uiaError) Error() string     { return "uia" }
func (uiaError) HTTPStatus() int   { return http.StatusUnauthorized }
func (uiaError) ResponseBody() any { return map[string]any{"session": "s"} }

// TestErrorResponse: the status, headers and body of each kind of error,
// and WriteError writing exactly them.
func TestErrorResponse(t *testing.T) {
	for _, c := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
		body       string
	}{
		{"limit", fmt.Errorf("send: %w", mxhttp.LimitExceeded("slow down").With("retry_after_ms", int64(1500))), 429, "2", `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500}`},
		{"limit without retry", mxhttp.LimitExceeded("slow down"), 429, "", `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down"}`},
		{"matrix", mxhttp.NotFound("no such room"), 404, "", `{"errcode":"M_NOT_FOUND","error":"no such room"}`},
		{"custom", uiaError{}, 401, "", `{"session":"s"}`},
		{"internal", errors.New("disk on fire"), 500, "", `{"errcode":"M_UNKNOWN","error":"internal server error"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, header, body := mxhttp.ErrorResponse(t.Context(), http.MethodGet, "/x", c.err)
			if status != c.status || header.Get("Retry-After") != c.retryAfter || string(body) != c.body {
				t.Fatalf("ErrorResponse: %d %v %s, want %d Retry-After %q %s", status, header, body, c.status, c.retryAfter, c.body)
			}
			rec := httptest.NewRecorder()
			mxhttp.WriteError(rec, httptest.NewRequest(http.MethodGet, "/x", nil), c.err)
			if rec.Code != status || rec.Header().Get("Retry-After") != c.retryAfter || rec.Body.String() != string(body) ||
				rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("WriteError: %d %v %s, want ErrorResponse's", rec.Code, rec.Header(), rec.Body)
			}
		})
	}
}
