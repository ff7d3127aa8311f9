package mxhttp

import (
	"bytes"
	"context"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"
)

// MaxBodyBytes is the default limit on a JSON request body. Events are
// limited to 65,536 bytes by the spec; other bodies (key uploads, filters)
// get some more room.
const MaxBodyBytes = 1 << 20

// ReadBody reads a request body of at most limit bytes.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, TooLarge("request body too large (limit %d bytes)", limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, TooLarge("request body too large (limit %d bytes)", limit)
		}
		return nil, BadJSON("could not read request body: %v", err)
	}
	return b, nil
}

// DecodeJSON reads the request body as one JSON object into v. An empty body
// decodes as {}. Syntax errors give M_NOT_JSON, type mismatches M_BAD_JSON.
func DecodeJSON(r *http.Request, v any) error {
	b, err := ReadBody(r, MaxBodyBytes)
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// Unmarshal decodes body (a JSON object) into v with the spec's errors.
func Unmarshal(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		b = []byte("{}")
	}
	if err := CheckObject(b); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			if ute.Field != "" {
				return BadJSON("field %q has the wrong type: expected %s", ute.Field, ute.Type)
			}
			return BadJSON("wrong type: expected %s", ute.Type)
		}
		return BadJSON("invalid request body: %v", err)
	}
	return nil
}

// CheckObject checks that body is a JSON object (an empty body counts as
// {}) that an event or a database column can hold, with the errors
// Unmarshal gives, without decoding it: for a body passed on as it is,
// such as an event's content.
func CheckObject(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	if !utf8.Valid(b) || !json.Valid(b) {
		return NotJSON("request body is not valid UTF-8 JSON")
	}
	if b[0] != '{' {
		return BadJSON("request body must be a JSON object")
	}
	if hasNUL(b) {
		return BadJSON("strings must not contain U+0000")
	}
	return nil
}

// hasNUL reports whether valid JSON text b contains the escape \u0000,
// which no database column or event can hold. Backslashes occur only in
// strings, so escapes can be found without tracking string boundaries.
func hasNUL(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	buf := responseBuffers.Get().(*bytes.Buffer)
	defer putResponseBuffer(buf)
	buf.Reset()
	// What json.Marshal returns, encoded straight into buf.
	if err := jsonv2.MarshalWrite(buf, v, json.DefaultOptionsV1()); err != nil {
		slog.Error("encode response", "err", err)
		WriteRawJSON(w, http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"could not encode response"}`))
		return
	}
	WriteRawJSON(w, status, buf.Bytes())
}

// responseBuffers keeps the buffers WriteJSON encodes into: a large answer
// (an initial /sync of a user in many rooms is megabytes) then encodes
// into memory the last one grew, rather than growing a new buffer from
// nothing each time.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledResponse is the largest buffer kept for reuse.
const maxPooledResponse = 16 << 20

func putResponseBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledResponse {
		responseBuffers.Put(buf)
	}
}

// WriteRawJSON writes an already-encoded JSON body.
func WriteRawJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// WriteError writes err as a Matrix error response. Errors that are not
// *Error are logged and answered with M_UNKNOWN.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var custom CustomError
	if errors.As(err, &custom) {
		WriteJSON(w, custom.HTTPStatus(), custom.ResponseBody())
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away (a long-poll it gave up on); nobody reads
		// this answer, and it is no server error.
		w.WriteHeader(499)
		return
	}
	me, ok := AsError(err)
	if !ok {
		slog.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if me.Code == "M_LIMIT_EXCEEDED" {
		if ms, ok := me.Extra["retry_after_ms"].(int64); ok {
			w.Header().Set("Retry-After", strconv.FormatInt((ms+999)/1000, 10))
		}
	}
	WriteJSON(w, me.Status, me.Body())
}

// CustomError is an error with its own response body, such as the 401
// User-Interactive Authentication response.
type CustomError interface {
	error
	HTTPStatus() int
	ResponseBody() any
}

// HandlerFunc is an HTTP handler that returns its response value or an
// error; Handle adapts it to http.Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

// Handle adapts h: a nil error writes the value as 200 JSON (unless the
// handler already wrote a response and returned nil, nil).
func Handle(h HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(w, r)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		if v == nil {
			return
		}
		if raw, ok := v.(json.RawMessage); ok {
			WriteRawJSON(w, http.StatusOK, raw)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}
}

// Empty is the {} response body.
var Empty = struct{}{}
