package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
	"github.com/matrixos/matrixos/internal/rooms"
)

// The joining side of membership over federation: a local user joins,
// leaves or knocks on a room this node is not in, through a server that
// is (make_* for a template, signed here, then send_*).

// maxVia bounds the servers one join, leave or knock tries.
const maxVia = 10

// maxServersInRoom bounds the servers_in_room of a send_join answer that
// a partial-state join keeps: those servers get this node's events and
// its /state and /backfill requests until the resync ends.
const maxServersInRoom = 1000

// residentServers is the servers_in_room of a send_join answer as far as
// it can be trusted: valid server names only, each once, this one left
// out, IP literals that the outbound guard would refuse (private,
// loopback, ... unless allow_private_networks lets them through) dropped,
// and at most maxServersInRoom of them.
func (s *Service) residentServers(servers []string) []string {
	out := make([]string, 0, min(len(servers), maxServersInRoom))
	seen := map[string]bool{s.serverName: true}
	for _, name := range servers {
		if len(out) == maxServersInRoom {
			break
		}
		if seen[name] || config.ValidServerName(name) != nil || !s.mayReachLiteral(name) {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

// mayReachLiteral reports whether the server name, when its host is an IP
// literal, names an address the outbound guard allows; a DNS name is
// checked when it is dialed.
func (s *Service) mayReachLiteral(name string) bool {
	host := name
	if h, _, err := net.SplitHostPort(name); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return true
	}
	return s.guard.Check(addr) == nil
}

// viaServers are the servers to try, in order, each once, this one left
// out.
func (s *Service) viaServers(via []string) []string {
	out := make([]string, 0, min(len(via), maxVia))
	seen := map[string]bool{s.serverName: true}
	for _, v := range via {
		if !seen[v] && len(out) < maxVia {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// JoinRemote joins a local user to a room through the first of via that
// lets it in: make_join, the template signed with the extra content keys
// added (displayname, reason, ...), send_join (v2; with omit_members for
// a room new here, which is then usable at once with partial state while
// its members are fetched in the background, and for one whose state is
// still partial here), and the answer's state
// imported into the room engine. The last server's error
// is returned when none does.
func (s *Service) JoinRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error {
	if err := s.rooms.CheckRoomPolicy(ctx, roomID); err != nil {
		return err
	}
	servers := s.viaServers(via)
	if len(servers) == 0 {
		return mxhttp.NotFound("no server to join %s through", roomID)
	}
	return s.tryEach(servers, "join", roomID, func(server string) error {
		return s.joinVia(ctx, server, user, roomID, content)
	})
}

// tryEach runs try for each server until one succeeds, and returns the
// last failure as the client's error (remote.Error: the remote's 403 or
// 404 as it is, 502 or 504 otherwise).
func (s *Service) tryEach(servers []string, what string, roomID id.RoomID, try func(server string) error) error {
	var err error
	for _, server := range servers {
		if err = try(server); err == nil {
			return nil
		}
		s.log.Info("federation: "+what+" through a server failed", "room_id", roomID, "via", server, "err", err)
		err = remote.Error(server, err)
	}
	return err
}

func (s *Service) joinVia(ctx context.Context, server string, user id.UserID, roomID id.RoomID, content map[string]any) error {
	s.Outbox.Flush(ctx, server)
	tmpl, err := s.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: user, Via: server, SupportedVersions: rooms.SupportedVersions})
	if err != nil {
		return fmt.Errorf("make_join: %w", err)
	}
	version := tmpl.RoomVersion
	if version == "" {
		version = id.RoomV1
	}
	evID, signed, err := s.signTemplate(version, tmpl.Event, user, "join", content)
	if err != nil {
		return err
	}
	// A room new here is joined with partial state: the answer leaves out
	// the other members, which are fetched once the room is usable. So is
	// one whose state is still partial here (another user's join, or a
	// rejoin, during the resync): its members come with the resync.
	_, known := s.rooms.Version(ctx, roomID)
	omit := (errors.Is(known, rooms.ErrNoRoom) || s.rooms.HasPartialState(ctx, roomID)) && !s.FullStateJoins
	st, answer, err := s.requestJoin(ctx, server, version, roomID, evID, signed, omit)
	if err != nil {
		return fmt.Errorf("send_join: %w", err)
	}
	join := signed
	if len(answer.event) > 0 {
		// Countersigned for a restricted join: the same event, or refused.
		if got := rooms.EventIDOf(version, answer.event); got != evID {
			return fmt.Errorf("send_join: %s answered event %s, not the join %s it was sent", server, got, evID)
		}
		join = answer.event
	}
	if answer.membersOmitted {
		if !omit {
			return fmt.Errorf("send_join: %s omitted the members, which were not asked to be", server)
		}
		servers := s.residentServers(answer.serversInRoom)
		if _, err := s.rooms.ImportCheckedPartialJoin(ctx, server, version, join, st, servers); err != nil {
			return fmt.Errorf("import the joined room: %w", err)
		}
		return nil
	}
	if _, err := s.rooms.ImportCheckedJoin(ctx, server, version, join, st); err != nil {
		return fmt.Errorf("import the joined room: %w", err)
	}
	return nil
}

// joinAnswer is what a send_join answer holds besides the room's state
// and auth chain.
type joinAnswer struct {
	event          json.RawMessage
	membersOmitted bool
	serversInRoom  []string
}

// maxServersRead bounds the servers_in_room of a send_join answer that
// are read, of which residentServers keeps maxServersInRoom.
const maxServersRead = 10 * maxServersInRoom

// requestJoin sends the signed join to server (send_join v2, omit_members
// as omit says) and reads the answer as a stream, with the limits of a
// /state answer (a full answer holds the room's whole state and auth
// chain: hundreds of thousands of events in a big room): the events of
// state and auth_chain are handed to rooms.Engine.CheckJoinState as they
// are read, so that no more of them than a batch is held at a time.
func (s *Service) requestJoin(ctx context.Context, server string, version id.RoomVersion, roomID id.RoomID, evID id.EventID, signed json.RawMessage, omit bool) (*rooms.JoinState, *joinAnswer, error) {
	resp, err := streamedRequest(ctx, s.Client, federation.RequestParams{
		ServerName:   server,
		Method:       http.MethodPut,
		Path:         federation.URLPath{"v2", "send_join", roomID, evID},
		Query:        url.Values{"omit_members": {strconv.FormatBool(omit)}},
		Authenticate: true,
		RequestJSON:  signed,
	})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	answer := &joinAnswer{}
	st, err := s.rooms.CheckJoinState(ctx, version, roomID, func(add func(bool, json.RawMessage) error) error {
		each := func(authChain bool, pdu json.RawMessage) error { return add(!authChain, pdu) }
		return decodeAnswer(resp.Body, MaxStateResponseBytes, map[string]bool{"state": false, "auth_chain": true}, each, answer.decode)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("the answer of %s: %w", server, err)
	}
	return st, answer, nil
}

// decode reads the member key of a send_join answer other than its state
// and auth chain (origin and unknown keys skipped).
func (a *joinAnswer) decode(key string, d *streamDecoder) error {
	switch key {
	case "event":
		v, err := d.value()
		if err != nil {
			return err
		}
		switch v.Kind() {
		case 'n':
		case '{':
			a.event = json.RawMessage(v)
		default:
			return fmt.Errorf("the event is a JSON %s, not an object", v.Kind())
		}
	case "members_omitted":
		v, err := d.value()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(v, &a.membersOmitted); err != nil {
			return fmt.Errorf("members_omitted: %w", err)
		}
	case "servers_in_room":
		servers, err := d.strings(maxServersRead)
		if err != nil {
			return err
		}
		a.serversInRoom = servers
	default:
		_, err := d.value()
		return err
	}
	return nil
}

// signTemplate checks that a make_* template is the membership of user
// asked for, adds the extra content keys (displayname, reason, ...; the
// template's own keys win), and signs it.
func (s *Service) signTemplate(version id.RoomVersion, tmpl json.RawMessage, user id.UserID, membership string, extra map[string]any) (id.EventID, json.RawMessage, error) {
	var t map[string]json.RawMessage
	if err := json.Unmarshal(tmpl, &t); err != nil {
		return "", nil, fmt.Errorf("make_%s answered an invalid template: %w", membership, err)
	}
	var head struct {
		Type     string         `json:"type"`
		StateKey string         `json:"state_key"`
		Sender   string         `json:"sender"`
		Content  map[string]any `json:"content"`
	}
	if err := json.Unmarshal(tmpl, &head); err != nil {
		return "", nil, fmt.Errorf("make_%s answered an invalid template: %w", membership, err)
	}
	if head.Type != "m.room.member" || head.StateKey != string(user) || head.Sender != string(user) || head.Content["membership"] != membership {
		return "", nil, fmt.Errorf("make_%s answered a template that is not %s's %s", membership, user, membership)
	}
	for k, v := range extra {
		if _, set := head.Content[k]; !set {
			head.Content[k] = v
		}
	}
	content, err := json.Marshal(head.Content)
	if err != nil {
		return "", nil, fmt.Errorf("encode the %s's content: %w", membership, err)
	}
	t["content"] = content
	out, err := json.Marshal(t)
	if err != nil {
		return "", nil, fmt.Errorf("encode the %s: %w", membership, err)
	}
	return s.rooms.SignTemplate(version, out)
}
