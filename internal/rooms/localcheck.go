package rooms

import (
	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// checkLocalEvent refuses, with 400 M_BAD_JSON, a locally built event that
// the auth rules would refuse for what it says rather than for who sends
// it: a second m.room.create (MSC4291), additional_creators that are not
// valid user IDs, and, where room creators are privileged (MSC4289), power
// levels that name a creator. The sender can fix these by changing the
// request, so they are bad requests, not forbidden ones. It also checks
// what the auth rules leave out: the server names in additional_creators.
func checkLocalEvent(v id.RoomVersion, st *roomState, ev *Event) error {
	if ev.Type == "m.room.create" && st.get("m.room.create", "") != nil {
		return mxhttp.BadJSON("the room already has an m.room.create event")
	}
	if ev.StateKey == nil || *ev.StateKey != "" {
		return nil
	}
	switch ev.Type {
	case "m.room.create":
		if v.PrivilegedRoomCreators() {
			return checkAdditionalCreators(gjson.GetBytes(ev.PDU.Content, "additional_creators"))
		}
	case "m.room.power_levels":
		if !v.PrivilegedRoomCreators() {
			return nil
		}
		creators := st.creators()
		var err error
		gjson.GetBytes(ev.PDU.Content, "users").ForEach(func(user, _ gjson.Result) bool {
			if creators[id.UserID(user.Str)] {
				err = mxhttp.BadJSON("room creators have unlimited power and must not be listed in power levels: %s", user.Str)
			}
			return err == nil
		})
		return err
	}
	return nil
}

// checkAdditionalCreators checks that additional_creators, when present,
// is an array of valid user IDs, server names included.
func checkAdditionalCreators(creators gjson.Result) error {
	if !creators.Exists() {
		return nil
	}
	if !creators.IsArray() {
		return mxhttp.BadJSON("additional_creators must be an array of user IDs")
	}
	for _, c := range creators.Array() {
		if c.Type != gjson.String {
			return mxhttp.BadJSON("additional_creators must be an array of user IDs, not %s", c.Raw)
		}
		if _, _, err := id.UserID(c.Str).ParseAndValidateRelaxed(); err != nil {
			return mxhttp.BadJSON("invalid user ID in additional_creators: %q", c.Str)
		}
	}
	return nil
}

// creators returns the room's creators where they are privileged: the
// create event's sender and its additional_creators.
func (s *roomState) creators() map[id.UserID]bool {
	create := s.get("m.room.create", "")
	if create == nil {
		return nil
	}
	out := map[id.UserID]bool{create.Sender: true}
	for _, c := range gjson.GetBytes(create.PDU.Content, "additional_creators").Array() {
		out[id.UserID(c.Str)] = true
	}
	return out
}
