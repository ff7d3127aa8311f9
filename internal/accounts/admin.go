package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// ErrNoUser is returned by the admin setters for an unknown user.
var ErrNoUser = mxhttp.NotFound("user not found")

// setFlag sets one boolean column of a user; the node forgets the user's
// cached sessions so the change applies to the next request.
func (s *Service) setFlag(ctx context.Context, uid id.UserID, column string, v bool) error {
	return s.write(ctx, func(tx *storage.Tx, cs *changes) error {
		res, err := tx.Exec(ctx, "UPDATE users SET "+column+" = $1 WHERE user_id = $2", v, uid)
		if err != nil {
			return fmt.Errorf("set %s: %w", column, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNoUser
		}
		return cs.record(ctx, tx, changeUserChanged, accountChange{UserID: uid})
	})
}

// SetLocked locks or unlocks an account. Locked accounts get
// M_USER_LOCKED on every authenticated request and cannot log in.
func (s *Service) SetLocked(ctx context.Context, uid id.UserID, locked bool) error {
	return s.setFlag(ctx, uid, "locked", locked)
}

// SetSuspended suspends or unsuspends an account (read-only mode).
func (s *Service) SetSuspended(ctx context.Context, uid id.UserID, suspended bool) error {
	return s.setFlag(ctx, uid, "suspended", suspended)
}

// SetShadowBanned marks an account whose sends are silently dropped.
func (s *Service) SetShadowBanned(ctx context.Context, uid id.UserID, banned bool) error {
	return s.setFlag(ctx, uid, "shadow_banned", banned)
}

// Reactivate clears the deactivated flag. The account has no password and
// no devices until an admin sets them.
func (s *Service) Reactivate(ctx context.Context, uid id.UserID) error {
	return s.setFlag(ctx, uid, "deactivated", false)
}

// UserRecord is an account with its profile, for admin listings.
type UserRecord struct {
	User
	DisplayName string
	AvatarURL   string
	LastSeenTS  int64
	Appservice  string
}

// ListUserRecords returns every account with its display name, avatar and
// the last time one of its devices was seen, ordered by user ID.
func (s *Service) ListUserRecords(ctx context.Context) ([]UserRecord, error) {
	rows, err := s.db.Query(ctx, `SELECT u.user_id, u.is_admin, u.deactivated, u.locked, u.suspended, u.shadow_banned, u.is_guest, u.created_ts,
		u.appservice_id, COALESCE(dn.value, ''), COALESCE(av.value, ''), COALESCE((SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id), 0)
		FROM users u
		LEFT JOIN profiles dn ON dn.user_id = u.user_id AND dn.field = 'displayname'
		LEFT JOIN profiles av ON av.user_id = u.user_id AND av.field = 'avatar_url'
		ORDER BY u.user_id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []UserRecord
	for rows.Next() {
		var u UserRecord
		if err := rows.Scan(&u.ID, &u.IsAdmin, &u.Deactivated, &u.Locked, &u.Suspended, &u.ShadowBanned, &u.IsGuest, &u.CreatedTS,
			&u.Appservice, &u.DisplayName, &u.AvatarURL, &u.LastSeenTS); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// HasActiveAdmin reports whether any account that is not deactivated is a
// server admin.
func (s *Service) HasActiveAdmin(ctx context.Context) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM users WHERE is_admin AND NOT deactivated)").Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look for an admin: %w", err)
	}
	return ok, nil
}

// ErrNoRegistrationToken is returned for an unknown registration token.
var ErrNoRegistrationToken = mxhttp.NotFound("no such registration token")

const regTokenColumns = "token, uses_allowed, pending, completed, expiry_ts"

func scanRegToken(scan func(...any) error) (*RegistrationToken, error) {
	var t RegistrationToken
	var uses, expiry sql.NullInt64
	if err := scan(&t.Token, &uses, &t.Pending, &t.Completed, &expiry); err != nil {
		return nil, err
	}
	if uses.Valid {
		t.UsesAllowed = &uses.Int64
	}
	if expiry.Valid {
		t.ExpiryTime = &expiry.Int64
	}
	return &t, nil
}

// ListRegistrationTokens returns every registration token, ordered by token.
func (s *Service) ListRegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	rows, err := s.db.Query(ctx, "SELECT "+regTokenColumns+" FROM registration_tokens ORDER BY token")
	if err != nil {
		return nil, fmt.Errorf("list registration tokens: %w", err)
	}
	defer rows.Close()
	out := []RegistrationToken{}
	for rows.Next() {
		t, err := scanRegToken(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list registration tokens: %w", err)
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

// GetRegistrationToken loads one registration token.
func (s *Service) GetRegistrationToken(ctx context.Context, tok string) (*RegistrationToken, error) {
	t, err := scanRegToken(s.db.QueryRow(ctx, "SELECT "+regTokenColumns+" FROM registration_tokens WHERE token = $1", tok).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoRegistrationToken
	}
	if err != nil {
		return nil, fmt.Errorf("load registration token: %w", err)
	}
	return t, nil
}

// RegistrationTokenUpdate lists the fields to change; a Set flag with a
// nil value clears the field (unlimited uses, no expiry).
type RegistrationTokenUpdate struct {
	SetUsesAllowed bool
	UsesAllowed    *int64
	SetExpiryTime  bool
	ExpiryTime     *int64
}

// UpdateRegistrationToken changes a token's allowed uses or expiry time and
// returns the token as stored.
func (s *Service) UpdateRegistrationToken(ctx context.Context, tok string, u RegistrationTokenUpdate) (*RegistrationToken, error) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM registration_tokens WHERE token = $1", tok).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ErrNoRegistrationToken
		}
		if u.SetUsesAllowed {
			if _, err := tx.Exec(ctx, "UPDATE registration_tokens SET uses_allowed = $1 WHERE token = $2", u.UsesAllowed, tok); err != nil {
				return err
			}
		}
		if u.SetExpiryTime {
			if _, err := tx.Exec(ctx, "UPDATE registration_tokens SET expiry_ts = $1 WHERE token = $2", u.ExpiryTime, tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.GetRegistrationToken(ctx, tok)
}

// DeleteRegistrationToken removes a registration token.
func (s *Service) DeleteRegistrationToken(ctx context.Context, tok string) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, "DELETE FROM registration_tokens WHERE token = $1", tok)
		if err != nil {
			return fmt.Errorf("delete registration token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNoRegistrationToken
		}
		return nil
	})
}
