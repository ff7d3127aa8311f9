package search

import "context"

// SetMark moves the follower's mark (tests).
func (s *Service) SetMark(ctx context.Context, pos int64) error { return s.mark.Set(ctx, pos) }
