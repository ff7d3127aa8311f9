package sync

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Service serves /sync and the filter endpoints.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	accounts *accounts.Service
	rooms    *rooms.Engine
	Notifier *Notifier

	// Eph is the serial of ephemeral (non-durable) changes such as typing.
	Eph atomic.Int64

	waiting atomic.Int64 // /sync requests waiting for a wake-up

	// Ignored, when set, returns the users whose events and invites the
	// user does not want to see (m.ignored_user_list).
	Ignored func(ctx context.Context, user id.UserID) (map[id.UserID]bool, error)

	// InviteIgnored, when set, reports whether user hides invites from
	// inviter (their invite permission config): such invites are left
	// out of rooms.invite.
	InviteIgnored func(ctx context.Context, user, inviter id.UserID) (bool, error)

	// OnSync, when set, runs at the start of every /sync with the
	// set_presence parameter (presence tracking).
	OnSync func(user id.UserID, setPresence string)

	// DirectRooms, when set, returns the rooms the user's m.direct account
	// data lists: sliding sync's is_dm.
	DirectRooms func(ctx context.Context, user id.UserID) (map[id.RoomID]bool, error)

	// RoomTags, when set, returns the tags of each of the user's tagged
	// rooms (m.tag): sliding sync's tags and not_tags filters.
	RoomTags func(ctx context.Context, user id.UserID) (map[id.RoomID][]string, error)

	// ThreadSubscriptions, when set, serves sliding sync's
	// thread_subscriptions extension (MSC4308): the newest limit changes
	// to the user's thread subscriptions with stream positions in
	// (from, to], PrevBatch set when older ones were left out.
	ThreadSubscriptions func(ctx context.Context, user id.UserID, from, to int64, limit int) (ThreadSubscriptionChanges, error)

	builds    *builds    // /sync builds shared by identical requests
	workers   *workQueue // builds, parked long-polls' answers (park.go) and other deep work of /sync
	deadlines deadlines  // of the parked long-polls (park.go)
	conns     connStore  // sliding sync connections
	bumps     bumpStamps // sliding sync's room order
	// slidingFromScratch makes every sliding sync response build its room
	// list afresh, for tests that compare the followed list with it.
	slidingFromScratch atomic.Bool
	// slidingFollowed counts the sliding sync responses whose room list
	// was followed from the previous response's.
	slidingFollowed atomic.Int64

	mu      gosync.Mutex
	sources []Source
	late    []Source
}

// New returns the sync service. It wakes members of a room as soon as an
// event there is visible (on the database writer, see
// rooms.Engine.OnVisible), not once the sender has heard of the commit.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine) *Service {
	workers := newWorkQueue(maxBuilds)
	s := &Service{db: db, log: log, accounts: acc, rooms: eng, Notifier: NewNotifier(), builds: newBuilds(workers),
		workers: workers}
	s.Notifier.run = workers.add
	eng.OnVisible = append(eng.OnVisible, s.onEvent)
	eng.OnStateComplete = append(eng.OnStateComplete, func(_ id.RoomID, local []id.UserID) {
		s.Notifier.Wake(local...)
	})
	return s
}

// AddSource registers a contributor to sync responses.
func (s *Service) AddSource(src Source) {
	s.mu.Lock()
	s.sources = append(s.sources, src)
	s.mu.Unlock()
}

// AddLateSource registers a contributor that runs after every other
// source, for data about the rooms the others put in the response
// (unread counts).
func (s *Service) AddLateSource(src Source) {
	s.mu.Lock()
	s.late = append(s.late, src)
	s.mu.Unlock()
}

// Waiting returns how many /sync long-polls are waiting for a wake-up now.
func (s *Service) Waiting() int { return int(s.waiting.Load()) }

// BumpEph advances the ephemeral serial and returns it.
func (s *Service) BumpEph() int64 { return s.Eph.Add(1) }

func (s *Service) onEvent(ev *rooms.Event, info *rooms.RoomInfo) {
	users := make([]id.UserID, 0, len(info.Members))
	for u, m := range info.Members {
		if m == "join" || m == "invite" || m == "knock" {
			users = append(users, u)
		}
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		users = append(users, id.UserID(*ev.StateKey)) // left, banned, ...
	}
	s.Notifier.Wake(users...)
}

// Routes registers /sync, sliding sync and the filter endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("GET "+v3+"/sync", s.accounts.Auth(s.handleSync))
	mux.HandleFunc("POST "+SlidingPath, s.accounts.Auth(s.handleSliding))
	mux.HandleFunc("POST "+v3+"/user/{userId}/filter", s.accounts.Auth(s.postFilter))
	mux.HandleFunc("GET "+v3+"/user/{userId}/filter/{filterId}", s.accounts.Auth(s.getFilter))
}

const maxSyncTimeout = 5 * time.Minute

