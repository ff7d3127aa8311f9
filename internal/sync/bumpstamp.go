package sync

import (
	"context"
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// bumpTypes are the events that count as activity for a room's place in
// the sliding sync room list (MSC4186's bump_stamp), stable and unstable
// names: state changes, reactions and edits do not move a room up.
var bumpTypes = map[string]bool{
	"m.room.create": true, "m.room.message": true, "m.room.encrypted": true, "m.sticker": true,
	"m.call.invite": true, "m.poll.start": true, "m.beacon_info": true,
	"org.matrix.msc3381.poll.start": true, "org.matrix.msc3672.beacon_info": true,
}

// bumpScanPage is how many events one step of a bump stamp scan reads.
const bumpScanPage = 64

// bumpStamps remembers, per room, the bump stamp found and how far the
// room's events were scanned for it, so that each request only looks at
// the events that arrived since.
type bumpStamps struct {
	mu    gosync.Mutex
	rooms map[id.RoomID]bumpEntry
}

type bumpEntry struct {
	scanned int64 // events up to here were looked at
	bump    int64 // position of the newest bump event among them
}

func (bs *bumpStamps) get(roomID id.RoomID) bumpEntry {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.rooms[roomID]
}

func (bs *bumpStamps) put(roomID id.RoomID, e bumpEntry) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.rooms == nil {
		bs.rooms = map[id.RoomID]bumpEntry{}
	}
	if e.scanned > bs.rooms[roomID].scanned {
		bs.rooms[roomID] = e
	}
}

// bumpStamp returns the position of the room's newest bump event at or
// before position to (0 if it has none).
func (s *Service) bumpStamp(ctx context.Context, roomID id.RoomID, to int64) (int64, error) {
	e := s.bumps.get(roomID)
	if e.scanned >= to || s.rooms.LastPos(ctx, roomID) <= e.scanned {
		return e.bump, nil
	}
	upTo := to
	found := int64(0)
	for found == 0 {
		evs, err := s.rooms.RoomEvents(ctx, roomID, e.scanned, upTo, bumpScanPage, true)
		if err != nil {
			return 0, err
		}
		for _, ev := range evs {
			if bumpTypes[ev.Type] {
				found = ev.Pos
				break
			}
		}
		if len(evs) < bumpScanPage {
			break
		}
		upTo = evs[len(evs)-1].Pos - 1
	}
	if found == 0 {
		found = e.bump
	}
	s.bumps.put(roomID, bumpEntry{scanned: to, bump: found})
	return found, nil
}
