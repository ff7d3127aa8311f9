package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// SlidingPath is the simplified sliding sync endpoint (MSC4186, under its
// unstable prefix).
const SlidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// Request bounds of sliding sync.
const (
	maxSlidingLists         = 100
	maxSlidingSubscriptions = 1000
	maxSlidingBodyBytes     = 1 << 20
	maxTimelineLimit        = 1000
)

// slidingRequest is the body of a sliding sync request. It takes the shapes
// clients send today (matrix-rust-sdk, matrix-js-sdk) and the ones the
// MSC's latest text names: pos and timeout in the query or the body,
// ranges or range, is_invite or is_invited, required_state as
// [type, state_key] pairs or as an include/exclude object. Room
// subscriptions are sticky, as MSC3575 made them and matrix-js-sdk
// expects: they hold for the connection until unsubscribe_rooms names
// them; clients that send them all each time are served alike.
type slidingRequest struct {
	ConnID            string                     `json:"conn_id"`
	TxnID             string                     `json:"txn_id"`
	Pos               string                     `json:"pos"`
	Timeout           *int64                     `json:"timeout"`
	SetPresence       string                     `json:"set_presence"`
	Lists             map[string]*slidingList    `json:"lists"`
	RoomSubscriptions map[id.RoomID]*roomConfig  `json:"room_subscriptions"`
	UnsubscribeRooms  []id.RoomID                `json:"unsubscribe_rooms"`
	Extensions        map[string]json.RawMessage `json:"extensions"`
	extensions        extensionsConfig           // Extensions, parsed by check
}

// roomConfig says what to send of a room: the newest timelineLimit events
// and the state required_state selects.
type roomConfig struct {
	TimelineLimit int           `json:"timeline_limit"`
	RequiredState requiredState `json:"required_state"`
}

// slidingList is a list: the user's rooms that pass its filters, newest
// activity first, of which the ranges' rooms are sent.
type slidingList struct {
	roomConfig
	Ranges  [][]int         `json:"ranges"`
	Range   []int           `json:"range"`
	Filters *slidingFilters `json:"filters"`
}

// slidingFilters are a list's room filters; unset ones filter nothing.
type slidingFilters struct {
	IsDM         *bool       `json:"is_dm"`
	IsEncrypted  *bool       `json:"is_encrypted"`
	IsInvite     *bool       `json:"is_invite"`
	IsInvited    *bool       `json:"is_invited"`
	RoomTypes    *[]*string  `json:"room_types"`
	NotRoomTypes []*string   `json:"not_room_types"`
	Spaces       []id.RoomID `json:"spaces"`
	Tags         []string    `json:"tags"`
	NotTags      []string    `json:"not_tags"`
}

// invited is the is_invite filter under either of its names.
func (f *slidingFilters) invited() *bool {
	if f.IsInvited != nil {
		return f.IsInvited
	}
	return f.IsInvite
}

// ranges returns the list's inclusive index ranges, checked.
func (l *slidingList) ranges() ([][2]int, error) {
	raw := l.Ranges
	if l.Range != nil {
		raw = append(raw, l.Range)
	}
	out := make([][2]int, 0, len(raw))
	for _, r := range raw {
		if len(r) != 2 || r[0] < 0 || r[1] < r[0] {
			return nil, mxhttp.InvalidParam("a range is [first, last] with 0 <= first <= last")
		}
		out = append(out, [2]int{r[0], r[1]})
	}
	return out, nil
}

// requiredState selects state events: include and exclude are (type, state
// key) patterns where "*" matches anything and the state key "$ME" the
// user; lazy asks for the member events of the timeline's senders (the
// pair ["m.room.member", "$LAZY"]).
type requiredState struct {
	include []StateKey
	exclude []StateKey
	lazy    bool

	canonical string // String's result, computed when the request is read
}