func (s *Service) handleSync(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	q := r.URL.Query()
	since, err := ParseToken(q.Get("since"))
	if err != nil {
		return nil, mxhttp.InvalidParam("invalid since token")
	}
	timeout := time.Duration(0)
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return nil, mxhttp.InvalidParam("invalid timeout")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	full, err := boolParam(q, "full_state")
	if err != nil {
		return nil, err
	}
	mode, err := stateMode(q)
	if err != nil {
		return nil, err
	}
	filterParam := q.Get("filter")
	filter, err := onWorker(s.workers, func() (*Filter, error) { return s.resolveFilter(r.Context(), sess.UserID, filterParam) })
	if err != nil {
		return nil, err
	}
	if p := q.Get("set_presence"); p != "" && p != "online" && p != "offline" && p != "unavailable" {
		return nil, mxhttp.InvalidParam("invalid set_presence")
	}
	if since.Pos > s.db.Visible() {
		// A token from the future (e.g. after a restore): start over.
		since = Token{initial: true}
	}
	if since.Eph > s.Eph.Load() {
		// The ephemeral serial restarted with the node; typing from before
		// the restart is gone anyway.
		since.Eph = 0
	}
	if s.OnSync != nil {
		setPresence := q.Get("set_presence")
		onWorker(s.workers, func() (struct{}, error) { s.OnSync(sess.UserID, setPresence); return struct{}{}, nil })
	}
	ctx := r.Context()
	deadline := time.Now().Add(timeout)
	key := buildKey{user: sess.UserID, device: sess.DeviceID, since: since, filter: filterParam, full: full, mode: mode}
	build := func(ctx context.Context) (*Response, error) { return s.build(ctx, sess, since, full, mode, filter) }
	for {
		ch := s.Notifier.Channel(sess.UserID)
		f, err := s.builds.do(ctx, key, ch, build)
		if err != nil {
			return nil, err
		}
		if f.resp.news || since.initial || full || timeout == 0 || !time.Now().Before(deadline) {
			return f.answer()
		}
		// Nothing yet: wait for a wake-up, then build again; after the
		// deadline the next build is the (empty) answer, with a fresh token.
		// The wait is parked off the connection's goroutine where it can be.
		if s.park(w, r, sess, filter, key, deadline, ch) {
			return nil, nil
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		s.waiting.Add(1)
		s.Notifier.Wait(wctx, ch)
		s.waiting.Add(-1)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// boolParam reads an optional boolean query parameter ("true" or "false").
func boolParam(q url.Values, name string) (bool, error) {
	switch q.Get(name) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, mxhttp.InvalidParam("%s must be true or false", name)
	}
}

// stateMode reads use_state_after (spec v1.16) and its MSC4222 unstable
// name: the room sections answer under the name the client asked with,
// the stable one when it asked with both.
func stateMode(q url.Values) (StateMode, error) {
	stable, err := boolParam(q, "use_state_after")
	if err != nil {
		return StateBefore, err
	}
	unstable, err := boolParam(q, "org.matrix.msc4222.use_state_after")
	switch {
	case err != nil:
		return StateBefore, err
	case stable:
		return StateAfter, nil
	case unstable:
		return UnstableStateAfter, nil
	default:
		return StateBefore, nil
	}
}

// build computes one sync response.
func (s *Service) build(ctx context.Context, sess *accounts.Session, since Token, full bool, mode StateMode, filter *Filter) (*Response, error) {
	to := Token{Pos: s.db.Visible(), Eph: s.Eph.Load()}
	req := &Request{
		User: sess.UserID, Device: sess.DeviceID, Since: since, To: to,
		FullState: full || since.initial, Filter: filter, NewlyJoined: map[id.RoomID]bool{},
		StateMode: mode,
	}
	if s.Ignored != nil {
		ignored, err := s.Ignored(ctx, sess.UserID)
		if err != nil {
			return nil, fmt.Errorf("load ignored users: %w", err)
		}
		req.Ignored = ignored
	}
	resp := &Response{NextBatch: to.String()}
	if err := s.fillRooms(ctx, req, resp); err != nil {
		return nil, err
	}
	if err := s.addAggregations(ctx, req); err != nil {
		return nil, err
	}
	if !req.FullState {
		req.newlyShared = gosync.OnceValues(func() (map[id.UserID]bool, error) {
			return s.newlyShared(ctx, req)
		})
	}
	if err := s.fill(ctx, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// membershipRow is a user's membership in one room as of now.
type membershipRow struct {
	room       id.RoomID
	membership string
	eventID    id.EventID
	pos        int64
	forgotten  bool
}

// rowOf is the engine's membership row as this package reads it.
func rowOf(m rooms.MembershipRow) membershipRow {
	return membershipRow{room: m.RoomID, membership: m.Membership, eventID: m.EventID, pos: m.Pos, forgotten: m.Forgotten}
}

func (s *Service) fillRooms(ctx context.Context, req *Request, resp *Response) error {
	// The engine's rows are shared, so they are read in place: a woken
	// /sync copies none of the user's rooms.
	rows, err := s.rooms.UserMemberships(ctx, req.User)
	if err != nil {
		return err
	}
	var roomFilter *RoomFilter
	if req.Filter != nil {
		roomFilter = req.Filter.Room
	}
	for _, row := range rows {
		m := rowOf(row)
		if m.pos > req.To.Pos {
			// Changed after our upper bound: the next sync reports it.
			continue
		}
		lazy := req.Filter.LazyLoadMembers()
		if m.membership == "join" && !lazy && s.rooms.HasPartialState(ctx, m.room) {
			// A client that asks for every member sees the room, its
			// receipts and typing once its state is complete (MSC3706), as
			// newly joined then.
			continue
		}
		if m.membership == "join" {
			req.Joined = append(req.Joined, m.room)
		}
		if !roomFilter.AllowsRoom(m.room) {
			continue
		}
		changed := m.pos > req.Since.Pos
		switch m.membership {
		case "join":
			if !req.Initial() && (changed && s.joinedSince(ctx, m, req.Since.Pos) || !lazy && s.completedSince(ctx, m.room, req)) {
				req.NewlyJoined[m.room] = true
			}
			if err := s.fillJoined(ctx, req, resp, m); err != nil {
				return err
			}
		case "invite", "knock":
			if !changed && !req.FullState {
				continue
			}
			if err := s.fillStripped(ctx, req, resp, m); err != nil {
				return err
			}
		case "leave", "ban":
			if m.forgotten && (req.FullState || !changed) {
				// A forgotten room is gone from the user's rooms, but a leave
				// in this sync's window is still news: other devices learn
				// of it even when the room was forgotten at once.
				continue
			}
			includeLeave := roomFilter != nil && roomFilter.IncludeLeave
			if !changed && !(req.FullState && includeLeave) {
				continue
			}
			if req.Initial() && !includeLeave && !s.removed(ctx, req.User, m) {
				continue
			}
			if err := s.fillLeft(ctx, req, resp, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// completedSince reports whether the room's partial state became complete
// in (Since, To]: a sync that left the room out while it was partial shows
// it as newly joined.
func (s *Service) completedSince(ctx context.Context, roomID id.RoomID, req *Request) bool {
	at := s.rooms.StateCompletedAt(ctx, roomID)
	return at > req.Since.Pos && at <= req.To.Pos
}

// removed reports whether the user's leave in m was done to them: a ban,
// or a kick (a leave sent by someone else). An initial sync shows those
// rooms even without include_leave, as it leaves out only the rooms the
// user chose to leave: a client starting afresh learns it was removed.
func (s *Service) removed(ctx context.Context, user id.UserID, m membershipRow) bool {
	if m.membership == "ban" {
		return true
	}
	ev, err := s.rooms.Event(ctx, m.eventID)
	return err == nil && ev.Sender != user
}

// joinedSince reports whether the user's join in m happened after since,
// rather than being a profile change of someone already joined then (which
// is also a join event). It walks back through replaced member events.
func (s *Service) joinedSince(ctx context.Context, m membershipRow, since int64) bool {
	evID := m.eventID
	for range 20 {
		ev, err := s.rooms.Event(ctx, evID)
		if err != nil {
			return true
		}
		if ev.Pos <= since {
			return ev.Membership() != "join"
		}
		if ev.Membership() != "join" {
			return true
		}
		var u struct {
			ReplacesState id.EventID `json:"replaces_state"`
		}
		json.Unmarshal(ev.PDU.Unsigned, &u)
		if u.ReplacesState == "" {
			return true
		}
		evID = u.ReplacesState
	}
	return true
}

// newlyShared returns the users who came to share one of req.Joined with
// req.User in (Since, To]: all joined members of the rooms the user joined
// then, and the members who joined the user's other rooms then. Profile
// changes (join events of members already joined) do not count.
func (s *Service) newlyShared(ctx context.Context, req *Request) (map[id.UserID]bool, error) {
	out := map[id.UserID]bool{}
	for _, roomID := range req.Joined {
		if s.rooms.LastMemberPos(ctx, roomID) <= req.Since.Pos {
			continue
		}
		joins, err := s.joinsSince(ctx, roomID, req.Since.Pos, req.To.Pos)
		if err != nil {
			return nil, err
		}
		for _, m := range joins {
			if m.user == req.User {
				for u, ms := range s.rooms.Members(ctx, roomID) {
					if ms == "join" && u != req.User {
						out[u] = true
					}
				}
				break
			}
			out[m.user] = true
		}
	}
	return out, nil
}

// roomJoin is a member whose join to a room happened in a sync window.
type roomJoin struct {
	user id.UserID
	membershipRow
}

// joinsSince lists the room's members whose current membership is a join
// that happened in (since, to].
func (s *Service) joinsSince(ctx context.Context, roomID id.RoomID, since, to int64) ([]roomJoin, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id, event_id, pos FROM memberships
		WHERE room_id = $1 AND membership = 'join' AND pos > $2 AND pos <= $3`, roomID, since, to)
	if err != nil {
		return nil, fmt.Errorf("load joins of %s: %w", roomID, err)
	}
	var changed []roomJoin
	for rows.Next() {
		j := roomJoin{membershipRow: membershipRow{room: roomID, membership: "join"}}
		if err := rows.Scan(&j.user, &j.eventID, &j.pos); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load joins of %s: %w", roomID, err)
		}
		changed = append(changed, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load joins of %s: %w", roomID, err)
	}
	var out []roomJoin
	for _, j := range changed {
		if s.joinedSince(ctx, j.membershipRow, since) {
			out = append(out, j)
		}
	}
	return out, nil
}

// aggItem is a timeline event waiting for its bundled aggregations.
type aggItem struct {
	ev *rooms.Event
	ce *rooms.ClientEvent
}

// aggregate queues ev (rendered as ce) for bundled aggregations as of
// position upTo.
func (r *Request) aggregate(upTo int64, ev *rooms.Event, ce *rooms.ClientEvent) {
	if r.aggPending == nil {
		r.aggPending = map[int64][]aggItem{}
	}
	r.aggPending[upTo] = append(r.aggPending[upTo], aggItem{ev, ce})
}

// addAggregations adds the bundled aggregations (edits, threads,
// references) of every queued timeline event: one set of queries for the
// whole response rather than one per room.
func (s *Service) addAggregations(ctx context.Context, req *Request) error {
	for upTo, items := range req.aggPending {
		evs := make([]*rooms.Event, len(items))
		for i, it := range items {
			evs[i] = it.ev
		}
		aggs, err := s.rooms.Aggregate(ctx, evs, rooms.ClientOptions{User: req.User, Device: req.Device, OmitRoomID: true}, upTo)
		if err != nil {
			return err
		}
		for _, it := range items {
			aggs.Add(it.ce)
		}
	}
	return nil
}

// timeline loads the room's events in (from, to], newest limit of them
// (/sync takes the limit from its filter, sliding sync from its room config).
// member is the user's latest membership event: events from it on are
// certainly visible to a joined user and were sent under that membership;
// older ones go through the history visibility rules, which also give the
// membership at each.
func (s *Service) timeline(ctx context.Context, req *Request, roomID id.RoomID, from, to int64, limit int, member membershipRow) (*Timeline, []*rooms.Event, error) {
	memberPos := member.pos
	tf := req.Filter.timeline()
	// Read a few more than needed so filtered-out events rarely shrink the
	// page; this is a sync, not an exact pagination.
	evs, err := s.rooms.RoomEvents(ctx, roomID, from, to, limit+1, true)
	if err != nil {
		return nil, nil, err
	}
	limited := len(evs) > limit
	if limited {
		evs = evs[:limit]
	}
	// History is missing before an event accepted over a gap: the
	// timeline starts at it, limited, so that its prev_batch leads
	// /messages to the gap, which backfills it. The events stored before
	// it are left out only when they come before it in the room's
	// topological order too, where that /messages finds them; otherwise
	// they stay in the timeline.
	if i := slices.IndexFunc(evs, func(ev *rooms.Event) bool { return ev.Gap }); i >= 0 {
		gap := rooms.PointOf(evs[i])
		if !slices.ContainsFunc(evs[i+1:], func(ev *rooms.Event) bool { return !rooms.PointOf(ev).Before(gap) }) {
			evs = evs[:i+1]
		}
		limited = true
	}
	slices.Reverse(evs)
	var vis *rooms.Visibility
	if len(evs) > 0 && evs[0].Pos < memberPos {
		vis, err = s.rooms.Visibility(ctx, roomID, req.User)
		if err != nil {
			return nil, nil, err
		}
		if visible := vis.FilterVisible(evs); len(visible) < len(evs) {
			evs = visible
			limited = false // nothing older is visible either
		}
	}
	tl := &Timeline{Events: []*rooms.ClientEvent{}, Limited: limited}
	for _, ev := range evs {
		if !tf.AllowsEvent(ev) {
			continue
		}
		if req.Ignored[ev.Sender] && ev.StateKey == nil {
			continue // state stays, so the room's state is still right
		}
		membership := member.membership
		if ev.Pos < memberPos {
			membership = vis.MembershipAt(ev)
		}
		ce := timelineEvent(ev, req, membership)
		// Bundled aggregations are added for every room at once, in
		// addAggregations, once all timelines are known.
		req.aggregate(to, ev, ce)
		tl.Events = append(tl.Events, ce)
	}
	switch {
	case from == 0 && !limited && (len(evs) == 0 || evs[0].Type == "m.room.create"):
		// The timeline holds the room from its start: there is no earlier
		// page, and the point before its first event has no state at all.
		// prev_batch names the end of the timeline instead, as Synapse's
		// does, so /members?at=prev_batch answers the members the client
		// has just been sent (Complement's TestGetRoomMembersAtPoint).
		tl.PrevBatch = Token{Pos: to}.String()
	case len(evs) > 0:
		tl.PrevBatch = Token{Pos: evs[0].Pos - 1}.String()
	default:
		tl.PrevBatch = Token{Pos: to}.String()
	}
	return tl, evs, nil
}

func (s *Service) fillJoined(ctx context.Context, req *Request, resp *Response, m membershipRow) error {
	newly := req.NewlyJoined[m.room]
	from := req.Since.Pos
	if newly {
		from = 0
	}
	last := s.rooms.LastPos(ctx, m.room)
	if !req.FullState && !newly && last <= req.Since.Pos {
		return nil // nothing new in the room's timeline
	}
	tl, evs, err := s.timeline(ctx, req, m.room, from, req.To.Pos, req.Filter.TimelineLimit(), m)
	if err != nil {
		return err
	}
	jr := resp.JoinedRoom(m.room)
	jr.Timeline = tl
	if len(tl.Events) > 0 {
		resp.MarkNews()
	}
	state, err := s.roomState(ctx, req, m.room, req.To.Pos, evs, tl.Limited, req.FullState || newly)
	if err != nil {
		return err
	}
	jr.setState(req.StateMode, state)
	if newly {
		resp.MarkNews()
	}
	if req.FullState || newly || hasMemberChange(evs) {
		jr.Summary = s.summary(ctx, m.room, req.User)
	}
	return nil
}

func hasMemberChange(evs []*rooms.Event) bool {
	for _, ev := range evs {
		if ev.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// roomState computes the state of a room section whose timeline ends at
// position end: stateSection or stateAfterSection, as the request asks.
func (s *Service) roomState(ctx context.Context, req *Request, roomID id.RoomID, end int64, timeline []*rooms.Event, limited, full bool) (*Events, error) {
	if req.StateMode == StateBefore {
		return s.stateSection(ctx, req, roomID, end, timeline, limited, full)
	}
	return s.stateAfterSection(ctx, req, roomID, end, timeline, full)
}

// stateAfterSection computes "state_after" (MSC4222, spec v1.16): the
// state at the end of the timeline, entirely (full) or as the change since
// the last sync, whether or not the timeline carries the same events:
// clients take the room's state from this section alone. With lazy-loaded
// members, only those of the timeline's senders and the user are given.
func (s *Service) stateAfterSection(ctx context.Context, req *Request, roomID id.RoomID, end int64, timeline []*rooms.Event, full bool) (*Events, error) {
	out := &Events{Events: []any{}}
	from := req.Since.Pos
	if full {
		from = -1
	}
	delta, err := s.stateDelta(ctx, roomID, from, end)
	if err != nil {
		return nil, err
	}
	var senders map[id.UserID]bool // only lazy-loaded members need them
	if req.Filter.LazyLoadMembers() {
		senders = timelineSenders(req, timeline)
	}
	for _, ev := range delta.Changed {
		if s.showState(req, ev, senders) {
			out.Add(clientEvent(ev, req))
		}
	}
	return out, nil
}

// StateDelta is how a room's state changed between two positions.
type StateDelta struct {
	// Changed are the events of the later state that the earlier lacks.
	Changed []*rooms.Event
	// Removed are the (type, state key) pairs of the earlier state that
	// the later has none of (state resolution can take state away).
	Removed []StateKey
	// End is the whole later state; nil when nothing changed.
	End []*rooms.Event
}

// StateKey names a piece of room state.
type StateKey struct {
	Type     string `json:"type"`
	StateKey string `json:"state_key"`
}

// stateDelta computes how the room's state changed from position from to
// position end; from -1 asks for the whole state at end (every event
// Changed).
func (s *Service) stateDelta(ctx context.Context, roomID id.RoomID, from, end int64) (*StateDelta, error) {
	if from >= 0 && from <= end && !s.rooms.StateChangedAfter(ctx, roomID, from) {
		return &StateDelta{}, nil // no state change since from: no query
	}
	if from < 0 {
		// The whole state, which the engine has in memory when it is the
		// current one.
		endState, err := s.rooms.StateAtPos(ctx, roomID, end)
		if err != nil {
			return nil, err
		}
		return &StateDelta{Changed: slices.Clone(endState), End: endState}, nil
	}
	endSnap, err := s.rooms.SnapshotAtPos(ctx, roomID, end)
	if err != nil {
		return nil, err
	}
	var before []*rooms.Event
	if from >= 0 {
		fromSnap, err := s.rooms.SnapshotAtPos(ctx, roomID, from)
		if err != nil {
			return nil, err
		}
		if fromSnap == endSnap {
			return &StateDelta{}, nil // no state change in between
		}
		if before, err = s.rooms.StateAt(ctx, fromSnap); err != nil {
			return nil, err
		}
	}
	endState, err := s.rooms.StateAt(ctx, endSnap)
	if err != nil {
		return nil, err
	}
	d := &StateDelta{End: endState}
	endKeys := make(map[StateKey]bool, len(endState))
	beforeIDs := make(map[id.EventID]bool, len(before))
	for _, ev := range before {
		beforeIDs[ev.ID] = true
	}
	for _, ev := range endState {
		endKeys[StateKey{ev.Type, *ev.StateKey}] = true
		if !beforeIDs[ev.ID] {
			d.Changed = append(d.Changed, ev)
		}
	}
	for _, ev := range before {
		if k := (StateKey{ev.Type, *ev.StateKey}); !endKeys[k] {
			d.Removed = append(d.Removed, k)
		}
	}
	return d, nil
}

// stateIDs returns the IDs of the events of a state snapshot.
func (s *Service) stateIDs(ctx context.Context, snap int64) (map[id.EventID]bool, error) {
	state, err := s.rooms.StateAt(ctx, snap)
	if err != nil {
		return nil, err
	}
	ids := make(map[id.EventID]bool, len(state))
	for _, ev := range state {
		ids[ev.ID] = true
	}
	return ids, nil
}

// timelineSenders are the users whose member events lazy loading keeps:
// the senders of the timeline's events and the user.
func timelineSenders(req *Request, timeline []*rooms.Event) map[id.UserID]bool {
	senders := map[id.UserID]bool{req.User: true}
	for _, ev := range timeline {
		senders[ev.Sender] = true
	}
	return senders
}

// showState reports whether the state event ev goes into a state section:
// the state filter allows it, and, when members are lazy-loaded, it is not
// the member event of someone outside senders.
func (s *Service) showState(req *Request, ev *rooms.Event, senders map[id.UserID]bool) bool {
	if req.Filter.LazyLoadMembers() && ev.Type == "m.room.member" && ev.StateKey != nil && !senders[id.UserID(*ev.StateKey)] {
		return false
	}
	return req.Filter.state().AllowsEvent(ev)
}

// stateSection computes the "state" of a room section: the state at the
// start of the timeline, entirely (full) or as the change since the last
// sync (limited timelines), minus what the timeline itself carries. The
// timeline ends at position end (the user's leave for a left room); an
// empty one starts there too.
func (s *Service) stateSection(ctx context.Context, req *Request, roomID id.RoomID, end int64, timeline []*rooms.Event, limited, full bool) (*Events, error) {
	out := &Events{Events: []any{}}
	partialSince := !full && s.partialAtSince(ctx, req, roomID)
	if !full && !limited && !partialSince {
		return out, nil
	}
	var startSnap int64
	var err error
	if len(timeline) > 0 {
		startSnap = timeline[0].SnapshotBefore
	} else if startSnap, err = s.rooms.SnapshotAtPos(ctx, roomID, end); err != nil {
		return nil, err
	}
	var sinceIDs map[id.EventID]bool
	if !full {
		sinceSnap, err := s.rooms.SnapshotAtPos(ctx, roomID, req.Since.Pos)
		if err != nil {
			return nil, err
		}
		if sinceSnap == startSnap && !partialSince {
			return out, nil // the client has this state already
		}
		if sinceIDs, err = s.stateIDs(ctx, sinceSnap); err != nil {
			return nil, err
		}
	}
	startState, err := s.rooms.StateAt(ctx, startSnap)
	if err != nil {
		return nil, err
	}
	inTimeline := make(map[id.EventID]bool, len(timeline))
	for _, ev := range timeline {
		inTimeline[ev.ID] = true
	}
	// Who sent the timeline, and which members the state shows, matter
	// only to lazy-loaded members: no map for each room otherwise.
	var senders, shown map[id.UserID]bool
	if req.Filter.LazyLoadMembers() {
		senders, shown = timelineSenders(req, timeline), map[id.UserID]bool{}
	}
	for _, ev := range startState {
		member := ev.Type == "m.room.member" && ev.StateKey != nil
		// A state the client had partially lacked most member events:
		// the senders' are given whether or not the state held them then.
		had := sinceIDs[ev.ID] && !(partialSince && member)
		if !inTimeline[ev.ID] && !had && (full || limited || member) && s.showState(req, ev, senders) {
			out.Add(clientEvent(ev, req))
		}
		if member && shown != nil {
			shown[id.UserID(*ev.StateKey)] = true
		}
	}
	if req.Filter.LazyLoadMembers() && s.rooms.HasPartialState(ctx, roomID) {
		for _, ev := range s.sendersFromAuthEvents(ctx, timeline, shown) {
			if !sinceIDs[ev.ID] && req.Filter.state().AllowsEvent(ev) {
				out.Add(clientEvent(ev, req))
			}
		}
	}
	return out, nil
}

// partialAtSince reports whether the room's state was partial at the
// request's since token as the client knows it: a lazy-loading sync's
// client was given a state lacking most members while it was (MSC3706),
// so the senders' member events are news to it even where the state the
// node holds for then (completed under every snapshot since) has them.
func (s *Service) partialAtSince(ctx context.Context, req *Request, roomID id.RoomID) bool {
	if !req.Filter.LazyLoadMembers() || req.Initial() {
		return false
	}
	return s.rooms.HasPartialState(ctx, roomID) || s.completedSince(ctx, roomID, req)
}

// sendersFromAuthEvents returns, for the senders of the timeline whose
// member event the state lacks (not in known: a room joined with partial
// state knows few members until its resync completes), the member event
// each one's event names among its auth events.
func (s *Service) sendersFromAuthEvents(ctx context.Context, timeline []*rooms.Event, known map[id.UserID]bool) []*rooms.Event {
	for _, ev := range timeline {
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			known[id.UserID(*ev.StateKey)] = true
		}
	}
	var out []*rooms.Event
	for _, ev := range timeline {
		if known[ev.Sender] {
			continue
		}
		for _, aid := range ev.PDU.AuthEvents {
			ae, err := s.rooms.Event(ctx, aid)
			if err != nil || ae == nil || ae.Type != "m.room.member" || ae.StateKey == nil || *ae.StateKey != string(ev.Sender) {
				continue
			}
			known[ev.Sender] = true
			out = append(out, ae)
			break
		}
	}
	return out
}

func (s *Service) summary(ctx context.Context, roomID id.RoomID, self id.UserID) *Summary {
	state, err := s.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil
	}
	return summarize(state, self)
}

// summarize computes a room summary from the room's state: the joined and
// invited member counts and up to five heroes (members other than self).
func summarize(state []*rooms.Event, self id.UserID) *Summary {
	joined, invited := 0, 0
	var heroes []id.UserID
	for _, ev := range state {
		if ev.Type != "m.room.member" || ev.StateKey == nil {
			continue
		}
		switch ev.Membership() {
		case "join":
			joined++
		case "invite":
			invited++
		default:
			continue
		}
		if u := id.UserID(*ev.StateKey); u != self && len(heroes) < 5 {
			heroes = append(heroes, u)
		}
	}
	return &Summary{Heroes: heroes, JoinedMemberCount: &joined, InvitedMemberCount: &invited}
}

// strippedTypes are the room state events shown to invitees and knockers
// (the spec's list for stripped state).
var strippedTypes = []string{"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules",
	"m.room.canonical_alias", "m.room.encryption"}

// StrippedState returns the stripped state shown with an invite or knock:
// the room's current strippedTypes events, the membership event of whoever
// sent memberEvent (the inviter, so clients can name a DM invite after
// them), and memberEvent itself, in full. The create event is given in
// full too (MSC4311): in rooms of version 12 its event ID is the room ID,
// which lets clients check the room they are invited to.
//
// For a room this node is not in (an invite received over federation) it
// is the stripped state the inviting server sent, then memberEvent.
func StrippedState(ctx context.Context, eng *rooms.Engine, roomID id.RoomID, memberEvent *rooms.Event) []any {
	var out []any
	if _, err := eng.Version(ctx, roomID); errors.Is(err, rooms.ErrNoRoom) {
		if memberEvent == nil {
			return nil
		}
		stripped, err := eng.InviteState(ctx, memberEvent.ID)
		if err != nil {
			return nil
		}
		for _, raw := range stripped {
			out = append(out, raw)
		}
		return append(out, memberEvent.Client(rooms.ClientOptions{OmitRoomID: true}))
	}
	add := func(evType, sk string) {
		ev, err := eng.StateEvent(ctx, roomID, evType, sk)
		switch {
		case err != nil || ev == nil:
		case evType == "m.room.create":
			out = append(out, ev.Client(rooms.ClientOptions{}))
		default:
			out = append(out, map[string]any{"type": ev.Type, "state_key": *ev.StateKey, "sender": ev.Sender, "content": ev.Content()})
		}
	}
	for _, t := range strippedTypes {
		add(t, "")
	}
	if memberEvent == nil {
		return out
	}
	if memberEvent.StateKey == nil || *memberEvent.StateKey != string(memberEvent.Sender) {
		add("m.room.member", string(memberEvent.Sender))
	}
	return append(out, memberEvent.Client(rooms.ClientOptions{OmitRoomID: true}))
}

// inviteHidden reports whether the user does not want to see the invite
// ev: it comes from an ignored user (the spec: no invites from them) or
// their invite permission config ignores it.
func (s *Service) inviteHidden(ctx context.Context, req *Request, ev *rooms.Event) (bool, error) {
	if req.Ignored[ev.Sender] {
		return true, nil
	}
	if s.InviteIgnored == nil {
		return false, nil
	}
	hidden, err := s.InviteIgnored(ctx, req.User, ev.Sender)
	if err != nil {
		return false, fmt.Errorf("invite permission: %w", err)
	}
	return hidden, nil
}

func (s *Service) fillStripped(ctx context.Context, req *Request, resp *Response, m membershipRow) error {
	ev, err := s.rooms.Event(ctx, m.eventID)
	if err != nil {
		return err
	}
	if m.membership == "invite" {
		if hidden, err := s.inviteHidden(ctx, req, ev); err != nil || hidden {
			return err
		}
	}
	if resp.Rooms == nil {
		resp.Rooms = &Rooms{}
	}
	evs := &Events{Events: StrippedState(ctx, s.rooms, m.room, ev)}
	if m.membership == "invite" {
		if resp.Rooms.Invite == nil {
			resp.Rooms.Invite = map[id.RoomID]*InvitedRoom{}
		}
		resp.Rooms.Invite[m.room] = &InvitedRoom{InviteState: evs}
	} else {
		if resp.Rooms.Knock == nil {
			resp.Rooms.Knock = map[id.RoomID]*KnockedRoom{}
		}
		resp.Rooms.Knock[m.room] = &KnockedRoom{KnockState: evs}
	}
	resp.MarkNews()
	return nil
}

// addOutOfRoomLeave adds to the timeline of a left room the user's leave
// when it is a membership kept beside the timeline (a rejected invite or a
// rescinded one, in a room this node is not in), which no timeline read
// finds: the client then sees how the user left.
func (s *Service) addOutOfRoomLeave(ctx context.Context, req *Request, tl *Timeline, m membershipRow) error {
	ev, err := s.rooms.Event(ctx, m.eventID)
	if err != nil {
		return fmt.Errorf("load leave %s: %w", m.eventID, err)
	}
	if !ev.Outlier || !req.Filter.timeline().AllowsEvent(ev) {
		return nil
	}
	tl.Events = append(tl.Events, timelineEvent(ev, req, m.membership))
	return nil
}

func (s *Service) fillLeft(ctx context.Context, req *Request, resp *Response, m membershipRow) error {
	from := req.Since.Pos
	tl, evs, err := s.timeline(ctx, req, m.room, from, m.pos, req.Filter.TimelineLimit(), m)
	if err != nil {
		return err
	}
	state, err := s.roomState(ctx, req, m.room, m.pos, evs, tl.Limited, req.FullState)
	if err != nil {
		return err
	}
	if resp.Rooms == nil {
		resp.Rooms = &Rooms{}
	}
	if resp.Rooms.Leave == nil {
		resp.Rooms.Leave = map[id.RoomID]*LeftRoom{}
	}
	if len(evs) == 0 && m.pos > from {
		if err := s.addOutOfRoomLeave(ctx, req, tl, m); err != nil {
			return err
		}
	}
	left := &LeftRoom{Timeline: tl}
	left.setState(req.StateMode, state)
	resp.Rooms.Leave[m.room] = left
	resp.MarkNews()
	return nil
}

// Filters.

const maxFilterBytes = 65536

func (s *Service) resolveFilter(ctx context.Context, user id.UserID, param string) (*Filter, error) {
	if param == "" {
		return nil, nil
	}
	var raw string
	if param[0] == '{' {
		raw = param
	} else {
		err := s.db.QueryRow(ctx, "SELECT filter FROM sync_filters WHERE user_id = $1 AND filter_id = $2", user, param).Scan(&raw)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, mxhttp.InvalidParam("unknown filter %q", param)
		}
		if err != nil {
			return nil, err
		}
	}
	f := &Filter{}
	if err := mxhttp.Unmarshal([]byte(raw), f); err != nil {
		return nil, err
	}
	if param[0] == '{' {
		// A stored filter was checked when it was uploaded.
		if err := f.Validate(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (s *Service) postFilter(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if id.UserID(r.PathValue("userId")) != sess.UserID {
		return nil, mxhttp.Forbidden("cannot create filters for other users")
	}
	body, err := mxhttp.ReadBody(r, maxFilterBytes)
	if err != nil {
		return nil, err
	}
	var f Filter
	if err := mxhttp.Unmarshal(body, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	canon, _ := json.Marshal(f)
	var filterID string
	err = s.db.Write(r.Context(), func(tx *storage.Tx) error {
		var n int64
		if err := tx.QueryRow(r.Context(), "SELECT COUNT(*) FROM sync_filters WHERE user_id = $1", sess.UserID).Scan(&n); err != nil {
			return err
		}
		filterID = strconv.FormatInt(n, 10)
		_, err := tx.Exec(r.Context(), "INSERT INTO sync_filters (user_id, filter_id, filter) VALUES ($1, $2, $3)", sess.UserID, filterID, string(canon))
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": filterID}, nil
}

func (s *Service) getFilter(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if id.UserID(r.PathValue("userId")) != sess.UserID {
		return nil, mxhttp.Forbidden("cannot read filters of other users")
	}
	var raw string
	err := s.db.QueryRow(r.Context(), "SELECT filter FROM sync_filters WHERE user_id = $1 AND filter_id = $2", sess.UserID, r.PathValue("filterId")).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxhttp.NotFound("unknown filter")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

// Migrations are the sync tables.
var Migrations = []storage.Migration{{
	Component: "sync",
	Version:   1,
	SQL: `
CREATE TABLE sync_filters (
	user_id TEXT NOT NULL,
	filter_id TEXT NOT NULL,
	filter TEXT NOT NULL,
	PRIMARY KEY (user_id, filter_id)
);
`,
}}
