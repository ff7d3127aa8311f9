package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// tokenError is an error response of the token endpoint.
type tokenError struct {
	status            int
	code, description string
}

func (e *tokenError) Error() string { return e.code + ": " + e.description }

func invalidGrant(description string) error {
	return &tokenError{http.StatusBadRequest, "invalid_grant", description}
}

func invalidRequest(description string) error {
	return &tokenError{http.StatusBadRequest, "invalid_request", description}
}

var errInvalidClient = &tokenError{http.StatusUnauthorized, "invalid_client", "unknown client"}

// tokenResponse is a successful token endpoint answer (RFC 6749 5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
}

// parseTokenForm reads a form-encoded token, revocation or device
// authorization request and the client it names.
func (s *Service) parseTokenForm(w http.ResponseWriter, r *http.Request) (*Client, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("the body must be application/x-www-form-urlencoded")
	}
	c, err := s.client(r.Context(), r.PostFormValue("client_id"))
	if errors.Is(err, errNoClient) {
		return nil, errInvalidClient
	}
	return c, err
}

// writeTokenResult answers a token endpoint request.
func (s *Service) writeTokenResult(w http.ResponseWriter, res *tokenResponse, err error) {
	var te *tokenError
	switch {
	case err == nil:
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, http.StatusOK, res)
	case errors.As(err, &te):
		writeOAuthError(w, te.status, te.code, te.description)
	default:
		s.serverError(w, err)
	}
}

// postToken is the token endpoint: the authorization code, refresh token
// and device code grants, for public clients.
func (s *Service) postToken(w http.ResponseWriter, r *http.Request) {
	c, err := s.parseTokenForm(w, r)
	if err != nil {
		s.writeTokenResult(w, nil, err)
		return
	}
	grant := r.PostFormValue("grant_type")
	if grant != grantAuthorizationCode && grant != grantRefreshToken && grant != grantDeviceCode {
		s.writeTokenResult(w, nil, &tokenError{http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("unsupported grant_type %q", grant)})
		return
	}
	if !c.allows(grant) {
		s.writeTokenResult(w, nil, &tokenError{http.StatusBadRequest, "unauthorized_client", "the client did not register the grant type " + grant})
		return
	}
	var res *tokenResponse
	switch grant {
	case grantAuthorizationCode:
		res, err = s.exchangeCode(r, c)
	case grantRefreshToken:
		res, err = s.refresh(r, c)
	case grantDeviceCode:
		res, err = s.exchangeDeviceCode(r, c)
	}
	s.writeTokenResult(w, res, err)
}

// exchangeCode redeems an authorization code with its PKCE verifier.
func (s *Service) exchangeCode(r *http.Request, c *Client) (*tokenResponse, error) {
	code := r.PostFormValue("code")
	if code == "" {
		return nil, invalidRequest("missing code")
	}
	var grant codeGrant
	var mismatch error
	var reused bool
	found := s.codes.update(code, func(g **codeGrant) {
		grant = **g
		// The client, redirect URI and verifier are checked before the
		// code counts as used: a bad attempt with a leaked code is
		// refused and leaves the code, and the session it would start,
		// alone. Only a request that would have redeemed it uses it.
		if mismatch = grant.mismatch(r, c); mismatch == nil {
			reused, (*g).used = grant.used, true
		}
	})
	switch {
	case !found:
		return nil, invalidGrant("unknown or expired code")
	case mismatch != nil:
		return nil, mismatch
	case reused:
		// A code redeemed twice was copied: end what the first made
		// (RFC 6749 section 4.1.2).
		if err := s.accounts.DeleteDevice(r.Context(), grant.user, grant.scope.device); err != nil {
			return nil, err
		}
		return nil, invalidGrant("the code was already used; the session it started has been ended")
	}
	return s.issueTokens(r.Context(), c, grant.user, grant.scope, grant.nonce)
}

// mismatch checks a token request against the code it redeems: the
// client it was issued to, the redirect URI of the authorization request
// and the PKCE verifier of its challenge.
func (g *codeGrant) mismatch(r *http.Request, c *Client) error {
	switch {
	case g.client.ID != c.ID:
		return invalidGrant("the code was issued to another client")
	case r.PostFormValue("redirect_uri") != g.redirectURI:
		return invalidGrant("redirect_uri does not match the authorization request")
	case !pkceMatches(r.PostFormValue("code_verifier"), g.codeChallenge):
		return invalidGrant("code_verifier does not match the code challenge")
	}
	return nil
}

