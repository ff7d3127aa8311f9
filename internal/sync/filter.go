package sync

import (
	"path"
	"slices"

	"maunium.net/go/mautrix/id"
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
