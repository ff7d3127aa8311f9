package pushers

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Pusher is one of a user's pushers, as GET /pushers shows it.
type Pusher struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`

	user      id.UserID
	device    id.DeviceID
	pushkeyTS int64 // seconds
}

// URL returns the gateway URL of an http pusher.
func (p *Pusher) URL() string {
	var d struct {
		URL string `json:"url"`
	}
	json.Unmarshal(p.Data, &d)
	return d.URL
}

// load reads every pusher.
func (s *Service) load(ctx context.Context) (map[id.UserID][]*Pusher, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id, app_id, pushkey, kind, app_display_name, device_display_name,
		profile_tag, lang, data, device_id, pushkey_ts FROM pushers ORDER BY user_id, pushkey_ts, app_id, pushkey`)
	if err != nil {
		return nil, fmt.Errorf("load pushers: %w", err)
	}
	defer rows.Close()
	out := map[id.UserID][]*Pusher{}
	for rows.Next() {
		p := &Pusher{}
		var data string
		if err := rows.Scan(&p.user, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName,
			&p.ProfileTag, &p.Lang, &data, &p.device, &p.pushkeyTS); err != nil {
			return nil, fmt.Errorf("load pushers: %w", err)
		}
		p.Data = json.RawMessage(data)
		out[p.user] = append(out[p.user], p)
	}
	return out, rows.Err()
}

// save stores p, replacing the user's pusher with the same app ID and
// pushkey; unless appendOther, other users' pushers with that app ID and
// pushkey are removed.
func (s *Service) save(ctx context.Context, p *Pusher, appendOther bool) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if !appendOther {
			if _, err := tx.Exec(ctx, "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
				p.AppID, p.PushKey, p.user); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
			p.user, p.AppID, p.PushKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,
			profile_tag, lang, data, device_id, pushkey_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			p.user, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang,
			string(p.Data), p.device, p.pushkeyTS)
		return err
	})
	if err != nil {
		return fmt.Errorf("save pusher: %w", err)
	}
	same := keyed(p.AppID, p.PushKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !appendOther {
		for u, list := range s.byUser {
			if u != p.user {
				s.setLocked(u, without(list, same))
			}
		}
	}
	list := without(s.byUser[p.user], same)
	s.setLocked(p.user, append(list, p))
	return nil
}

// remove deletes the user's pushers that match; match nil deletes all.
func (s *Service) remove(ctx context.Context, user id.UserID, match func(*Pusher) bool) error {
	s.mu.RLock()
	var gone []*Pusher
	for _, p := range s.byUser[user] {
		if match == nil || match(p) {
			gone = append(gone, p)
		}
	}
	s.mu.RUnlock()
	if len(gone) == 0 {
		return nil
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, p := range gone {
			if _, err := tx.Exec(ctx, "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
				user, p.AppID, p.PushKey); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete pushers: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(user, without(s.byUser[user], func(q *Pusher) bool {
		for _, p := range gone {
			if p.AppID == q.AppID && p.PushKey == q.PushKey {
				return true
			}
		}
		return false
	}))
	return nil
}

// setLocked installs a new list (lists are never changed in place, so
// readers may keep one); s.mu must be held.
func (s *Service) setLocked(user id.UserID, list []*Pusher) {
	if len(list) == 0 {
		delete(s.byUser, user)
		return
	}
	s.byUser[user] = list
}

// of returns the user's pushers (shared; do not modify).
func (s *Service) of(user id.UserID) []*Pusher {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byUser[user]
}

// keyed matches the pushers with this app ID and pushkey, which together
// name a user's pusher.
func keyed(appID, pushKey string) func(*Pusher) bool {
	return func(q *Pusher) bool { return q.AppID == appID && q.PushKey == pushKey }
}

func without(list []*Pusher, drop func(*Pusher) bool) []*Pusher {
	out := make([]*Pusher, 0, len(list))
	for _, p := range list {
		if !drop(p) {
			out = append(out, p)
		}
	}
	return out
}
