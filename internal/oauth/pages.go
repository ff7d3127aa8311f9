package oauth

import (
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/ratelimit"
)

//go:embed templates/*.html static/style.css
var assets embed.FS

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "signup", "consent", "device", "message", "account"}

var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range pageNames {
		m[name] = template.Must(template.New("layout.html").ParseFS(assets, "templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// sessionCookie names the browser session cookie.
const sessionCookie = "matrixos_session"

// browserSession is a browser's session with the pages: who logged in
// (nobody yet, while user is empty) and the CSRF token its forms carry.
type browserSession struct {
	id   string
	user id.UserID
	csrf string
}

// page is what every template gets.
type page struct {
	Title string
	CSRF  string
	User  id.UserID
	// Error is shown above the form; Notice is a neutral message.
	Error  string
	Notice string
	Next   string
	// Page-specific values.
	Client      *Client
	Scope       []string
	DeviceID    id.DeviceID
	RequestID   string
	UserCode    string
	RegToken    string
	Username    string
	TokenNeeded bool
	CanRegister bool
	Account     *accountView
	LinkURL     string
	LinkText    string
}

// pageRoutes registers the HTML pages.
func (s *Service) pageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+pathStyle, serveStyle)
	// Every authorization request is kept until it ends or expires; the
	// other pages start a browser session for a browser without one.
	mux.Handle("GET "+pathAuthorize, s.limitPending(s.getAuthorize, true))
	for pattern, h := range map[string]http.HandlerFunc{
		"GET " + pathConsent:                           s.getConsent,
		"POST " + pathConsent:                          s.postConsent,
		"GET " + pathLogin:                             s.getLogin,
		"POST " + pathLogin:                            s.postLogin,
		"GET " + pathSignup:                            s.getSignup,
		"POST " + pathSignup:                           s.postSignup,
		"POST " + pathLogout:                           s.postLogout,
		"GET " + pathDevice:                            s.getDevice,
		"POST " + pathDevice:                           s.postDevice,
		"GET " + pathAccount:                           s.getAccount,
		"POST " + pathAccount + "/profile":             s.postProfile,
		"POST " + pathAccount + "/sessions/end":        s.postEndSession,
		"POST " + pathAccount + "/deactivate":          s.postDeactivate,
		"POST " + pathAccount + "/cross-signing-reset": s.postCrossSigningReset,
	} {
		mux.Handle(pattern, s.limitPending(h, false))
	}
}

// limitPending bounds, per client IP, what anyone can make the server
// keep in its bounded stores of pending logins, so that a flood from one
// address is refused before it evicts other people's: each request when
// every is set (authorization requests), otherwise only a request that
// will start a browser session because it carries none. The requests
// count as registration requests (ratelimit.Register).
func (s *Service) limitPending(h http.HandlerFunc, every bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Limiter != nil && (every || !s.hasBrowserSession(r)) {
			if ok, wait := s.Limiter.Allow(ratelimit.Register, ratelimit.IPKey(r)); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(max(wait.Round(time.Second), time.Second).Seconds())))
				s.message(w, http.StatusTooManyRequests, "Too many requests", "Too many sign-ins were started from your network. Please wait a minute and try again.")
				return
			}
		}
		h(w, r)
	})
}

// hasBrowserSession reports whether the request's cookie names a live
// browser session, logged in or not.
func (s *Service) hasBrowserSession(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	if _, ok := s.browsers.get(c.Value); ok {
		return true
	}
	_, ok := s.anonymous.get(c.Value)
	return ok
}

