package accounts

// HoldBulkSlot takes the slot of the one CreateUsers call that may run,
// as a running call does, and returns its release.
func HoldBulkSlot(s *Service) (release func()) {
	s.bulkSlot.Lock()
	return s.bulkSlot.Unlock
}
