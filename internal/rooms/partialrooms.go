package rooms

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// InPartialRoomWith reports whether server is one of the servers of a room
// whose state is still partial here and where a local user is joined or
// invited: a user of that server may be among the members this node does
// not know yet.
func (e *Engine) InPartialRoomWith(ctx context.Context, server string) bool {
	e.mu.Lock()
	var partial []id.RoomID
	for roomID, r := range e.rooms {
		if r.partial.Load() != nil {
			partial = append(partial, roomID)
		}
	}
	e.mu.Unlock()
	for _, roomID := range partial {
		if !e.ServerInRoom(ctx, server, roomID) {
			continue
		}
		for u, m := range e.Members(ctx, roomID) {
			if activeMembership(m) && u.Homeserver() == e.signer.ServerName {
				return true
			}
		}
	}
	return false
}
