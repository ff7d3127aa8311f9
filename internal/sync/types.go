package sync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// Token is a sync position: Pos is the node's durable stream position,
// Eph the in-memory serial of ephemeral data (typing).
type Token struct {
	Pos int64
	Eph int64

	// initial marks the absence of a token (an initial sync), which is not
	// the same as position zero on a node that has stored nothing yet.
	initial bool
}

func (t Token) String() string { return fmt.Sprintf("s%d_%d", t.Pos, t.Eph) }

// ParseToken reads a token made by String. An empty string is the zero
// token (initial sync).
func ParseToken(s string) (Token, error) {
	if s == "" {
		return Token{initial: true}, nil
	}
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return Token{}, fmt.Errorf("bad token %q", s)
	}
	a, b, _ := strings.Cut(rest, "_")
	pos, err := strconv.ParseInt(a, 10, 64)
	if err != nil || pos < 0 {
		return Token{}, fmt.Errorf("bad token %q", s)
	}
	var eph int64
	if b != "" {
		if eph, err = strconv.ParseInt(b, 10, 64); err != nil || eph < 0 {
			return Token{}, fmt.Errorf("bad token %q", s)
		}
	}
	return Token{Pos: pos, Eph: eph}, nil
}

// Events is a {"events": [...]} list.
type Events struct {
	Events []any `json:"events"`
}

// Add appends an event.
func (e *Events) Add(ev any) { e.Events = append(e.Events, ev) }

// Empty reports whether the list has no events.
func (e *Events) Empty() bool { return e == nil || len(e.Events) == 0 }

// Timeline is a room's timeline section. Its events are typed, not any,
// so that encoding thousands of them allocates nothing for each.
type Timeline struct {
	Events    []*rooms.ClientEvent `json:"events"`
	Limited   bool                 `json:"limited"`
	PrevBatch string               `json:"prev_batch,omitempty"`
}

// Counts are unread notification counts.
type Counts struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

// Summary is a room summary (for clients to name rooms).
type Summary struct {
	Heroes             []id.UserID `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int        `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int        `json:"m.invited_member_count,omitempty"`
}

// JoinedRoom is a joined room's section.
type JoinedRoom struct {
	RoomState
	Summary                   *Summary               `json:"summary,omitempty"`
	Timeline                  *Timeline              `json:"timeline,omitempty"`
	Ephemeral                 *Events                `json:"ephemeral,omitempty"`
	AccountData               *Events                `json:"account_data,omitempty"`
	UnreadNotifications       *Counts                `json:"unread_notifications,omitempty"`
	UnreadThreadNotifications map[id.EventID]*Counts `json:"unread_thread_notifications,omitempty"`
}

// RoomState is the state part of a joined or left room's section: State
// (the state at the start of the timeline), or, when the client asked for
// use_state_after (MSC4222, spec v1.16), the state at its end under the
// name the client asked with. Exactly one of the three is set.
type RoomState struct {
	State              *Events `json:"state,omitempty"`
	StateAfter         *Events `json:"state_after,omitempty"`
	UnstableStateAfter *Events `json:"org.matrix.msc4222.state_after,omitempty"`
}

// setState puts evs under the name mode calls for.
func (rs *RoomState) setState(mode StateMode, evs *Events) {
	switch mode {
	case StateAfter:
		rs.StateAfter = evs
	case UnstableStateAfter:
		rs.UnstableStateAfter = evs
	default:
		rs.State = evs
	}
}

// InvitedRoom is an invited room's section (stripped state).
type InvitedRoom struct {
	InviteState *Events `json:"invite_state"`
}

// KnockedRoom is a knocked room's section (stripped state).
type KnockedRoom struct {
	KnockState *Events `json:"knock_state"`
}

// LeftRoom is a left room's section.
type LeftRoom struct {
	RoomState
	Timeline    *Timeline `json:"timeline,omitempty"`
	AccountData *Events   `json:"account_data,omitempty"`
}

// Rooms groups rooms by membership.
type Rooms struct {
	Join   map[id.RoomID]*JoinedRoom  `json:"join,omitempty"`
	Invite map[id.RoomID]*InvitedRoom `json:"invite,omitempty"`
	Knock  map[id.RoomID]*KnockedRoom `json:"knock,omitempty"`
	Leave  map[id.RoomID]*LeftRoom    `json:"leave,omitempty"`
}

// DeviceLists reports users whose devices changed.
type DeviceLists struct {
	Changed []id.UserID `json:"changed,omitempty"`
	Left    []id.UserID `json:"left,omitempty"`
}

