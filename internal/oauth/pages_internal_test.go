package oauth

import (
	"log/slog"
	"net/http/httptest"
	"testing"
)

// TestAnonymousSessionsKeptApart checks that browser sessions nobody
// logged in to, which anyone can start, cannot push out logged-in ones.
func TestAnonymousSessionsKeptApart(t *testing.T) {
	s := New(nil, slog.Default(), nil, Options{BaseURL: func() string { return "https://example.org" }})
	s.anonymous = newExpiring[*browserSession](anonymousSessionLifetime, 10)
	r := httptest.NewRequest("GET", "/oauth2/login", nil)
	alice := s.startBrowserSession(httptest.NewRecorder(), r, "@alice:example.org")
	for range 100 {
		s.startBrowserSession(httptest.NewRecorder(), r, "")
	}
	if b, ok := s.browsers.get(alice.id); !ok || b.user != "@alice:example.org" {
		t.Fatal("a flood of anonymous sessions pushed out a logged-in one")
	}
	if n := len(s.anonymous.items); n > 10 {
		t.Fatalf("%d anonymous sessions kept, bound is 10", n)
	}
	w := httptest.NewRecorder()
	s.startBrowserSession(w, r, "")
	if c := w.Result().Cookies(); len(c) != 1 || !c[0].Secure || !c[0].HttpOnly || c[0].MaxAge != int(anonymousSessionLifetime.Seconds()) {
		t.Fatalf("session cookie %+v", c)
	}
}
