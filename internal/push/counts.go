package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

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
}

func (ru *roomUnread) readPos(thread id.EventID) int64 {
	return max(ru.readAll, ru.read[thread])
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
// an unthreaded receipt. It returns the positions of the entries dropped.
func (ru *roomUnread) markRead(all bool, thread id.EventID, upTo int64) (dropped []int64) {
	if all {
		ru.readAll = max(ru.readAll, upTo)
	} else {
		if ru.read == nil {
			ru.read = map[id.EventID]int64{}
		}
		ru.read[thread] = max(ru.read[thread], upTo)
	}
	ru.entries = slices.DeleteFunc(ru.entries, func(e unreadEntry) bool {
		if e.pos <= upTo && (all || e.thread == thread) {
			dropped = append(dropped, e.pos)
			return true
		}
		return false
	})
	return dropped
}

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
	_, err := tx.Exec(ctx, `INSERT INTO push_read_marks (user_id, room_id, scope, pos) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_id, scope) DO UPDATE SET pos = CASE WHEN excluded.pos > push_read_marks.pos THEN excluded.pos ELSE push_read_marks.pos END`,
		user, roomID, readScope(all, thread), upTo)
	if err != nil {
		return fmt.Errorf("record read position: %w", err)
	}
	return nil
}

// deleteReadRows deletes at once the rows that a read of the whole room up
// to upTo covers, when the user's rows are all of this room (no unread
// notifications elsewhere, no garbage): they lie together at the end of
// the user's rows, in pages the write touches anyway. Otherwise they lie
// among other rooms' rows and are left as garbage, deleted in batches. from
// is how far the user had read the room (see eagerDeleteFrom); ok is false
// when the rows are left as garbage.
func deleteReadRows(ctx context.Context, tx *storage.Tx, user id.UserID, roomID id.RoomID, from, upTo int64, ok bool) error {
	if !ok {
		return nil
	}
	if _, err := tx.Exec(ctx, "DELETE FROM push_unread WHERE user_id = $1 AND pos > $2 AND pos <= $3 AND room_id = $4",
		user, from, upTo, roomID); err != nil {
		return fmt.Errorf("clear unread notifications: %w", err)
	}
	return nil
}

// eagerDeleteFrom tells whether a read of the whole room by user may
// delete its rows at once (deleteReadRows), and from where: the user's
// read position in the room, below which nothing of the room is stored.
func (s *Service) eagerDeleteFrom(user id.UserID, roomID id.RoomID) (from int64, ok bool) {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	rs := s.unread[user]
	if len(s.garbage[user]) > 0 || len(rs) > 1 || (len(rs) == 1 && rs[roomID] == nil) {
		return 0, false
	}
	if ru := rs[roomID]; ru != nil {
		from = ru.readAll
	}
	return from, true
}

// garbageBatch is how many read rows of a user are deleted at once: the
// oldest, once four times as many have gathered. The rows of one room lie
// among those of the user's other rooms; the oldest read rows lie close
// together (every room has been read past them), so a batch of them
// touches few pages.
const garbageBatch = 128

// addGarbage notes rows of user that a read covered, to be deleted later.
// s.countsMu must be held.
func (s *Service) addGarbageLocked(user id.UserID, positions []int64) {
	if len(positions) > 0 {
		s.garbage[user] = append(s.garbage[user], positions...)
	}
}

// collectGarbage deletes, inside tx, a batch of user's rows that reads
// have covered, once a whole batch has gathered. Their rows committed
// before memory dropped them, so the delete finds them; one it misses
// (the write fails) stays behind, read, and is deleted at the next start.
func (s *Service) collectGarbage(ctx context.Context, tx *storage.Tx, user id.UserID) error {
	s.countsMu.Lock()
	g := s.garbage[user]
	if len(g) < 4*garbageBatch {
		s.countsMu.Unlock()
		return nil
	}
	slices.Sort(g)
	batch := slices.Clone(g[:garbageBatch])
	s.garbage[user] = slices.Delete(g, 0, garbageBatch)
	s.countsMu.Unlock()
	if _, err := tx.Exec(ctx, garbageDelete, append([]any{user}, int64sToAny(batch)...)...); err != nil {
		return fmt.Errorf("delete read notifications: %w", err)
	}
	return nil
}

// garbageDelete deletes garbageBatch rows of one user by position.
var garbageDelete = func() string {
	var b strings.Builder
	b.WriteString("DELETE FROM push_unread WHERE user_id = $1 AND pos IN (")
	for i := range garbageBatch {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+2)
	}
	b.WriteString(")")
	return b.String()
}()

func int64sToAny(v []int64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
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
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	for _, u := range users {
		m := s.changed[u]
		if m == nil {
			m = map[id.RoomID]int64{}
			s.changed[u] = m
		}
		m[roomID] = pos
	}
}

