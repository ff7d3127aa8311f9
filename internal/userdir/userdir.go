// Package userdir owns the user directory (/user_directory/search): the
// users a searcher may discover are those who share a room with them and
// those in public or world-readable rooms, matched on user ID and display
// name. Local users are shown with their profile, remote users with the
// profile of their member event (all this node knows of them).
package userdir

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// Service answers user directory searches from live memberships and
// profiles, so it follows every profile and membership change at once.
type Service struct {
	accounts *accounts.Service
	rooms    *rooms.Engine
}

// New returns the service.
func New(acc *accounts.Service, eng *rooms.Engine) *Service {
	return &Service{accounts: acc, rooms: eng}
}

// Routes registers the endpoint.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /_matrix/client/v3/user_directory/search", s.accounts.Auth(s.handleSearch))
}

type result struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"display_name,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

func (s *Service) handleSearch(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.SearchTerm == nil {
		return nil, mxhttp.MissingParam("missing search_term")
	}
	limit := 10
	if req.Limit != nil {
		limit = min(max(*req.Limit, 0), 100)
	}
	term := strings.ToLower(strings.TrimSpace(*req.SearchTerm))
	visible, err := s.visibleUsers(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	var out []result
	for u, member := range visible {
		name, avatar := member.DisplayName, member.AvatarURL
		if u.Homeserver() == s.rooms.ServerName() {
			name, avatar = s.accounts.DisplayName(r.Context(), u)
		}
		if term != "" && !strings.Contains(strings.ToLower(string(u)), term) && !strings.Contains(strings.ToLower(name), term) {
			continue
		}
		out = append(out, result{UserID: u, DisplayName: name, AvatarURL: avatar})
	}
	// Exact and prefix matches first, then by user ID.
	score := func(x result) int {
		lp := strings.ToLower(x.UserID.Localpart())
		n := strings.ToLower(x.DisplayName)
		switch {
		case lp == term || n == term:
			return 0
		case strings.HasPrefix(lp, term) || strings.HasPrefix(n, term):
			return 1
		}
		return 2
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := score(out[i]), score(out[j]); a != b {
			return a < b
		}
		return out[i].UserID < out[j].UserID
	})
	limited := len(out) > limit
	if limited {
		out = out[:limit]
	}
	if out == nil {
		out = []result{}
	}
	return map[string]any{"results": out, "limited": limited}, nil
}

// memberProfile is the profile a member event carries: the only profile
// this node has of a remote user.
type memberProfile struct {
	DisplayName string `json:"displayname"`
	AvatarURL   string `json:"avatar_url"`
}

// visibleUsers returns the users joined to a room the searcher is joined
// to, or to a room whose join rule is public or whose history is world
// readable (the rooms the spec says a search must at least consider), each
// with the profile of one of their member events.
func (s *Service) visibleUsers(ctx context.Context, self id.UserID) (map[id.UserID]memberProfile, error) {
	candidates := map[id.RoomID]bool{}
	for _, rid := range s.rooms.JoinedRooms(self) {
		candidates[rid] = true
	}
	all, err := s.rooms.AllRooms(ctx)
	if err != nil {
		return nil, err
	}
	for _, rid := range all {
		if !candidates[rid] && s.open(ctx, rid) {
			candidates[rid] = true
		}
	}
	users := map[id.UserID]memberProfile{}
	for rid := range candidates {
		state, err := s.rooms.CurrentState(ctx, rid)
		if err != nil {
			continue
		}
		for _, ev := range state {
			if ev.Type == "m.room.member" && ev.Membership() == "join" {
				var p memberProfile
				json.Unmarshal(ev.Content(), &p) // a malformed profile is an empty one
				users[id.UserID(*ev.StateKey)] = p
			}
		}
	}
	return users, nil
}

// open reports whether anyone may see who is in the room: its join rule is
// public or its history is world readable.
func (s *Service) open(ctx context.Context, rid id.RoomID) bool {
	return s.stateField(ctx, rid, "m.room.join_rules", "join_rule") == "public" ||
		s.stateField(ctx, rid, "m.room.history_visibility", "history_visibility") == "world_readable"
}

// stateField returns a string field of a room's current state event ("" if
// there is none).
func (s *Service) stateField(ctx context.Context, rid id.RoomID, evType, field string) string {
	ev, err := s.rooms.StateEvent(ctx, rid, evType, "")
	if err != nil || ev == nil {
		return ""
	}
	var c map[string]any
	json.Unmarshal(ev.Content(), &c)
	v, _ := c[field].(string)
	return v
}
