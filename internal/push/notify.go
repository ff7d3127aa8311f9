package push

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// NotifyFunc is told that ev notifies user: actions are the matching
// rule's actions (tweaks included), highlight whether it highlights. It
// runs on the sender's goroutine once the unread counts are durable, and
// must be quick (queue work, do not send).
type NotifyFunc func(user id.UserID, ev *rooms.Event, actions []json.RawMessage, highlight bool)

// match returns the first matching rule's outcome.
func (cs *compiledSet) match(x *evalCtx) Outcome {
	r := cs.matchRule(x)
	if r == nil {
		return Outcome{}
	}
	return Outcome{RuleID: r.rule.RuleID, Notify: r.notify, Highlight: r.notify && r.highlight}
}

// matchRule returns the first rule that matches, or nil.
func (cs *compiledSet) matchRule(x *evalCtx) *compiledRule {
	for _, list := range cs.lists {
		for _, r := range list {
			if r.matches(x) {
				return r
			}
		}
	}
	return nil
}

// Unread reports whether the notification for the event at stream
// position pos in the room is still unread by the user (no read receipt or
// own event covers it, and the user is still joined).
func (s *Service) Unread(user id.UserID, roomID id.RoomID, pos int64) bool {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	ru := s.roomUnreadLocked(user, roomID, false)
	if ru == nil {
		return false
	}
	for _, e := range ru.entries {
		if e.pos == pos {
			return true
		}
	}
	return false
}

// UnreadTotal is the number of the user's unread notifications across all
// rooms (the badge count sent to push gateways).
func (s *Service) UnreadTotal(user id.UserID) int {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	n := 0
	for _, ru := range s.unread[user] {
		n += len(ru.entries)
	}
	return n
}