func serveStyle(w http.ResponseWriter, r *http.Request) {
	b, _ := assets.ReadFile("static/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// secureHeaders forbids framing, sniffing, referrers and caching, and
// limits where forms may post to: this server and formTargets (the
// origins of the redirect URIs a consent form ends on).
func secureHeaders(w http.ResponseWriter, formTargets ...string) {
	h := w.Header()
	formAction := strings.Join(append([]string{"'self'"}, formTargets...), " ")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// render writes a page.
func (s *Service) render(w http.ResponseWriter, status int, name string, p page, formTargets ...string) {
	secureHeaders(w, formTargets...)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages[name].Execute(w, p); err != nil {
		s.log.Warn("render page", "page", name, "err", err)
	}
}

// message renders a page that only says something.
func (s *Service) message(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "message", page{Title: title, Notice: text})
}

// redirect sends the browser to a local page.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	secureHeaders(w)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// pageError renders err, an accounts error, as a page message and its
// status; anything else is logged and shown as an internal error.
func (s *Service) pageError(err error) (int, string) {
	if me, ok := mxhttp.AsError(err); ok {
		return me.Status, me.Message
	}
	s.log.Error("oauth page", "err", err)
	return http.StatusInternalServerError, "Something went wrong on the server. Please try again."
}

// browser returns the request's browser session, starting one (and
// setting its cookie) when it has none.
func (s *Service) browser(w http.ResponseWriter, r *http.Request) *browserSession {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if b, ok := s.browsers.get(c.Value); ok {
			return b
		}
		if b, ok := s.anonymous.get(c.Value); ok {
			return b
		}
	}
	return s.startBrowserSession(w, r, "")
}

// startBrowserSession starts a new session for user ("" for nobody yet)
// and sets its cookie. Logging in always starts a new one, so that a
// session id planted before the login is worth nothing.
func (s *Service) startBrowserSession(w http.ResponseWriter, r *http.Request, user id.UserID) *browserSession {
	b := &browserSession{id: accounts.RandomToken("", 32), user: user, csrf: accounts.RandomToken("", 32)}
	store, lifetime := s.browsers, browserSessionLifetime
	if user == "" {
		// Anyone can start these: kept apart, so that a flood of them
		// cannot push out the sessions of people who logged in.
		store, lifetime = s.anonymous, anonymousSessionLifetime
	}
	store.put(b.id, b)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: b.id, Path: "/",
		MaxAge: int(lifetime.Seconds()), HttpOnly: true,
		Secure: strings.HasPrefix(s.opts.BaseURL(), "https://"), SameSite: http.SameSiteLaxMode,
	})
	return b
}

// forgetBrowserSession drops a session from memory.
func (s *Service) forgetBrowserSession(b *browserSession) {
	s.browsers.delete(b.id)
	s.anonymous.delete(b.id)
}

// endBrowserSession logs the browser out.
func (s *Service) endBrowserSession(w http.ResponseWriter, b *browserSession) {
	s.forgetBrowserSession(b)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// loggedIn returns the browser session when a user is logged in to it
// and the account can still log in.
func (s *Service) loggedIn(w http.ResponseWriter, r *http.Request) (*browserSession, bool) {
	b := s.browser(w, r)
	if b.user == "" {
		return b, false
	}
	u, ok, err := s.accounts.GetUser(r.Context(), b.user)
	if err != nil || !ok || u.Deactivated || u.Locked {
		s.forgetBrowserSession(b)
		return s.startBrowserSession(w, r, ""), false
	}
	return b, true
}

// requireLogin returns the logged-in session, or sends the browser to
// the login page, to come back to the page it asked for.
func (s *Service) requireLogin(w http.ResponseWriter, r *http.Request) (*browserSession, bool) {
	b, ok := s.loggedIn(w, r)
	if !ok {
		redirect(w, r, pathLogin+"?next="+url.QueryEscape(r.URL.RequestURI()))
	}
	return b, ok
}

// loggedInForm is requireLogin and checkCSRF for a form of the account
// pages: the logged-in session, or false when it has answered.
func (s *Service) loggedInForm(w http.ResponseWriter, r *http.Request) (*browserSession, bool) {
	b, ok := s.requireLogin(w, r)
	return b, ok && s.checkCSRF(w, r, b)
}

// consentForm is loggedIn and checkCSRF for a consent form: the logged-in
// session, or false when it has answered, 403 with signedOut as the hint
// when the browser was signed out since it showed the form.
func (s *Service) consentForm(w http.ResponseWriter, r *http.Request, signedOut string) (*browserSession, bool) {
	b, ok := s.loggedIn(w, r)
	if !s.checkCSRF(w, r, b) {
		return nil, false
	}
	if !ok {
		s.message(w, http.StatusForbidden, "Signed out", signedOut)
		return nil, false
	}
	return b, true
}

// checkCSRF parses the form and reports whether its CSRF token is the
// browser session's; when not, it has answered 403.
func (s *Service) checkCSRF(w http.ResponseWriter, r *http.Request, b *browserSession) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err == nil {
		got := r.PostFormValue("csrf")
		if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(b.csrf)) == 1 {
			return true
		}
	}
	s.message(w, http.StatusForbidden, "Request refused",
		"This form has expired or did not come from this server. Go back, reload the page and try again.")
	return false
}

