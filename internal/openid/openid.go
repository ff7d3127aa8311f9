// Package openid issues OpenID tokens (POST /_matrix/client/v3/user/
// {userId}/openid/request_token) that a user hands to a third party, such
// as an integration manager, to prove who they are; the third party checks
// a token with the federation endpoint GET /_matrix/federation/v1/openid/
// userinfo, which answers with the token's user, on the client listener
// and, with federation on, the federation listener (FederationRoutes).
// Tokens are random, stored hashed, and expire after TokenLifetime.
package openid

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// TokenLifetime is how long an OpenID token is valid.
const TokenLifetime = time.Hour

// Migrations are the OpenID token table.
var Migrations = []storage.Migration{{
	Component: "openid",
	Version:   1,
	SQL: `
CREATE TABLE openid_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expires ON openid_tokens (expires_ts);
`,
}}

// Service issues and checks OpenID tokens.
type Service struct {
	db         *storage.DB
	acc        *accounts.Service
	serverName string
}

// New returns the service.
func New(db *storage.DB, acc *accounts.Service, serverName string) *Service {
	return &Service{db: db, acc: acc, serverName: serverName}
}

// Routes registers the client and federation endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /_matrix/client/v3/user/{userId}/openid/request_token", s.acc.Auth(s.requestToken))
	mux.HandleFunc("GET /_matrix/federation/v1/openid/userinfo", mxhttp.Handle(s.userInfo))
}

// FederationRoutes registers GET /_matrix/federation/v1/openid/userinfo
// with h, which must not add X-Matrix authentication: the third party
// asking is no homeserver, and the token in the query is what is checked.
func (s *Service) FederationRoutes(h func(pattern string, handler http.Handler)) {
	h("GET /_matrix/federation/v1/openid/userinfo", mxhttp.Handle(s.userInfo))
}

// Issue creates a token for the user.
func (s *Service) Issue(ctx context.Context, user id.UserID) (string, error) {
	tok := accounts.RandomToken("", 24)
	now := time.Now()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM openid_tokens WHERE expires_ts < $1", now.UnixMilli()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
			accounts.HashToken(tok), user, now.Add(TokenLifetime).UnixMilli())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("issue openid token: %w", err)
	}
	return tok, nil
}

// Lookup returns the user of a valid token ("" if unknown or expired).
func (s *Service) Lookup(ctx context.Context, tok string) (id.UserID, error) {
	var user id.UserID
	var expires int64
	err := s.db.QueryRow(ctx, "SELECT user_id, expires_ts FROM openid_tokens WHERE token_hash = $1", accounts.HashToken(tok)).Scan(&user, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up openid token: %w", err)
	}
	if expires < time.Now().UnixMilli() {
		return "", nil
	}
	return user, nil
}

func (s *Service) requestToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if id.UserID(r.PathValue("userId")) != sess.UserID {
		return nil, mxhttp.Forbidden("you may only request OpenID tokens for yourself")
	}
	var body map[string]any
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	tok, err := s.Issue(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"access_token":       tok,
		"token_type":         "Bearer",
		"matrix_server_name": s.serverName,
		"expires_in":         int64(TokenLifetime / time.Second),
	}, nil
}

func (s *Service) userInfo(w http.ResponseWriter, r *http.Request) (any, error) {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		return nil, mxhttp.UnknownToken("missing access_token")
	}
	user, err := s.Lookup(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	if user == "" {
		return nil, mxhttp.UnknownToken("unknown or expired OpenID token")
	}
	return map[string]id.UserID{"sub": user}, nil
}
