package ephemeral

import (
	"context"
	"net/http"
	"slices"
	gosync "sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/sync"
)

const (
	// defaultTypingTimeout applies when a client starts typing without a
	// timeout.
	defaultTypingTimeout = 30 * time.Second
	// maxTypingTimeout caps the timeout clients ask for.
	maxTypingTimeout = 120 * time.Second
)

// typingState is who types where. Every change of a room's list takes a
// new ephemeral serial from the sync service, under mu, so a sync that
// reads the serial and then the lists never misses a change.
type typingState struct {
	mu    gosync.Mutex
	rooms map[id.RoomID]*roomTyping
}

type roomTyping struct {
	users  map[id.UserID]*typer
	serial int64 // ephemeral serial of the last change
}

// typer is one user's typing in a room; its timer ends it.
type typer struct {
	timer *time.Timer
}

func (s *Service) putTyping(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if id.UserID(r.PathValue("userId")) != sess.UserID {
		return nil, mxhttp.Forbidden("cannot set the typing state of other users")
	}
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, mxhttp.BadJSON("typing is required")
	}
	timeout := defaultTypingTimeout
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			return nil, mxhttp.InvalidParam("timeout must not be negative")
		}
		timeout = time.Duration(min(*body.Timeout, maxTypingTimeout.Milliseconds())) * time.Millisecond
	}
	if err := s.requireJoined(sess.UserID, roomID); err != nil {
		return nil, err
	}
	s.setTyping(roomID, sess.UserID, *body.Typing, timeout)
	s.sendTyping(roomID, sess.UserID, *body.Typing)
	return mxhttp.Empty, nil
}

// setTyping starts (for timeout) or stops a user's typing in a room and
// wakes the room's members when the list changed.
func (s *Service) setTyping(roomID id.RoomID, user id.UserID, typing bool, timeout time.Duration) {
	t := &s.typing
	t.mu.Lock()
	rt := t.rooms[roomID]
	cur := rt.get(user)
	changed := false
	switch {
	case typing:
		if rt == nil {
			rt = &roomTyping{users: map[id.UserID]*typer{}}
			t.rooms[roomID] = rt
		}
		if cur != nil {
			cur.timer.Stop()
		}
		nt := &typer{}
		nt.timer = time.AfterFunc(timeout, func() { s.expireTyping(roomID, user, nt) })
		rt.users[user] = nt
		changed = cur == nil // extending a typing notification changes nothing
	case cur != nil:
		cur.timer.Stop()
		delete(rt.users, user)
		changed = true
	}
	if changed {
		rt.serial = s.sync.BumpEph()
	}
	t.mu.Unlock()
	if changed {
		s.sync.Notifier.Wake(s.joinedMembers(context.Background(), roomID)...)
		s.typingChanged(roomID)
	}
}

// typingChanged runs OnTyping with the room's typing users.
func (s *Service) typingChanged(roomID id.RoomID) {
	if s.OnTyping != nil {
		s.OnTyping(context.Background(), roomID, s.Typing(roomID))
	}
}

func (rt *roomTyping) get(user id.UserID) *typer {
	if rt == nil {
		return nil
	}
	return rt.users[user]
}

// expireTyping ends a typing notification whose timeout passed, unless it
// was replaced meanwhile.
func (s *Service) expireTyping(roomID id.RoomID, user id.UserID, tp *typer) {
	t := &s.typing
	t.mu.Lock()
	rt := t.rooms[roomID]
	if rt.get(user) != tp {
		t.mu.Unlock()
		return
	}
	delete(rt.users, user)
	rt.serial = s.sync.BumpEph()
	t.mu.Unlock()
	s.sync.Notifier.Wake(s.joinedMembers(context.Background(), roomID)...)
	s.typingChanged(roomID)
	if s.isLocal(user) {
		s.sendTyping(roomID, user, false)
	}
}

// Typing lists the users typing in a room.
func (s *Service) Typing(roomID id.RoomID) []id.UserID {
	s.typing.mu.Lock()
	defer s.typing.mu.Unlock()
	return s.typing.rooms[roomID].list()
}

func (rt *roomTyping) list() []id.UserID {
	out := []id.UserID{}
	if rt == nil {
		return out
	}
	for u := range rt.users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// fillTyping adds m.typing to joined rooms whose typing list changed after
// the token, and on full syncs to rooms where anyone types.
func (s *Service) fillTyping(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	t := &s.typing
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rooms) == 0 {
		return nil
	}
	for _, roomID := range req.Joined {
		rt := t.rooms[roomID]
		if rt == nil {
			continue
		}
		full := req.FullState || req.NewlyJoined[roomID]
		if full && len(rt.users) == 0 || !full && rt.serial <= req.Since.Eph {
			continue
		}
		if !ephemeralAllowed(req, roomID, "m.typing") {
			continue
		}
		jr := resp.JoinedRoom(roomID)
		if jr.Ephemeral == nil {
			jr.Ephemeral = &sync.Events{Events: []any{}}
		}
		jr.Ephemeral.Add(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": rt.list()}})
		resp.MarkNews()
	}
	return nil
}
