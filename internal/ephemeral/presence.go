package ephemeral

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// The presence states.
const (
	Online      = "online"
	Offline     = "offline"
	Unavailable = "unavailable"
)

const (
	// offlineAfter is how long a user who is not offline may go without
	// starting a sync or setting their presence before they are marked
	// offline. It exceeds the longest sync long-poll (five minutes).
	offlineAfter = 6 * time.Minute
	// activeWithin is how recent activity must be to count as current.
	activeWithin = time.Minute
	// reapEvery is how often users are checked against offlineAfter.
	reapEvery = 30 * time.Second
	// maxStatusMsg limits status messages (bytes).
	maxStatusMsg = 4096
)

// presenceState caches users' presence. The presence table is the durable
// copy: each change is written there with a new stream position, which is
// how sync finds changes.
type presenceState struct {
	mu     gosync.Mutex
	users  map[id.UserID]*presence
	watch  map[id.UserID]bool // users not offline, checked by the reaper
	reaper *time.Timer
	swept  bool // stale rows from before the start have been set offline
}

// presence is one user's presence.
type presence struct {
	state      string
	statusMsg  string
	lastActive int64     // unix milliseconds; 0 when never active
	lastSeen   time.Time // last sync or update seen by this process
	pos        int64     // stream position of the stored row; 0 when none
}

// getPresence returns a copy of the user's presence, reading it from the database
// on first use; a user who never set any is offline.
func (s *Service) getPresence(ctx context.Context, user id.UserID) (presence, error) {
	ps := &s.presence
	ps.mu.Lock()
	if p, ok := ps.users[user]; ok {
		c := *p
		ps.mu.Unlock()
		return c, nil
	}
	ps.mu.Unlock()
	p := presence{state: Offline}
	err := s.db.QueryRow(ctx, "SELECT presence, status_msg, last_active_ts, pos FROM presence WHERE user_id = $1", user).
		Scan(&p.state, &p.statusMsg, &p.lastActive, &p.pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return presence{}, fmt.Errorf("load presence: %w", err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if cur, ok := ps.users[user]; ok {
		return *cur, nil
	}
	ps.users[user] = &p
	return p, nil
}

// storePresence writes a user's new presence, updates the cache and wakes
// the users who share a room with them.
func (s *Service) storePresence(ctx context.Context, user id.UserID, p presence) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		p.pos = tx.NextPos()
		s.lastPresence.note(p.pos)
		_, err := tx.Exec(ctx, `INSERT INTO presence (user_id, presence, status_msg, last_active_ts, pos) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
			last_active_ts = excluded.last_active_ts, pos = excluded.pos`,
			user, p.state, p.statusMsg, p.lastActive, p.pos)
		if err != nil {
			return fmt.Errorf("store presence: %w", err)
		}
		if s.OnPresence != nil {
			return s.OnPresence(ctx, tx, user, p.content(time.Now()))
		}
		return nil
	})
	if err != nil {
		return err
	}
	ps := &s.presence
	ps.mu.Lock()
	if cur, ok := ps.users[user]; !ok || cur.pos < p.pos {
		ps.users[user] = &p
	}
	if p.state == Offline {
		delete(ps.watch, user)
	} else {
		ps.watch[user] = true
		s.startReaperLocked()
	}
	ps.mu.Unlock()
	s.sync.Notifier.Wake(s.presenceAudience(ctx, user)...)
	if s.isLocal(user) {
		s.sendPresence(ctx, user, p)
	}
	return nil
}

// SetOnline marks the user online, as a /sync without set_presence (or
// with set_presence=online) does. It writes only when the state changes;
// otherwise it just records the activity.
func (s *Service) SetOnline(user id.UserID) { s.touch(user, Online) }

// SetFromSync applies /sync's set_presence parameter: "" and "online" mark
// the user online, "unavailable" marks them unavailable, "offline" leaves
// their presence alone.
func (s *Service) SetFromSync(user id.UserID, setPresence string) {
	switch setPresence {
	case "", Online:
		s.touch(user, Online)
	case Unavailable:
		s.touch(user, Unavailable)
	}
}

