package clientapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/spaces"
)

// maxPublicRooms bounds one page of the room directory.
const maxPublicRooms = 1000

// publicRoomsRequest is the POST /publicRooms body (GET takes the same as
// query parameters, without the filter). Marshalled, it is the request to
// another server's directory.
type publicRoomsRequest struct {
	Limit                *int               `json:"limit,omitempty"`
	Since                string             `json:"since,omitempty"`
	Filter               *publicRoomsFilter `json:"filter,omitempty"`
	IncludeAllNetworks   bool               `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string             `json:"third_party_instance_id,omitempty"`
}

type publicRoomsFilter struct {
	GenericSearchTerm string     `json:"generic_search_term,omitempty"`
	RoomTypes         *[]*string `json:"room_types,omitempty"`
}

// publicRoomsQuery reads the query parameters of GET /publicRooms (the
// client's and the federation's).
func publicRoomsQuery(q url.Values) (publicRoomsRequest, error) {
	var req publicRoomsRequest
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return req, mxhttp.InvalidParam("invalid limit")
		}
		req.Limit = &n
	}
	req.Since = q.Get("since")
	switch q.Get("include_all_networks") {
	case "", "false":
	case "true":
		req.IncludeAllNetworks = true
	default:
		return req, mxhttp.InvalidParam("include_all_networks must be true or false")
	}
	req.ThirdPartyInstanceID = q.Get("third_party_instance_id")
	return req, nil
}

func (s *Service) getPublicRooms(w http.ResponseWriter, r *http.Request) {
	mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		req, err := publicRoomsQuery(r.URL.Query())
		if err != nil {
			return nil, err
		}
		return s.publicRooms(r.Context(), r.URL.Query().Get("server"), req)
	})(w, r)
}

func (s *Service) postPublicRooms(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req publicRoomsRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.publicRooms(r.Context(), r.URL.Query().Get("server"), req)
}

// publicRooms answers a directory query: the published rooms, most joined
// members first, filtered, a page at a time. Pagination tokens are offsets
// ("o<n>"), so either token pages in its own direction.
func (s *Service) publicRooms(ctx context.Context, server string, req publicRoomsRequest) (any, error) {
	if server != "" && server != s.serverName {
		return s.remotePublicRooms(ctx, server, req)
	}
	if req.IncludeAllNetworks && req.ThirdPartyInstanceID != "" {
		return nil, mxhttp.InvalidParam("include_all_networks and third_party_instance_id are exclusive")
	}
	limit := maxPublicRooms
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, mxhttp.InvalidParam("limit must not be negative")
		}
		if *req.Limit > 0 {
			limit = min(*req.Limit, maxPublicRooms)
		}
	}
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 || !strings.HasPrefix(req.Since, "o") {
			return nil, mxhttp.InvalidParam("invalid since token")
		}
		offset = n
	}
	all, err := s.directoryRooms(ctx, req)
	if err != nil {
		return nil, err
	}
	var rawTerm, term string
	var types *[]*string
	if req.Filter != nil {
		rawTerm = strings.TrimSpace(req.Filter.GenericSearchTerm)
		term = strings.ToLower(rawTerm)
		types = req.Filter.RoomTypes
	}
	rooms := all[:0]
	for _, pr := range all {
		// The term matches words of the name, topic and alias in any case,
		// and a room ID only whole: room IDs are case-sensitive random
		// strings, in which a short term would match by chance.
		if term != "" && !strings.Contains(strings.ToLower(pr.Name), term) && !strings.Contains(strings.ToLower(pr.Topic), term) &&
			!strings.Contains(strings.ToLower(pr.CanonicalAlias), term) && rawTerm != string(pr.RoomID) {
			continue
		}
		if types != nil && !slices.ContainsFunc(*types, func(t *string) bool {
			return (t == nil && pr.RoomType == "") || (t != nil && *t == pr.RoomType)
		}) {
			continue
		}
		rooms = append(rooms, pr)
	}
	slices.SortFunc(rooms, func(a, b *spaces.Chunk) int {
		if a.NumJoinedMembers != b.NumJoinedMembers {
			return b.NumJoinedMembers - a.NumJoinedMembers
		}
		return strings.Compare(string(a.RoomID), string(b.RoomID))
	})
	resp := map[string]any{"total_room_count_estimate": len(rooms)}
	start := min(offset, len(rooms))
	end := min(start+limit, len(rooms))
	resp["chunk"] = rooms[start:end]
	if end < len(rooms) {
		resp["next_batch"] = "o" + strconv.Itoa(end)
	}
	if start > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(0, start-limit))
	}
	return resp, nil
}

// directoryRooms describes the rooms of the directory a request asks for:
// the Matrix one (the default), one appservice network's
// (third_party_instance_id), or all of them (include_all_networks).
func (s *Service) directoryRooms(ctx context.Context, req publicRoomsRequest) ([]*spaces.Chunk, error) {
	var ids []id.RoomID
	if req.ThirdPartyInstanceID == "" {
		var err error
		if ids, err = s.publishedRoomIDs(ctx); err != nil {
			return nil, err
		}
	}
	if (req.IncludeAllNetworks || req.ThirdPartyInstanceID != "") && s.Appservices != nil {
		network, err := s.Appservices.NetworkRooms(ctx, req.ThirdPartyInstanceID)
		if err != nil {
			return nil, err
		}
		for _, roomID := range network {
			if !slices.Contains(ids, roomID) {
				ids = append(ids, roomID)
			}
		}
	}
	out := make([]*spaces.Chunk, 0, len(ids))
	for _, roomID := range ids {
		if s.rooms.CheckRoomPolicy(ctx, roomID) != nil {
			continue // the node takes no part in it: none may join through here
		}
		pr, err := spaces.Describe(ctx, s.rooms, roomID)
		if errors.Is(err, rooms.ErrNoRoom) {
			continue // purged since it was published
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

// publishedRoomIDs lists the rooms published in the Matrix directory.
func (s *Service) publishedRoomIDs(ctx context.Context) ([]id.RoomID, error) {
	rows, err := s.db.Query(ctx, "SELECT room_id FROM rooms WHERE published = TRUE")
	if err != nil {
		return nil, err
	}
	var ids []id.RoomID
	for rows.Next() {
		var roomID id.RoomID
		if err := rows.Scan(&roomID); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, roomID)
	}
	rows.Close()
	return ids, rows.Err()
}
