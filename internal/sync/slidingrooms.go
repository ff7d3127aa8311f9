package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// slidingBuild is the work of one sliding sync response. The rooms' data
// comes from the /sync machinery (timeline, stateDelta, summarize,
// StrippedState, the sources), run on creq.
type slidingBuild struct {
	s    *Service
	req  *slidingRequest
	prev *connState
	next *connState
	creq *Request
	resp *SlidingResponse

	direct map[id.RoomID]bool
	tags   map[id.RoomID][]string // loaded when a list filters by tags
	facts  map[id.RoomID]*roomFacts
	// configs are the combined configs of the rooms of the window: the
	// rooms the lists' ranges and the subscriptions select.
	configs map[id.RoomID]*combinedConfig
	// joined are the joined rooms of the window, whose unread counts the
	// response carries when they change.
	joined []id.RoomID
	// changed are the rooms with new events since the previous response,
	// when its room list was followed (nil when the list was built
	// afresh).
	changed map[id.RoomID]bool
	// sameRooms says that the window's rooms and their configs are the
	// previous response's.
	sameRooms bool
}

// listRoom is a room of the user's room list.
type listRoom struct {
	membershipRow
	// bump orders the list: the position of the room's latest message-like
	// event for joined rooms, of the user's membership for the others.
	bump int64
}

// roomFacts are what list filters ask of a room.
type roomFacts struct {
	encrypted bool
	roomType  *string
}

