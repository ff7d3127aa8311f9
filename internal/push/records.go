package push

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// An event's notifications are one push_events row: the event, its
// actions (a JSON array of the distinct action lists of the users it
// notifies) and in notified the users, by their numbers in the room (see
// slots.go and encodeNotified). Rows recorded before push schema version
// 6 list instead one entry per notified user, "\n" + user ID + "\t" + the
// index of the user's actions. Whether a notification highlights follows
// from its actions. A user has an event unread while their read mark for
// its room (or thread) is below it; see loadUnread.

// insertRecord writes the notifications of o, at stream position pos, and
// reports whether it wrote a row: one that names the sender as its reader
// when o moves the sender's read mark.
func (s *Service) insertRecord(ctx context.Context, tx *storage.Tx, o *eventOutcome, pos int64) (bool, error) {
	if len(o.hits) == 0 {
		return false, nil
	}
	ev := o.ev
	slots, err := s.numberHits(ctx, tx, ev.RoomID, o.hits)
	if err != nil {
		return false, err
	}
	var actions strings.Builder
	lists := make([]int, len(o.hits))
	index := map[string]int{}
	var last *compiledRule // most members share the rule before theirs
	i := -1
	actions.WriteByte('[')
	for k, h := range o.hits {
		if h.rule != last {
			var ok bool
			if i, ok = index[h.rule.actionsJSON]; !ok {
				i = len(index)
				index[h.rule.actionsJSON] = i
				if i > 0 {
					actions.WriteByte(',')
				}
				actions.WriteString(h.rule.actionsJSON)
			}
			last = h.rule
		}
		lists[k] = i
	}
	actions.WriteByte(']')
	var reader *string
	if o.senderLocal {
		reader = (*string)(&ev.Sender)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified, reader)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (pos) DO NOTHING`,
		pos, ev.RoomID, ev.ID, o.thread, time.Now().UnixMilli(), actions.String(), encodeNotified(slots, lists, len(index)), reader); err != nil {
		return false, fmt.Errorf("record notifications: %w", err)
	}
	return true, nil
}

// record is a push_events row.
type record struct {
	pos      int64
	roomID   id.RoomID
	eventID  id.EventID
	thread   id.EventID
	ts       int64
	actions  string
	notified string
	reader   sql.NullString // the sender whose read mark the event moves
}

// actionList is one of a record's distinct action lists.
type actionList struct {
	raw       json.RawMessage
	highlight bool
}

func (rec *record) actionLists() ([]actionList, error) {
	var lists []json.RawMessage
	if err := json.Unmarshal([]byte(rec.actions), &lists); err != nil {
		return nil, fmt.Errorf("notifications of position %d: actions: %w", rec.pos, err)
	}
	out := make([]actionList, len(lists))
	for i, l := range lists {
		var acts []json.RawMessage
		if err := json.Unmarshal(l, &acts); err != nil {
			return nil, fmt.Errorf("notifications of position %d: actions: %w", rec.pos, err)
		}
		_, hl := actionFlags(acts)
		out[i] = actionList{raw: l, highlight: hl}
	}
	return out, nil
}

// each calls f for every user the record notifies; userOf names the
// user numbered n in the record's room.
func (rec *record) each(userOf func(n int) (id.UserID, error), f func(user id.UserID, actions json.RawMessage, highlight bool)) error {
	lists, err := rec.actionLists()
	if err != nil {
		return err
	}
	if compact, ok := strings.CutPrefix(rec.notified, compactPrefix); ok {
		var uerr error
		err := eachRun(compact, len(lists), func(l, first, last int) bool {
			for n := first; n <= last; n++ {
				var user id.UserID
				if user, uerr = userOf(n); uerr != nil {
					return false
				}
				f(user, lists[l].raw, lists[l].highlight)
			}
			return true
		})
		if err = cmp.Or(err, uerr); err != nil {
			return fmt.Errorf("notifications of position %d: %w", rec.pos, err)
		}
		return nil
	}
	for entry := range strings.SplitSeq(strings.TrimPrefix(rec.notified, "\n"), "\n") {
		user, idx, ok := parseEntry(entry, len(lists))
		if !ok {
			return fmt.Errorf("notifications of position %d: bad entry %q", rec.pos, entry)
		}
		f(user, lists[idx].raw, lists[idx].highlight)
	}
	return nil
}

// find returns the user's actions in the record, if it notifies the user.
func (s *Service) find(ctx context.Context, rec *record, user id.UserID) (actions json.RawMessage, highlight, ok bool, err error) {
	compact, isCompact := strings.CutPrefix(rec.notified, compactPrefix)
	if !isCompact {
		return rec.findListed(user)
	}
	lists, err := rec.actionLists()
	if err != nil {
		return nil, false, false, err
	}
	slot, known, numbered := s.slotOf(rec.roomID, user)
	list, top, err := listOf(compact, len(lists), slot, numbered)
	if err == nil && !numbered && top >= known {
		// The row names a number the table lacks: the writer may have
		// numbered the user and not published it yet.
		if _, err = s.userOf(ctx, rec.roomID, top); err == nil {
			if slot, _, numbered = s.slotOf(rec.roomID, user); numbered {
				list, _, err = listOf(compact, len(lists), slot, true)
			}
		}
	}
	if err != nil {
		return nil, false, false, fmt.Errorf("notifications of position %d: %w", rec.pos, err)
	}
	if list < 0 {
		return nil, false, false, nil
	}
	return lists[list].raw, lists[list].highlight, true, nil
}

// listOf returns the action list of the compact row's runs that holds the
// user numbered slot (-1 for none, or when numbered is false) and the
// highest number it has read.
func listOf(compact string, nLists, slot int, numbered bool) (list, top int, err error) {
	list, top = -1, -1
	err = eachRun(compact, nLists, func(l, first, last int) bool {
		top = max(top, last)
		if numbered && first <= slot && slot <= last {
			list = l
			return false
		}
		return true
	})
	return list, top, err
}

// findListed is find for a row that lists user IDs.
func (rec *record) findListed(user id.UserID) (actions json.RawMessage, highlight, ok bool, err error) {
	key := "\n" + string(user) + "\t"
	at := strings.Index(rec.notified, key)
	if at < 0 {
		return nil, false, false, nil
	}
	entry, _, _ := strings.Cut(rec.notified[at+1:], "\n")
	lists, err := rec.actionLists()
	if err != nil {
		return nil, false, false, err
	}
	_, idx, ok := parseEntry(entry, len(lists))
	if !ok {
		return nil, false, false, fmt.Errorf("notifications of position %d: bad entry %q", rec.pos, entry)
	}
	return lists[idx].raw, lists[idx].highlight, true, nil
}

// parseEntry splits one entry of notified; n is the number of action
// lists.
func parseEntry(entry string, n int) (id.UserID, int, bool) {
	user, num, ok := strings.Cut(entry, "\t")
	if !ok || user == "" {
		return "", 0, false
	}
	idx, err := strconv.Atoi(num)
	if err != nil || idx < 0 || idx >= n {
		return "", 0, false
	}
	return id.UserID(user), idx, true
}

// scanRecords reads push_events rows, the query ending in tail, and calls
// f for each.
func (s *Service) scanRecords(ctx context.Context, tail string, args []any, f func(*record) error) error {
	return eachRecord(ctx, s.db.Query, tail, args, f)
}

// eachRecord is scanRecords on query, the database's or a transaction's.
func eachRecord(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error), tail string, args []any, f func(*record) error) error {
	rows, err := query(ctx, "SELECT pos, room_id, event_id, thread_id, ts, actions, notified, reader FROM push_events "+tail, args...)
	if err != nil {
		return err
	}
	return scanRows(rows, func() error {
		var rec record
		if err := rows.Scan(&rec.pos, &rec.roomID, &rec.eventID, &rec.thread, &rec.ts, &rec.actions, &rec.notified, &rec.reader); err != nil {
			return err
		}
		return f(&rec)
	})
}

// Notification is an event that notified a user, as /notifications lists
// it.
type Notification struct {
	Pos       int64
	RoomID    id.RoomID
	EventID   id.EventID
	Actions   []json.RawMessage
	Highlight bool
	TS        int64 // when it was recorded, in milliseconds
}

// notificationsBatch is how many rows a look for a user's notifications
// reads at once.
const notificationsBatch = 100

// notificationsScan bounds the rows one look for a user's notifications
// reads: the rows are every user's, so a user notified rarely (or never)
// would otherwise have the whole table read for each request.
const notificationsScan = 1000

// Notifications returns up to limit of the user's notifications below
// stream position before, newest first; onlyHighlight keeps those that
// highlight. It reads at most notificationsScan rows: when it stops there
// with fewer than limit, scannedTo is the position of the last row it read
// (a look below it goes on where this one stopped), else 0.
func (s *Service) Notifications(ctx context.Context, user id.UserID, before int64, limit int, onlyHighlight bool) (out []Notification, scannedTo int64, err error) {
	// A deactivated account's notifications up to its deactivation are
	// gone, as its counts are (push_gone_users), also once reactivated.
	gone := int64(-1 << 62) // below every position, as Prune starts
	err = s.db.QueryRow(ctx, "SELECT pos FROM push_gone_users WHERE user_id = $1", user).Scan(&gone)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("read notifications: %w", err)
	}
	for scanned := 0; len(out) < limit; {
		if scanned >= notificationsScan {
			return out, before, nil
		}
		read := 0
		err := s.scanRecords(ctx, `WHERE pos < $1 AND pos > $3 ORDER BY pos DESC LIMIT $2`,
			[]any{before, notificationsBatch, gone}, func(rec *record) error {
				read, before = read+1, rec.pos
				if len(out) == limit {
					return nil
				}
				raw, hl, ok, err := s.find(ctx, rec, user)
				if err != nil || !ok || (onlyHighlight && !hl) {
					return err
				}
				n := Notification{Pos: rec.pos, RoomID: rec.roomID, EventID: rec.eventID, Highlight: hl, TS: rec.ts}
				if err := json.Unmarshal(raw, &n.Actions); err != nil || n.Actions == nil {
					n.Actions = []json.RawMessage{}
				}
				out = append(out, n)
				return nil
			})
		if err != nil {
			return nil, 0, fmt.Errorf("read notifications: %w", err)
		}
		if scanned += read; read < notificationsBatch {
			break
		}
	}
	return out, 0, nil
}

// pruneWhere is the walk of Prune: the next rows in stream order.
const pruneWhere = "WHERE pos > $1 ORDER BY pos LIMIT $2"

// pruneBatch is how many old rows a pass of Prune looks at.
const pruneBatch = 1000

// Prune deletes the notifications recorded before cutoff that no one has
// unread any more; an unread one stays until it is read, since it is what
// the user's unread counts are rebuilt from at start-up, and the read
// mark a deleted row held for its sender (reader) is written as a read
// mark. Rows are recorded
// in stream order, so it walks them in that order and stops at the first
// one recorded at or after cutoff (push_events has no index by time: one
// would be a page of its own in every send's commit); a row recorded
// before it but after a later one (the clock stepped back) waits for a
// later pass.
func (s *Service) Prune(ctx context.Context, cutoff time.Time) error {
	after, cut := int64(-1<<62), cutoff.UnixMilli()
	for {
		var recs []record
		reached, read := false, 0
		err := s.scanRecords(ctx, pruneWhere,
			[]any{after, pruneBatch}, func(rec *record) error {
				read++
				if reached = reached || rec.ts >= cut; !reached {
					recs = append(recs, *rec)
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("prune notifications: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		after = recs[len(recs)-1].pos
		unread := s.unreadAtOrBelow(after)
		err = s.db.Write(ctx, func(tx *storage.Tx) error {
			for _, rec := range recs {
				if unread[rec.pos] {
					continue
				}
				if rec.reader.Valid {
					// The row held its sender's read mark (see
					// insertRecord): it goes where marks live.
					if err := setReadMark(ctx, tx, id.UserID(rec.reader.String), rec.roomID, rec.thread == "", rec.thread, rec.pos); err != nil {
						return err
					}
				}
				if _, err := tx.Exec(ctx, "DELETE FROM push_events WHERE pos = $1", rec.pos); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prune notifications: %w", err)
		}
		if reached || read < pruneBatch {
			return nil
		}
	}
}

// unreadAtOrBelow returns the positions at or below upTo that some user
// has unread.
func (s *Service) unreadAtOrBelow(upTo int64) map[int64]bool {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	out := map[int64]bool{}
	for _, rs := range s.unread {
		for _, ru := range rs {
			for _, e := range ru.entries {
				if e.pos > upTo {
					break
				}
				out[e.pos] = true
			}
		}
	}
	return out
}

// legacyActions are the action lists of the rows convertLegacyUnread
// writes: an unread row of schema version 2 kept only whether it
// highlighted.
const legacyActions = `[["notify"],["notify",{"set_tweak":"highlight"}]]`

// convertLegacyUnread turns the unread rows schema version 2 kept in
// push_unread, one per notified user, into push_events rows and empties
// push_unread. Rows whose event is gone are dropped.
func (s *Service) convertLegacyUnread(ctx context.Context) error {
	var n int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM push_unread").Scan(&n); err != nil {
		return fmt.Errorf("count old unread notifications: %w", err)
	}
	if n == 0 {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT u.pos, u.room_id, u.thread_id, u.user_id, u.highlight, e.event_id, e.origin_ts
		FROM push_unread u JOIN events e ON e.pos = u.pos ORDER BY u.pos`)
	if err != nil {
		return fmt.Errorf("read old unread notifications: %w", err)
	}
	var recs []*record
	err = scanRows(rows, func() error {
		var rec record
		var user id.UserID
		var highlight bool
		if err := rows.Scan(&rec.pos, &rec.roomID, &rec.thread, &user, &highlight, &rec.eventID, &rec.ts); err != nil {
			return err
		}
		if len(recs) == 0 || recs[len(recs)-1].pos != rec.pos {
			recs = append(recs, &rec)
		}
		last := recs[len(recs)-1]
		idx := "\t0"
		if highlight {
			idx = "\t1"
		}
		last.notified += "\n" + string(user) + idx
		return nil
	})
	if err != nil {
		return fmt.Errorf("read old unread notifications: %w", err)
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, rec := range recs {
			if _, err := tx.Exec(ctx, `INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pos) DO NOTHING`,
				rec.pos, rec.roomID, rec.eventID, rec.thread, rec.ts, legacyActions, rec.notified); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM push_unread")
		return err
	})
	if err != nil {
		return fmt.Errorf("convert old unread notifications: %w", err)
	}
	s.log.Info("converted unread notifications to one row per event", "rows", n, "events", len(recs))
	return nil
}
