package push

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// The local users a room's events notify are numbered from 0, in the order
// the room's events first notified them (push_room_users), and a
// push_events row names the users it notifies by these numbers, as runs
// (see encodeNotified): the members of a room are mostly notified alike,
// so a send into a room of thousands writes a few runs, not every
// member's user ID. A number is never reused or changed while the room's
// notifications exist; a purge forgets both.

// slotTable holds every room's numbered users, as committed.
type slotTable struct {
	mu sync.Mutex
	// gen moves on at every purge, so that what was read before it is
	// not kept after it.
	gen   uint64
	rooms map[id.RoomID]*roomSlots
}

// roomSlots are the numbered users of one room: users[n] has number n.
type roomSlots struct {
	users []id.UserID
	slot  map[id.UserID]int
}

// extend adds users numbered from first on, those it does not have yet;
// it reports false when they do not follow on from what it has.
func (r *roomSlots) extend(first int, users []id.UserID) bool {
	if first > len(r.users) {
		return false
	}
	if have := len(r.users) - first; have < len(users) {
		for i, u := range users[have:] {
			r.slot[u] = len(r.users) + i
		}
		r.users = append(r.users, users[have:]...)
	}
	return true
}

// publish adds users numbered from first on to the room's, unless a
// purge has come since gen.
func (t *slotTable) publish(roomID id.RoomID, gen uint64, first int, users []id.UserID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return
	}
	rs := t.rooms[roomID]
	if rs == nil {
		if first != 0 {
			return
		}
		rs = &roomSlots{slot: make(map[id.UserID]int, len(users))}
		if t.rooms == nil {
			t.rooms = map[id.RoomID]*roomSlots{}
		}
		t.rooms[roomID] = rs
	}
	rs.extend(first, users)
}

// forget drops a room's numbers (a purge); what is being read of them
// concurrently is not kept.
func (t *slotTable) forget(roomID id.RoomID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	delete(t.rooms, roomID)
}

// numberHits returns the number of each hit's user in the room, numbering
// inside tx those who have none yet; the new numbers become the table's
// when tx commits. It runs on the database writer, which is the only one
// to number users: the table then holds every committed number of the
// rooms it has, and the numbers that writes earlier in tx's batch gave
// are read from tx.
func (s *Service) numberHits(ctx context.Context, tx *storage.Tx, roomID id.RoomID, hits []hit) ([]int, error) {
	out := make([]int, len(hits))
	missing := make([]int, 0, 4) // indexes into hits
	t := &s.slots
	t.mu.Lock()
	gen, rs, first := t.gen, t.rooms[roomID], 0
	if rs != nil {
		first = len(rs.users)
		for i := range hits {
			if n, ok := rs.slot[hits[i].user]; ok {
				out[i] = n
			} else {
				missing = append(missing, i)
			}
		}
	}
	t.mu.Unlock()
	if rs != nil && len(missing) == 0 {
		return out, nil
	}
	// The numbers after those the table has: all of the room's when the
	// table has none of it yet.
	added, err := scanSlots(roomID, first)(tx.Query(ctx, slotsQuery, roomID, first))
	if err != nil {
		return nil, err
	}
	tail := make(map[id.UserID]int, len(added))
	for i, u := range added {
		tail[u] = first + i
	}
	if rs == nil {
		missing = missing[:0]
		for i := range hits {
			missing = append(missing, i)
		}
	}
	known := first + len(added)
	for _, i := range missing {
		u := hits[i].user
		n, ok := tail[u]
		if !ok {
			n = first + len(added)
			tail[u] = n
			added = append(added, u)
		}
		out[i] = n
	}
	if err := insertSlots(ctx, tx, roomID, known, added[known-first:]); err != nil {
		return nil, err
	}
	tx.AfterCommit(func() { t.publish(roomID, gen, first, added) })
	return out, nil
}

// slotsQuery reads a room's numbered users from a number on.
const slotsQuery = "SELECT idx, user_id FROM push_room_users WHERE room_id = $1 AND idx >= $2 ORDER BY idx"

// scanSlots returns a function that reads the result of slotsQuery from
// number first on: the users in number order.
func scanSlots(roomID id.RoomID, first int) func(*sql.Rows, error) ([]id.UserID, error) {
	return func(rows *sql.Rows, err error) ([]id.UserID, error) {
		if err != nil {
			return nil, fmt.Errorf("read notified users: %w", err)
		}
		var users []id.UserID
		err = scanRows(rows, func() error {
			var n int
			var u id.UserID
			if err := rows.Scan(&n, &u); err != nil {
				return err
			}
			if n != first+len(users) {
				return fmt.Errorf("room %s: user number %d out of sequence", roomID, n)
			}
			users = append(users, u)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read notified users: %w", err)
		}
		return users, nil
	}
}

// slotRowsPerInsert bounds the rows of one INSERT of insertSlots (three
// parameters each; SQLite takes at most 32,766).
const slotRowsPerInsert = 256

// insertSlots records users as the room's users numbered from first on.
// Each INSERT has a power of two of rows, so that the prepared statements
// kept by query text (storage's cache is bounded) are a few.
func insertSlots(ctx context.Context, tx *storage.Tx, roomID id.RoomID, first int, users []id.UserID) error {
	for len(users) > 0 {
		size := slotRowsPerInsert
		for size > len(users) {
			size /= 2
		}
		batch := users[:size]
		var q strings.Builder
		q.WriteString("INSERT INTO push_room_users (room_id, idx, user_id) VALUES ")
		args := make([]any, 0, 3*len(batch))
		for i, u := range batch {
			if i > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "($%d, $%d, $%d)", 3*i+1, 3*i+2, 3*i+3)
			args = append(args, roomID, first+i, u)
		}
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("number notified users: %w", err)
		}
		users, first = users[len(batch):], first+len(batch)
	}
	return nil
}

