package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// unreadEntry is one event that notified a user and is not read yet.
type unreadEntry struct {
	pos       int64
	thread    id.EventID // "" for the main timeline
	highlight bool
}

// roomUnread is a user's unread notifications in one room, and how far
// the user has read.
type roomUnread struct {
	entries []unreadEntry // ascending pos
	readAll int64         // unthreaded receipt
	read    map[id.EventID]int64
	// left is where the user's membership last ended (push_read_marks
	// scope leftScope): everything up to it is read. It is kept apart
	// from readAll so that a membership end the re-check after a
	// partial-state resync refuses can be undone (see OnReject).
	left int64
	// changedAt is the stream position at which the counts last changed,
	// for /sync (see changedSince); set before the change commits, which
	// makes the position visible.
	changedAt int64
}

func (ru *roomUnread) readPos(thread id.EventID) int64 {
	return max(ru.readAll, ru.read[thread], ru.left)
}

// markLeft records that the user's membership ended at pos and drops
// the entries up to it.
func (ru *roomUnread) markLeft(pos int64) {
	ru.left = max(ru.left, pos)
	ru.entries = slices.DeleteFunc(ru.entries, func(e unreadEntry) bool { return e.pos <= pos })
}

func (ru *roomUnread) add(e unreadEntry) {
	i := len(ru.entries)
	for i > 0 && ru.entries[i-1].pos > e.pos {
		i--
	}
	if i > 0 && ru.entries[i-1].pos == e.pos {
		return
	}
	ru.entries = slices.Insert(ru.entries, i, e)
}

// markRead records a receipt and drops the entries it covers; all means
// an unthreaded receipt. It reports whether the read position moved.
func (ru *roomUnread) markRead(all bool, thread id.EventID, upTo int64) (moved bool) {
	if all {
		moved = upTo > ru.readAll
		ru.readAll = max(ru.readAll, upTo)
	} else {
		if ru.read == nil {
			ru.read = map[id.EventID]int64{}
		}
		moved = upTo > ru.read[thread]
		ru.read[thread] = max(ru.read[thread], upTo)
	}
	ru.entries = slices.DeleteFunc(ru.entries, func(e unreadEntry) bool {
		return e.pos <= upTo && (all || e.thread == thread)
	})
	return moved
}

// leftScope is the push_read_marks scope of where a user's membership
// of the room last ended.
const leftScope = "-"

// readScope names what a read covers in push_read_marks: '*' the whole
// room, else one thread (empty: the main timeline).
func readScope(all bool, thread id.EventID) string {
	if all {
		return "*"
	}
	return string(thread)
}

// setReadMark records durably that user has read a room (all) or one of
// its threads up to position upTo; marks only move forward.
func setReadMark(ctx context.Context, tx *storage.Tx, user id.UserID, roomID id.RoomID, all bool, thread id.EventID, upTo int64) error {
	return setMark(ctx, tx, user, roomID, readScope(all, thread), upTo)
}

