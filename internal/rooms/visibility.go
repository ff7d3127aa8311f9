package rooms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	"maunium.net/go/mautrix/id"
)

// Visibility answers, for one user and one room, which events the user may
// see under the room's history visibility rules, applied per event: the
// history_visibility in force when the event was sent, and the user's
// membership at that moment.
type Visibility struct {
	user    id.UserID
	hv      []posValue // history visibility changes, by position
	member  []posValue // the user's membership changes, by position
	current string     // the user's membership now
}

type posValue struct {
	pos   int64
	value string
}

// at returns the value in force at position pos: the last change at or
// before it (changes at pos count, so a user sees their own join).
func at(list []posValue, pos int64, def string) string {
	i := sort.Search(len(list), func(i int) bool { return list[i].pos > pos })
	if i == 0 {
		return def
	}
	return list[i-1].value
}

// visibilityQuery reads a room's history_visibility changes and one user's
// membership changes, in position order. Each half is a range of the
// events_room_state index, so the cost follows the number of changes, not
// the length of the room's history.
const visibilityQuery = `SELECT pos, type, json FROM events WHERE room_id = $1 AND type = 'm.room.history_visibility' AND state_key = ''
	UNION ALL
	SELECT pos, type, json FROM events WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2
	ORDER BY pos`

// Visibility loads what is needed to check the user's view of the room.
func (e *Engine) Visibility(ctx context.Context, roomID id.RoomID, user id.UserID) (*Visibility, error) {
	v := &Visibility{user: user, current: e.Membership(user, roomID)}
	rows, err := e.db.Query(ctx, visibilityQuery, roomID, user)
	if err != nil {
		return nil, fmt.Errorf("load visibility: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pos int64
		var typ, raw string
		if err := rows.Scan(&pos, &typ, &raw); err != nil {
			return nil, err
		}
		p, err := parsePDU([]byte(raw))
		if err != nil {
			return nil, err
		}
		var c struct {
			HistoryVisibility string `json:"history_visibility"`
			Membership        string `json:"membership"`
		}
		json.Unmarshal(p.Content, &c)
		if typ == "m.room.member" {
			v.member = append(v.member, posValue{pos, c.Membership})
		} else {
			// A redacted or odd value counts as the default, shared.
			hv := c.HistoryVisibility
			switch hv {
			case "world_readable", "shared", "invited", "joined":
			default:
				hv = "shared"
			}
			v.hv = append(v.hv, posValue{pos, hv})
		}
	}
	return v, rows.Err()
}

// CanSee reports whether the user may see ev.
func (v *Visibility) CanSee(ev *Event) bool {
	if ev.Type == "m.room.member" && ev.StateKey != nil && id.UserID(*ev.StateKey) == v.user && v.user != "" {
		return true // everyone sees their own membership changes, their leave too
	}
	hv := at(v.hv, ev.Pos-1, "shared") // the setting before the event itself
	if ev.Type == "m.room.history_visibility" {
		// The change is visible under the more permissive of both.
		if next := at(v.hv, ev.Pos, "shared"); rank(next) < rank(hv) {
			hv = next
		}
	}
	if hv == "world_readable" {
		return true
	}
	m := at(v.member, ev.Pos, "leave")
	switch {
	case m == "join":
		return true
	case hv == "shared" && v.joinedAfter(ev.Pos):
		return true
	case hv == "invited" && (m == "invite" || (m == "join")):
		return true
	}
	return false
}

// MembershipAt returns the user's membership at ev, including any change ev
// itself makes, and "leave" before they had any: the value of the spec's
// unsigned.membership.
func (v *Visibility) MembershipAt(ev *Event) string {
	return at(v.member, ev.Pos, "leave")
}

// joinedAfter reports whether the user was joined at any point after pos.
func (v *Visibility) joinedAfter(pos int64) bool {
	if v.current == "join" {
		return true
	}
	for _, m := range v.member {
		if m.pos > pos && m.value == "join" {
			return true
		}
	}
	return false
}

func rank(hv string) int {
	switch hv {
	case "world_readable":
		return 0
	case "shared":
		return 1
	case "invited":
		return 2
	}
	return 3
}

// FilterVisible returns the events of evs the user may see.
func (v *Visibility) FilterVisible(evs []*Event) []*Event {
	out := evs[:0:0]
	for _, ev := range evs {
		if v.CanSee(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// ReadableUpTo answers the first question of every read endpoint: may the
// user read the room at all, and up to which stream position. Joined users
// read everything (math.MaxInt64), and so does anyone in a world-readable
// room, a user who left it included; users who left or were banned read up
// to that moment (only with allowLeft). membership is the user's membership
// unless they forgot the room. The per-event history visibility rules are
// Visibility's.
func (e *Engine) ReadableUpTo(ctx context.Context, user id.UserID, roomID id.RoomID, allowLeft bool) (upTo int64, membership string, ok bool, err error) {
	var pos int64
	err = e.db.QueryRow(ctx, "SELECT membership, pos FROM memberships WHERE room_id = $1 AND user_id = $2 AND forgotten = FALSE",
		roomID, user).Scan(&membership, &pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, fmt.Errorf("load membership: %w", err)
	}
	if membership == "join" {
		return math.MaxInt64, membership, true, nil
	}
	open, err := e.worldReadable(ctx, roomID)
	if err != nil {
		return 0, membership, false, err
	}
	switch {
	case open:
		return math.MaxInt64, membership, true, nil
	case allowLeft && (membership == "leave" || membership == "ban"):
		return pos, membership, true, nil
	}
	return 0, membership, false, nil
}

// worldReadable reports whether the room's current history visibility is
// world_readable (false for a room this node does not know).
func (e *Engine) worldReadable(ctx context.Context, roomID id.RoomID) (bool, error) {
	hv, err := e.StateEvent(ctx, roomID, "m.room.history_visibility", "")
	if errors.Is(err, ErrNoRoom) || (err == nil && hv == nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var c struct {
		HistoryVisibility string `json:"history_visibility"`
	}
	json.Unmarshal(hv.Content(), &c)
	return c.HistoryVisibility == "world_readable", nil
}
