package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// RemoteRooms changes a local user's membership of a room this node is not
// in, through servers that are (the federation service).
type RemoteRooms interface {
	// JoinRemote joins through the first of via that lets the user in;
	// content holds extra keys of the join's content.
	JoinRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error
	// LeaveRemote leaves (rejects an invite to, rescinds a knock on)
	// through the first of via that accepts it.
	LeaveRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error
	// KnockRemote knocks through the first of via that accepts it.
	KnockRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error
	// SendInvite gives invite, an invite of a user of another server
	// proposed here (built and authorised, not appended), to that server
	// (/invite), and appends the event it returns countersigned. A
	// refusal leaves the room unchanged.
	SendInvite(ctx context.Context, invite *rooms.Event) (*rooms.Event, error)
}

// UseRemoteRooms lets /join, /knock and /leave reach rooms this node is
// not in, and invites reach users of other servers.
func (s *Service) UseRemoteRooms(r RemoteRooms) { s.remoteRooms = r }

// remoteJoinWait is how long /join waits for a join over federation
// before it answers; the join goes on in the background, and /sync shows
// the room once it is done.
const remoteJoinWait = 30 * time.Second

// target is a room to join or knock on: its ID and servers that may be in
// it.
type target struct {
	roomID id.RoomID
	via    []string
	// named is set when the client named the servers (via or
	// server_name): only they are asked then.
	named bool
}

// resolveTarget turns a room ID or an alias into a target: an alias is
// resolved (over federation for another server's, with the servers it
// names), a room ID comes with the request's via (and server_name)
// parameters and the server its ID names, if any.
func (s *Service) resolveTarget(r *http.Request, raw string) (target, error) {
	q := r.URL.Query()
	via := append(append([]string{}, q["via"]...), q["server_name"]...)
	for _, v := range via {
		if config.ValidServerName(v) != nil {
			return target{}, mxhttp.InvalidParam("invalid server name %q in via", v)
		}
	}
	switch {
	case strings.HasPrefix(raw, "!"):
		// The server the room ID names stands in only for via servers not
		// given: when the client names some, only they are asked (one of
		// them may be the one that can authorise a restricted join).
		roomID := id.RoomID(raw)
		named := len(via) > 0
		if _, server, ok := strings.Cut(raw, ":"); ok && !named && config.ValidServerName(server) == nil {
			via = append(via, server)
		}
		return target{roomID: roomID, via: via, named: named}, nil
	case strings.HasPrefix(raw, "#"):
		alias := id.RoomAlias(raw)
		if s.remote == nil {
			if err := s.requireLocalAlias(alias); err != nil {
				return target{}, err
			}
		}
		roomID, servers, err := s.ResolveAlias(r.Context(), alias)
		if err != nil {
			return target{}, err
		}
		return target{roomID: roomID, via: append(servers, via...), named: len(via) > 0}, nil
	}
	return target{}, mxhttp.InvalidParam("not a room ID or alias: %q", raw)
}

// inRoomHere reports whether this node takes part in the room: it knows it
// and one of its users is joined.
func (s *Service) inRoomHere(ctx context.Context, roomID id.RoomID) bool {
	if _, err := s.rooms.Version(ctx, roomID); err != nil {
		return false
	}
	for u, m := range s.rooms.Members(ctx, roomID) {
		if m == "join" && u.Homeserver() == s.serverName {
			return true
		}
	}
	return false
}

// remoteVia are the servers a join of a room this node is not in may go
// through: the target's, then, unless the client named the servers, those
// of the members this node last knew of; never this one. Empty when the
// room is this node's alone. Servers the client named are the only ones
// asked: a server this node last saw in the room may authorise a
// restricted join that those named refuse, and the client chose them.
func (s *Service) remoteVia(ctx context.Context, t target) []string {
	candidates := t.via
	if !t.named {
		candidates = append(slices.Clone(t.via), s.residentServers(ctx, t.roomID)[1:]...)
	}
	var via []string
	for _, v := range candidates {
		if v != s.serverName {
			via = append(via, v)
		}
	}
	return via
}

// joinRemote joins a room this node is not in over federation through
// via. It waits up to remoteJoinWait; a join still going on then finishes
// in the background and the answer is the room ID. The same user's join
// of the same room asked again meanwhile follows the one going on, and
// the joins going on at once are bounded (see remoteJoins).
func (s *Service) joinRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) (any, error) {
	join, err := s.remoteJoins.start(ctx, user, roomID, remoteJoinWait, func() error {
		return s.remoteRooms.JoinRemote(context.WithoutCancel(ctx), user, roomID, via, content)
	})
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(remoteJoinWait)
	defer timer.Stop()
	select {
	case <-join.done:
		if join.err != nil {
			return nil, join.err
		}
	case <-timer.C:
		s.log.Info("a join over federation goes on in the background", "room_id", roomID, "user_id", user)
	}
	return map[string]any{"room_id": roomID}, nil
}

// send appends a local user's event to a room. An invite of a user of
// another server goes to that server first, as the spec orders: it is
// proposed, sent for the invitee's server to countersign, and appended
// only as that server returns it, so a refusal leaves no trace.
func (s *Service) send(ctx context.Context, roomID id.RoomID, p rooms.Proto) (*rooms.Event, error) {
	if !s.remoteInvite(p) {
		return s.rooms.Send(ctx, roomID, p)
	}
	proposed, err := s.rooms.Propose(ctx, roomID, p)
	if err != nil {
		return nil, err
	}
	return s.remoteRooms.SendInvite(ctx, proposed)
}

// remoteInvite reports whether p invites a user of another server, whose
// server must countersign the invite (with federation on).
func (s *Service) remoteInvite(p rooms.Proto) bool {
	if s.remoteRooms == nil || p.Type != "m.room.member" || p.StateKey == nil {
		return false
	}
	if id.UserID(*p.StateKey).Homeserver() == s.serverName {
		return false
	}
	var c struct {
		Membership string `json:"membership"`
	}
	return json.Unmarshal(p.Content, &c) == nil && c.Membership == "invite"
}

// otherServers returns servers without this node's own.
func (s *Service) otherServers(servers []string) []string {
	var out []string
	for _, v := range servers {
		if v != s.serverName {
			out = append(out, v)
		}
	}
	return out
}

// outOfRoomVia are the servers through which a user leaves a room this
// node is not in: the server of whoever sent the user's membership (the
// inviter), then the one the room ID names.
func (s *Service) outOfRoomVia(ctx context.Context, user id.UserID, roomID id.RoomID) []string {
	var via []string
	if evID, err := s.rooms.MembershipEventID(ctx, user, roomID); err == nil && evID != "" {
		if ev, err := s.rooms.FederationEvent(ctx, evID); err == nil {
			via = append(via, ev.Sender.Homeserver())
		}
	}
	if _, server, ok := strings.Cut(string(roomID), ":"); ok {
		via = append(via, server)
	}
	return via
}
