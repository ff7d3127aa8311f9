package keys

import (
	"context"
	"slices"

	"maunium.net/go/mautrix/id"
)

// What a partial-state room's completion changes for device lists.
//
// Remote users the partial state believed in the room and the full state
// does not (their leave was rejected by mistake, or their join accepted
// by mistake) may share no room with a local user any more: their cached
// lists are dropped, as after their leave, since their servers stop
// sending updates.
//
// Device-list updates a partial-state room's servers missed. While a
// room's state is partial, this node knows its servers only from the
// send_join answer's servers_in_room and the members it has seen, so an
// update of a local member goes to those: a server the partial state
// wrongly leaves out (not named, or its member's leave accepted by
// mistake) misses it. Each update announced while one of its user's rooms
// is partial is remembered with the servers it went to; once the room's
// state is complete, each server with a member joined to or invited in
// the room at the update's position, by the full state, that was not sent
// it is sent it then (Complement's outgoing device-list tests for
// incorrectly absent and kicked servers).

// maxPartialSent bounds the updates remembered per partial-state room;
// past it the oldest are forgotten (their servers see the gap in prev_id
// of the next update they get and fetch the list).
const maxPartialSent = 256

// sentUpdate is a device-list update and the servers it went to (sorted).
type sentUpdate struct {
	change  deviceChange
	servers []string
}

// notePartialSent remembers, for each partial-state room of c's user,
// that c went to servers.
func (s *Service) notePartialSent(ctx context.Context, c deviceChange, servers []string) {
	for roomID := range s.activeRooms(c.user) {
		if !s.rooms.HasPartialState(ctx, roomID) {
			continue
		}
		s.partialMu.Lock()
		sent := append(s.partialSent[roomID], sentUpdate{change: c, servers: servers})
		if len(sent) > maxPartialSent {
			sent = slices.Delete(sent, 0, len(sent)-maxPartialSent)
		}
		s.partialSent[roomID] = sent
		s.partialMu.Unlock()
	}
}

// onStateComplete is an OnStateComplete hook: it drops the cached lists
// of remote users who have left the room by its full state and share no
// other room with a local user, and sends the updates announced
// while the room's state was partial to the servers the full state shows
// were in the room then and were not sent them.
func (s *Service) onStateComplete(roomID id.RoomID, _ []id.UserID) {
	s.partialMu.Lock()
	sent := s.partialSent[roomID]
	delete(s.partialSent, roomID)
	s.partialMu.Unlock()
	s.remoteMu.Lock()
	var gone []id.UserID
	for u := range s.remoteCached {
		if m := s.rooms.Membership(u, roomID); m != "" && !active(m) {
			gone = append(gone, u)
		}
	}
	s.remoteMu.Unlock()
	s.background.Go(func() {
		for _, u := range gone {
			if s.sharedWithLocal(s.ctx, u) {
				continue
			}
			if err := s.dropRemoteList(s.ctx, u); err != nil {
				s.log.Warn("drop remote device list", "user_id", u, "err", err)
			}
		}
		if s.edus == nil {
			return
		}
		for _, u := range sent {
			missed, err := s.serversMissing(s.ctx, roomID, u)
			if err != nil {
				s.log.Warn("servers of a partial-state room at a device-list update", "room_id", roomID, "err", err)
				continue
			}
			if len(missed) == 0 {
				continue
			}
			content, err := s.deviceUpdateContent(s.ctx, u.change)
			if err != nil {
				s.log.Warn("build m.device_list_update", "user_id", u.change.user, "device_id", u.change.device, "err", err)
				continue
			}
			s.sendEDU(s.ctx, missed, "m.device_list_update", content)
		}
	})
}

// serversMissing returns the servers other than this one with a member
// joined to or invited in the room at u's position that u did not go to.
func (s *Service) serversMissing(ctx context.Context, roomID id.RoomID, u sentUpdate) ([]string, error) {
	state, err := s.rooms.StateAtPos(ctx, roomID, u.change.streamID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range state {
		if ev.Type != "m.room.member" || ev.StateKey == nil || !active(ev.Membership()) {
			continue
		}
		server := id.UserID(*ev.StateKey).Homeserver()
		if server == s.accounts.ServerName() || slices.Contains(u.servers, server) || slices.Contains(out, server) {
			continue
		}
		out = append(out, server)
	}
	slices.Sort(out)
	return out, nil
}
