package push

import (
	"context"
	"encoding/json"

	"github.com/matrixos/matrixos/internal/sync"
)

// RulesSource reports the user's push rules as the m.push_rules
// account-data event: on initial (or full-state) syncs, and whenever they
// changed since the sync token.
func (s *Service) RulesSource() sync.Source {
	return sync.SourceFunc(func(ctx context.Context, req *sync.Request, resp *sync.Response) error {
		if req.Filter != nil && !req.Filter.AccountData.Allows("m.push_rules", "") {
			return nil
		}
		pos := s.RulesPos(req.User)
		if !(req.Initial() || req.FullState || (pos > req.Since.Pos && pos <= req.To.Pos)) {
			return nil
		}
		if resp.AccountData == nil {
			resp.AccountData = &sync.Events{}
		}
		resp.AccountData.Add(map[string]any{"type": "m.push_rules", "content": json.RawMessage(s.AccountData(req.User))})
		resp.MarkNews()
		return nil
	})
}

// CountsSource sets unread_notifications (and unread_thread_notifications
// when the filter's timeline asks for them) on every joined room in the
// response, and adds the joined rooms whose counts changed since the sync
// token. Register it after the sources that add rooms to the response.
func (s *Service) CountsSource() sync.Source {
	return sync.SourceFunc(func(ctx context.Context, req *sync.Request, resp *sync.Response) error {
		var roomFilter *sync.RoomFilter
		threaded := false
		if req.Filter != nil && req.Filter.Room != nil {
			roomFilter = req.Filter.Room
			threaded = roomFilter.Timeline != nil && roomFilter.Timeline.UnreadThreadNotifications
		}
		if !req.Initial() {
			changed := s.changedSince(req.User, req.Since.Pos, req.To.Pos)
			if len(changed) > 0 {
				joined := make(map[string]bool, len(req.Joined))
				for _, r := range req.Joined {
					joined[string(r)] = true
				}
				for _, r := range changed {
					if joined[string(r)] && roomFilter.AllowsRoom(r) {
						resp.JoinedRoom(r)
						resp.MarkNews()
					}
				}
			}
		}
		if resp.Rooms == nil {
			return nil
		}
		for roomID, jr := range resp.Rooms.Join {
			main, threads := s.Counts(req.User, roomID)
			if threaded {
				jr.UnreadNotifications = &main
				jr.UnreadThreadNotifications = threads
			} else {
				total := Total(main, threads)
				jr.UnreadNotifications = &total
				jr.UnreadThreadNotifications = nil
			}
		}
		return nil
	})
}
