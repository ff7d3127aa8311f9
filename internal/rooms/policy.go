package rooms

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// entering reports whether a membership brings its user into a room (or
// asks to be let in): a join, an invite or a knock.
func entering(membership string) bool {
	return membership == "join" || membership == "invite" || membership == "knock"
}

// CheckRoomPolicy asks RoomPolicy whether the node takes part in a room;
// nil when it does or no policy is set. It is the one place that decides
// whether anyone may enter a room through this node: the engine asks it
// for every local join, invite and knock it sends, for the make_join,
// make_knock, send_join, send_knock and invite requests of other
// servers, and federation asks it before a local user joins or knocks on
// a room of another server. A public room directory leaves out the rooms
// it refuses.
func (e *Engine) CheckRoomPolicy(ctx context.Context, roomID id.RoomID) error {
	if e.RoomPolicy == nil {
		return nil
	}
	return e.RoomPolicy(ctx, roomID)
}

// checkEntries applies the room policy to the local membership events of
// ps that bring someone into the room.
func (e *Engine) checkEntries(ctx context.Context, roomID id.RoomID, ps []Proto) error {
	for _, p := range ps {
		if p.Type != "m.room.member" || p.StateKey == nil {
			continue
		}
		var c struct {
			Membership string `json:"membership"`
		}
		if json.Unmarshal(p.Content, &c) == nil && entering(c.Membership) {
			return e.CheckRoomPolicy(ctx, roomID)
		}
	}
	return nil
}