// setMark moves user's mark of scope in a room forward to upTo.
func setMark(ctx context.Context, tx *storage.Tx, user id.UserID, roomID id.RoomID, scope string, upTo int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO push_read_marks (user_id, room_id, scope, pos) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_id, scope) DO UPDATE SET pos = CASE WHEN excluded.pos > push_read_marks.pos THEN excluded.pos ELSE push_read_marks.pos END`,
		user, roomID, scope, upTo)
	if err != nil {
		return fmt.Errorf("record read position: %w", err)
	}
	return nil
}

func (ru *roomUnread) counts() (main sync.Counts, threads map[id.EventID]*sync.Counts) {
	for _, e := range ru.entries {
		c := &main
		if e.thread != "" {
			if threads == nil {
				threads = map[id.EventID]*sync.Counts{}
			}
			if c = threads[e.thread]; c == nil {
				c = &sync.Counts{}
				threads[e.thread] = c
			}
		}
		c.NotificationCount++
		if e.highlight {
			c.HighlightCount++
		}
	}
	return main, threads
}

// roomUnreadLocked returns the user's state for a room, creating it if
// create is set. s.countsMu must be held.
func (s *Service) roomUnreadLocked(user id.UserID, roomID id.RoomID, create bool) *roomUnread {
	rs := s.unread[user]
	if rs == nil {
		if !create {
			return nil
		}
		rs = map[id.RoomID]*roomUnread{}
		s.unread[user] = rs
	}
	ru := rs[roomID]
	if ru == nil && create {
		ru = &roomUnread{}
		rs[roomID] = ru
	}
	return ru
}

// Counts returns the user's unread counts in a room: room covers the main
// timeline only, threads each thread (by thread root) with unread
// notifications. For clients that do not ask for thread counts, the room
// total is room plus every thread (see [Total]).
func (s *Service) Counts(user id.UserID, roomID id.RoomID) (room sync.Counts, threads map[id.EventID]*sync.Counts) {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	if ru := s.roomUnreadLocked(user, roomID, false); ru != nil {
		return ru.counts()
	}
	return sync.Counts{}, nil
}

// Total adds thread counts to main-timeline counts.
func Total(room sync.Counts, threads map[id.EventID]*sync.Counts) sync.Counts {
	for _, c := range threads {
		room.NotificationCount += c.NotificationCount
		room.HighlightCount += c.HighlightCount
	}
	return room
}

// markChanged records pos as the position at which the users' counts in
// roomID changed, for /sync.
func (s *Service) markChanged(roomID id.RoomID, pos int64, users ...id.UserID) {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	for _, u := range users {
		s.roomUnreadLocked(u, roomID, true).changedAt = pos
	}
}

// OnAccept evaluates the push rules of an event accepted into a room's
// pipeline (a rooms.Engine OnAccept hook): on the sender's goroutine, with
// the room's state right after the event, every local joined member but
// the sender has their rules evaluated. What it returns records the
// outcome inside the event's write transaction, so a send commits once and
// its counts are durable with it: one push_events row for the event (see
// [Migrations]) and the read marks its sender and a member who leaves
// move. Memory, wake-ups and the OnNotify hooks follow once the
// transaction has committed, before the send returns.
func (s *Service) OnAccept(ctx context.Context, ev *rooms.Event, info *rooms.RoomInfo) rooms.PersistFunc {
	o := s.outcome(ctx, ev, info)
	if o == nil {
		return nil
	}
	return func(ctx context.Context, tx *storage.Tx) error {
		return s.record(ctx, tx, o, ev.Pos)
	}
}

// OnEvent records unread counts for an event that is already stored, in a
// write of its own (the node uses OnAccept instead, whose record commits
// with the event).
func (s *Service) OnEvent(ev *rooms.Event, info *rooms.RoomInfo) {
	o := s.outcome(context.Background(), ev, info)
	if o == nil {
		return
	}
	ctx := context.Background()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		return s.record(ctx, tx, o, tx.NextPos())
	})
	if err != nil {
		s.log.Error("save unread notifications", "event_id", ev.ID, "room_id", ev.RoomID, "err", err)
	}
}

// hit is a user an event notifies, with the rule that decided it.
type hit struct {
	user id.UserID
	rule *compiledRule
	// unread is the user's state in the room, found once by record.
	unread *roomUnread
}

// eventOutcome is what an event changes in unread counts, worked out
// before its write.
type eventOutcome struct {
	ev     *rooms.Event
	thread id.EventID
	hits   []hit
	// senderLocal is set when the sender is a local user whose read
	// marker the event moves; gone names a local user whose membership
	// the event ends.
	senderLocal bool
	gone        id.UserID
}

// outcome evaluates the rules of every local user ev may notify (see
// recipients) for ev, in the room as info has it right after the event;
// nil when the event changes no one's counts.
func (s *Service) outcome(ctx context.Context, ev *rooms.Event, info *rooms.RoomInfo) *eventOutcome {
	if ev.Rejected {
		return nil
	}
	server := s.rooms.ServerName()
	local := func(u id.UserID) bool { return u.Homeserver() == server }
	o := &eventOutcome{ev: ev}
	if r := s.rosterOf(ctx, info); r != nil {
		if !s.evaluateRoster(ctx, o, r, info) {
			return nil
		}
	} else if users, joined := recipients(ev, info, local); len(users) > 0 {
		x, err := s.evalCtx(ctx, ev, joined, info)
		if err != nil {
			s.log.Warn("push rules: unreadable event", "event_id", ev.ID, "err", err)
			return nil
		}
		o.hits = make([]hit, 0, len(users))
		var plan *defaultPlan // the members with unchanged rules share it
		for _, u := range users {
			if !s.ignores(ctx, u, ev.Sender) {
				o.addHit(u, s.decideUser(x, &plan, u))
			}
		}
	}
	// A local user whose membership ended has nothing unread here.
	if ev.Type == "m.room.member" && ev.StateKey != nil && local(id.UserID(*ev.StateKey)) && ev.Membership() != "join" {
		o.gone = id.UserID(*ev.StateKey)
	}
	o.senderLocal = local(ev.Sender) && ev.Sender != o.gone
	if len(o.hits) == 0 && !o.senderLocal && o.gone == "" {
		return nil
	}
	if len(o.hits) > 0 || o.senderLocal {
		o.thread = s.threadOf(ctx, ev)
	}
	return o
}

// evaluateRoster evaluates ev for the local joined members of the room's
// roster r but its sender and, for an invite, for the invited user; it
// reports false when the event cannot be read.
func (s *Service) evaluateRoster(ctx context.Context, o *eventOutcome, r *roster, info *rooms.RoomInfo) bool {
	ev := o.ev
	invited := invitedLocal(ev, s.rooms.ServerName())
	if len(r.members) == 0 && invited == "" {
		return true
	}
	x, err := s.evalCtx(ctx, ev, r.joined, info)
	if err != nil {
		s.log.Warn("push rules: unreadable event", "event_id", ev.ID, "err", err)
		return false
	}
	x.roster = r
	if s.opts.DisplayName == nil {
		x.rosterName = func(i int) string { return r.name(s, info, i) }
		x.ownName = func() string { return x.rosterName(x.member) }
	}
	o.hits = make([]hit, 0, len(r.members)+1)
	var plan *defaultPlan // the members with unchanged rules share it
	for i := range r.members {
		m := &r.members[i]
		if m.user == ev.Sender || m.ignored[ev.Sender] {
			continue
		}
		x.member = i
		o.addHit(m.user, s.decide(x, &plan, m.user, m.rules, m.shared, m.unchanged))
	}
	if invited != "" && !s.ignores(ctx, invited, ev.Sender) {
		x.ownName = nil // not a member yet: their name is read from the state
		x.member = -1
		o.addHit(invited, s.decideUser(x, &plan, invited))
	}
	return true
}

// decideUser returns the rule of user's rules that decides the event of x
// for them (see decide).
func (s *Service) decideUser(x *evalCtx, plan **defaultPlan, user id.UserID) *compiledRule {
	ur := s.rulesOf(user)
	mr, unchanged := ur.shared(s, user)
	return s.decide(x, plan, user, ur, mr, unchanged)
}

// decide returns the rule that decides the event of x for user, whose
// rules are ur: when they are the predefined ones, unchanged, from the
// event's plan (made once per event, by the first such member) and the
// user's per-member rules mr.
func (s *Service) decide(x *evalCtx, plan **defaultPlan, user id.UserID, ur *userRules, mr memberRules, unchanged bool) *compiledRule {
	x.user = user
	if unchanged {
		if *plan == nil {
			*plan = s.template().plan(x)
		}
		return (*plan).match(mr, x)
	}
	_, cs := ur.build(s, user)
	return cs.matchRule(x)
}

// addHit records that rule r decides the event for user, when it
// notifies.
func (o *eventOutcome) addHit(user id.UserID, r *compiledRule) {
	if r != nil && r.notify {
		o.hits = append(o.hits, hit{user: user, rule: r})
	}
}

// invitedLocal returns the local user an invite event invites, unless
// they sent it themselves; "" for any other event.
func invitedLocal(ev *rooms.Event, server string) id.UserID {
	if ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "invite" {
		return ""
	}
	if u := id.UserID(*ev.StateKey); u != ev.Sender && u.Homeserver() == server {
		return u
	}
	return ""
}

// ignores reports whether user ignores sender, whose events then notify
// them of nothing. A list that cannot be read ignores no one.
func (s *Service) ignores(ctx context.Context, user, sender id.UserID) bool {
	if s.IgnoredUsers == nil {
		return false
	}
	ignored, err := s.IgnoredUsers(ctx, user)
	if err != nil {
		s.log.Warn("push rules: read ignored users", "user_id", user, "err", err)
		return false
	}
	return ignored[sender]
}

// recipients returns the local users whose rules ev is evaluated for, and
// the room's joined member count: its joined members but the sender and,
// for an invite, the invited user, who is not joined yet but whom
// .m.rule.invite_for_me notifies, however few have joined.
func recipients(ev *rooms.Event, info *rooms.RoomInfo, local func(id.UserID) bool) (users []id.UserID, joined int) {
	users = make([]id.UserID, 0, len(info.Members)+1)
	for u, m := range info.Members {
		if m == "join" {
			joined++
			if u != ev.Sender && local(u) {
				users = append(users, u)
			}
		}
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil && ev.Membership() == "invite" {
		if u := id.UserID(*ev.StateKey); u != ev.Sender && local(u) {
			users = append(users, u)
		}
	}
	return users, joined
}

// record writes o inside the event's transaction; the counts change for
// /sync at position changePos (the event's own, when the event commits in
// tx).
func (s *Service) record(ctx context.Context, tx *storage.Tx, o *eventOutcome, changePos int64) error {
	ev, thread, pos := o.ev, o.thread, o.ev.Pos
	named, err := s.insertRecord(ctx, tx, o, pos)
	if err != nil {
		return err
	}
	users := make([]id.UserID, 0, len(o.hits)+2)
	for _, h := range o.hits {
		users = append(users, h.user)
	}
	if o.senderLocal {
		// Sending an event moves the sender's read marker to it: the
		// event's thread, or the whole room for a main-timeline event.
		// A row that names the sender as its reader records it.
		if !named {
			if err := setReadMark(ctx, tx, ev.Sender, ev.RoomID, thread == "", thread, pos); err != nil {
				return err
			}
		}
		users = append(users, ev.Sender)
	}
	if o.gone != "" {
		// Everything up to the membership's end is read: nothing of the
		// room counts for the user any more.
		if err := setMark(ctx, tx, o.gone, ev.RoomID, leftScope, pos); err != nil {
			return err
		}
		users = append(users, o.gone)
	}
	// The change becomes visible when this transaction commits. Each
	// notified user's state is found here, once: the commit adds to it.
	s.countsMu.Lock()
	for i := range o.hits {
		h := &o.hits[i]
		h.unread = s.roomUnreadLocked(h.user, ev.RoomID, true)
		h.unread.changedAt = changePos
	}
	for _, u := range users[len(o.hits):] {
		s.roomUnreadLocked(u, ev.RoomID, true).changedAt = changePos
	}
	s.countsMu.Unlock()
	// Woken once the change is visible: a /sync woken before would find
	// nothing new, wait again and need a second wake-up.
	tx.AfterVisible(func() { s.wake(users...) })
	tx.AfterCommit(func() {
		s.countsMu.Lock()
		for _, h := range o.hits {
			if pos > h.unread.readPos(thread) { // else a receipt already covers it
				h.unread.add(unreadEntry{pos: pos, thread: thread, highlight: h.rule.highlight})
			}
		}
		if o.senderLocal {
			s.roomUnreadLocked(ev.Sender, ev.RoomID, true).markRead(thread == "", thread, pos)
		}
		if o.gone != "" {
			s.roomUnreadLocked(o.gone, ev.RoomID, true).markLeft(pos)
		}
		s.countsMu.Unlock()
		for _, h := range o.hits {
			for _, f := range s.OnNotify {
				f(h.user, ev, h.rule.rule.Actions, h.rule.highlight)
			}
		}
	})
	return nil
}

// maxThreadHops bounds the walk up relations to find an event's thread.
const maxThreadHops = 3

// threadOf returns the thread root of ev, following relations up to
// maxThreadHops events (so a reaction to a threaded reply counts in the
// thread), or "" for the main timeline.
func (s *Service) threadOf(ctx context.Context, ev *rooms.Event) id.EventID {
	if ev.ThreadID != "" {
		return ev.ThreadID
	}
	rel := ev.RelatesTo
	for hop := 0; hop < maxThreadHops && rel != "" && s.rooms != nil; hop++ {
		parent, err := s.rooms.Event(ctx, rel)
		if err != nil || parent == nil || parent.RoomID != ev.RoomID {
			return ""
		}
		if parent.ThreadID != "" {
			return parent.ThreadID
		}
		rel = parent.RelatesTo
	}
	return ""
}

// MarkRead clears the user's notifications in a room up to and including
// stream position upToPos, as a read receipt does. threadID is the
// receipt's thread_id: "" for an unthreaded receipt (every thread and the
// main timeline), "main" for the main timeline, otherwise a thread root.
func (s *Service) MarkRead(ctx context.Context, user id.UserID, roomID id.RoomID, threadID string, upToPos int64) error {
	all := threadID == ""
	var thread id.EventID
	if threadID != "main" {
		thread = id.EventID(threadID)
	}
	s.countsMu.Lock()
	moved := s.roomUnreadLocked(user, roomID, true).markRead(all, thread, upToPos)
	s.countsMu.Unlock()
	if !moved {
		return nil
	}
	// Read marks only move forward, so the lock need not cover the write
	// (event writes take countsMu on the database writer).
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := setReadMark(ctx, tx, user, roomID, all, thread, upToPos); err != nil {
			return err
		}
		// The write's own position marks the counts change for /sync,
		// visible once it commits.
		s.markChanged(roomID, tx.NextPos(), user)
		return nil
	})
	if err != nil {
		return err
	}
	s.wake(user)
	return nil
}

// readPos is how far user has read thread ("" the main timeline) in a
// room, as memory knows it.
func (s *Service) readPos(user id.UserID, roomID id.RoomID, thread id.EventID) int64 {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	if ru := s.roomUnreadLocked(user, roomID, false); ru != nil {
		return ru.readPos(thread)
	}
	return 0
}

// loadUnread reads the read marks and the stored notifications: each
// notified user who has not read past an event has it unread.
func (s *Service) loadUnread(ctx context.Context) (map[id.UserID]map[id.RoomID]*roomUnread, error) {
	out := map[id.UserID]map[id.RoomID]*roomUnread{}
	get := func(user id.UserID, roomID id.RoomID) *roomUnread {
		rs := out[user]
		if rs == nil {
			rs = map[id.RoomID]*roomUnread{}
			out[user] = rs
		}
		ru := rs[roomID]
		if ru == nil {
			ru = &roomUnread{}
			rs[roomID] = ru
		}
		return ru
	}
	rows, err := s.db.Query(ctx, "SELECT user_id, room_id, scope, pos FROM push_read_marks")
	if err != nil {
		return nil, fmt.Errorf("load read positions: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var roomID id.RoomID
		var scope string
		var pos int64
		if err := rows.Scan(&user, &roomID, &scope, &pos); err != nil {
			return err
		}
		ru := get(user, roomID)
		switch scope {
		case "*":
			ru.readAll = pos
		case leftScope:
			ru.left = pos
		default:
			if ru.read == nil {
				ru.read = map[id.EventID]int64{}
			}
			ru.read[id.EventID(scope)] = pos
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load read positions: %w", err)
	}
	// A deactivated user's notifications up to their deactivation are
	// not theirs to count (see OnDeactivated).
	gone := map[id.UserID]int64{}
	rows, err = s.db.Query(ctx, "SELECT user_id, pos FROM push_gone_users")
	if err != nil {
		return nil, fmt.Errorf("load deactivated users: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var pos int64
		if err := rows.Scan(&user, &pos); err != nil {
			return err
		}
		gone[user] = pos
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load deactivated users: %w", err)
	}
	err = s.scanRecords(ctx, "ORDER BY pos", nil, func(rec *record) error {
		err := rec.each(func(n int) (id.UserID, error) { return s.userOf(ctx, rec.roomID, n) }, func(user id.UserID, _ json.RawMessage, highlight bool) {
			if last, ok := gone[user]; ok && rec.pos <= last {
				return
			}
			ru := get(user, rec.roomID)
			if rec.pos > ru.readPos(rec.thread) {
				ru.entries = append(ru.entries, unreadEntry{pos: rec.pos, thread: rec.thread, highlight: highlight})
			}
		})
		if err == nil && rec.reader.Valid {
			// The sender's read mark, which the send did not write.
			get(id.UserID(rec.reader.String), rec.roomID).markRead(rec.thread == "", rec.thread, rec.pos)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load unread notifications: %w", err)
	}
	return out, nil
}

// changedSince lists the user's rooms whose counts changed at a position
// in (since, to].
func (s *Service) changedSince(user id.UserID, since, to int64) []id.RoomID {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	var out []id.RoomID
	for r, ru := range s.unread[user] {
		if p := ru.changedAt; p > since && p <= to {
			out = append(out, r)
		}
	}
	return out
}

// purgeQuery deletes a room's push_events rows, which have no index by
// room: the hook runs before the room's events are deleted, and finds the
// rows through them.
const purgeQuery = "DELETE FROM push_events WHERE pos IN (SELECT pos FROM events WHERE room_id = $1)"

// OnReject forgets the notifications of an event taken out of the
// timeline (a rooms.Engine OnReject hook: a remote event accepted while a
// room's state was partial that the full state refuses): its push_events
// row goes, so /notifications no longer lists it, and once the transaction
// has committed it no longer counts for anyone, whose counts change at a
// position of the transaction, for /sync, and who are woken. A refused
// end of a local user's membership (a kick, a ban) never happened: what
// notified the user before it is unread again (see unleave).
func (s *Service) OnReject(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	if err := s.unleave(ctx, tx, ev); err != nil {
		return err
	}
	res, err := tx.Exec(ctx, "DELETE FROM push_events WHERE pos = $1", ev.Pos)
	if err != nil {
		return fmt.Errorf("forget the notifications of %s: %w", ev.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil // it notified no one
	}
	changePos := tx.NextPos()
	var users []id.UserID
	tx.AfterCommit(func() {
		s.countsMu.Lock()
		defer s.countsMu.Unlock()
		for user, rs := range s.unread {
			ru := rs[ev.RoomID]
			if ru == nil {
				continue
			}
			n := len(ru.entries)
			ru.entries = slices.DeleteFunc(ru.entries, func(e unreadEntry) bool { return e.pos == ev.Pos })
			if len(ru.entries) < n {
				ru.changedAt = changePos
				users = append(users, user)
			}
		}
	})
	tx.AfterVisible(func() { s.wake(users...) })
	return nil
}

// unleave undoes, for OnReject, what ev did as the end of a local user's
// membership: the user's left mark goes when ev set it, and the
// notifications between the user's read marks and ev count again. The
// events after ev, while the user seemed gone, were evaluated for the
// room's members then, without the user, and notify them of nothing.
func (s *Service) unleave(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	if ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() == "join" {
		return nil
	}
	user := id.UserID(*ev.StateKey)
	if user.Homeserver() != s.rooms.ServerName() {
		return nil
	}
	res, err := tx.Exec(ctx, "DELETE FROM push_read_marks WHERE user_id = $1 AND room_id = $2 AND scope = $3 AND pos = $4",
		user, ev.RoomID, leftScope, ev.Pos)
	if err != nil {
		return fmt.Errorf("undo the membership end %s: %w", ev.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // a later end moved the mark on, or none was set
	}
	// The rows above the user's whole-room read mark up to ev are those
	// that may count again; memory's mark is at or past the stored one.
	s.countsMu.Lock()
	var readAll int64
	if ru := s.roomUnreadLocked(user, ev.RoomID, false); ru != nil {
		readAll = ru.readAll
	}
	s.countsMu.Unlock()
	var back []unreadEntry
	var recs []record
	err = eachRecord(ctx, tx.Query, "WHERE pos > $1 AND pos < $2 AND room_id = $3 ORDER BY pos", []any{readAll, ev.Pos, ev.RoomID}, func(rec *record) error {
		recs = append(recs, *rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("undo the membership end %s: %w", ev.ID, err)
	}
	for i := range recs {
		_, highlight, ok, err := s.find(ctx, &recs[i], user)
		if err != nil {
			return fmt.Errorf("undo the membership end %s: %w", ev.ID, err)
		}
		if ok {
			back = append(back, unreadEntry{pos: recs[i].pos, thread: recs[i].thread, highlight: highlight})
		}
	}
	changePos := tx.NextPos()
	tx.AfterCommit(func() {
		s.countsMu.Lock()
		defer s.countsMu.Unlock()
		ru := s.roomUnreadLocked(user, ev.RoomID, true)
		if ru.left == ev.Pos {
			ru.left = 0
		}
		for _, e := range back {
			if e.pos > ru.readPos(e.thread) {
				ru.add(e)
			}
		}
		ru.changedAt = changePos
	})
	tx.AfterVisible(func() { s.wake(user) })
	return nil
}

// PurgeRoom forgets a purged room's unread notifications (a
// rooms.Engine.OnPurge hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	for _, q := range []string{purgeQuery, "DELETE FROM push_read_marks WHERE room_id = $1", "DELETE FROM push_room_users WHERE room_id = $1"} {
		if _, err := tx.Exec(ctx, q, roomID); err != nil {
			return fmt.Errorf("purge unread notifications: %w", err)
		}
	}
	// The room's user numbers are forgotten at once, so that a write
	// after this one in its batch numbers the users afresh from what tx
	// holds, and again at the commit, so that none a reader read before
	// it is kept.
	s.slots.forget(roomID)
	tx.AfterCommit(func() {
		s.slots.forget(roomID)
		s.countsMu.Lock()
		defer s.countsMu.Unlock()
		for _, rs := range s.unread {
			delete(rs, roomID)
		}
	})
	return nil
}