// Response is a /sync response.
type Response struct {
	NextBatch                    string         `json:"next_batch"`
	Rooms                        *Rooms         `json:"rooms,omitempty"`
	AccountData                  *Events        `json:"account_data,omitempty"`
	Presence                     *Events        `json:"presence,omitempty"`
	ToDevice                     *Events        `json:"to_device,omitempty"`
	DeviceLists                  *DeviceLists   `json:"device_lists,omitempty"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count,omitempty"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types,omitzero"` // [] is sent, nil is not

	// news is set when something worth returning early was added.
	news bool
}

// MarkNews tells the long-poll that the response has content to return.
func (r *Response) MarkNews() { r.news = true }

// JoinedRoom returns (creating if needed) the joined-room section. A new
// section carries an empty ephemeral list, as clients (and Complement)
// read a joined room's ephemeral events without checking that the key is
// there.
func (r *Response) JoinedRoom(roomID id.RoomID) *JoinedRoom {
	if r.Rooms == nil {
		r.Rooms = &Rooms{}
	}
	if r.Rooms.Join == nil {
		r.Rooms.Join = map[id.RoomID]*JoinedRoom{}
	}
	jr := r.Rooms.Join[roomID]
	if jr == nil {
		jr = &JoinedRoom{Ephemeral: &Events{Events: []any{}}}
		r.Rooms.Join[roomID] = jr
	}
	return jr
}

// Request describes one /sync computation, as Sources see it.
type Request struct {
	User   id.UserID
	Device id.DeviceID
	Since  Token // zero for an initial sync
	To     Token // upper bound, inclusive
	// FullState asks for complete state (initial sync or full_state=true).
	FullState bool
	Filter    *Filter
	// Joined lists the rooms the user is joined to at To.
	Joined []id.RoomID
	// NewlyJoined are rooms joined after Since (their room sections get
	// full data).
	NewlyJoined map[id.RoomID]bool
	// newlyShared computes NewlyShared once, on first use; nil on initial
	// and full-state syncs.
	newlyShared func() (map[id.UserID]bool, error)
	// StateMode says which state room sections carry: the state at the
	// start of the timeline (the default) or at its end (use_state_after).
	StateMode StateMode
	// Ignored are the users User ignores: their invites and non-state
	// timeline events are left out.
	Ignored map[id.UserID]bool

	// Skip names the parts of the response this request leaves out that
	// no filter can: /sync skips none; sliding sync skips the extensions
	// the client did not enable, and delivers to-device messages on a
	// token of their own.
	Skip Parts

	aggPending map[int64][]aggItem // timeline events awaiting aggregations
}

// Parts is a set of response parts that sync filters cannot leave out.
type Parts uint

const (
	// ToDevicePart is to_device: delivering the device's to-device
	// messages and deleting those the Since token acknowledges.
	ToDevicePart Parts = 1 << iota
	// DeviceKeysPart is device_lists, device_one_time_keys_count and
	// device_unused_fallback_key_types.
	DeviceKeysPart
)

// Skips reports whether the request leaves out every part of p.
func (r *Request) Skips(p Parts) bool { return r.Skip&p == p }

// StateMode is the kind of state a sync's room sections carry.
type StateMode int

const (
	// StateBefore is "state": the state at the start of the timeline.
	StateBefore StateMode = iota
	// StateAfter is "state_after": the state at the end of the timeline
	// (use_state_after=true, spec v1.16).
	StateAfter
	// UnstableStateAfter is StateAfter under MSC4222's unstable names
	// (org.matrix.msc4222.use_state_after, org.matrix.msc4222.state_after).
	UnstableStateAfter
)

// Initial reports whether this is an initial sync.
func (r *Request) Initial() bool { return r.Since.initial }

// NewlyShared returns, on incremental syncs, the users who came to share a
// joined room with User in (Since, To]: every member of a room User joined
// then, and whoever joined one of User's rooms then. Their presence is news
// to User although it did not change. They are computed for the sync
// source that asks, not for every sync.
func (r *Request) NewlyShared() (map[id.UserID]bool, error) {
	if r.newlyShared == nil {
		return nil, nil
	}
	return r.newlyShared()
}

// Source adds its part to sync responses. Fill is called with the
// response after the room timelines are in; it must call resp.MarkNews()
// when it added anything a waiting client should be woken for.
type Source interface {
	Fill(ctx context.Context, req *Request, resp *Response) error
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, req *Request, resp *Response) error

// Fill calls f.
func (f SourceFunc) Fill(ctx context.Context, req *Request, resp *Response) error {
	return f(ctx, req, resp)
}

// clientEvent renders an event for a sync response.
func clientEvent(ev *rooms.Event, req *Request) *rooms.ClientEvent {
	return timelineEvent(ev, req, "")
}

// timelineEvent renders a timeline event with the user's membership at it
// (unsigned.membership).
func timelineEvent(ev *rooms.Event, req *Request, membership string) *rooms.ClientEvent {
	return ev.Client(rooms.ClientOptions{User: req.User, Device: req.Device, OmitRoomID: true, Membership: membership})
}
