package automation

import (
	"context"
	"fmt"
	"strconv"

	"github.com/matrixos/matrixos/internal/storage"
)

// RunDue runs every scheduled rule whose time has come since it last ran
// (by the service's clock) once, and records the run. The schedule loop
// calls it; tests call it with a fake clock.
func (s *Service) RunDue(ctx context.Context) error {
	s.scheduleMu.Lock()
	defer s.scheduleMu.Unlock()
	now := s.now()
	s.mu.Lock()
	var due []*storedRule
	for _, room := range s.rules {
		for _, r := range room {
			if r.Rule.Trigger.Type == TriggerSchedule && !r.Rule.Trigger.nextRun(r.LastRun).After(now) {
				due = append(due, r)
			}
		}
	}
	s.mu.Unlock()
	for _, r := range due {
		err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE automation_rules SET last_run = $1 WHERE room_id = $2 AND source = $3 AND name = $4",
				now.UnixMilli(), r.RoomID, r.Source, r.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("record the run of %s: %w", r.Name, err)
		}
		s.mu.Lock()
		r.LastRun = now
		s.mu.Unlock()
		if r.Rule.Conditions.allows("", now) {
			s.run(ctx, r, trigger{id: "schedule@" + strconv.FormatInt(now.Unix(), 10), roomID: r.RoomID, ts: now})
		}
	}
	return nil
}
