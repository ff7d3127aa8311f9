package mxhttp_test

import (
	"net/http"
	"net/http/httptest"
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
