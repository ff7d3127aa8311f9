package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
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
// is partial is recorded with the servers it went to (e2e_partial_sent,
// written before the update is queued, so it survives a restart during
// the resync); once the room's state is complete, each server with a
// member joined to or invited in the room at the update's position, by
// the full state, that was not sent it is sent it then, and the room's
// records are deleted (Complement's outgoing device-list tests for
// incorrectly absent and kicked servers). A node restarted after the
// state became complete and before that catch-up ran does it at start
// (StartCatchUps).

// maxPartialSent bounds the updates recorded per partial-state room;
// past it the oldest are forgotten (their servers see the gap in prev_id
// of the next update they get and fetch the list).
const maxPartialSent = 256

// sentUpdate is a device-list update and the servers it went to (sorted).
type sentUpdate struct {
	change  deviceChange
	servers []string
}

// partialNote is a sentUpdate to record for a partial-state room.
type partialNote struct {
	roomID id.RoomID
	sentUpdate
}

// partialNotes appends to notes one note of c for each partial-state
// room of c's user.
func (s *Service) partialNotes(ctx context.Context, notes []partialNote, c deviceChange, servers []string) []partialNote {
	for roomID := range s.activeRooms(c.user) {
		if s.rooms.HasPartialState(ctx, roomID) {
			notes = append(notes, partialNote{roomID: roomID, sentUpdate: sentUpdate{change: c, servers: servers}})
		}
	}
	return notes
}

// notePartialSent records notes, each room's newest maxPartialSent kept.
// A room whose state became complete before the write (its catch-up may
// have run without them) is caught up again.
func (s *Service) notePartialSent(ctx context.Context, notes []partialNote) error {
	if len(notes) == 0 {
		return nil
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, n := range notes {
			servers, err := json.Marshal(n.servers)
			if err != nil {
				return err
			}
			c := n.change
			if _, err := tx.Exec(ctx, `INSERT INTO e2e_partial_sent (room_id, stream_id, user_id, device_id, prev_id, servers)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, stream_id) DO NOTHING`,
				n.roomID, c.streamID, c.user, c.device, c.prevID, string(servers)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM e2e_partial_sent WHERE room_id = $1 AND stream_id <= (
				SELECT stream_id FROM e2e_partial_sent WHERE room_id = $2 ORDER BY stream_id DESC LIMIT 1 OFFSET $3)`,
				n.roomID, n.roomID, maxPartialSent); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record device-list updates sent while partial: %w", err)
	}
	for _, n := range notes {
		if !s.rooms.HasPartialState(ctx, n.roomID) {
			s.catchUpLater(n.roomID)
		}
	}
	return nil
}

// StartCatchUps sends the updates recorded for rooms whose state became
// complete before the node stopped, and that were not caught up then.
// The node calls it once federation is wired.
func (s *Service) StartCatchUps(ctx context.Context) error {
	ids, err := storage.Column[id.RoomID](ctx, s.db, "SELECT DISTINCT room_id FROM e2e_partial_sent")
	if err != nil {
		return fmt.Errorf("rooms with device-list updates sent while partial: %w", err)
	}
	for _, roomID := range ids {
		if !s.rooms.HasPartialState(ctx, roomID) {
			s.catchUpLater(roomID)
		}
	}
	return nil
}

// catchUpLater runs catchUp for the room in the background.
func (s *Service) catchUpLater(roomID id.RoomID) {
	s.background.Go(func() {
		if err := s.catchUp(s.ctx, roomID); err != nil {
			s.log.Warn("send device-list updates missed while the state was partial", "room_id", roomID, "err", err)
		}
	})
}

// catchUp sends each update recorded for a room whose state is complete
// to the servers that were in the room at its position and were not sent
// it, then deletes the records. A failure leaves the records for the
// next start.
func (s *Service) catchUp(ctx context.Context, roomID id.RoomID) error {
	if s.edus == nil {
		return nil
	}
	s.catchUpMu.Lock()
	defer s.catchUpMu.Unlock()
	sent, err := s.partialSent(ctx, roomID)
	if err != nil || len(sent) == 0 {
		return err
	}
	for _, u := range sent {
		missed, err := s.serversMissing(ctx, roomID, u)
		if errors.Is(err, rooms.ErrNoRoom) {
			break // the room was purged: nobody to catch up
		}
		if err != nil {
			return fmt.Errorf("servers at a device-list update: %w", err)
		}
		if len(missed) == 0 {
			continue
		}
		content, err := s.deviceUpdateContent(ctx, u.change)
		if err != nil {
			return fmt.Errorf("build m.device_list_update of %s's %s: %w", u.change.user, u.change.device, err)
		}
		s.sendEDU(ctx, missed, "m.device_list_update", content)
	}
	last := sent[len(sent)-1].change.streamID
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM e2e_partial_sent WHERE room_id = $1 AND stream_id <= $2", roomID, last)
		return err
	})
}

// partialSent reads the updates recorded for a room, oldest first.
func (s *Service) partialSent(ctx context.Context, roomID id.RoomID) ([]sentUpdate, error) {
	rows, err := s.db.Query(ctx, `SELECT stream_id, user_id, device_id, prev_id, servers FROM e2e_partial_sent
		WHERE room_id = $1 ORDER BY stream_id`, roomID)
	if err != nil {
		return nil, fmt.Errorf("device-list updates sent while partial: %w", err)
	}
	defer rows.Close()
	var out []sentUpdate
	for rows.Next() {
		var u sentUpdate
		var servers string
		if err := rows.Scan(&u.change.streamID, &u.change.user, &u.change.device, &u.change.prevID, &servers); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(servers), &u.servers); err != nil {
			return nil, fmt.Errorf("servers of update %d: %w", u.change.streamID, err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// onStateComplete is an OnStateComplete hook: it drops the cached lists
// of remote users who have left the room by its full state and share no
// other room with a local user, and sends the updates announced
// while the room's state was partial to the servers the full state shows
// were in the room then and were not sent them.
func (s *Service) onStateComplete(roomID id.RoomID, _ []id.UserID) {
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
		if err := s.catchUp(s.ctx, roomID); err != nil {
			s.log.Warn("send device-list updates missed while the state was partial", "room_id", roomID, "err", err)
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