func (s *Service) touch(user id.UserID, state string) {
	ctx := context.Background()
	p, err := s.getPresence(ctx, user)
	if err != nil {
		s.log.Warn("load presence", "user_id", user, "err", err)
		return
	}
	now := time.Now()
	if p.state == state {
		ps := &s.presence
		ps.mu.Lock()
		if c := ps.users[user]; c != nil {
			c.lastSeen = now
			if state == Online {
				c.lastActive = now.UnixMilli()
			}
		}
		ps.watch[user] = true
		s.startReaperLocked()
		ps.mu.Unlock()
		return
	}
	p.state, p.lastSeen = state, now
	if state == Online {
		p.lastActive = now.UnixMilli()
	}
	if err := s.storePresence(ctx, user, p); err != nil {
		s.log.Warn("store presence", "user_id", user, "err", err)
	}
}

// startReaperLocked schedules the offline check if it is not pending.
// presence.mu must be held.
func (s *Service) startReaperLocked() {
	if s.presence.reaper == nil {
		s.presence.reaper = time.AfterFunc(reapEvery, s.reap)
	}
}

// reap marks users offline who have not been seen for offlineAfter. Its
// first run also does so for users left online by an earlier process.
func (s *Service) reap() {
	ctx := context.Background()
	cutoff := time.Now().Add(-offlineAfter)
	ps := &s.presence
	ps.mu.Lock()
	var stale []id.UserID
	for u := range ps.watch {
		if p := ps.users[u]; p == nil || p.state == Offline {
			delete(ps.watch, u)
		} else if p.lastSeen.Before(cutoff) {
			stale = append(stale, u)
		}
	}
	sweep := !ps.swept
	ps.swept = true
	ps.mu.Unlock()
	if sweep {
		stale = append(stale, s.leftOnline(ctx, cutoff.UnixMilli())...)
	}
	for _, u := range stale {
		p, err := s.getPresence(ctx, u)
		if err != nil || p.state == Offline {
			continue
		}
		ps.mu.Lock()
		seen := ps.users[u] != nil && ps.users[u].lastSeen.After(cutoff)
		ps.mu.Unlock()
		if seen {
			continue
		}
		p.state = Offline
		if err := s.storePresence(ctx, u, p); err != nil {
			s.log.Debug("presence timeout", "user_id", u, "err", err)
		}
	}
	ps.mu.Lock()
	ps.reaper = nil
	if len(ps.watch) > 0 {
		s.startReaperLocked()
	}
	ps.mu.Unlock()
}

// leftOnline lists users whose stored presence is not offline although
// this process has not seen them.
func (s *Service) leftOnline(ctx context.Context, before int64) []id.UserID {
	rows, err := s.db.Query(ctx, "SELECT user_id FROM presence WHERE presence <> $1 AND last_active_ts < $2", Offline, before)
	if err != nil {
		s.log.Debug("load stale presence", "err", err)
		return nil
	}
	defer rows.Close()
	var out []id.UserID
	ps := &s.presence
	for rows.Next() {
		var u id.UserID
		if rows.Scan(&u) != nil {
			return out
		}
		ps.mu.Lock()
		watched := ps.watch[u]
		ps.mu.Unlock()
		if !watched {
			out = append(out, u)
		}
	}
	return out
}

