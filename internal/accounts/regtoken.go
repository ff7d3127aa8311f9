package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// RegistrationToken is a token that lets someone register while open
// registration is off.
type RegistrationToken struct {
	Token       string `json:"token"`
	UsesAllowed *int64 `json:"uses_allowed"`
	Pending     int64  `json:"pending"`
	Completed   int64  `json:"completed"`
	ExpiryTime  *int64 `json:"expiry_time"`
}

const tokenChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// RandomRegistrationToken returns n characters drawn evenly from the
// characters a registration token may hold.
func RandomRegistrationToken(n int) string { return RandomString(tokenChars, n) }

// CreateRegistrationToken stores a new registration token; an empty token
// gets a random one, and a taken one is M_INVALID_PARAM.
func (s *Service) CreateRegistrationToken(ctx context.Context, t RegistrationToken) (*RegistrationToken, error) {
	if t.Token == "" {
		t.Token = RandomRegistrationToken(16)
	}
	if len(t.Token) > 64 || strings.Trim(t.Token, tokenChars) != "" {
		return nil, mxhttp.InvalidParam("registration tokens are at most 64 characters of A-Z, a-z, 0-9, ., _, ~ and -")
	}
	if t.UsesAllowed != nil && *t.UsesAllowed < 0 {
		return nil, mxhttp.InvalidParam("uses_allowed must not be negative")
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM registration_tokens WHERE token = $1", t.Token).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return mxhttp.InvalidParam("token already exists")
		}
		_, err := tx.Exec(ctx, "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts) VALUES ($1, $2, $3)", t.Token, t.UsesAllowed, t.ExpiryTime)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Valid reports whether t can still be used at now (Unix milliseconds).
func (t *RegistrationToken) Valid(now int64) bool {
	if t.UsesAllowed != nil && t.Pending+t.Completed >= *t.UsesAllowed {
		return false
	}
	return t.ExpiryTime == nil || now <= *t.ExpiryTime
}

// ValidRegistrationToken reports whether tok can still be used.
func (s *Service) ValidRegistrationToken(ctx context.Context, tok string) (bool, error) {
	t, err := s.GetRegistrationToken(ctx, tok)
	if errors.Is(err, ErrNoRegistrationToken) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.Valid(time.Now().UnixMilli()), nil
}

// claimRegistrationToken counts one use of tok inside tx if it is still
// valid, in one statement so concurrent registrations cannot overdraw it;
// it answers M_UNAUTHORIZED when the token is used up, expired or unknown.
func claimRegistrationToken(ctx context.Context, tx *storage.Tx, tok string) error {
	res, err := tx.Exec(ctx, `UPDATE registration_tokens SET completed = completed + 1
		WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts >= $2)`,
		tok, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("claim registration token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("claim registration token: %w", err)
	} else if n != 1 {
		return mxhttp.Unauthorized("registration token is no longer valid")
	}
	return nil
}

func (s *Service) getTokenValidity(w http.ResponseWriter, r *http.Request) (any, error) {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		return nil, mxhttp.MissingParam("missing token")
	}
	if !s.opts.RegistrationTokens {
		return nil, mxhttp.Forbidden("registration tokens are not enabled")
	}
	if err := s.allowGuess(r, ""); err != nil {
		return nil, err
	}
	ok, err := s.ValidRegistrationToken(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"valid": ok}, nil
}
