package ephemeral

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// EDUSender queues EDUs for another server; the federation outbox
// implements it. A queued, unsent EDU with the same type and key is
// replaced, so a burst of typing notifications sends the last one.
type EDUSender interface {
	SendEDUCoalesced(ctx context.Context, destination, eduType, key string, content any) error
}

// remoteTypingTimeout is how long a remote user's typing lasts unless
// their server renews or ends it (the EDU carries no timeout).
const remoteTypingTimeout = 60 * time.Second

// EnableFederation sends local users' typing, receipts and (when presence
// is true) presence to the other servers in their rooms through edus, and
// makes the service accept those of other servers. Call it before serving.
func (s *Service) EnableFederation(edus EDUSender, presence bool) {
	s.edus = edus
	s.federatePresence = presence
}

// EDUHandlers returns the handlers of the EDUs this package receives, by
// EDU type, for the federation /send endpoint. m.presence is handled only
// while presence is federated.
func (s *Service) EDUHandlers() map[string]func(ctx context.Context, origin string, content json.RawMessage) error {
	h := map[string]func(ctx context.Context, origin string, content json.RawMessage) error{
		"m.typing":  s.HandleTyping,
		"m.receipt": s.HandleReceipt,
	}
	if s.federatePresence {
		h["m.presence"] = s.HandlePresence
	}
	return h
}

// remoteServersIn lists the other servers with a joined member in the
// room.
func (s *Service) remoteServersIn(ctx context.Context, roomID id.RoomID) []string {
	var out []string
	for _, server := range s.rooms.JoinedServers(ctx, roomID) {
		if server != s.accounts.ServerName() {
			out = append(out, server)
		}
	}
	return out
}

// serverOf returns a user's server name, or "" for a malformed ID.
func serverOf(user id.UserID) string {
	_, server, err := user.Parse()
	if err != nil {
		return ""
	}
	return server
}

// isLocal reports whether user belongs to this server.
func (s *Service) isLocal(user id.UserID) bool { return serverOf(user) == s.accounts.ServerName() }

// sendToRoomServers queues an EDU for every other server in the room.
func (s *Service) sendToRoomServers(ctx context.Context, roomID id.RoomID, eduType, key string, content any) {
	if s.edus == nil {
		return
	}
	for _, server := range s.remoteServersIn(ctx, roomID) {
		if err := s.edus.SendEDUCoalesced(ctx, server, eduType, key, content); err != nil {
			s.log.Warn("queue EDU", "type", eduType, "destination", server, "err", err)
		}
	}
}

// sendTyping tells the room's other servers that a local user started or
// stopped typing.
func (s *Service) sendTyping(roomID id.RoomID, user id.UserID, typing bool) {
	s.sendToRoomServers(context.Background(), roomID, "m.typing", string(roomID)+"\x00"+string(user),
		map[string]any{"room_id": roomID, "user_id": user, "typing": typing})
}

// sendReceipt tells the room's other servers about a local user's public
// read receipt.
func (s *Service) sendReceipt(ctx context.Context, roomID id.RoomID, user id.UserID, threadID string, evID id.EventID, ts int64) {
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	content := map[id.RoomID]any{roomID: map[string]any{ReceiptRead: map[id.UserID]any{
		user: map[string]any{"event_ids": []id.EventID{evID}, "data": data}}}}
	s.sendToRoomServers(ctx, roomID, "m.receipt", string(roomID)+"\x00"+string(user)+"\x00"+threadID, content)
}

// sendPresence tells the servers sharing a room with a local user about
// their presence, when presence is federated.
func (s *Service) sendPresence(ctx context.Context, user id.UserID, p presence) {
	if s.edus == nil || !s.federatePresence {
		return
	}
	c := p.content(time.Now())
	c["user_id"] = user
	content := map[string]any{"push": []any{c}}
	seen := map[string]bool{}
	for _, roomID := range s.rooms.JoinedRooms(user) {
		for _, server := range s.remoteServersIn(ctx, roomID) {
			if seen[server] {
				continue
			}
			seen[server] = true
			if err := s.edus.SendEDUCoalesced(ctx, server, "m.presence", string(user), content); err != nil {
				s.log.Warn("queue EDU", "type", "m.presence", "destination", server, "err", err)
			}
		}
	}
}

// remoteMember checks that an EDU about user in a room may come from
// origin: the user is origin's and joined to the room (in a room joined
// with partial state, not known here and of a server the room is on).
func (s *Service) remoteMember(origin string, user id.UserID, roomID id.RoomID) error {
	if serverOf(user) != origin {
		return mxhttp.Forbidden("%s is not a user of %s", user, origin)
	}
	switch s.rooms.Membership(user, roomID) {
	case "join":
		return nil
	case "":
		// A room joined with partial state knows few members until its
		// resync completes: a user unknown here counts as joined when
		// their server is one the room is known to be on.
		ctx := context.Background()
		if s.rooms.HasPartialState(ctx, roomID) && s.rooms.ServerInRoom(ctx, origin, roomID) {
			return nil
		}
	}
	return mxhttp.Forbidden("%s is not joined to %s", user, roomID)
}

