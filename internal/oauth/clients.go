package oauth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// The grant types this server supports.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// ClientMetadata is the client metadata of RFC 7591 that the Matrix
// specification gives a meaning to. Other fields, localized ones
// included, are dropped.
type ClientMetadata struct {
	ClientURI               string   `json:"client_uri"`
	ClientName              string   `json:"client_name,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	TOSURI                  string   `json:"tos_uri,omitempty"`
	PolicyURI               string   `json:"policy_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	ResponseTypes           []string `json:"response_types"`
	GrantTypes              []string `json:"grant_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	ApplicationType         string   `json:"application_type"`
}

// Client is a registered client.
type Client struct {
	ID       string `json:"client_id"`
	IssuedAt int64  `json:"client_id_issued_at"`
	ClientMetadata

	// lastUsed is when the client last started a session, in Unix
	// seconds (0: never).
	lastUsed int64
}

// Name is what the pages call the client: its name, or its host.
func (c *Client) Name() string {
	if c.ClientName != "" {
		return c.ClientName
	}
	if u, err := url.Parse(c.ClientURI); err == nil && u.Host != "" {
		return u.Host
	}
	return c.ID
}

// allows reports whether the client registered grant type g.
func (c *Client) allows(g string) bool { return slices.Contains(c.GrantTypes, g) }

// registeredRedirect returns the registered redirect URI that uri
// matches: exactly, or for a loopback URI of a native client, with any
// port (RFC 8252 section 7.3), as native apps listen on a port they
// cannot know in advance.
func (c *Client) registeredRedirect(uri string) (string, bool) {
	if slices.Contains(c.RedirectURIs, uri) {
		return uri, true
	}
	u, err := url.Parse(uri)
	if err != nil || c.ApplicationType != "native" || !isLoopback(u) {
		return "", false
	}
	for _, reg := range c.RedirectURIs {
		ru, err := url.Parse(reg)
		if err == nil && isLoopback(ru) && ru.Hostname() == u.Hostname() && ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return uri, true
		}
	}
	return "", false
}

// metadataError is an RFC 7591 registration error.
type metadataError struct {
	code, description string
}

func (e *metadataError) Error() string { return e.code + ": " + e.description }

func invalidMetadata(format string, args ...any) error {
	return &metadataError{"invalid_client_metadata", fmt.Sprintf(format, args...)}
}

func invalidRedirect(format string, args ...any) error {
	return &metadataError{"invalid_redirect_uri", fmt.Sprintf(format, args...)}
}

// validate checks m against the Matrix rules and fills its defaults.
func (m *ClientMetadata) validate() error {
	base, err := clientURL("client_uri", m.ClientURI, nil)
	if err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{
		{"logo_uri", m.LogoURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI},
	} {
		if f.value == "" {
			continue
		}
		u, err := clientURL(f.name, f.value, base)
		if err != nil {
			return err
		}
		if !sameSite(u.Hostname(), base.Hostname()) {
			return invalidMetadata("%s must be on the host of client_uri or a subdomain of it", f.name)
		}
	}
	if len(m.ClientName) > 256 {
		return invalidMetadata("client_name is too long")
	}
	switch m.ApplicationType {
	case "":
		m.ApplicationType = "web"
	case "web", "native":
	default:
		return invalidMetadata("application_type must be web or native")
	}
	switch m.TokenEndpointAuthMethod {
	case "":
		m.TokenEndpointAuthMethod = "none"
	case "none":
	default:
		return invalidMetadata("only public clients are supported: token_endpoint_auth_method must be none")
	}
	// Values the server does not understand are ignored, as RFC 7591 says.
	if m.GrantTypes == nil {
		m.GrantTypes = []string{grantAuthorizationCode}
	}
	m.GrantTypes = slices.DeleteFunc(slices.Clone(m.GrantTypes), func(g string) bool {
		return g != grantAuthorizationCode && g != grantRefreshToken && g != grantDeviceCode
	})
	if m.ResponseTypes == nil {
		m.ResponseTypes = []string{"code"}
	}
	m.ResponseTypes = slices.DeleteFunc(slices.Clone(m.ResponseTypes), func(t string) bool { return t != "code" })
	if slices.Contains(m.GrantTypes, grantAuthorizationCode) {
		if len(m.RedirectURIs) == 0 {
			return invalidRedirect("the authorization code grant needs at least one redirect URI")
		}
		if !slices.Contains(m.ResponseTypes, "code") {
			return invalidMetadata("the authorization code grant needs the code response type")
		}
	}
	if len(m.RedirectURIs) > 20 {
		return invalidRedirect("too many redirect URIs")
	}
	for _, uri := range m.RedirectURIs {
		if err := checkRedirectURI(uri, m.ApplicationType, base); err != nil {
			return err
		}
	}
	return nil
}

// clientURL parses one of a client's URLs: https, with a host and no
// user information. A client served from this machine (a client_uri on
// http://localhost, 127.0.0.1 or [::1], such as Element Web run for
// development) may use http there: base, when not nil, is its client_uri,
// whose loopback host the URL may then share.
func clientURL(field, s string, base *url.URL) (*url.URL, error) {
	if s == "" {
		return nil, invalidMetadata("missing %s", field)
	}
	u, err := url.Parse(s)
	if err != nil || len(s) > 2048 {
		return nil, invalidMetadata("%s is not a valid URL", field)
	}
	if base == nil {
		base = u
	}
	if u.Host == "" || u.User != nil || u.Scheme != "https" && !sameLoopback(u, base) {
		return nil, invalidMetadata("%s must be an https URL without user information", field)
	}
	return u, nil
}

// sameLoopback reports whether u is an http URL on the loopback host of
// base, itself an http loopback URL.
func sameLoopback(u, base *url.URL) bool {
	return isLoopback(u) && isLoopback(base) && u.Hostname() == base.Hostname()
}

// sameSite reports whether host is site or a subdomain of it.
func sameSite(host, site string) bool {
	host, site = strings.ToLower(host), strings.ToLower(site)
	return host == site || strings.HasSuffix(host, "."+site)
}

// checkRedirectURI applies the spec's redirect URI validation. A web
// client redirects to https URLs on its own site (or to its own loopback
// host, when it is served from there); a native client may also use a
// private-use scheme named after its site in reverse (such as
// com.example.app:/callback, without an authority) or an http URL on a
// loopback address.
func checkRedirectURI(uri, appType string, base *url.URL) error {
	site := base.Hostname()
	u, err := url.Parse(uri)
	if err != nil || len(uri) > 2048 {
		return invalidRedirect("%q is not a valid URL", uri)
	}
	if u.Fragment != "" || strings.Contains(uri, "#") {
		return invalidRedirect("%q has a fragment", uri)
	}
	if u.User != nil {
		return invalidRedirect("%q has user information", uri)
	}
	switch {
	case u.Scheme == "https":
		if !sameSite(u.Hostname(), site) {
			return invalidRedirect("%q is not on the host of client_uri or a subdomain of it", uri)
		}
		return nil
	case appType != "native":
		if sameLoopback(u, base) {
			return nil
		}
		return invalidRedirect("a web client's redirect URIs must use https")
	case u.Scheme == "http":
		if !isLoopback(u) {
			return invalidRedirect("%q: a native client's http redirect URIs must be on localhost, 127.0.0.1 or [::1]", uri)
		}
		return nil
	case strings.Contains(u.Scheme, "."):
		if u.Host != "" || u.Opaque != "" {
			return invalidRedirect("%q: a private-use scheme URI must have no authority and an absolute path", uri)
		}
		if !sameSite(reverseDomain(u.Scheme), site) {
			return invalidRedirect("%q: a private-use scheme must be the host of client_uri (or a subdomain) in reverse", uri)
		}
		return nil
	}
	return invalidRedirect("%q: unsupported redirect URI scheme", uri)
}

// isLoopback reports whether u is an http URL on a loopback host.
func isLoopback(u *url.URL) bool {
	if u.Scheme != "http" || u.User != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// reverseDomain turns com.example.app into app.example.com.
func reverseDomain(s string) string {
	parts := strings.Split(s, ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// How long a registered client is kept: one that never started a
// session is removed a day after it registered (registration is open to
// anyone, so unused registrations must not pile up), one that did is
// removed once it has no session left and started none for 90 days. An
// application whose registration was removed registers again, as it does
// for a new server.
const (
	unusedClientLifetime = 24 * time.Hour
	idleClientLifetime   = 90 * 24 * time.Hour
	// Registration prunes once per clientPruneInterval, and after every
	// clientPruneEvery registrations in between, so that the table
	// holds at most maxUnusedClients+clientPruneEvery unused ones.
	clientPruneInterval = time.Hour
	clientPruneEvery    = 1000
)

// maxUnusedClients bounds the registrations nobody used yet: beyond it,
// the oldest are removed first. A variable for the tests.
var maxUnusedClients = 10000

// maxClientMetadata bounds a registration's client metadata.
const maxClientMetadata = 16 << 10

// postRegister is the dynamic client registration endpoint (RFC 7591).
// Anyone may register a client: the route counts against the client
// IP's registration limit (ratelimit's route table), and registrations
// nobody uses are pruned.
func (s *Service) postRegister(w http.ResponseWriter, r *http.Request) {
	body, err := mxhttp.ReadBody(r, maxClientMetadata)
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body could not be read")
		return
	}
	var m ClientMetadata
	if err := json.Unmarshal(body, &m); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body is not a JSON object of client metadata")
		return
	}
	if err := m.validate(); err != nil {
		var me *metadataError
		if errors.As(err, &me) {
			writeOAuthError(w, http.StatusBadRequest, me.code, me.description)
			return
		}
		s.serverError(w, err)
		return
	}
	if err := s.pruneClients(r.Context(), time.Now()); err != nil {
		s.log.Warn("oauth clients not pruned", "err", err)
	}
	c := &Client{ID: accounts.RandomToken("", 16), IssuedAt: time.Now().Unix(), ClientMetadata: m}
	if err := s.storeClient(r.Context(), c); err != nil {
		s.serverError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Service) storeClient(ctx context.Context, c *Client) error {
	b, err := json.Marshal(c.ClientMetadata)
	if err != nil {
		return err
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES ($1, $2, $3)", c.ID, string(b), c.IssuedAt)
		return err
	})
}

// pruneClients removes the registrations that unusedClientLifetime and
// idleClientLifetime say are no longer kept, at most once per
// clientPruneInterval.
func (s *Service) pruneClients(ctx context.Context, now time.Time) error {
	last := s.lastPrune.Load()
	due := now.Unix()-last >= int64(clientPruneInterval.Seconds()) || s.sincePrune.Add(1) >= clientPruneEvery
	if !due || !s.lastPrune.CompareAndSwap(last, now.Unix()) {
		return nil
	}
	s.sincePrune.Store(0)
	unused := now.Add(-unusedClientLifetime).Unix()
	idle := now.Add(-idleClientLifetime).Unix()
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM oauth_clients
			WHERE client_id NOT IN (SELECT client_id FROM oauth_sessions)
			AND ((last_used_ts = 0 AND created_ts < $1) OR (last_used_ts > 0 AND last_used_ts < $2))`, unused, idle)
		if err != nil {
			return fmt.Errorf("prune oauth clients: %w", err)
		}
		n, _ := res.RowsAffected()
		// Beyond maxUnusedClients unused registrations, the older ones go.
		var cutoff int64
		err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT created_ts FROM oauth_clients WHERE last_used_ts = 0
			ORDER BY created_ts DESC LIMIT 1 OFFSET %d`, maxUnusedClients)).Scan(&cutoff)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("prune oauth clients: %w", err)
		default:
			res, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE last_used_ts = 0 AND created_ts <= $1
				AND client_id NOT IN (SELECT client_id FROM oauth_sessions)`, cutoff)
			if err != nil {
				return fmt.Errorf("prune oauth clients: %w", err)
			}
			d, _ := res.RowsAffected()
			n += d
		}
		if n > 0 {
			s.log.Info("oauth clients pruned", "count", n)
		}
		return nil
	})
}

