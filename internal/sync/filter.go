package sync

import (
	"encoding/json"
	"encoding/json/jsontext"
	"path"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// EventFilter selects events by type and sender.
type EventFilter struct {
	Limit      *int         `json:"limit,omitempty"`
	Types      *[]string    `json:"types,omitempty"`
	NotTypes   []string     `json:"not_types,omitempty"`
	Senders    *[]id.UserID `json:"senders,omitempty"`
	NotSenders []id.UserID  `json:"not_senders,omitempty"`
}

// RoomEventFilter adds room-event options.
type RoomEventFilter struct {
	EventFilter
	Rooms                     *[]id.RoomID `json:"rooms,omitempty"`
	NotRooms                  []id.RoomID  `json:"not_rooms,omitempty"`
	ContainsURL               *bool        `json:"contains_url,omitempty"`
	LazyLoadMembers           bool         `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers   bool         `json:"include_redundant_members,omitempty"`
	UnreadThreadNotifications bool         `json:"unread_thread_notifications,omitempty"`
	// RelTypes and NotRelTypes select events by the rel_type of their
	// m.relates_to (MSC3874, under its unstable prefix while it is not in
	// the spec).
	RelTypes    *[]string `json:"org.matrix.msc3874.rel_types,omitempty"`
	NotRelTypes []string  `json:"org.matrix.msc3874.not_rel_types,omitempty"`
}

// RoomFilter is the "room" part of a filter.
type RoomFilter struct {
	Rooms        *[]id.RoomID     `json:"rooms,omitempty"`
	NotRooms     []id.RoomID      `json:"not_rooms,omitempty"`
	IncludeLeave bool             `json:"include_leave,omitempty"`
	Timeline     *RoomEventFilter `json:"timeline,omitempty"`
	State        *RoomEventFilter `json:"state,omitempty"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitempty"`
	AccountData  *RoomEventFilter `json:"account_data,omitempty"`
}

// Filter is a sync filter as clients upload it.
type Filter struct {
	EventFields []string     `json:"event_fields,omitempty"`
	EventFormat string       `json:"event_format,omitempty"`
	Presence    *EventFilter `json:"presence,omitempty"`
	AccountData *EventFilter `json:"account_data,omitempty"`
	Room        *RoomFilter  `json:"room,omitempty"`
}

// Validate refuses a filter whose room lists hold something that cannot be a
// room ID, or whose sender lists something that cannot be a user ID
// (M_BAD_JSON, a value of the wrong kind): such a filter is a client's
// mistake, better reported than left to match nothing.
func (f *Filter) Validate() error {
	if err := f.Presence.Validate("presence"); err != nil {
		return err
	}
	if err := f.AccountData.Validate("account_data"); err != nil {
		return err
	}
	if f.Room == nil {
		return nil
	}
	if err := validRoomIDs("room.rooms", f.Room.Rooms, f.Room.NotRooms); err != nil {
		return err
	}
	for name, ef := range map[string]*RoomEventFilter{
		"room.timeline": f.Room.Timeline, "room.state": f.Room.State,
		"room.ephemeral": f.Room.Ephemeral, "room.account_data": f.Room.AccountData,
	} {
		if err := ef.Validate(name); err != nil {
			return err
		}
	}
	return nil
}

// Validate refuses a room event filter, named name in error messages, whose
// room lists hold something that cannot be a room ID or whose sender lists
// hold something that cannot be a user ID.
func (f *RoomEventFilter) Validate(name string) error {
	if f == nil {
		return nil
	}
	if err := validRoomIDs(name+".rooms", f.Rooms, f.NotRooms); err != nil {
		return err
	}
	return f.EventFilter.Validate(name)
}

// Validate refuses an event filter, named name in error messages, whose
// senders or not_senders hold something that cannot be a user ID.
func (f *EventFilter) Validate(name string) error {
	if f == nil {
		return nil
	}
	var all []id.UserID
	if f.Senders != nil {
		all = *f.Senders
	}
	for _, u := range slices.Concat(all, f.NotSenders) {
		if !looksLikeUserID(u) {
			return mxhttp.BadJSON("%s.senders: %q is not a user ID", name, u)
		}
	}
	return nil
}

// looksLikeUserID reports whether u has a user ID's shape: the '@' sigil, a
// localpart, ':' and a server name, at most 255 bytes. Historical localparts
// outside today's grammar pass, as they still name users on other servers.
func looksLikeUserID(u id.UserID) bool {
	local, server, _ := strings.Cut(strings.TrimPrefix(string(u), "@"), ":")
	return strings.HasPrefix(string(u), "@") && local != "" && server != "" && len(u) <= 255
}

// validRoomIDs checks the room IDs of a filter's rooms and not_rooms lists.
func validRoomIDs(name string, rooms *[]id.RoomID, notRooms []id.RoomID) error {
	var all []id.RoomID
	if rooms != nil {
		all = *rooms
	}
	for _, r := range slices.Concat(all, notRooms) {
		if !looksLikeRoomID(r) {
			return mxhttp.BadJSON("%s: %q is not a room ID", name, r)
		}
	}
	return nil
}

// looksLikeRoomID reports whether r has a room ID's shape in any room version:
// the '!' sigil, then an opaque part (with ":server" before version 12), at
// most 255 bytes.
func looksLikeRoomID(r id.RoomID) bool {
	return strings.HasPrefix(string(r), "!") && len(r) > 1 && len(r) <= 255
}

func matchType(pattern, typ string) bool {
	ok, _ := path.Match(pattern, typ)
	return ok || pattern == typ
}

// Allows reports whether an event of this type and sender passes f.
func (f *EventFilter) Allows(typ string, sender id.UserID) bool {
	if f == nil {
		return true
	}
	for _, p := range f.NotTypes {
		if matchType(p, typ) {
			return false
		}
	}
	if f.Types != nil {
		ok := false
		for _, p := range *f.Types {
			if matchType(p, typ) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if slices.Contains(f.NotSenders, sender) {
		return false
	}
	if f.Senders != nil && !slices.Contains(*f.Senders, sender) {
		return false
	}
	return true
}

// AllowsEvent reports whether a room event passes f: its type and sender
// as Allows checks them, and the rel_type of its m.relates_to as MSC3874
// says. With rel_types only events related by one of those types pass;
// not_rel_types drops events related by one of its types and wins over
// rel_types, while events without a relation pass it.
func (f *RoomEventFilter) AllowsEvent(ev *rooms.Event) bool {
	if f == nil {
		return true
	}
	if !f.Allows(ev.Type, ev.Sender) {
		return false
	}
	if f.ContainsURL != nil && hasURL(ev) != *f.ContainsURL {
		return false
	}
	if ev.RelType != "" && slices.Contains(f.NotRelTypes, ev.RelType) {
		return false
	}
	return f.RelTypes == nil || (ev.RelType != "" && slices.Contains(*f.RelTypes, ev.RelType))
}

// hasURL reports whether the event's content has a url key, what a
// filter's contains_url selects on.
func hasURL(ev *rooms.Event) bool {
	if ev.PDU == nil {
		return false
	}
	var c struct {
		URL jsontext.Value `json:"url"`
	}
	return json.Unmarshal(ev.PDU.Content, &c) == nil && c.URL != nil
}

// AllowsRoom reports whether the room passes a room filter's room lists.
func (f *RoomEventFilter) AllowsRoom(roomID id.RoomID) bool {
	if f == nil {
		return true
	}
	if slices.Contains(f.NotRooms, roomID) {
		return false
	}
	return f.Rooms == nil || slices.Contains(*f.Rooms, roomID)
}

// AllowsRoom reports whether the top-level room filter admits the room.
func (f *RoomFilter) AllowsRoom(roomID id.RoomID) bool {
	if f == nil {
		return true
	}
	if slices.Contains(f.NotRooms, roomID) {
		return false
	}
	return f.Rooms == nil || slices.Contains(*f.Rooms, roomID)
}

// TimelineLimit returns the timeline limit (default 10, capped at 1000).
func (f *Filter) TimelineLimit() int {
	n := 10
	if f != nil && f.Room != nil && f.Room.Timeline != nil && f.Room.Timeline.Limit != nil {
		n = *f.Room.Timeline.Limit
	}
	return max(0, min(n, 1000))
}

func (f *Filter) timeline() *RoomEventFilter {
	if f == nil || f.Room == nil {
		return nil
	}
	return f.Room.Timeline
}

func (f *Filter) state() *RoomEventFilter {
	if f == nil || f.Room == nil {
		return nil
	}
	return f.Room.State
}

// LazyLoadMembers reports whether members are lazy-loaded.
func (f *Filter) LazyLoadMembers() bool {
	st := f.state()
	return st != nil && st.LazyLoadMembers
}
