package keys

import (
	"context"
	"database/sql"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/sync"
)

// Fill adds the encryption parts of a /sync response: to-device messages,
// device-list changes, and the device's one-time key counts and unused
// fallback key types (always present, so clients know the server supports
// them). A request may skip the to-device part (sliding sync delivers it
// on its own token) or the key part.
func (s *Service) Fill(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	version, cached := s.cache.get(req.User, req.Device)
	if !req.Skips(sync.ToDevicePart) && (cached == nil || !cached.inboxNone) {
		if err := s.fillToDevice(ctx, req, resp); err != nil {
			return err
		}
	}
	if req.Skips(sync.DeviceKeysPart) {
		return nil
	}
	if !req.Initial() {
		changed, left, err := s.deviceLists(ctx, req.User, req.Since.Pos, req.To.Pos)
		if err != nil {
			return err
		}
		if len(changed) > 0 || len(left) > 0 {
			resp.DeviceLists = &sync.DeviceLists{Changed: changed, Left: left}
			resp.MarkNews()
		}
	}
	if req.Device == "" {
		return nil
	}
	if cached != nil {
		resp.DeviceOneTimeKeysCount = cached.counts
		resp.DeviceUnusedFallbackKeyTypes = cached.fallback
		return nil
	}
	counts, err := s.otkCounts(ctx, req.User, req.Device)
	if err != nil {
		return err
	}
	resp.DeviceOneTimeKeysCount = counts
	types, err := s.unusedFallbackTypes(ctx, req.User, req.Device)
	if err != nil {
		return err
	}
	resp.DeviceUnusedFallbackKeyTypes = types
	// Remember what this version of the user's key data looks like. The
	// inbox counts as empty only if nothing was delivered and nothing is
	// left to acknowledge.
	s.cache.put(req.User, req.Device, &deviceSyncState{
		version: version, counts: counts, fallback: types,
		inboxNone: resp.ToDevice == nil && s.inboxEmpty(ctx, req.User, req.Device),
	})
	return nil
}

// inboxEmpty reports whether the device has no to-device message queued.
func (s *Service) inboxEmpty(ctx context.Context, user id.UserID, device id.DeviceID) bool {
	var pos int64
	err := s.db.QueryRow(ctx, "SELECT pos FROM to_device_messages WHERE user_id = $1 AND device_id = $2 LIMIT 1", user, device).Scan(&pos)
	return errors.Is(err, sql.ErrNoRows)
}
