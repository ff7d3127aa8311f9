package search

import (
	"context"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// SetMark moves the follower's mark (tests).
func (s *Service) SetMark(ctx context.Context, pos int64) error { return s.mark.Set(ctx, pos) }

// Reject is the engine's OnReject hook (tests).
func (s *Service) Reject(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	return s.reject(ctx, tx, ev)
}
