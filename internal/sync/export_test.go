package sync

// SetSlidingFromScratch makes every sliding sync response of s build its
// room list afresh (on) or follow it from the previous response where it
// can (off, the default).
func SetSlidingFromScratch(s *Service, on bool) { s.slidingFromScratch.Store(on) }

// SlidingFollowed returns how many sliding sync responses of s followed
// the previous response's room list.
func SlidingFollowed(s *Service) int64 { return s.slidingFollowed.Load() }