// markUsed records that c started a session now, once a day at most.
func (s *Service) markUsed(ctx context.Context, c *Client, now time.Time) error {
	if now.Unix()-c.lastUsed < int64((24 * time.Hour).Seconds()) {
		return nil
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE oauth_clients SET last_used_ts = $1 WHERE client_id = $2", now.Unix(), c.ID)
		if err != nil {
			return fmt.Errorf("mark oauth client %s used: %w", c.ID, err)
		}
		return nil
	})
}

// errNoClient is the error for an unknown client_id.
var errNoClient = errors.New("unknown client")

// client loads a registered client.
func (s *Service) client(ctx context.Context, clientID string) (*Client, error) {
	if clientID == "" || len(clientID) > 255 {
		return nil, errNoClient
	}
	c := &Client{ID: clientID}
	var meta string
	err := s.db.QueryRow(ctx, "SELECT metadata, created_ts, last_used_ts FROM oauth_clients WHERE client_id = $1", clientID).Scan(&meta, &c.IssuedAt, &c.lastUsed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoClient
	}
	if err != nil {
		return nil, fmt.Errorf("load client %s: %w", clientID, err)
	}
	if err := json.Unmarshal([]byte(meta), &c.ClientMetadata); err != nil {
		return nil, fmt.Errorf("client %s metadata: %w", clientID, err)
	}
	return c, nil
}