func (s *Service) buildSliding(ctx context.Context, sess *accounts.Session, req *slidingRequest, prev *connState) (*SlidingResponse, *connState, error) {
	subs, err := subscriptions(prev.subscriptions, req)
	if err != nil {
		return nil, nil, err
	}
	to := Token{Pos: s.db.Visible(), Eph: s.Eph.Load()}
	b := &slidingBuild{
		s: s, req: req, prev: prev,
		next: &connState{
			token: to, rooms: prev.rooms.successor(), counts: map[string]int{},
			subscriptions: subs,
		},
		creq:  &Request{User: sess.UserID, Device: sess.DeviceID, Since: prev.token, To: to, FullState: prev.token.initial, NewlyJoined: map[id.RoomID]bool{}},
		resp:  &SlidingResponse{TxnID: req.TxnID, Lists: map[string]SlidingListResult{}, Rooms: map[id.RoomID]*SlidingRoom{}, Extensions: map[string]any{}},
		facts: map[id.RoomID]*roomFacts{},
	}
	if s.Ignored != nil {
		ignored, err := s.Ignored(ctx, sess.UserID)
		if err != nil {
			return nil, nil, fmt.Errorf("load ignored users: %w", err)
		}
		b.creq.Ignored = ignored
	}
	if s.DirectRooms != nil {
		direct, err := s.DirectRooms(ctx, sess.UserID)
		if err != nil {
			return nil, nil, fmt.Errorf("load direct rooms: %w", err)
		}
		b.direct = direct
	}
	b.next.followed.ignored, b.next.followed.direct = b.creq.Ignored, b.direct
	list, err := b.roomList(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := b.match(ctx, list); err != nil {
		return nil, nil, err
	}
	if err := b.rooms(ctx, list); err != nil {
		return nil, nil, err
	}
	if err := s.addAggregations(ctx, b.creq); err != nil {
		return nil, nil, err
	}
	if err := b.extensions(ctx, list); err != nil {
		return nil, nil, err
	}
	if len(b.resp.Rooms) > 0 || !maps.Equal(prev.counts, b.next.counts) {
		b.resp.news = true
	}
	return b.resp, b.next, nil
}

// subscriptions returns the connection's room subscriptions after req:
// those it had, less the rooms unsubscribed, plus (or replaced by) the
// request's, at most maxSlidingSubscriptions of them.
func subscriptions(had map[id.RoomID]*roomConfig, req *slidingRequest) (map[id.RoomID]*roomConfig, error) {
	out := maps.Clone(had)
	if out == nil {
		out = map[id.RoomID]*roomConfig{}
	}
	for _, r := range req.UnsubscribeRooms {
		delete(out, r)
	}
	maps.Copy(out, req.RoomSubscriptions)
	if len(out) > maxSlidingSubscriptions {
		return nil, mxhttp.InvalidParam("a connection has at most %d room subscriptions", maxSlidingSubscriptions)
	}
	return out, nil
}

// roomList returns the rooms lists choose from, newest activity first:
// rooms the user is joined to, invited to or knocking on, rooms they were
// kicked or banned from, and rooms they left that the connection has
// already been sent (so that it learns of the leave). Forgotten rooms and
// hidden invites are left out.
// When only new events can have changed it, it is the previous response's
// list with the rooms those events moved (followList).
func (b *slidingBuild) roomList(ctx context.Context) ([]listRoom, error) {
	rows, err := b.s.rooms.UserMemberships(ctx, b.creq.User)
	if err != nil {
		return nil, err
	}
	b.next.followed.rows = rows
	list, ok, err := b.followList(ctx, rows)
	if err != nil {
		return nil, err
	}
	if ok {
		b.next.followed.list = list
		return list, nil
	}
	out := make([]listRoom, 0, len(rows))
	for _, row := range rows {
		m := membershipRow{room: row.RoomID, membership: row.Membership, eventID: row.EventID, pos: row.Pos, forgotten: row.Forgotten}
		lr := listRoom{membershipRow: m, bump: m.pos}
		switch m.membership {
		case "join":
			if lr.bump, err = b.s.bumpStamp(ctx, m.room, b.creq.To.Pos); err != nil {
				return nil, err
			}
		case "knock":
		case "invite":
			b.next.followed.invites = true
			ev, err := b.s.rooms.Event(ctx, m.eventID)
			if err != nil {
				return nil, fmt.Errorf("load invite %s: %w", m.eventID, err)
			}
			if hidden, err := b.s.inviteHidden(ctx, b.creq, ev); err != nil || hidden {
				if err != nil {
					return nil, err
				}
				continue
			}
		case "leave", "ban":
			if m.forgotten {
				continue
			}
			if _, sent := b.prev.rooms.get(m.room); !sent {
				ev, err := b.s.rooms.Event(ctx, m.eventID)
				if err != nil {
					return nil, fmt.Errorf("load membership %s: %w", m.eventID, err)
				}
				if ev.Sender == b.creq.User {
					continue // left (or rejected) by the user, who knows
				}
			}
		default:
			continue
		}
		out = append(out, lr)
	}
	slices.SortFunc(out, compareListRooms)
	inList := make(map[id.RoomID]bool, len(out))
	for _, lr := range out {
		inList[lr.room] = true
	}
	b.next.followed.list, b.next.followed.rooms = out, inList
	return out, nil
}

// match applies the lists and room subscriptions to the room list: it
// records each list's count, sets the combined room config of every room
// that a list's ranges or a subscription selects, and the window. Rooms
// selected alike share one config, so matching allocates per distinct
// selection, not per room.
//
// A response whose predecessor had the same lists, subscriptions, direct
// rooms and room list has its configs and window; one whose list moved
// reuses its predecessor's configs for each selection, so that a room
// selected as before has the same config (compared by pointer).
func (b *slidingBuild) match(ctx context.Context, list []listRoom) error {
	prev := &b.prev.followed
	key, keyed := b.req.requestKey(b.next.subscriptions)
	same := keyed && prev.keyed && b.changed != nil && key == prev.request && maps.Equal(prev.direct, b.direct)
	b.next.followed.request, b.next.followed.keyed = key, keyed
	if same && len(list) > 0 && len(prev.list) == len(list) && &list[0] == &prev.list[0] {
		b.sameRooms = true
		b.configs = prev.configs
		b.next.window = b.prev.window
		b.next.counts = b.prev.counts
		for name, n := range b.prev.counts {
			b.resp.Lists[name] = SlidingListResult{Count: n}
		}
		b.next.followed.configs, b.next.followed.shared = prev.configs, prev.shared
		b.next.followed.joined, b.next.followed.windowJoined = prev.joined, prev.windowJoined
		return nil
	}
	lists := make([]listMatch, 0, len(b.req.Lists))
	for _, name := range slices.Sorted(maps.Keys(b.req.Lists)) {
		l := b.req.Lists[name]
		ranges, _ := l.ranges() // checked with the request
		lists = append(lists, listMatch{name: name, list: l, ranges: ranges})
	}
	// configs and shared start as the predecessor's, never written: they
	// are copied at the first room whose config differs, or a selection
	// not made before.
	configs, ownConfigs := map[id.RoomID]*combinedConfig{}, true
	shared, ownShared := map[configStep]*combinedConfig{}, true
	if same && prev.configs != nil {
		configs, ownConfigs = prev.configs, false
		shared, ownShared = prev.shared, false
	}
	step := func(st configStep, rc *roomConfig) *combinedConfig {
		if c := shared[st]; c != nil {
			return c
		}
		if !ownShared {
			shared, ownShared = maps.Clone(shared), true
		}
		c := st.from.with(rc, st.list)
		shared[st] = c
		return c
	}
	for _, lr := range list {
		var c *combinedConfig
		for i := range lists {
			m := &lists[i]
			ok, err := b.passes(ctx, lr, m.list.Filters)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if inRanges(m.index, m.ranges) {
				c = step(configStep{from: c, list: m.name}, &m.list.roomConfig)
			}
			m.index++
		}
		// A subscription counts for rooms the user may see, the list's;
		// others are ignored.
		if sub := b.next.subscriptions[lr.room]; sub != nil {
			c = step(configStep{from: c, room: lr.room}, sub)
		}
		if configs[lr.room] == c {
			continue
		}
		if !ownConfigs {
			configs, ownConfigs = maps.Clone(configs), true
		}
		if c == nil {
			delete(configs, lr.room)
		} else {
			configs[lr.room] = c
		}
	}
	for _, m := range lists {
		b.resp.Lists[m.name] = SlidingListResult{Count: m.index}
		b.next.counts[m.name] = m.index
	}
	b.configs = configs
	if ownConfigs {
		b.next.window = b.window()
	} else { // every room selected as before
		b.next.window = b.prev.window
		b.next.followed.windowJoined = prev.windowJoined
	}
	b.next.followed.configs, b.next.followed.shared = configs, shared
	return nil
}

// rooms adds the matched rooms to the response: with a followed list,
// those with new events or a config other than before; otherwise every
// one, which finds for itself whether anything is new.
func (b *slidingBuild) rooms(ctx context.Context, list []listRoom) error {
	if b.sameRooms {
		b.joined = b.next.followed.joined
		for _, lr := range list {
			if cfg := b.configs[lr.room]; cfg != nil && b.changed[lr.room] {
				if err := b.room(ctx, lr, cfg); err != nil {
					return err
				}
			}
		}
		return nil
	}
	prev := b.prev.followed.configs
	b.joined = make([]id.RoomID, 0, len(b.configs))
	for _, lr := range list {
		cfg := b.configs[lr.room]
		if cfg == nil {
			continue
		}
		if lr.membership == "join" {
			b.joined = append(b.joined, lr.room)
		}
		if b.changed != nil && !b.changed[lr.room] && prev[lr.room] == cfg {
			continue // as before, and nothing new
		}
		if err := b.room(ctx, lr, cfg); err != nil {
			return err
		}
	}
	b.next.followed.joined = b.joined
	return nil
}

// listMatch is a list being matched: the index its next room would have.
type listMatch struct {
	name   string
	list   *slidingList
	ranges [][2]int
	index  int
}

// configStep is a room config (nil for none) combined with a list's, or
// with the room subscription of room when list is empty.
type configStep struct {
	from *combinedConfig
	list string
	room id.RoomID
}

// with returns a new config: c's (none when nil) combined with rc, of list
// when list is not empty (else of a subscription).
func (c *combinedConfig) with(rc *roomConfig, list string) *combinedConfig {
	out := &combinedConfig{}
	if c != nil {
		out.limit = c.limit
		out.selectors = slices.Clone(c.selectors)
		out.lists = slices.Clone(c.lists)
	}
	out.add(rc)
	if list != "" {
		out.lists = append(out.lists, list)
	}
	return out
}

// window returns the set of the rooms with a config: the previous
// response's when it is the same set.
func (b *slidingBuild) window() map[id.RoomID]bool {
	same := len(b.configs) == len(b.prev.window)
	for roomID := range b.configs {
		if !same {
			break
		}
		same = b.prev.window[roomID]
	}
	if same && b.prev.window != nil {
		return b.prev.window
	}
	window := make(map[id.RoomID]bool, len(b.configs))
	for roomID := range b.configs {
		window[roomID] = true
	}
	return window
}

func inRanges(i int, ranges [][2]int) bool {
	for _, r := range ranges {
		if i >= r[0] && i <= r[1] {
			return true
		}
	}
	return false
}

// passes reports whether the room passes a list's filters.
func (b *slidingBuild) passes(ctx context.Context, lr listRoom, f *slidingFilters) (bool, error) {
	if f == nil {
		return true, nil
	}
	if inv := f.invited(); inv != nil && *inv != (lr.membership == "invite") {
		return false, nil
	}
	if f.IsDM != nil && *f.IsDM != b.direct[lr.room] {
		return false, nil
	}
	if f.Spaces != nil && !b.inSpaces(ctx, lr.room, f.Spaces) {
		return false, nil
	}
	if f.Tags != nil || f.NotTags != nil {
		tags, err := b.roomTags(ctx)
		if err != nil {
			return false, err
		}
		has := func(t string) bool { return slices.Contains(tags[lr.room], t) }
		if slices.ContainsFunc(f.NotTags, has) || f.Tags != nil && !slices.ContainsFunc(f.Tags, has) {
			return false, nil
		}
	}
	if f.IsEncrypted == nil && f.RoomTypes == nil && f.NotRoomTypes == nil {
		return true, nil
	}
	facts := b.roomFacts(ctx, lr.room)
	if f.IsEncrypted != nil && *f.IsEncrypted != facts.encrypted {
		return false, nil
	}
	sameType := func(t *string) bool {
		return t == nil && facts.roomType == nil || t != nil && facts.roomType != nil && *t == *facts.roomType
	}
	if slices.ContainsFunc(f.NotRoomTypes, sameType) {
		return false, nil
	}
	return f.RoomTypes == nil || slices.ContainsFunc(*f.RoomTypes, sameType), nil
}

// roomTags returns the tags of the user's rooms, loaded once per response.
func (b *slidingBuild) roomTags(ctx context.Context) (map[id.RoomID][]string, error) {
	if b.tags != nil || b.s.RoomTags == nil {
		return b.tags, nil
	}
	tags, err := b.s.RoomTags(ctx, b.creq.User)
	if err != nil {
		return nil, fmt.Errorf("load room tags: %w", err)
	}
	if tags == nil {
		tags = map[id.RoomID][]string{}
	}
	b.tags = tags
	return tags, nil
}

// roomFacts returns (and remembers for the response) whether the room is
// encrypted and its type, from its current state. A room the node does
// not have (a remote invite) is unencrypted and of no type.
func (b *slidingBuild) roomFacts(ctx context.Context, roomID id.RoomID) *roomFacts {
	if f := b.facts[roomID]; f != nil {
		return f
	}
	f := &roomFacts{}
	if ev, err := b.s.rooms.StateEvent(ctx, roomID, "m.room.encryption", ""); err == nil && ev != nil {
		f.encrypted = true
	}
	if ev, err := b.s.rooms.StateEvent(ctx, roomID, "m.room.create", ""); err == nil && ev != nil {
		var c struct {
			Type *string `json:"type"`
		}
		if json.Unmarshal(ev.Content(), &c) == nil {
			f.roomType = c.Type
		}
	}
	b.facts[roomID] = f
	return f
}

// inSpaces reports whether the room is an m.space.child of one of the
// spaces the user is joined to (subspaces are not followed).
func (b *slidingBuild) inSpaces(ctx context.Context, roomID id.RoomID, spaces []id.RoomID) bool {
	for _, space := range spaces {
		if b.s.rooms.Membership(b.creq.User, space) != "join" {
			continue
		}
		ev, err := b.s.rooms.StateEvent(ctx, space, "m.space.child", string(roomID))
		if err != nil || ev == nil {
			continue
		}
		var c struct {
			Via []string `json:"via"`
		}
		if json.Unmarshal(ev.Content(), &c) == nil && len(c.Via) > 0 {
			return true
		}
	}
	return false
}

// room adds a matched room to the response if the connection has not been
// sent it, or has not been sent what changed in it since.
func (b *slidingBuild) room(ctx context.Context, lr listRoom, cfg *combinedConfig) error {
	sent, known := b.prev.rooms.get(lr.room)
	afresh := !known ||
		lr.membership == "join" && sent.membership != "join" ||
		(lr.membership == "invite" || lr.membership == "knock") && sent.membership != lr.membership
	if afresh {
		sent = roomSent{}
	}
	if lr.membership == "invite" || lr.membership == "knock" {
		return b.strippedRoom(ctx, lr, cfg, sent, afresh)
	}
	return b.eventRoom(ctx, lr, cfg, sent, afresh)
}

// strippedRoom adds an invite or knock: its stripped state.
func (b *slidingBuild) strippedRoom(ctx context.Context, lr listRoom, cfg *combinedConfig, sent roomSent, afresh bool) error {
	if !afresh && lr.pos <= sent.pos {
		return nil
	}
	ev, err := b.s.rooms.Event(ctx, lr.eventID)
	if err != nil {
		return fmt.Errorf("load membership %s: %w", lr.eventID, err)
	}
	r := &SlidingRoom{Initial: true, Membership: lr.membership, BumpStamp: lr.bump, Lists: cfg.lists}
	stripped := StrippedState(ctx, b.s.rooms, lr.room, ev)
	if lr.membership == "invite" {
		r.InviteState = stripped
		var c struct {
			IsDirect bool `json:"is_direct"`
		}
		if json.Unmarshal(ev.Content(), &c) == nil && c.IsDirect {
			r.IsDM = &c.IsDirect
		}
	} else {
		r.KnockState = stripped
	}
	b.resp.Rooms[lr.room] = r
	b.next.rooms.set(lr.room, roomSent{pos: b.creq.To.Pos, membership: lr.membership})
	return nil
}

// eventRoom adds a room the user is or was joined to: its timeline since
// the connection last had it (up to the user's leave for a room left) and
// the required state, in full when the room is new to the connection or
// its required_state changed, else what changed.
func (b *slidingBuild) eventRoom(ctx context.Context, lr listRoom, cfg *combinedConfig, sent roomSent, afresh bool) error {
	to := b.creq.To.Pos
	end := to
	if lr.membership != "join" {
		end = min(lr.pos, to)
	}
	isDM := b.direct[lr.room]
	configKey := cfg.key()
	full := afresh || sent.config != configKey
	// A larger timeline_limit than the room was last sent with (a room of
	// the list opened through a subscription) sends the newest events up
	// to it again, as the MSC's expanded timeline.
	expand := !afresh && cfg.limit > sent.limit
	record := roomSent{
		pos: to, membership: lr.membership, config: configKey, limit: cfg.limit, isDM: isDM,
		members: sent.members, counts: sent.counts,
	}
	if !full && !expand && isDM == sent.isDM && (sent.pos >= end || b.s.rooms.LastPos(ctx, lr.room) <= sent.pos) {
		// Nothing new: the room keeps its record, whose position still
		// holds as nothing came after it, unless its config changed.
		if !record.sameConfig(sent) {
			b.next.rooms.set(lr.room, record)
		}
		return nil
	}
	timelineFrom := sent.pos
	if expand {
		timelineFrom = 0
	}
	tl, evs, err := b.s.timeline(ctx, b.creq, lr.room, timelineFrom, end, cfg.limit, lr.membershipRow)
	if err != nil {
		return err
	}
	from := sent.pos
	if full {
		from = -1
	}
	delta, err := b.s.stateDelta(ctx, lr.room, from, end)
	if err != nil {
		return err
	}
	r := &SlidingRoom{Initial: afresh, Membership: lr.membership, BumpStamp: lr.bump, Lists: cfg.lists}
	if expand && slices.ContainsFunc(evs, func(ev *rooms.Event) bool { return ev.Pos <= sent.pos }) {
		r.ExpandedTimeline, r.UnstableExpandedTimeline = true, true
	}
	required, members, err := b.requiredState(ctx, lr.room, end, cfg, sent, full, tl.Limited, evs, delta)
	if err != nil {
		return err
	}
	record.members = members
	b.next.rooms.set(lr.room, record)
	if !full && len(tl.Events) == 0 && len(required) == 0 && isDM == sent.isDM {
		return nil // only events the user may not see
	}
	r.RequiredState = required
	r.Timeline, r.Limited, r.PrevBatch = tl.Events, tl.Limited, tl.PrevBatch
	if !b.prev.token.initial {
		live := 0
		for _, ev := range evs {
			if ev.Pos > b.prev.token.Pos {
				live++
			}
		}
		live = min(live, len(tl.Events))
		r.NumLive = &live
	}
	if afresh && isDM || !afresh && isDM != sent.isDM {
		r.IsDM = new(bool) // not &isDM, which would move isDM to the heap for every room
		*r.IsDM = isDM
	}
	if err := b.describe(ctx, r, lr.room, end, afresh, delta); err != nil {
		return err
	}
	b.resp.Rooms[lr.room] = r
	return nil
}

// requiredState selects the state events a room result carries: those of
// delta (the whole state when full) that the config asks for, stubs for
// removed state it asks for, and with lazy loading the member events of
// the timeline's senders and targets that the connection lacks, plus,
// when the timeline is not limited, every member change since. It returns
// them with the users whose member events the connection now has.
func (b *slidingBuild) requiredState(ctx context.Context, roomID id.RoomID, end int64, cfg *combinedConfig, sent roomSent, full, limited bool, evs []*rooms.Event, delta *StateDelta) ([]any, map[id.UserID]bool, error) {
	me := b.creq.User
	lazy := cfg.lazy()
	members := sent.members
	if full {
		members = nil
	}
	want := map[id.UserID]bool{}
	if lazy {
		for u := range timelineSenders(b.creq, evs) {
			if !members[u] {
				want[u] = true
			}
		}
		for _, ev := range evs {
			if ev.Type == "m.room.member" && ev.StateKey != nil && !members[id.UserID(*ev.StateKey)] {
				want[id.UserID(*ev.StateKey)] = true
			}
		}
	}
	var out []any
	added := map[id.UserID]bool{}
	for _, ev := range delta.Changed {
		member := ev.Type == "m.room.member"
		if cfg.wants(ev.Type, *ev.StateKey, me, want) || lazy && member && !full && !limited {
			out = append(out, clientEvent(ev, b.creq))
			if member {
				added[id.UserID(*ev.StateKey)] = true
			}
		}
	}
	for _, k := range delta.Removed {
		if cfg.wants(k.Type, k.StateKey, me, want) {
			out = append(out, k)
		}
	}
	missing := false
	for u := range want {
		missing = missing || !added[u]
	}
	if missing {
		state := delta.End
		if state == nil {
			var err error
			if state, err = b.s.rooms.StateAtPos(ctx, roomID, end); err != nil {
				return nil, nil, err
			}
		}
		for _, ev := range state {
			if ev.Type == "m.room.member" && want[id.UserID(*ev.StateKey)] && !added[id.UserID(*ev.StateKey)] {
				out = append(out, clientEvent(ev, b.creq))
				added[id.UserID(*ev.StateKey)] = true
			}
		}
	}
	if len(added) > 0 {
		members = maps.Clone(members)
		if members == nil {
			members = map[id.UserID]bool{}
		}
		maps.Copy(members, added)
	}
	return out, members, nil
}

// nameField renders a room's name or avatar URL for its result: the value,
// or, when the connection had one and it was removed (changed to nothing),
// JSON null; otherwise nothing (omitted).
func nameField(value string, afresh, changed bool) json.RawMessage {
	switch {
	case value != "":
		b, _ := json.Marshal(value)
		return b
	case !afresh && changed:
		return json.RawMessage("null")
	default:
		return nil
	}
}

// describe sets the room's name, avatar, heroes and member counts: all of
// them for a room new to the connection, otherwise those whose state
// changed in delta.
func (b *slidingBuild) describe(ctx context.Context, r *SlidingRoom, roomID id.RoomID, end int64, afresh bool, delta *StateDelta) error {
	changed := map[string]bool{}
	for _, ev := range delta.Changed {
		changed[ev.Type] = true
	}
	for _, k := range delta.Removed {
		changed[k.Type] = true
	}
	if !afresh && !changed["m.room.name"] && !changed["m.room.avatar"] && !changed["m.room.member"] {
		return nil
	}
	state := delta.End
	if state == nil {
		var err error
		if state, err = b.s.rooms.StateAtPos(ctx, roomID, end); err != nil {
			return err
		}
	}
	byKey := make(map[StateKey]*rooms.Event, len(state))
	for _, ev := range state {
		byKey[StateKey{ev.Type, *ev.StateKey}] = ev
	}
	var content struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	if ev := byKey[StateKey{"m.room.name", ""}]; ev != nil {
		json.Unmarshal(ev.Content(), &content)
	}
	if ev := byKey[StateKey{"m.room.avatar", ""}]; ev != nil {
		json.Unmarshal(ev.Content(), &content)
	}
	r.Name = nameField(content.Name, afresh, changed["m.room.name"])
	r.Avatar = nameField(content.URL, afresh, changed["m.room.avatar"])
	if !afresh && !changed["m.room.member"] {
		return nil
	}
	sum := summarize(state, b.creq.User)
	r.JoinedCount, r.InvitedCount = sum.JoinedMemberCount, sum.InvitedMemberCount
	if content.Name != "" {
		return nil
	}
	for _, u := range sum.Heroes {
		h := SlidingHero{UserID: u}
		if ev := byKey[StateKey{"m.room.member", string(u)}]; ev != nil {
			var m struct {
				Displayname string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			}
			json.Unmarshal(ev.Content(), &m)
			h.Displayname, h.AvatarURL = m.Displayname, m.AvatarURL
		}
		r.Heroes = append(r.Heroes, h)
	}
	return nil
}
