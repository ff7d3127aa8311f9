package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
)

// Federation is what this package asks other servers through: the mautrix
// federation client, which node hands over while federation is on.
type Federation interface {
	Query(ctx context.Context, serverName, queryType string, queryParams url.Values, respStruct any) error
	MakeFullRequest(ctx context.Context, params federation.RequestParams) ([]byte, *http.Response, error)
}

// Remote lookups.
const (
	// RemoteAliasTTL is how long another server's answer about one of its
	// aliases is kept.
	RemoteAliasTTL = 30 * time.Second
	// remoteAliasesKept bounds the remote aliases kept at once.
	remoteAliasesKept = 10000
	// remoteQueryTimeout bounds one query to another server.
	remoteQueryTimeout = 15 * time.Second
	// maxAliasServers bounds the servers kept from a directory answer.
	maxAliasServers = 100
)

// aliasTarget is what an alias resolves to.
type aliasTarget struct {
	roomID  id.RoomID
	servers []string
}

// remoteDirectory asks other servers about their aliases and directories.
type remoteDirectory struct {
	fed     Federation
	aliases *remote.Cache[id.RoomAlias, aliasTarget]
}

// UseFederation makes the aliases and room directories of other servers
// reachable: GET /directory/room/{alias} and ResolveAlias ask the alias's
// server (GET /_matrix/federation/v1/query/directory), keeping each answer
// for RemoteAliasTTL, and /publicRooms?server= asks that server's
// directory. Without it, other servers' aliases are not found.
func (s *Service) UseFederation(f Federation) {
	s.remote = &remoteDirectory{fed: f, aliases: remote.NewCache[id.RoomAlias, aliasTarget](RemoteAliasTTL, remoteAliasesKept)}
}

// ResolveAlias returns the room an alias names and servers that are likely
// in it, this server first when it is: a local alias from the alias table,
// another server's by asking that server. An alias that does not exist is
// 404 M_NOT_FOUND, a malformed one 400 M_INVALID_PARAM; a server that
// cannot answer gives 502 or 504.
func (s *Service) ResolveAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, []string, error) {
	_, server, err := splitAlias(alias)
	if err != nil {
		return "", nil, err
	}
	if server == s.serverName {
		roomID, err := s.resolveLocalAlias(ctx, alias)
		if err == nil && roomID == "" && s.Appservices != nil {
			var created bool
			if created, err = s.Appservices.QueryAlias(ctx, alias); created {
				roomID, err = s.resolveLocalAlias(ctx, alias) // an appservice created it
			}
		}
		if err != nil {
			return "", nil, err
		}
		if roomID == "" {
			return "", nil, mxhttp.NotFound("room alias not found")
		}
		return roomID, s.residentServers(ctx, roomID), nil
	}
	if err := config.ValidServerName(server); err != nil {
		return "", nil, mxhttp.InvalidParam("invalid room alias %q: %v", alias, err)
	}
	if s.remote == nil {
		return "", nil, mxhttp.NotFound("room alias not found: %s is another server and federation is off", alias)
	}
	t, err := s.remote.aliases.Get(ctx, alias, remoteQueryTimeout, func(ctx context.Context) (aliasTarget, error) {
		return s.queryAlias(ctx, alias, server)
	})
	return t.roomID, slices.Clone(t.servers), err
}

// queryAlias asks server, the alias's, what the alias names.
func (s *Service) queryAlias(ctx context.Context, alias id.RoomAlias, server string) (aliasTarget, error) {
	var resp struct {
		RoomID  id.RoomID `json:"room_id"`
		Servers []string  `json:"servers"`
	}
	if err := s.remote.fed.Query(ctx, server, "directory", url.Values{"room_alias": {string(alias)}}, &resp); err != nil {
		return aliasTarget{}, remote.Error(server, err)
	}
	if !strings.HasPrefix(string(resp.RoomID), "!") || len(resp.RoomID) > 255 {
		return aliasTarget{}, remote.BadGateway("%s answered with an invalid room ID for %s", server, alias)
	}
	servers := make([]string, 0, min(len(resp.Servers), maxAliasServers)+1)
	for _, sv := range resp.Servers {
		if len(servers) == maxAliasServers {
			break
		}
		if config.ValidServerName(sv) == nil && !slices.Contains(servers, sv) {
			servers = append(servers, sv)
		}
	}
	if !slices.Contains(servers, server) {
		servers = append(servers, server) // the alias's server knows the room
	}
	return aliasTarget{roomID: resp.RoomID, servers: servers}, nil
}

// residentServers returns the servers with a joined member in the room,
// this one first (it holds the room even when nobody is joined).
func (s *Service) residentServers(ctx context.Context, roomID id.RoomID) []string {
	servers := []string{s.serverName}
	for _, server := range s.rooms.JoinedServers(ctx, roomID) {
		if server != s.serverName {
			servers = append(servers, server)
		}
	}
	return servers
}