// localNext is where to go after logging in: next when it is one of this
// server's pages, the account page otherwise. It never leads off the
// server.
func localNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return pathAccount
	}
	if u.Path == pathAccount || strings.HasPrefix(u.Path, "/oauth2/") {
		return next
	}
	return pathAccount
}

func (s *Service) getLogin(w http.ResponseWriter, r *http.Request) {
	next := localNext(r.URL.Query().Get("next"))
	b, ok := s.loggedIn(w, r)
	if ok {
		redirect(w, r, next)
		return
	}
	s.render(w, http.StatusOK, "login", s.loginPage(b, next))
}

func (s *Service) loginPage(b *browserSession, next string) page {
	return page{Title: "Sign in", CSRF: b.csrf, Next: next, CanRegister: s.accounts.RegistrationMode() != accounts.RegistrationClosed}
}

func (s *Service) postLogin(w http.ResponseWriter, r *http.Request) {
	b := s.browser(w, r)
	if !s.checkCSRF(w, r, b) {
		return
	}
	next := localNext(r.PostFormValue("next"))
	username := trimmed(r, "username")
	uid, err := s.accounts.CheckLogin(r, username, r.PostFormValue("password"))
	if err != nil {
		status, msg := s.pageError(err)
		p := s.loginPage(b, next)
		p.Error, p.Username = msg, username
		s.render(w, status, "login", p)
		return
	}
	s.forgetBrowserSession(b)
	s.startBrowserSession(w, r, uid)
	redirect(w, r, next)
}

// postLogout ends the browser session (the header's Sign out button).
func (s *Service) postLogout(w http.ResponseWriter, r *http.Request) {
	b := s.browser(w, r)
	if !s.checkCSRF(w, r, b) {
		return
	}
	s.endBrowserSession(w, b)
	if next := r.PostFormValue("next"); next != "" {
		// Signed out on a consent page: sign in again for the same request.
		redirect(w, r, pathLogin+"?next="+url.QueryEscape(localNext(next)))
		return
	}
	redirect(w, r, pathLogin)
}

func (s *Service) signupPage(b *browserSession, next string) page {
	return page{Title: "Create account", CSRF: b.csrf, Next: next, TokenNeeded: s.accounts.RegistrationMode() == accounts.RegistrationByToken}
}

func (s *Service) getSignup(w http.ResponseWriter, r *http.Request) {
	next := localNext(r.URL.Query().Get("next"))
	if s.accounts.RegistrationMode() == accounts.RegistrationClosed {
		s.message(w, http.StatusForbidden, "Registration is closed", "New accounts cannot be created on this server. Ask its administrator for one.")
		return
	}
	b := s.browser(w, r)
	p := s.signupPage(b, next)
	p.RegToken = r.URL.Query().Get("token") // a registration token handed out as a link
	s.render(w, http.StatusOK, "signup", p)
}

func (s *Service) postSignup(w http.ResponseWriter, r *http.Request) {
	b := s.browser(w, r)
	if !s.checkCSRF(w, r, b) {
		return
	}
	next := localNext(r.PostFormValue("next"))
	username := trimmed(r, "username")
	p := s.signupPage(b, next)
	p.Username = username
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		p.Error = "The two passwords are not the same."
		s.render(w, http.StatusBadRequest, "signup", p)
		return
	}
	uid, err := s.accounts.RegisterUser(r, username, password, trimmed(r, "token"))
	if err != nil {
		var status int
		status, p.Error = s.pageError(err)
		if errors.Is(err, accounts.ErrUserExists) {
			p.Error = "That username is taken. Choose another."
		}
		s.render(w, status, "signup", p)
		return
	}
	s.forgetBrowserSession(b)
	s.startBrowserSession(w, r, uid)
	redirect(w, r, next)
}
