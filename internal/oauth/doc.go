// Package oauth is the node's own OAuth 2.0 authorization server, the
// Matrix "OAuth 2.0 API" (spec v1.15 and later): server metadata
// (/_matrix/client/v1/auth_metadata, RFC 8414), dynamic client
// registration (RFC 7591 with the Matrix client metadata and redirect URI
// rules), the authorization code grant with PKCE S256 (RFC 7636), refresh
// tokens with rotation and reuse detection, revocation (RFC 7009) and the
// device authorization grant (RFC 8628).
//
// An OAuth session is an accounts device: the tokens are those of
// accounts.NewSession, so every endpoint accepts them, and the device's
// oauth_sessions row records the client that holds it. The login,
// registration, consent, device and account pages are server-rendered
// HTML (html/template, embedded), work without JavaScript, carry a CSRF
// token tied to a server-side browser session, forbid framing, and
// redirect only to a client's registered redirect URIs. Credentials typed
// into them are checked by accounts, under the same rate limits as /login.
//
// Pending authorization requests, codes, device grants and browser
// sessions live in memory, each with a short lifetime: a restart asks the
// user to start the login again. Clients and sessions are stored.
//
// It is written on the standard library rather than zitadel/oidc or
// ory/fosite: the Matrix profile is small (public clients only, PKCE S256
// only, an ID token only for clients that ask for openid), and the tokens
// must be the accounts service's.
package oauth
