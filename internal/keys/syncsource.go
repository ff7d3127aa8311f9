package keys

import (
	"context"

	"github.com/matrixos/matrixos/internal/sync"
)

// Fill adds the encryption parts of a /sync response: to-device messages,
// device-list changes, and the device's one-time key counts and unused
// fallback key types (always present, so clients know the server supports
// them).
func (s *Service) Fill(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	if err := s.fillToDevice(ctx, req, resp); err != nil {
		return err
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
	return nil
}