// HandleTyping handles an m.typing EDU: a remote user joined to the room
// starts typing (for remoteTypingTimeout, unless renewed) or stops.
func (s *Service) HandleTyping(ctx context.Context, origin string, content json.RawMessage) error {
	var t struct {
		RoomID id.RoomID `json:"room_id"`
		UserID id.UserID `json:"user_id"`
		Typing bool      `json:"typing"`
	}
	if err := json.Unmarshal(content, &t); err != nil {
		return mxhttp.BadJSON("m.typing: %v", err)
	}
	if err := s.remoteMember(origin, t.UserID, t.RoomID); err != nil {
		return err
	}
	s.setTyping(t.RoomID, t.UserID, t.Typing, remoteTypingTimeout)
	return nil
}

// receiptEDU is the content of an m.receipt EDU: room -> receipt type ->
// user -> receipt.
type receiptEDU map[id.RoomID]map[string]map[id.UserID]struct {
	EventIDs []id.EventID `json:"event_ids"`
	Data     struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id"`
	} `json:"data"`
}

// HandleReceipt handles an m.receipt EDU: each public read receipt of a
// remote user joined to the room is stored as a local one would be, also
// one for an event this server does not have (yet: a room joined with
// partial state, an event still on its way), as the spec asks nothing of
// the event. One for an event of another room is ignored. Receipts of users
// of another server than origin are refused; other receipt types are
// ignored.
func (s *Service) HandleReceipt(ctx context.Context, origin string, content json.RawMessage) error {
	var edu receiptEDU
	if err := json.Unmarshal(content, &edu); err != nil {
		return mxhttp.BadJSON("m.receipt: %v", err)
	}
	var refused error
	for roomID, types := range edu {
		for user, r := range types[ReceiptRead] {
			if err := s.remoteMember(origin, user, roomID); err != nil {
				refused = err
				continue
			}
			thread := r.Data.ThreadID
			if len(r.EventIDs) == 0 || thread != "" && thread != "main" && !strings.HasPrefix(thread, "$") {
				continue
			}
			evID := r.EventIDs[len(r.EventIDs)-1]
			ev, err := s.rooms.Event(ctx, evID)
			switch e, ok := mxhttp.AsError(err); {
			case ok && e.Code == "M_NOT_FOUND":
				// Not (yet) known here: the remote user has read up to it all
				// the same, and their clients' receipts point at it.
				ev = &rooms.Event{ID: evID, RoomID: roomID}
			case err != nil:
				return fmt.Errorf("m.receipt: %w", err)
			case ev.RoomID != roomID:
				continue
			}
			if _, err := s.storeReceipt(ctx, user, roomID, ReceiptRead, thread, ev, receiptTS(r.Data.TS, time.Now())); err != nil {
				return fmt.Errorf("m.receipt: %w", err)
			}
		}
	}
	return refused
}

// receiptTS is the time a remote receipt is stored with: the one it
// carries, unless that is missing or not a time yet to come (another
// server's clock may run ahead, but a receipt made in the future would
// sort before every later one for good), then now.
func receiptTS(ts int64, now time.Time) int64 {
	if ts <= 0 || ts > now.UnixMilli() {
		return now.UnixMilli()
	}
	return ts
}

// HandlePresence handles an m.presence EDU: the presence of each of
// origin's users who shares a room with a local user is stored.
func (s *Service) HandlePresence(ctx context.Context, origin string, content json.RawMessage) error {
	var edu struct {
		Push []struct {
			UserID          id.UserID `json:"user_id"`
			Presence        string    `json:"presence"`
			StatusMsg       *string   `json:"status_msg"`
			LastActiveAgo   int64     `json:"last_active_ago"`
			CurrentlyActive bool      `json:"currently_active"`
		} `json:"push"`
	}
	if err := json.Unmarshal(content, &edu); err != nil {
		return mxhttp.BadJSON("m.presence: %v", err)
	}
	var refused error
	shared := s.localRoomCheck(ctx)
	for _, u := range edu.Push {
		if serverOf(u.UserID) != origin {
			refused = mxhttp.Forbidden("%s is not a user of %s", u.UserID, origin)
			continue
		}
		if u.Presence != Online && u.Presence != Offline && u.Presence != Unavailable || !shared(u.UserID) {
			continue
		}
		p, err := s.getPresence(ctx, u.UserID)
		if err != nil {
			return err
		}
		p.state = u.Presence
		p.statusMsg = ""
		if u.StatusMsg != nil && len(*u.StatusMsg) <= maxStatusMsg {
			p.statusMsg = *u.StatusMsg
		}
		p.lastActive = time.Now().UnixMilli() - max(u.LastActiveAgo, 0)
		p.lastSeen = time.Now()
		if err := s.storePresence(ctx, u.UserID, p); err != nil {
			return fmt.Errorf("m.presence: %w", err)
		}
	}
	return refused
}

// localRoomCheck returns what reports whether a user is joined to a room
// with a local user, for the entries of one EDU: each room's answer (this
// server among its joined servers, kept with the room's state) is looked
// up once, however many of the EDU's users are in it.
func (s *Service) localRoomCheck(ctx context.Context) func(user id.UserID) bool {
	hasLocal := map[id.RoomID]bool{}
	return func(user id.UserID) bool {
		for _, roomID := range s.rooms.JoinedRooms(user) {
			local, ok := hasLocal[roomID]
			if !ok {
				local = slices.Contains(s.rooms.JoinedServers(ctx, roomID), s.accounts.ServerName())
				hasLocal[roomID] = local
			}
			if local {
				return true
			}
		}
		return false
	}
}
