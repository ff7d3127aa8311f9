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
		WriteRawJSON(w, http.StatusInternalServerError, []byte(encodeFailed))
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

// WriteError writes err as a Matrix error response (ErrorResponse), or
// only the status 499 when the client went away (a long-poll it gave up
// on): nobody reads that answer, and it is no server error.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		w.WriteHeader(499)
		return
	}
	status, header, body := ErrorResponse(r.Context(), r.Method, r.URL.Path, err)
	for k, v := range header {
		w.Header()[k] = v
	}
	WriteRawJSON(w, status, body)
}

// ErrorResponse is the answer to a request (method and path, for the log)
// that failed with err: its status, the headers it has beyond
// Content-Type and Content-Length (Retry-After for M_LIMIT_EXCEEDED; nil
// when none) and its JSON body. A CustomError answers with its own body;
// any other error that is not an *Error is logged and answered with
// M_UNKNOWN. Answers written off the handler (a parked long-poll's) use
// it as WriteError does.
func ErrorResponse(ctx context.Context, method, path string, err error) (status int, header http.Header, body []byte) {
	var v any
	var custom CustomError
	if errors.As(err, &custom) {
		status, v = custom.HTTPStatus(), custom.ResponseBody()
	} else {
		me, ok := AsError(err)
		if !ok {
			slog.ErrorContext(ctx, "request failed", "method", method, "path", path, "err", err)
		}
		if me.Code == "M_LIMIT_EXCEEDED" {
			if ms, ok := me.Extra["retry_after_ms"].(int64); ok {
				header = http.Header{"Retry-After": {strconv.FormatInt((ms+999)/1000, 10)}}
			}
		}
		status, v = me.Status, me.Body()
	}
	body, err = jsonv2.Marshal(v, json.DefaultOptionsV1())
	if err != nil {
		slog.ErrorContext(ctx, "encode response", "err", err)
		return http.StatusInternalServerError, nil, []byte(encodeFailed)
	}
	return status, header, body
}

// encodeFailed is the answer to a response that could not be encoded.
const encodeFailed = `{"errcode":"M_UNKNOWN","error":"could not encode response"}`

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