// FederationRoutes registers the federation endpoints of the room
// directory and the third-party invite exchange with h (which adds X-Matrix
// authentication).
func (s *Service) FederationRoutes(h func(pattern string, handler http.Handler)) {
	h("GET /_matrix/federation/v1/query/directory", mxhttp.Handle(s.queryDirectory))
	h("GET /_matrix/federation/v1/publicRooms", mxhttp.Handle(s.fedGetPublicRooms))
	h("POST /_matrix/federation/v1/publicRooms", mxhttp.Handle(s.fedPostPublicRooms))
	h("PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}", mxhttp.Handle(s.exchangeThirdPartyInvite))
}

// fedGetPublicRooms is GET /_matrix/federation/v1/publicRooms: this
// server's room directory, as the client's GET /publicRooms pages it.
func (s *Service) fedGetPublicRooms(w http.ResponseWriter, r *http.Request) (any, error) {
	req, err := publicRoomsQuery(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return s.publicRooms(r.Context(), "", req)
}

// fedPostPublicRooms is POST /_matrix/federation/v1/publicRooms: the
// directory with the client API's filter.
func (s *Service) fedPostPublicRooms(w http.ResponseWriter, r *http.Request) (any, error) {
	var req publicRoomsRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.publicRooms(r.Context(), "", req)
}

// queryDirectory is GET /_matrix/federation/v1/query/directory: the room
// of one of this server's aliases.
func (s *Service) queryDirectory(w http.ResponseWriter, r *http.Request) (any, error) {
	alias := id.RoomAlias(r.URL.Query().Get("room_alias"))
	if alias == "" {
		return nil, mxhttp.MissingParam("room_alias is required")
	}
	_, server, err := splitAlias(alias)
	if err != nil {
		return nil, err
	}
	if server != s.serverName {
		return nil, mxhttp.InvalidParam("%s is not an alias of this server", alias)
	}
	roomID, servers, err := s.ResolveAlias(r.Context(), alias)
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": servers}, nil
}

// remotePublicRooms asks server for its room directory: GET with the
// request's parameters, or POST when it carries a filter.
func (s *Service) remotePublicRooms(ctx context.Context, server string, req publicRoomsRequest) (any, error) {
	if err := config.ValidServerName(server); err != nil {
		return nil, mxhttp.InvalidParam("server: %v", err)
	}
	if s.remote == nil {
		return nil, mxhttp.InvalidParam("cannot list the room directory of %s: federation is off", server)
	}
	ctx, cancel := context.WithTimeout(ctx, remoteQueryTimeout)
	defer cancel()
	params := federation.RequestParams{
		ServerName: server, Method: http.MethodGet, Path: federation.URLPath{"v1", "publicRooms"},
		Authenticate: true,
	}
	if req.Filter == nil {
		params.Query = url.Values{}
		if req.Limit != nil {
			params.Query.Set("limit", strconv.Itoa(*req.Limit))
		}
		if req.Since != "" {
			params.Query.Set("since", req.Since)
		}
		if req.IncludeAllNetworks {
			params.Query.Set("include_all_networks", "true")
		}
		if req.ThirdPartyInstanceID != "" {
			params.Query.Set("third_party_instance_id", req.ThirdPartyInstanceID)
		}
	} else {
		params.Method, params.RequestJSON = http.MethodPost, req
	}
	var resp remotePublicRoomsResponse
	params.ResponseJSON = &resp
	_, _, err := s.remote.fed.MakeFullRequest(ctx, params)
	if err != nil {
		return nil, remote.Error(server, err)
	}
	return resp.valid(server)
}

// remotePublicRoomsResponse is another server's directory page.
type remotePublicRoomsResponse struct {
	Chunk     []json.RawMessage `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
	PrevBatch string            `json:"prev_batch,omitempty"`
	Total     *int              `json:"total_room_count_estimate,omitempty"`
}

// valid returns the page with the entries that are not room objects left
// out, or 502 when there is no chunk at all.
func (p remotePublicRoomsResponse) valid(server string) (any, error) {
	if p.Chunk == nil {
		return nil, remote.BadGateway("%s answered a directory page without a chunk", server)
	}
	rooms := p.Chunk[:0]
	for _, raw := range p.Chunk {
		var room struct {
			RoomID           string `json:"room_id"`
			NumJoinedMembers *int   `json:"num_joined_members"`
			WorldReadable    *bool  `json:"world_readable"`
			GuestCanJoin     *bool  `json:"guest_can_join"`
		}
		if json.Unmarshal(raw, &room) == nil && strings.HasPrefix(room.RoomID, "!") &&
			room.NumJoinedMembers != nil && room.WorldReadable != nil && room.GuestCanJoin != nil {
			rooms = append(rooms, raw)
		}
	}
	p.Chunk = rooms
	return p, nil
}
