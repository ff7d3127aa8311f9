package mxhttp_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

func TestAccessToken(t *testing.T) {
	for _, tc := range []struct{ header, query, want string }{
		{"Bearer abc", "", "abc"},
		{"bearer abc", "", "abc"},
		{"BEARER  abc ", "", "abc"},
		{"Basic Zm9v", "", ""},
		{"Bearer", "", ""},
		{"", "xyz", "xyz"},
		{"Bearer abc", "xyz", "abc"},
	} {
		r := httptest.NewRequest("GET", "/x?access_token="+tc.query, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := mxhttp.AccessToken(r); got != tc.want {
			t.Errorf("AccessToken(%q, %q) = %q, want %q", tc.header, tc.query, got, tc.want)
		}
	}
}

func TestCheckRequest(t *testing.T) {
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/a/b?c=d", true},
		{"/%E2%82%AC?q=%E2%82%AC", true},
		{"/a%00b", false},
		{"/%FF", false},
		{"/x?y=%FF", false},
		{"/x?%00=1", false},
	} {
		reached := false
		h := mxhttp.CheckRequest(httpHandler(func() { reached = true }))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.target, nil))
		if reached != tc.ok || (!tc.ok && rec.Code != 400) {
			t.Errorf("%s: reached %v, status %d", tc.target, reached, rec.Code)
		}
	}
}

type httpHandler func()

func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h() }

// TestUnmatched checks the answer for a request no route took: 405
// M_UNRECOGNIZED with an Allow header for a known path (Complement's
// TestUnknownEndpoints), 404 from the given handler otherwise.
func TestUnmatched(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {}
	mux.HandleFunc("GET /a", ok)
	mux.HandleFunc("POST /a", ok)
	mux.HandleFunc("PUT /b/{id}", ok)
	mux.HandleFunc("/", mxhttp.Unmatched(mux, mxhttp.NotFoundHandler))
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"PUT", "/a", 405, "GET, HEAD, POST"},
		{"DELETE", "/a", 405, "GET, HEAD, POST"},
		{"GET", "/b/x", 405, "PUT"},
		{"GET", "/c", 404, ""},
		{"PUT", "/b", 404, ""},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q", tc.method, tc.path, w.Code, w.Header().Get("Allow"), tc.status, tc.allow)
		}
		if !strings.Contains(w.Body.String(), `"M_UNRECOGNIZED"`) {
			t.Errorf("%s %s: body %s, want M_UNRECOGNIZED", tc.method, tc.path, w.Body)
		}
	}
}