// UnmarshalJSON reads required_state as [type, state_key] pairs (what
// clients send) or as {"include", "exclude", "lazy_members"} (the MSC's
// latest text, where a missing type or state key matches any).
func (rs *requiredState) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var pairs [][]string
		if err := json.Unmarshal(b, &pairs); err != nil {
			return err
		}
		for _, p := range pairs {
			if len(p) != 2 {
				return errors.New("required_state entries are [type, state_key] pairs")
			}
			if p[0] == "m.room.member" && p[1] == "$LAZY" {
				rs.lazy = true
				continue
			}
			rs.include = append(rs.include, StateKey{p[0], p[1]})
		}
		rs.canonical = rs.format()
		return nil
	}
	type element struct {
		Type     *string `json:"type"`
		StateKey *string `json:"state_key"`
	}
	var obj struct {
		Include     []element `json:"include"`
		Exclude     []element `json:"exclude"`
		LazyMembers bool      `json:"lazy_members"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	pattern := func(e element) StateKey {
		k := StateKey{"*", "*"}
		if e.Type != nil {
			k.Type = *e.Type
		}
		if e.StateKey != nil {
			k.StateKey = *e.StateKey
		}
		return k
	}
	for _, e := range obj.Include {
		rs.include = append(rs.include, pattern(e))
	}
	for _, e := range obj.Exclude {
		rs.exclude = append(rs.exclude, pattern(e))
	}
	rs.lazy = obj.LazyMembers
	rs.canonical = rs.format()
	return nil
}

// matches reports whether the pattern k matches state (typ, key).
func (k StateKey) matches(typ, key string, me id.UserID) bool {
	return (k.Type == "*" || k.Type == typ) &&
		(k.StateKey == "*" || k.StateKey == key || k.StateKey == "$ME" && key == string(me))
}

// wants reports whether the state (typ, key) is selected; lazy holds the
// users whose member events lazy loading sends. With lazy loading on, a
// wildcard type brings in no member events: only lazy loading and
// patterns naming m.room.member do. Lazy-loaded members are not subject
// to exclude.
func (rs *requiredState) wants(typ, key string, me id.UserID, lazy map[id.UserID]bool) bool {
	if rs.lazy && typ == "m.room.member" && lazy[id.UserID(key)] {
		return true
	}
	for _, k := range rs.exclude {
		if k.matches(typ, key, me) {
			return false
		}
	}
	for _, k := range rs.include {
		if k.Type == "*" && rs.lazy && typ == "m.room.member" {
			continue
		}
		if k.matches(typ, key, me) {
			return true
		}
	}
	return false
}

// String is a canonical form of the selection, to tell whether it
// changed. It is computed once, when the request is read, however many
// rooms the selection covers.
func (rs *requiredState) String() string { return rs.canonical }

func (rs *requiredState) format() string {
	var b strings.Builder
	for _, k := range rs.include {
		fmt.Fprintf(&b, "+%q/%q", k.Type, k.StateKey)
	}
	for _, k := range rs.exclude {
		fmt.Fprintf(&b, "-%q/%q", k.Type, k.StateKey)
	}
	if rs.lazy {
		b.WriteString("$LAZY")
	}
	return b.String()
}

// combinedConfig is the union of the room configs of every list and
// subscription a room matches (the MSC's "superset").
type combinedConfig struct {
	limit     int
	selectors []*requiredState
	lists     []string
}

func (c *combinedConfig) add(rc *roomConfig) {
	c.limit = max(c.limit, min(rc.TimelineLimit, maxTimelineLimit))
	c.selectors = append(c.selectors, &rc.RequiredState)
}

// lazy reports whether any of the configs lazy-loads members.
func (c *combinedConfig) lazy() bool {
	return slices.ContainsFunc(c.selectors, func(rs *requiredState) bool { return rs.lazy })
}

// wants reports whether any of the configs selects the state (typ, key).
func (c *combinedConfig) wants(typ, key string, me id.UserID, lazy map[id.UserID]bool) bool {
	return slices.ContainsFunc(c.selectors, func(rs *requiredState) bool { return rs.wants(typ, key, me, lazy) })
}

// key is the canonical form of the combined required_state.
func (c *combinedConfig) key() string {
	if len(c.selectors) == 1 {
		return c.selectors[0].String()
	}
	keys := make([]string, len(c.selectors))
	for i, rs := range c.selectors {
		keys[i] = rs.String()
	}
	slices.Sort(keys)
	return strings.Join(slices.Compact(keys), "|")
}

// SlidingResponse is a sliding sync response.
type SlidingResponse struct {
	Pos        string                       `json:"pos"`
	TxnID      string                       `json:"txn_id,omitempty"`
	Lists      map[string]SlidingListResult `json:"lists"`
	Rooms      map[id.RoomID]*SlidingRoom   `json:"rooms"`
	Extensions map[string]any               `json:"extensions"`
	news       bool
}

// SlidingListResult is a list's part of the response.
type SlidingListResult struct {
	// Count is the number of rooms passing the list's filters.
	Count int `json:"count"`
}

// SlidingRoom is a room's part of a sliding sync response: on an initial
// one, everything the room's config asks for; otherwise what changed.
type SlidingRoom struct {
	// Name and Avatar are JSON strings, or null once removed.
	Name    json.RawMessage `json:"name,omitempty"`
	Avatar  json.RawMessage `json:"avatar,omitempty"`
	Heroes  []SlidingHero   `json:"heroes,omitempty"`
	IsDM    *bool           `json:"is_dm,omitempty"`
	Initial bool            `json:"initial,omitempty"`
	// ExpandedTimeline marks a timeline that repeats events sent before,
	// because the room's timeline_limit grew; UnstableExpandedTimeline is
	// the name clients read today.
	ExpandedTimeline         bool                 `json:"expanded_timeline,omitempty"`
	UnstableExpandedTimeline bool                 `json:"unstable_expanded_timeline,omitempty"`
	RequiredState            []any                `json:"required_state,omitempty"`
	Timeline                 []*rooms.ClientEvent `json:"timeline,omitempty"`
	PrevBatch                string               `json:"prev_batch,omitempty"`
	Limited                  bool                 `json:"limited,omitempty"`
	NumLive                  *int                 `json:"num_live,omitempty"`
	JoinedCount              *int                 `json:"joined_count,omitempty"`
	InvitedCount             *int                 `json:"invited_count,omitempty"`
	NotificationCount        int                  `json:"notification_count"`
	HighlightCount           int                  `json:"highlight_count"`
	BumpStamp                int64                `json:"bump_stamp,omitempty"`
	Membership               string               `json:"membership,omitempty"`
	Lists                    []string             `json:"lists,omitempty"`
	InviteState              []any                `json:"invite_state,omitempty"`
	KnockState               []any                `json:"knock_state,omitempty"`
}

// SlidingHero is a member that clients may name a room after.
type SlidingHero struct {
	UserID      id.UserID `json:"user_id"`
	Displayname string    `json:"displayname,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

func (s *Service) handleSliding(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	body, err := mxhttp.ReadBody(r, maxSlidingBodyBytes)
	if err != nil {
		return nil, err
	}
	var req slidingRequest
	if err := mxhttp.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if err := req.check(r); err != nil {
		return nil, err
	}
	if s.OnSync != nil {
		s.OnSync(sess.UserID, req.SetPresence)
	}
	conn, prev, err := s.conns.begin(connKey{sess.UserID, sess.DeviceID, req.ConnID}, req.Pos)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(0)
	if req.Timeout != nil && req.Pos != "" {
		timeout = min(time.Duration(*req.Timeout)*time.Millisecond, maxSyncTimeout)
	}
	ctx := r.Context()
	deadline := time.Now().Add(timeout)
	for {
		ch := s.Notifier.Channel(sess.UserID)
		resp, next, err := s.buildSliding(ctx, sess, &req, prev)
		if err != nil {
			return nil, err
		}
		if resp.news || req.Pos == "" || !time.Now().Before(deadline) {
			resp.Pos = s.conns.save(conn, next)
			return resp, nil
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		s.Notifier.Wait(wctx, ch)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// check validates the request and takes pos and timeout from the query
// when the body has none (clients send them either way).
func (req *slidingRequest) check(r *http.Request) error {
	q := r.URL.Query()
	if req.Pos == "" {
		req.Pos = q.Get("pos")
	}
	if t := q.Get("timeout"); t != "" && req.Timeout == nil {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return mxhttp.InvalidParam("invalid timeout")
		}
		req.Timeout = &ms
	}
	if req.Timeout != nil && *req.Timeout < 0 {
		return mxhttp.InvalidParam("invalid timeout")
	}
	if req.SetPresence == "" {
		req.SetPresence = q.Get("set_presence")
	}
	switch req.SetPresence {
	case "", "online", "offline", "unavailable":
	default:
		return mxhttp.InvalidParam("invalid set_presence")
	}
	if len(req.ConnID) > maxConnIDBytes {
		return mxhttp.InvalidParam("conn_id is longer than %d bytes", maxConnIDBytes)
	}
	if len(req.Lists) > maxSlidingLists {
		return mxhttp.InvalidParam("at most %d lists", maxSlidingLists)
	}
	if len(req.RoomSubscriptions) > maxSlidingSubscriptions {
		return mxhttp.InvalidParam("at most %d room subscriptions", maxSlidingSubscriptions)
	}
	for name, l := range req.Lists {
		if l == nil {
			return mxhttp.BadJSON("list %q is not an object", name)
		}
		if l.TimelineLimit < 0 {
			return mxhttp.InvalidParam("list %q: timeline_limit must not be negative", name)
		}
		if _, err := l.ranges(); err != nil {
			return err
		}
	}
	for roomID, sub := range req.RoomSubscriptions {
		if sub == nil || !looksLikeRoomID(roomID) {
			return mxhttp.BadJSON("room subscription %q is not a room ID with an object", roomID)
		}
		if sub.TimelineLimit < 0 {
			return mxhttp.InvalidParam("room subscription %s: timeline_limit must not be negative", roomID)
		}
	}
	ext, err := parseExtensions(req.Extensions)
	if err != nil {
		return err
	}
	req.extensions = ext
	return nil
}
