package mxhttp

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"unicode/utf8"
)

// CORS adds the headers the spec asks for on the client API, and answers
// preflight requests, so web clients on other origins can talk to the node.
func CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		// If-Match, If-None-Match and ETag are the rendezvous sessions'
		// (MSC4108), which browsers poll across origins.
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization, If-Match, If-None-Match")
		h.Set("Access-Control-Expose-Headers", "Content-Disposition, Retry-After, ETag")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Recover turns a panic in a handler into M_UNKNOWN and a logged stack,
// so one bad request never takes the node down.
func Recover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				WriteJSON(w, http.StatusInternalServerError, Unknown("internal server error").Body())
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// NotFoundHandler answers unknown endpoints with M_UNRECOGNIZED (404), and
// known paths with an unsupported method with 405 M_UNRECOGNIZED.
func NotFoundHandler(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusNotFound, Unrecognized("unrecognized request: %s %s", r.Method, r.URL.Path).Body())
}

// AccessToken returns the token from the Authorization header or, for
// older clients, the access_token query parameter.
func AccessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		// The scheme name is case-insensitive (RFC 9110, section 11.1).
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// CheckRequest refuses requests whose path or query string, once decoded,
// is not valid UTF-8 or contains NUL: such text is never a valid Matrix
// identifier or parameter, and databases reject it.
func CheckRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cleanText(r.URL.Path) {
			WriteJSON(w, http.StatusBadRequest, InvalidParam("request path is not valid UTF-8").Body())
			return
		}
		if r.URL.RawQuery != "" {
			for k, vs := range r.URL.Query() {
				ok := cleanText(k)
				for _, v := range vs {
					ok = ok && cleanText(v)
				}
				if !ok {
					WriteJSON(w, http.StatusBadRequest, InvalidParam("query parameter %q is not valid UTF-8", strings.ToValidUTF8(k, "?")).Body())
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// probeMethods are the methods Unmatched tries a path with.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// Unmatched answers a request that no pattern of mux took (register it as
// mux's "/" pattern). A path that mux serves under other methods gets the
// spec's 405 M_UNRECOGNIZED, with the Allow header RFC 9110 requires of a
// 405; any other request goes to notFound.
func Unmatched(mux *http.ServeMux, notFound http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		allowed := AllowedMethods(mux, r)
		if len(allowed) == 0 {
			notFound(w, r)
			return
		}
		MethodNotAllowed(w, r, allowed)
	}
}

// MethodNotAllowed answers the spec's 405 M_UNRECOGNIZED for a known path
// asked with another method than allowed, which the Allow header names.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	WriteJSON(w, http.StatusMethodNotAllowed, Unrecognized("method %s not allowed here", r.Method).Body())
}

// AllowedMethods lists the methods under which mux serves r's path with a
// pattern other than the catch-all "/" (HEAD with GET, as the mux does).
func AllowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allowed []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern == "" || pattern == "/" {
			continue
		}
		allowed = append(allowed, m)
		if m == http.MethodGet {
			allowed = append(allowed, http.MethodHead)
		}
	}
	return allowed
}
