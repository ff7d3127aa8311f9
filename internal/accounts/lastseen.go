package accounts

import (
	"context"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/ratelimit"
	"github.com/matrixos/matrixos/internal/storage"
)

// seenInterval is how often a device's last_seen_ts and last_seen_ip are
// written while it is in use: often enough for the session lists of
// clients and the account page, rarely enough that an active device costs
// one write per interval.
const seenInterval = 5 * time.Minute

// maxSeenMarks bounds the memory of when devices were last recorded.
const maxSeenMarks = 200000

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

type seenMark struct {
	at time.Time
	ip string
}

// noteSeen records that the request's session used its device, from the
// request's client address: at most once per seenInterval per device, and
// at once when the address changed. A failed write is logged, never the
// request's failure.
func (s *Service) noteSeen(r *http.Request, sess *Session) {
	if sess.DeviceID == "" {
		return
	}
	ip := ratelimit.ClientIP(r)
	now := time.Now()
	key := deviceKey{sess.UserID, sess.DeviceID}
	s.seenMu.Lock()
	if last, ok := s.seen[key]; ok && now.Sub(last.at) < seenInterval && last.ip == ip {
		s.seenMu.Unlock()
		return
	}
	if s.seen == nil || len(s.seen) >= maxSeenMarks {
		s.seen = map[deviceKey]seenMark{}
	}
	s.seen[key] = seenMark{at: now, ip: ip}
	s.seenMu.Unlock()
	ctx := context.WithoutCancel(r.Context())
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4",
			now.UnixMilli(), ip, sess.UserID, sess.DeviceID)
		return err
	})
	if err != nil {
		s.log.Warn("record a device's last use", "user", sess.UserID, "device", sess.DeviceID, "err", err)
	}
}