// OnPersist records unread counts for an event inside the event's own
// write transaction (it suits rooms.Engine.OnPersist), so a send commits
// once and its counts are durable with it: every local joined member but
// the sender has their rules evaluated; the sender's own event marks the
// room (or the event's thread) read up to it. Memory, wake-ups and the
// OnNotify hooks follow once the transaction has committed.
func (s *Service) OnPersist(ctx context.Context, tx *storage.Tx, ev *rooms.Event, info *rooms.RoomInfo) error {
	return s.persistCounts(ctx, tx, ev, info, func() int64 { return ev.Pos })
}

// persistCounts is OnPersist with the stream position that marks the
// counts change for /sync chosen by changePos.
func (s *Service) persistCounts(ctx context.Context, tx *storage.Tx, ev *rooms.Event, info *rooms.RoomInfo, changePos func() int64) error {
	if ev.Rejected {
		return nil
	}
	server := s.rooms.ServerName()
	local := func(u id.UserID) bool { return u.Homeserver() == server }

	joined := 0
	for _, m := range info.Members {
		if m == "join" {
			joined++
		}
	}
	type hit struct {
		user      id.UserID
		highlight bool
		actions   []json.RawMessage
	}
	var hits []hit
	if joined > 1 {
		x, err := s.evalCtx(ctx, ev, joined, info)
		if err != nil {
			s.log.Warn("push rules: unreadable event", "event_id", ev.ID, "err", err)
			return nil
		}
		for u, m := range info.Members {
			if m != "join" || u == ev.Sender || !local(u) {
				continue
			}
			_, cs := s.rulesOf(u).build(s, u)
			x.user = u
			if out, actions := cs.match(x); out.Notify {
				hits = append(hits, hit{u, out.Highlight, actions})
			}
		}
	}
	// A local user whose membership ended has nothing unread here.
	var gone id.UserID
	if ev.Type == "m.room.member" && ev.StateKey != nil && local(id.UserID(*ev.StateKey)) && ev.Membership() != "join" {
		gone = id.UserID(*ev.StateKey)
	}
	senderLocal := local(ev.Sender) && ev.Sender != gone
	if len(hits) == 0 && !senderLocal && gone == "" {
		return nil
	}
	var thread id.EventID
	if len(hits) > 0 || senderLocal {
		thread = s.threadOf(ctx, ev)
	}
	var users []id.UserID
	var senderDeleted, goneDeleted bool // their read rows are deleted, not garbage
	for _, h := range hits {
		// A user who has read past the event (one that takes a position
		// below theirs) gets no row, as memory gets no entry.
		if ev.Pos > s.readPos(h.user, ev.RoomID, thread) {
			if _, err := tx.Exec(ctx, `INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (user_id, pos) DO NOTHING`, h.user, ev.Pos, ev.RoomID, thread, h.highlight); err != nil {
				return fmt.Errorf("record unread notification: %w", err)
			}
		}
		for _, f := range s.OnNotifyTx {
			if err := f(ctx, tx, h.user, ev, h.actions, h.highlight); err != nil {
				return err
			}
		}
		users = append(users, h.user)
	}
	if senderLocal {
		// Sending an event moves the sender's read marker to it: the
		// event's thread, or the whole room for a main-timeline event.
		if err := setReadMark(ctx, tx, ev.Sender, ev.RoomID, thread == "", thread, ev.Pos); err != nil {
			return err
		}
		if thread == "" {
			from, ok := s.eagerDeleteFrom(ev.Sender, ev.RoomID)
			if err := deleteReadRows(ctx, tx, ev.Sender, ev.RoomID, from, ev.Pos, ok); err != nil {
				return err
			}
			senderDeleted = ok
		}
		if err := s.collectGarbage(ctx, tx, ev.Sender); err != nil {
			return err
		}
		users = append(users, ev.Sender)
	}
	if gone != "" {
		// Everything up to the membership's end is read: nothing of the
		// room counts for the user any more.
		if err := setReadMark(ctx, tx, gone, ev.RoomID, true, "", ev.Pos); err != nil {
			return err
		}
		from, ok := s.eagerDeleteFrom(gone, ev.RoomID)
		if err := deleteReadRows(ctx, tx, gone, ev.RoomID, from, ev.Pos, ok); err != nil {
			return err
		}
		goneDeleted = ok
		users = append(users, gone)
	}
	// The event's own position marks the counts change for /sync; it
	// becomes visible when this transaction commits.
	s.markChanged(ev.RoomID, changePos(), users...)
	tx.AfterCommit(func() {
		s.countsMu.Lock()
		for _, h := range hits {
			ru := s.roomUnreadLocked(h.user, ev.RoomID, true)
			if ev.Pos > ru.readPos(thread) { // else a receipt already covers it
				ru.add(unreadEntry{pos: ev.Pos, thread: thread, highlight: h.highlight})
			}
		}
		if senderLocal {
			dropped := s.roomUnreadLocked(ev.Sender, ev.RoomID, true).markRead(thread == "", thread, ev.Pos)
			if !senderDeleted {
				s.addGarbageLocked(ev.Sender, dropped)
			}
		}
		if gone != "" {
			dropped := s.roomUnreadLocked(gone, ev.RoomID, true).markRead(true, "", ev.Pos)
			if !goneDeleted {
				s.addGarbageLocked(gone, dropped)
			}
		}
		s.countsMu.Unlock()
		s.wake(users...)
		for _, h := range hits {
			for _, f := range s.OnNotify {
				f(h.user, ev, h.actions, h.highlight)
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
	from, eager := s.eagerDeleteFrom(user, roomID)
	eager = eager && all
	s.countsMu.Lock()
	dropped := s.roomUnreadLocked(user, roomID, true).markRead(all, thread, upToPos)
	if !eager {
		s.addGarbageLocked(user, dropped)
	}
	s.countsMu.Unlock()
	if len(dropped) == 0 {
		return nil
	}
	// Read marks only move forward, so the lock need not cover the write
	// (event writes take countsMu on the database writer).
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := setReadMark(ctx, tx, user, roomID, all, thread, upToPos); err != nil {
			return err
		}
		if err := deleteReadRows(ctx, tx, user, roomID, from, upToPos, eager); err != nil {
			return err
		}
		if err := s.collectGarbage(ctx, tx, user); err != nil {
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

// loadUnread reads the read marks and the stored unread notifications;
// the rows that marks cover are returned as garbage, to delete.
func (s *Service) loadUnread(ctx context.Context) (map[id.UserID]map[id.RoomID]*roomUnread, map[id.UserID][]int64, error) {
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
		return nil, nil, fmt.Errorf("load read positions: %w", err)
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
		if scope == "*" {
			ru.readAll = pos
		} else {
			if ru.read == nil {
				ru.read = map[id.EventID]int64{}
			}
			ru.read[id.EventID(scope)] = pos
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load read positions: %w", err)
	}
	garbage := map[id.UserID][]int64{}
	rows, err = s.db.Query(ctx, "SELECT user_id, room_id, pos, thread_id, highlight FROM push_unread ORDER BY user_id, pos")
	if err != nil {
		return nil, nil, fmt.Errorf("load unread notifications: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var roomID id.RoomID
		var e unreadEntry
		if err := rows.Scan(&user, &roomID, &e.pos, &e.thread, &e.highlight); err != nil {
			return err
		}
		ru := get(user, roomID)
		if e.pos <= ru.readPos(e.thread) {
			garbage[user] = append(garbage[user], e.pos)
			return nil
		}
		ru.entries = append(ru.entries, e)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load unread notifications: %w", err)
	}
	return out, garbage, nil
}

// deleteGarbage deletes rows that reads covered, found at start-up.
func (s *Service) deleteGarbage(ctx context.Context, garbage map[id.UserID][]int64) error {
	if len(garbage) == 0 {
		return nil
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		for user, positions := range garbage {
			for _, pos := range positions {
				if _, err := tx.Exec(ctx, "DELETE FROM push_unread WHERE user_id = $1 AND pos = $2", user, pos); err != nil {
					return fmt.Errorf("delete read notifications: %w", err)
				}
			}
		}
		return nil
	})
}

// changedSince lists the user's rooms whose counts changed at a position
// in (since, to].
func (s *Service) changedSince(user id.UserID, since, to int64) []id.RoomID {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	var out []id.RoomID
	for r, p := range s.changed[user] {
		if p > since && p <= to {
			out = append(out, r)
		}
	}
	return out
}

// OnEvent records unread counts for an event that is already stored, in a
// write of its own (the node uses OnPersist instead, inside the event's
// transaction).
func (s *Service) OnEvent(ev *rooms.Event, info *rooms.RoomInfo) {
	ctx := context.Background()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		return s.persistCounts(ctx, tx, ev, info, tx.NextPos)
	})
	if err != nil {
		s.log.Error("save unread notifications", "event_id", ev.ID, "room_id", ev.RoomID, "err", err)
	}
}

// PurgeRoom forgets a purged room's unread notifications (a
// rooms.Engine.OnPurge hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	for _, q := range []string{"DELETE FROM push_unread WHERE room_id = $1", "DELETE FROM push_read_marks WHERE room_id = $1"} {
		if _, err := tx.Exec(ctx, q, roomID); err != nil {
			return fmt.Errorf("purge unread notifications: %w", err)
		}
	}
	tx.AfterCommit(func() {
		s.countsMu.Lock()
		defer s.countsMu.Unlock()
		for _, rs := range s.unread {
			delete(rs, roomID)
		}
	})
	return nil
}
