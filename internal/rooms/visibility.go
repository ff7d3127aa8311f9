package rooms

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"maunium.net/go/mautrix/id"
)

// Visibility answers, for one user and one room, which events the user may
// see under the room's history visibility rules, applied per event: the
// history_visibility in force when the event was sent, and the user's
// membership at that moment. "When" is the event's place in the room's
// topological order (depth, position), so history learnt late (backfilled
// at negative positions, or filling a gap) is judged where it belongs.
type Visibility struct {
	user    id.UserID
	hv      []posValue // history visibility changes, in topological order
	member  []posValue // the user's membership changes, in topological order
	current string     // the user's membership now
	// hvDefault is the history visibility before the first change known:
	// shared (the spec's default) when the room's history is complete
	// here, the one in force at the first event this node stored itself
	// when older history is missing (a room joined over federation whose
	// earlier history_visibility events have not been backfilled).
	hvDefault string
}

type posValue struct {
	at    TopoPoint
	value string
}

// at returns the value in force at p: the last change at or before it
// (changes at p count, so a user sees their own join).
func at(list []posValue, p TopoPoint, def string) string {
	i := sort.Search(len(list), func(i int) bool { return p.Before(list[i].at) })
	if i == 0 {
		return def
	}
	return list[i-1].value
}

// before returns the value in force just before p.
func before(list []posValue, p TopoPoint, def string) string {
	i := sort.Search(len(list), func(i int) bool { return !list[i].at.Before(p) })
	if i == 0 {
		return def
	}
	return list[i-1].value
}

// visibilityQuery reads a room's history_visibility changes, one user's
// membership changes and its create event (whose absence means that older
// history is missing here). Each part is a range of the events_room_state
// index, so the cost follows the number of changes, not the length of the
// room's history. A change the full state of a room joined with partial
// state rejected (partial.go) stays in the events table, rejected: it
// changed nothing.
const visibilityQuery = `SELECT pos, depth, type, json FROM events WHERE room_id = $1 AND type = 'm.room.history_visibility' AND state_key = '' AND rejected = FALSE
	UNION ALL
	SELECT pos, depth, type, json FROM events WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2 AND rejected = FALSE
	UNION ALL
	SELECT pos, depth, type, '{}' FROM events WHERE room_id = $1 AND type = 'm.room.create' AND state_key = ''`

// Visibility loads what is needed to check the user's view of the room.
func (e *Engine) Visibility(ctx context.Context, roomID id.RoomID, user id.UserID) (*Visibility, error) {
	v := &Visibility{user: user, current: e.Membership(user, roomID), hvDefault: "shared"}
	rows, err := e.db.Query(ctx, visibilityQuery, roomID, user)
	if err != nil {
		return nil, fmt.Errorf("load visibility: %w", err)
	}
	defer rows.Close()
	complete := false
	for rows.Next() {
		var p TopoPoint
		var typ, raw string
		if err := rows.Scan(&p.Pos, &p.Depth, &typ, &raw); err != nil {
			return nil, err
		}
		switch typ {
		case "m.room.create":
			complete = true
		case "m.room.member":
			v.member = append(v.member, posValue{p, historyContent(raw).Membership})
		default:
			v.hv = append(v.hv, posValue{p, historyContent(raw).visibility()})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	byPoint := func(a, b posValue) int { return cmpPoints(a.at, b.at) }
	slices.SortFunc(v.hv, byPoint)
	slices.SortFunc(v.member, byPoint)
	if !complete {
		if v.hvDefault, err = e.firstStoredVisibility(ctx, roomID); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// firstStoredSnapshot returns the snapshot of the state before the first
// event this node stored itself (not backfilled) in the room, 0 when there
// is none.
func (e *Engine) firstStoredSnapshot(ctx context.Context, roomID id.RoomID) (int64, error) {
	var snap int64
	err := e.db.QueryRow(ctx, "SELECT snapshot_before FROM events WHERE room_id = $1 AND pos > 0 ORDER BY pos LIMIT 1", roomID).Scan(&snap)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("first stored event of %s: %w", roomID, err)
	}
	return snap, nil
}

// cmpPoints orders topological points.
func cmpPoints(a, b TopoPoint) int {
	if c := cmp.Compare(a.Depth, b.Depth); c != 0 {
		return c
	}
	return cmp.Compare(a.Pos, b.Pos)
}

// visibilityContent is what Visibility reads of the events it loads.
type visibilityContent struct {
	HistoryVisibility string `json:"history_visibility"`
	Membership        string `json:"membership"`
}

func historyContent(raw string) visibilityContent {
	var c visibilityContent
	if p, err := parsePDU([]byte(raw)); err == nil {
		json.Unmarshal(p.Content, &c)
	}
	return c
}

// visibility returns the history visibility setting; a redacted or odd
// value counts as the default, shared.
func (c visibilityContent) visibility() string {
	switch c.HistoryVisibility {
	case "world_readable", "shared", "invited", "joined":
		return c.HistoryVisibility
	}
	return "shared"
}

// firstStoredVisibility returns the history visibility in force before the
// first event this node stored itself (not backfilled) in the room: for a
// room joined over federation, the one in the state the join came with.
func (e *Engine) firstStoredVisibility(ctx context.Context, roomID id.RoomID) (string, error) {
	snap, err := e.firstStoredSnapshot(ctx, roomID)
	if err != nil {
		return "", err
	}
	state, _, err := e.snapshotState(ctx, snap)
	if err != nil {
		return "", err
	}
	hvID := state[stateKey{"m.room.history_visibility", ""}]
	if hvID == "" {
		return "shared", nil
	}
	evs, err := e.Events(ctx, []id.EventID{hvID})
	if err != nil || len(evs) == 0 {
		return "shared", err
	}
	return historyContent(string(evs[0].JSON)).visibility(), nil
}

// CanSee reports whether the user may see ev.
func (v *Visibility) CanSee(ev *Event) bool {
	if ev.Type == "m.room.member" && ev.StateKey != nil && id.UserID(*ev.StateKey) == v.user && v.user != "" {
		return true // everyone sees their own membership changes, their leave too
	}
	p := PointOf(ev)
	hv := before(v.hv, p, v.defaultHV()) // the setting before the event itself
	if ev.Type == "m.room.history_visibility" {
		// The change is visible under the more permissive of both.
		if next := at(v.hv, p, v.defaultHV()); rank(next) < rank(hv) {
			hv = next
		}
	}
	if hv == "world_readable" {
		return true
	}
	m := at(v.member, p, "leave")
	switch {
	case m == "join":
		return true
	case hv == "shared" && v.joinedAfter(p):
		return true
	case hv == "invited" && (m == "invite" || (m == "join")):
		return true
	}
	return false
}

// defaultHV is the history visibility before the first change known.
func (v *Visibility) defaultHV() string {
	if v.hvDefault == "" {
		return "shared"
	}
	return v.hvDefault
}

// MembershipAt returns the user's membership at ev, including any change ev
// itself makes, and "leave" before they had any: the value of the spec's
// unsigned.membership.
func (v *Visibility) MembershipAt(ev *Event) string {
	return at(v.member, PointOf(ev), "leave")
}

// joinedAfter reports whether the user was joined at any point after p.
func (v *Visibility) joinedAfter(p TopoPoint) bool {
	if v.current == "join" {
		return true
	}
	for _, m := range v.member {
		if p.Before(m.at) && m.value == "join" {
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