// issueTokens starts (or restarts) the OAuth session: the device of the
// scope, with a new access and refresh token, held by the client, and an
// ID token when the scope has openid.
func (s *Service) issueTokens(ctx context.Context, c *Client, uid id.UserID, scope grantScope, nonce string) (*tokenResponse, error) {
	u, ok, err := s.accounts.GetUser(ctx, uid)
	if err != nil {
		return nil, err
	}
	if !ok || u.Deactivated || u.Locked {
		return nil, invalidGrant("the account can no longer log in")
	}
	name := c.Name()
	res, err := s.accounts.NewRefreshableSession(ctx, uid, scope.device, &name, s.opts.AccessTokenLifetime)
	if err != nil {
		return nil, err
	}
	if err := s.recordSession(ctx, session{UserID: uid, DeviceID: scope.device, ClientID: c.ID, Scope: scope.String()}); err != nil {
		return nil, err
	}
	if err := s.markUsed(ctx, c, time.Now()); err != nil {
		return nil, err
	}
	s.log.Info("oauth session started", "user_id", uid, "device_id", scope.device, "client_id", c.ID)
	out := &tokenResponse{AccessToken: res.AccessToken, TokenType: "Bearer", ExpiresIn: res.ExpiresInMS / 1000,
		RefreshToken: res.RefreshToken, Scope: scope.String()}
	if s.idTokens != nil && slices.Contains(scope.granted, scopeOpenID) {
		if out.IDToken, err = s.idTokens.sign(s.opts.BaseURL()+"/", c.ID, uid, nonce, time.Now()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// refresh rotates a refresh token of one of the client's sessions.
func (s *Service) refresh(r *http.Request, c *Client) (*tokenResponse, error) {
	ctx := r.Context()
	tok := r.PostFormValue("refresh_token")
	if tok == "" {
		return nil, invalidRequest("missing refresh_token")
	}
	uid, dev, found, err := s.accounts.TokenDevice(ctx, tok)
	if err != nil {
		return nil, err
	}
	var scope string
	if found {
		holder, sc, err := s.sessionOf(ctx, uid, dev)
		if err != nil {
			return nil, err
		}
		if holder != c.ID {
			return nil, invalidGrant("the refresh token was not issued to this client")
		}
		scope = sc
	}
	// An unknown token may be one already exchanged: RotateRefreshToken
	// then ends its session.
	res, err := s.accounts.RotateRefreshToken(ctx, tok, s.opts.AccessTokenLifetime)
	if errors.Is(err, accounts.ErrRefreshTokenReused) {
		return nil, invalidGrant("the refresh token was already used; the session has been ended")
	}
	if me, ok := mxhttp.AsError(err); ok && me.Code == "M_UNKNOWN_TOKEN" {
		return nil, invalidGrant("unknown refresh token")
	}
	if err != nil {
		return nil, err
	}
	return &tokenResponse{AccessToken: res.AccessToken, TokenType: "Bearer", ExpiresIn: res.ExpiresInMS / 1000,
		RefreshToken: res.RefreshToken, Scope: scope}, nil
}

// postRevoke is the revocation endpoint (RFC 7009). Revoking either
// token of a session ends the session: the device is deleted. A token
// that is unknown (or already revoked) is answered 200 all the same.
func (s *Service) postRevoke(w http.ResponseWriter, r *http.Request) {
	c, err := s.parseTokenForm(w, r)
	if err == nil {
		err = s.revoke(r.Context(), c, r.PostFormValue("token"))
	}
	var te *tokenError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{})
	case errors.As(err, &te):
		writeOAuthError(w, te.status, te.code, te.description)
	default:
		s.serverError(w, err)
	}
}

func (s *Service) revoke(ctx context.Context, c *Client, tok string) error {
	if tok == "" {
		return invalidRequest("missing token")
	}
	uid, dev, found, err := s.accounts.TokenDevice(ctx, tok)
	if err != nil || !found {
		return err
	}
	holder, _, err := s.sessionOf(ctx, uid, dev)
	if err != nil {
		return err
	}
	if holder != c.ID {
		return &tokenError{http.StatusBadRequest, "unauthorized_client", "the token was not issued to this client"}
	}
	s.log.Info("oauth session revoked", "user_id", uid, "device_id", dev, "client_id", c.ID)
	return s.accounts.DeleteDevice(ctx, uid, dev)
}
