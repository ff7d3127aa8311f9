package push

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// An event is evaluated for every local joined member of its room. What
// that needs of each member but the event (who the local joined members
// are, their rules, whom they ignore, their display names) changes far
// less often than events arrive, so it is kept per room as a roster and
// made again only when one of its sources has changed: the room's members
// or member events (rooms.RoomInfo.MembersVersion), anyone's push rules
// (Service.rulesChanged) or anyone's ignored users
// (Service.IgnoreListsVersion). Each event then costs per member only the
// matching of what names the member.

// roster is what the evaluation of a room's events needs of its local
// joined members. It is never modified once made, but for its display
// names, read on first use.
type roster struct {
	membership uint64 // rooms.RoomInfo.MembersVersion
	rules      uint64 // Service.rulesChanged
	ignores    uint64 // Service.IgnoreListsVersion; 0 when unset
	joined     int    // joined members, local or not
	members    []rosterMember

	namesOnce sync.Once
	names     []string // parallels members

	// index finds members from an event's body (memberfilter.go).
	index rosterIndex
}

// rosterMember is one local joined member.
type rosterMember struct {
	user  id.UserID
	rules *userRules
	// shared holds the member's per-member rules when unchanged is set:
	// their rules are the predefined ones (see shared.go).
	shared    memberRules
	unchanged bool
	// ignored are the users the member ignores; nil for none.
	ignored map[id.UserID]bool
}

// rosters holds the rosters of the rooms with recent events, by room.
type rosters struct {
	mu    sync.Mutex
	rooms map[id.RoomID]*roster
}

// maxRosters bounds the rooms whose rosters are kept; the map starts
// afresh when full.
const maxRosters = 10_000

// rosterOf returns the roster of the room as info has it right after an
// event, from the service's rosters when none of its sources has changed
// since it was made. It is nil when info carries no state, which then
// has its members evaluated one by one (see outcome).
func (s *Service) rosterOf(ctx context.Context, info *rooms.RoomInfo) *roster {
	membership := info.MembersVersion()
	if membership == 0 {
		return nil
	}
	rules := s.rulesChanged.Load()
	var ignores uint64
	if s.IgnoreListsVersion != nil {
		ignores = s.IgnoreListsVersion()
	}
	s.rosters.mu.Lock()
	r := s.rosters.rooms[info.ID]
	s.rosters.mu.Unlock()
	if r != nil && r.membership == membership && r.rules == rules && r.ignores == ignores {
		return r
	}
	r, complete := s.makeRoster(ctx, info)
	r.membership, r.rules, r.ignores = membership, rules, ignores
	if !complete {
		return r // used for this event only
	}
	s.rosters.mu.Lock()
	if s.rosters.rooms == nil || len(s.rosters.rooms) >= maxRosters {
		s.rosters.rooms = map[id.RoomID]*roster{}
	}
	s.rosters.rooms[info.ID] = r
	s.rosters.mu.Unlock()
	return r
}

// makeRoster reads what a roster holds of the members of info's room;
// complete is false when an ignore list could not be read, which the
// roster then takes as ignoring no one.
func (s *Service) makeRoster(ctx context.Context, info *rooms.RoomInfo) (r *roster, complete bool) {
	server := s.rooms.ServerName()
	r = &roster{members: make([]rosterMember, 0, len(info.Members))}
	complete = true
	for u, m := range info.Members {
		if m != "join" {
			continue
		}
		r.joined++
		if u.Homeserver() != server {
			continue
		}
		ur := s.rulesOf(u)
		shared, unchanged := ur.shared(s, u)
		member := rosterMember{user: u, rules: ur, shared: shared, unchanged: unchanged}
		if s.IgnoredUsers != nil {
			ignored, err := s.IgnoredUsers(ctx, u)
			if err != nil {
				s.log.Warn("push rules: read ignored users", "user_id", u, "err", err)
				complete = false
			}
			if len(ignored) > 0 {
				member.ignored = ignored
			}
		}
		r.members = append(r.members, member)
	}
	// Lists read under no version cannot be known to hold.
	return r, complete && (s.IgnoredUsers == nil || s.IgnoreListsVersion != nil)
}

// name returns the display name of the i-th member, as the room's
// member events have it (all of them read on the first call).
func (r *roster) name(s *Service, info *rooms.RoomInfo, i int) string {
	r.namesOnce.Do(func() {
		r.names = make([]string, len(r.members))
		for j, m := range r.members {
			r.names[j] = s.names.of(info.StateEvent("m.room.member", string(m.user)))
		}
	})
	return r.names[i]
}
