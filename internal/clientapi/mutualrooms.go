package clientapi

import (
	"net/http"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// mutualRoomsPage is how many room IDs one /mutual_rooms page holds.
const mutualRoomsPage = 100

// getMutualRooms lists the rooms both the caller and user_id are joined
// to, sorted by room ID; from is "m" and the offset of the page.
func (s *Service) getMutualRooms(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	q := r.URL.Query()
	other := id.UserID(q.Get("user_id"))
	if other == "" {
		return nil, mxhttp.MissingParam("missing user_id")
	}
	if _, _, err := other.ParseAndValidateRelaxed(); err != nil || !strings.HasPrefix(string(other), "@") {
		return nil, mxhttp.InvalidParam("invalid user_id")
	}
	if other == sess.UserID {
		return nil, mxhttp.InvalidParam("user_id is your own user ID")
	}
	offset := 0
	if from := q.Get("from"); from != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(from, "m"))
		if err != nil || n < 0 || !strings.HasPrefix(from, "m") {
			return nil, mxhttp.InvalidParam("invalid from token")
		}
		offset = n
	}
	theirs := s.rooms.Memberships(other)
	joined := []id.RoomID{}
	for _, room := range s.rooms.JoinedRooms(sess.UserID) { // sorted
		if theirs[room] == "join" {
			joined = append(joined, room)
		}
	}
	resp := map[string]any{"count": len(joined)}
	page := joined[min(offset, len(joined)):]
	if len(page) > mutualRoomsPage {
		page = page[:mutualRoomsPage]
		resp["next_batch"] = "m" + strconv.Itoa(offset+mutualRoomsPage)
	}
	resp["joined"] = page
	return resp, nil
}
