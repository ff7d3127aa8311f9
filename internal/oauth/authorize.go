package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
)

// authRequest is an authorization request waiting for the user's login
// and consent.
type authRequest struct {
	client        *Client
	redirectURI   string
	responseMode  string // query or fragment
	state         string
	nonce         string
	codeChallenge string
	scope         grantScope
}

// codeGrant is an authorization code: what the user consented to, until
// the client exchanges it. Once exchanged it stays, marked used, until it
// expires, so that a second exchange can end the session the first made
// (RFC 6749 section 4.1.2).
type codeGrant struct {
	authRequest
	user id.UserID
	used bool
}

// getAuthorize is the authorization endpoint. Until the client and its
// redirect URI check out, errors are shown to the user, never sent to a
// redirect URI; after, they go back to the client as RFC 6749 says.
func (s *Service) getAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c, err := s.client(r.Context(), q.Get("client_id"))
	if err == errNoClient {
		s.message(w, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered with this server.")
		return
	}
	if err != nil {
		s.log.Error("authorize: load client", "err", err)
		s.message(w, http.StatusInternalServerError, "Server error", "Something went wrong on the server. Please try again.")
		return
	}
	redirectURI, ok := c.registeredRedirect(q.Get("redirect_uri"))
	if !ok {
		s.message(w, http.StatusBadRequest, "Invalid redirect", "The application asked to send you to an address it has not registered. Nothing was sent to it.")
		return
	}
	req := &authRequest{client: c, redirectURI: redirectURI, state: q.Get("state"), nonce: q.Get("nonce"), responseMode: q.Get("response_mode")}
	fail := func(code, description string) {
		if req.responseMode != "fragment" {
			req.responseMode = "query"
		}
		s.redirectToClient(w, r, req, url.Values{"error": {code}, "error_description": {description}})
	}
	switch req.responseMode {
	case "":
		req.responseMode = "query"
	case "query", "fragment":
	default:
		fail("invalid_request", "response_mode must be query or fragment")
		return
	}
	if q.Get("response_type") != "code" || !c.allows(grantAuthorizationCode) {
		fail("unsupported_response_type", "only the code response type of the authorization code grant is supported")
		return
	}
	if q.Get("code_challenge_method") != "S256" || !validPKCEValue(q.Get("code_challenge")) {
		fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
		return
	}
	req.codeChallenge = q.Get("code_challenge")
	if req.scope, err = parseScope(q.Get("scope")); err != nil {
		fail("invalid_scope", err.Error())
		return
	}
	rid := accounts.RandomToken("", 24)
	s.requests.put(rid, req)
	next := pathConsent + "?request=" + rid
	if _, loggedIn := s.loggedIn(w, r); loggedIn {
		redirect(w, r, next)
		return
	}
	if q.Get("prompt") == "create" && s.accounts.RegistrationMode() != accounts.RegistrationClosed {
		redirect(w, r, pathSignup+"?next="+url.QueryEscape(next))
		return
	}
	redirect(w, r, pathLogin+"?next="+url.QueryEscape(next))
}

// validPKCEValue checks a code challenge or verifier: 43 to 128
// characters of [A-Za-z0-9-._~] (RFC 7636 section 4.1).
func validPKCEValue(v string) bool {
	return len(v) >= 43 && len(v) <= 128 && validDeviceID(v)
}

// pkceMatches reports whether verifier hashes to the S256 challenge.
func pkceMatches(verifier, challenge string) bool {
	if !validPKCEValue(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// redirectToClient sends the browser to the request's registered
// redirect URI with params, in its query or fragment.
func (s *Service) redirectToClient(w http.ResponseWriter, r *http.Request, req *authRequest, params url.Values) {
	if req.state != "" {
		params.Set("state", req.state)
	}
	u, _ := url.Parse(req.redirectURI) // checked at registration
	// The redirect carries the code: neither cached nor sent as a referrer,
	// in the fragment as in the query.
	secureHeaders(w)
	if req.responseMode == "fragment" {
		u.Fragment = ""
		u.RawFragment = ""
		http.Redirect(w, r, u.String()+"#"+params.Encode(), http.StatusSeeOther)
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// formTarget is the CSP form-action source that lets a form's redirect
// reach uri.
func formTarget(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if u.Host == "" {
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}

func (s *Service) getConsent(w http.ResponseWriter, r *http.Request) {
	b, ok := s.requireLogin(w, r)
	if !ok {
		return
	}
	rid := r.URL.Query().Get("request")
	req, found := s.requests.get(rid)
	if !found {
		s.message(w, http.StatusBadRequest, "Request expired", "This sign-in request has expired or was already answered. Go back to the application and start again.")
		return
	}
	s.render(w, http.StatusOK, "consent", s.consentPage(b, req.client, req.scope, rid, ""), formTarget(req.redirectURI))
}

// consentPage describes what a client asks for. Its Next is the page
// itself, so that signing out there to switch accounts comes back to the
// same request.
func (s *Service) consentPage(b *browserSession, c *Client, scope grantScope, rid, userCode string) page {
	next := pathConsent + "?request=" + url.QueryEscape(rid)
	if userCode != "" {
		next = pathDevice + "?user_code=" + url.QueryEscape(userCode)
	}
	return page{Title: "Allow access", CSRF: b.csrf, User: b.user, Client: c, DeviceID: scope.device,
		RequestID: rid, UserCode: userCode, Scope: scopeLines(scope), Next: next}
}

func (s *Service) postConsent(w http.ResponseWriter, r *http.Request) {
	b, ok := s.consentForm(w, r, "You were signed out. Go back to the application and start again.")
	if !ok {
		return
	}
	req, found := s.requests.take(r.PostFormValue("request"))
	if !found {
		s.message(w, http.StatusBadRequest, "Request expired", "This sign-in request has expired or was already answered. Go back to the application and start again.")
		return
	}
	if r.PostFormValue("decision") != "allow" {
		s.redirectToClient(w, r, req, url.Values{"error": {"access_denied"}, "error_description": {"the user denied access"}})
		return
	}
	code := accounts.RandomToken("", 32)
	s.codes.put(code, &codeGrant{authRequest: *req, user: b.user})
	s.redirectToClient(w, r, req, url.Values{"code": {code}})
}

// scopeLines describes granted scope tokens for people.
func scopeLines(g grantScope) []string {
	var out []string
	for _, tok := range g.granted {
		switch {
		case tok == scopeAPI || tok == unstableScopeAPI:
			out = append(out, "Read and send your messages, and act as you in your rooms")
		case strings.Contains(tok, ":device:"):
			out = append(out, "Use the session "+string(g.device))
		}
	}
	return out
}
