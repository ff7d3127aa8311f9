package spaces

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// Chunk is a room's entry in the public room directory (the spec's
// PublishedRoomsChunk); a Summary extends it.
type Chunk struct {
	RoomID           id.RoomID `json:"room_id"`
	Name             string    `json:"name,omitempty"`
	Topic            string    `json:"topic,omitempty"`
	AvatarURL        string    `json:"avatar_url,omitempty"`
	CanonicalAlias   string    `json:"canonical_alias,omitempty"`
	NumJoinedMembers int       `json:"num_joined_members"`
	WorldReadable    bool      `json:"world_readable"`
	GuestCanJoin     bool      `json:"guest_can_join"`
	JoinRule         string    `json:"join_rule,omitempty"`
	RoomType         string    `json:"room_type,omitempty"`
}

// Summary is a room's summary (the spec's RoomSummary).
type Summary struct {
	Chunk
	AllowedRoomIDs []id.RoomID `json:"allowed_room_ids,omitempty"`
	Encryption     string      `json:"encryption,omitempty"`
	RoomVersion    string      `json:"room_version,omitempty"`
}

// Describe returns the room's directory entry, read from its current state.
func Describe(ctx context.Context, eng *rooms.Engine, roomID id.RoomID) (*Chunk, error) {
	v, err := (&Service{rooms: eng}).view(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("describe %s: %w", roomID, rooms.ErrNoRoom)
	}
	return &v.Chunk, nil
}

// roomView is what the package reads from a room's current state.
type roomView struct {
	Summary
	historyVisibility string
	members           map[id.UserID]string
	children          []*rooms.Event // m.space.child events with a via list, in spaces only
}

// view reads the room's current state; it returns nil for an unknown room.
func (s *Service) view(ctx context.Context, roomID id.RoomID) (*roomView, error) {
	state, err := s.rooms.CurrentState(ctx, roomID)
	if errors.Is(err, rooms.ErrNoRoom) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := &roomView{Summary: Summary{Chunk: Chunk{RoomID: roomID, JoinRule: "invite"}}, historyVisibility: "shared", members: map[id.UserID]string{}}
	for _, ev := range state {
		if ev.PDU == nil || ev.StateKey == nil {
			continue
		}
		sk := *ev.StateKey
		if sk != "" && ev.Type != "m.room.member" && ev.Type != "m.space.child" {
			continue // only these two types are keyed by something else
		}
		var c map[string]json.RawMessage
		json.Unmarshal(ev.PDU.Content, &c)
		str := func(k string) string {
			var s string
			json.Unmarshal(c[k], &s)
			return s
		}
		switch ev.Type {
		case "m.room.create":
			v.RoomType = str("type")
		case "m.room.name":
			v.Name = str("name")
		case "m.room.topic":
			v.Topic = plainTopic(c)
		case "m.room.avatar":
			v.AvatarURL = str("url")
		case "m.room.canonical_alias":
			v.CanonicalAlias = str("alias")
		case "m.room.join_rules":
			v.JoinRule = str("join_rule")
			var allow []struct {
				Type   string    `json:"type"`
				RoomID id.RoomID `json:"room_id"`
			}
			json.Unmarshal(c["allow"], &allow)
			for _, a := range allow {
				if a.Type == "m.room_membership" && a.RoomID != "" {
					v.AllowedRoomIDs = append(v.AllowedRoomIDs, a.RoomID)
				}
			}
		case "m.room.history_visibility":
			v.historyVisibility = str("history_visibility")
		case "m.room.guest_access":
			v.GuestCanJoin = str("guest_access") == "can_join"
		case "m.room.encryption":
			v.Encryption = str("algorithm")
		case "m.room.member":
			m := str("membership")
			v.members[id.UserID(sk)] = m
			if m == "join" {
				v.NumJoinedMembers++
			}
		case "m.space.child":
			var via []string
			if json.Unmarshal(c["via"], &via) == nil && len(via) > 0 && sk != "" {
				v.children = append(v.children, ev)
			}
		}
	}
	if v.RoomType != "m.space" {
		// m.space.child has no effect in rooms that are not spaces.
		v.children = nil
	}
	if v.JoinRule != "restricted" && v.JoinRule != "knock_restricted" {
		v.AllowedRoomIDs = nil
	}
	v.WorldReadable = v.historyVisibility == "world_readable"
	if ver, err := s.rooms.Version(ctx, roomID); err == nil {
		v.RoomVersion = string(ver)
	}
	return v, nil
}

// plainTopic returns the topic's text/plain form: the m.topic content
// block's text/plain representation, else the topic field.
func plainTopic(c map[string]json.RawMessage) string {
	var block struct {
		Text []struct {
			Mimetype string `json:"mimetype"`
			Body     string `json:"body"`
		} `json:"m.text"`
	}
	if json.Unmarshal(c["m.topic"], &block) == nil {
		for _, t := range block.Text {
			if t.Mimetype == "" || t.Mimetype == "text/plain" {
				return t.Body
			}
		}
	}
	var topic string
	json.Unmarshal(c["topic"], &topic)
	return topic
}

// canPreview reports whether user (possibly "" for an anonymous caller)
// may see the room's summary.
func (s *Service) canPreview(v *roomView, user id.UserID) bool {
	m := ""
	if user != "" {
		m = v.members[user]
	}
	switch m {
	case "ban":
		return false
	case "join", "invite", "knock":
		return true
	}
	return openToPreview(&v.Summary, func(allowed id.RoomID) bool {
		return user != "" && s.rooms.Membership(user, allowed) == "join"
	})
}

// openToPreview reports whether a room's summary may be shown to one who
// is not in it: the room is world-readable, anyone may join or knock, or
// it is restricted and inAllowed is true of one of its allowed rooms.
func openToPreview(sum *Summary, inAllowed func(id.RoomID) bool) bool {
	if sum.WorldReadable {
		return true
	}
	switch sum.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	case "restricted":
		return slices.ContainsFunc(sum.AllowedRoomIDs, inAllowed)
	}
	return false
}