// presenceAudience lists the user and everyone joined to a room with them.
func (s *Service) presenceAudience(ctx context.Context, user id.UserID) []id.UserID {
	seen := map[id.UserID]bool{user: true}
	out := []id.UserID{user}
	for _, roomID := range s.rooms.JoinedRooms(user) {
		for _, u := range s.joinedMembers(ctx, roomID) {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// sharesRoom reports whether a and b are joined to a common room.
func (s *Service) sharesRoom(a, b id.UserID) bool {
	for _, roomID := range s.rooms.JoinedRooms(a) {
		if s.rooms.Membership(b, roomID) == "join" {
			return true
		}
	}
	return false
}

// content renders p as m.presence event content.
func (p presence) content(now time.Time) map[string]any {
	c := map[string]any{"presence": p.state}
	if p.lastActive > 0 {
		ago := max(now.UnixMilli()-p.lastActive, 0)
		c["last_active_ago"] = ago
		c["currently_active"] = p.state == Online && ago < activeWithin.Milliseconds()
	}
	if p.statusMsg != "" {
		c["status_msg"] = p.statusMsg
	}
	return c
}

func userParam(r *http.Request) (id.UserID, error) {
	u := r.PathValue("userId")
	if len(u) < 3 || u[0] != '@' || !strings.Contains(u, ":") || len(u) > 255 {
		return "", mxhttp.InvalidParam("%q is not a valid user ID", u)
	}
	return id.UserID(u), nil
}

func (s *Service) getPresenceHandler(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	target, err := userParam(r)
	if err != nil {
		return nil, err
	}
	if target != sess.UserID {
		if s.isLocal(target) {
			if _, ok, err := s.accounts.GetUser(r.Context(), target); err != nil {
				return nil, err
			} else if !ok {
				return nil, mxhttp.NotFound("no presence for %s", target)
			}
		}
		if !s.sharesRoom(sess.UserID, target) {
			return nil, mxhttp.Forbidden("You are not allowed to see their presence")
		}
	}
	p, err := s.getPresence(r.Context(), target)
	if err != nil {
		return nil, err
	}
	return p.content(time.Now()), nil
}

func (s *Service) putPresence(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	target, err := userParam(r)
	if err != nil {
		return nil, err
	}
	if target != sess.UserID {
		return nil, mxhttp.Forbidden("cannot set the presence of other users")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Presence == nil {
		return nil, mxhttp.BadJSON("presence is required")
	}
	switch *body.Presence {
	case Online, Offline, Unavailable:
	default:
		return nil, mxhttp.InvalidParam("presence must be online, offline or unavailable")
	}
	p, err := s.getPresence(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	p.state, p.statusMsg = *body.Presence, ""
	if body.StatusMsg != nil {
		if len(*body.StatusMsg) > maxStatusMsg {
			return nil, mxhttp.InvalidParam("status_msg is too long")
		}
		p.statusMsg = *body.StatusMsg
	}
	now := time.Now()
	p.lastActive, p.lastSeen = now.UnixMilli(), now
	if err := s.storePresence(r.Context(), sess.UserID, p); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

// fillPresence adds the m.presence events of the requester and of users
// who share a joined room with them: all on full syncs, otherwise those
// that changed after the token and those who came to share a room with
// the requester since it (req.NewlyShared).
func (s *Service) fillPresence(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	var pf *sync.EventFilter
	if req.Filter != nil {
		pf = req.Filter.Presence
	}
	if pf != nil {
		tf := *pf
		tf.Senders, tf.NotSenders = nil, nil
		if !tf.Allows("m.presence", "") {
			return nil // the filter asks for no presence at all
		}
	}
	from := req.Since.Pos
	if req.FullState {
		from = 0
	}
	users, err := s.presenceChanges(ctx, from, req.To.Pos)
	if err != nil {
		return err
	}
	// Users who newly share a room with the requester: their presence is
	// news even if it did not change (a user who never had any is left out).
	changed := make(map[id.UserID]bool, len(users))
	for _, u := range users {
		changed[u] = true
	}
	newlyShared, err := req.NewlyShared()
	if err != nil {
		return err
	}
	var shared []id.UserID
	for u := range newlyShared {
		if !changed[u] {
			shared = append(shared, u)
		}
	}
	slices.Sort(shared)
	users = append(users, shared...)
	if len(users) == 0 {
		return nil
	}
	joined := make(map[id.RoomID]bool, len(req.Joined))
	for _, r := range req.Joined {
		joined[r] = true
	}
	now := time.Now()
	for _, u := range users {
		if u != req.User && !s.inAnyRoom(u, joined) {
			continue
		}
		if !pf.Allows("m.presence", u) {
			continue
		}
		p, err := s.getPresence(ctx, u)
		if err != nil {
			return err
		}
		if p.pos == 0 {
			continue // never set: nothing to tell
		}
		if resp.Presence == nil {
			resp.Presence = &sync.Events{Events: []any{}}
		}
		resp.Presence.Add(map[string]any{"type": "m.presence", "sender": u, "content": p.content(now)})
		resp.MarkNews()
	}
	return nil
}

// presenceChanges lists the users whose presence was written in
// (from, to], in the order written.
func (s *Service) presenceChanges(ctx context.Context, from, to int64) ([]id.UserID, error) {
	if !s.lastPresence.after(from) {
		return nil, nil // no presence written since the token
	}
	rows, err := s.db.Query(ctx, "SELECT user_id FROM presence WHERE pos > $1 AND pos <= $2 ORDER BY pos", from, to)
	if err != nil {
		return nil, fmt.Errorf("load presence changes: %w", err)
	}
	defer rows.Close()
	var users []id.UserID
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("load presence changes: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load presence changes: %w", err)
	}
	return users, nil
}

// inAnyRoom reports whether the user is joined to one of the rooms.
func (s *Service) inAnyRoom(user id.UserID, rooms map[id.RoomID]bool) bool {
	for _, r := range s.rooms.JoinedRooms(user) {
		if rooms[r] {
			return true
		}
	}
	return false
}