// loadSlots reads every room's numbered users.
func (s *Service) loadSlots(ctx context.Context) error {
	rows, err := s.db.Query(ctx, "SELECT room_id, idx, user_id FROM push_room_users ORDER BY room_id, idx")
	if err != nil {
		return fmt.Errorf("load notified users: %w", err)
	}
	rooms := map[id.RoomID]*roomSlots{}
	err = scanRows(rows, func() error {
		var roomID id.RoomID
		var n int
		var u id.UserID
		if err := rows.Scan(&roomID, &n, &u); err != nil {
			return err
		}
		rs := rooms[roomID]
		if rs == nil {
			rs = &roomSlots{slot: map[id.UserID]int{}}
			rooms[roomID] = rs
		}
		if !rs.extend(n, []id.UserID{u}) || n != len(rs.users)-1 {
			return fmt.Errorf("room %s: user number %d out of sequence", roomID, n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load notified users: %w", err)
	}
	s.slots.mu.Lock()
	s.slots.gen++
	s.slots.rooms = rooms
	s.slots.mu.Unlock()
	return nil
}

// userOf returns the user numbered n in a room, reading the room's
// numbers again when the table does not have n (a reader can see a row
// before the writer has published its numbers).
func (s *Service) userOf(ctx context.Context, roomID id.RoomID, n int) (id.UserID, error) {
	t := &s.slots
	t.mu.Lock()
	rs, gen := t.rooms[roomID], t.gen
	if rs != nil && n < len(rs.users) {
		u := rs.users[n]
		t.mu.Unlock()
		return u, nil
	}
	t.mu.Unlock()
	users, err := scanSlots(roomID, 0)(s.db.Query(ctx, slotsQuery, roomID, 0))
	if err != nil {
		return "", err
	}
	t.publish(roomID, gen, 0, users)
	if n >= len(users) {
		return "", fmt.Errorf("room %s: no user numbered %d", roomID, n)
	}
	return users[n], nil
}

// slotOf returns the number of user in a room, if the table has one; see
// record.find for when it may lack one that exists.
func (s *Service) slotOf(roomID id.RoomID, user id.UserID) (n, known int, ok bool) {
	s.slots.mu.Lock()
	defer s.slots.mu.Unlock()
	rs := s.slots.rooms[roomID]
	if rs == nil {
		return 0, 0, false
	}
	n, ok = rs.slot[user]
	return n, len(rs.users), ok
}

// compactPrefix starts the notified column of the rows that name users
// by number (see encodeNotified); rows that list user IDs start with a
// newline.
const compactPrefix = "#"

// encodeNotified writes the users of a push_events row: for each action
// list, in the order of the row's actions, its users' numbers in ascending
// runs, "first-last" or a lone number, separated by commas; the lists
// separated by semicolons. lists[i] is the action list of the user
// numbered slots[i].
func encodeNotified(slots, lists []int, nLists int) string {
	top := 0
	for _, n := range slots {
		top = max(top, n)
	}
	// of[n] is 1 + the action list of the user numbered n; 0 for none.
	of := make([]uint8, top+1)
	wide := nLists >= 255
	var ofWide []int
	if wide {
		ofWide = make([]int, top+1)
	}
	for i, n := range slots {
		if wide {
			ofWide[n] = lists[i] + 1
		} else {
			of[n] = uint8(lists[i] + 1)
		}
	}
	group := func(n int) int {
		if wide {
			return ofWide[n] - 1
		}
		return int(of[n]) - 1
	}
	b := make([]byte, 0, 16*nLists)
	b = append(b, compactPrefix...)
	for l := range nLists {
		if l > 0 {
			b = append(b, ';')
		}
		sep := false
		for n := 0; n <= top; n++ {
			if group(n) != l {
				continue
			}
			last := n
			for last < top && group(last+1) == l {
				last++
			}
			if sep {
				b = append(b, ',')
			}
			sep = true
			b = strconv.AppendInt(b, int64(n), 10)
			if last > n {
				b = append(b, '-')
				b = strconv.AppendInt(b, int64(last), 10)
			}
			n = last
		}
	}
	return string(b)
}

// eachRun calls f for each run of numbers of a compact notified column
// (without its prefix), with the index of its action list; nLists is the
// number of action lists. f returns false to stop.
func eachRun(notified string, nLists int, f func(list, first, last int) bool) error {
	groups := strings.Split(notified, ";")
	if len(groups) != nLists {
		return fmt.Errorf("%d lists of users for %d action lists", len(groups), nLists)
	}
	for l, g := range groups {
		for run := range strings.SplitSeq(g, ",") {
			a, b, isRange := strings.Cut(run, "-")
			first, err := strconv.Atoi(a)
			if err != nil || first < 0 {
				return fmt.Errorf("bad run %q", run)
			}
			last := first
			if isRange {
				if last, err = strconv.Atoi(b); err != nil || last < first {
					return fmt.Errorf("bad run %q", run)
				}
			}
			if !f(l, first, last) {
				return nil
			}
		}
	}
	return nil
}
