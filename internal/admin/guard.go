package admin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// Guard routes: what each guarded route does for suspended and
// shadow-banned users and for blocked rooms.
type guardRule struct {
	// suspended: refuse the request for suspended users.
	suspended bool
	// shadow: the canned answer for shadow-banned users ("" passes).
	shadow string
	// block: the path value naming the room that must not be blocked.
	block string
	// notice: the user may not reject the invite to their server notices
	// room named by the roomId path value.
	notice bool
}

const (
	shadowEvent = "event" // {"event_id": <fake>}
	shadowEmpty = "empty" // {}
)

var guardRoutes = map[string]guardRule{
	"PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}":        {suspended: true, shadow: shadowEvent},
	"PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey...}": {suspended: true, shadow: shadowEvent, notice: true},
	"POST /_matrix/client/v3/rooms/{roomId}/invite":                         {suspended: true, shadow: shadowEmpty, block: "roomId"},
	"PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}":                 {shadow: shadowEmpty},
	"POST /_matrix/client/v3/createRoom":                                    {suspended: true},
	"POST /_matrix/client/v3/join/{roomIdOrAlias}":                          {suspended: true, block: "roomIdOrAlias"},
	"POST /_matrix/client/v3/rooms/{roomId}/join":                           {suspended: true, block: "roomId"},
	"POST /_matrix/client/v3/knock/{roomIdOrAlias}":                         {suspended: true, block: "roomIdOrAlias"},
	"POST /_matrix/client/v3/rooms/{roomId}/leave":                          {notice: true},
	"PUT /_matrix/client/v3/profile/{userId}/{keyName}":                     {suspended: true},
	"DELETE /_matrix/client/v3/profile/{userId}/{keyName}":                  {suspended: true},
	"PUT /_matrix/client/v3/directory/room/{roomAlias}":                     {suspended: true},
	"POST /_matrix/media/v3/upload":                                         {suspended: true},
	"PUT /_matrix/media/v3/upload/{serverName}/{mediaId}":                   {suspended: true},
	"POST /_matrix/media/v1/create":                                         {suspended: true},
}

// Guard applies account suspension, shadow bans and blocked rooms to the
// client API routes it knows and passes everything else to next:
// suspended users may not send, join, invite, create rooms, change their
// profile or upload (leaving rooms and redacting stay allowed);
// shadow-banned users' sends, invites and typing notices get a normal
// answer but go nowhere; nobody joins or is invited to a blocked room.
func (s *Service) Guard(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	key := make([]byte, 32)
	rand.Read(key)
	for pattern, rule := range guardRoutes {
		mux.Handle(pattern, mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
			if rule.block != "" {
				if blocked, err := s.routeRoomBlocked(r, r.PathValue(rule.block)); err != nil {
					return nil, err
				} else if blocked {
					return nil, mxhttp.Forbidden("this room has been blocked on this server")
				}
			}
			sess, err := s.accounts.AuthenticateRequest(r)
			if err == nil && rule.notice && (r.PathValue("eventType") == "" || ownLeave(r, sess.UserID)) {
				if invited, err := s.invitedToNotices(r.Context(), sess.UserID, id.RoomID(r.PathValue("roomId"))); err != nil {
					return nil, err
				} else if invited {
					return nil, mxhttp.CannotLeaveServerNoticeRoom("you cannot reject the invite to your server notices room; join it, then leave")
				}
			}
			if err != nil || sess.IsAdmin {
				next.ServeHTTP(w, r) // the handler answers bad tokens
				return nil, nil
			}
			if sess.Suspended && rule.suspended && !allowedWhileSuspended(r, sess.UserID) {
				return nil, mxhttp.UserSuspended("your account is suspended")
			}
			if sess.ShadowBanned {
				switch rule.shadow {
				case shadowEvent:
					mac := hmac.New(sha256.New, key)
					mac.Write([]byte(string(sess.UserID) + "\x00" + string(sess.DeviceID) + "\x00" + r.URL.Path))
					return map[string]string{"event_id": "$" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))}, nil
				case shadowEmpty:
					return mxhttp.Empty, nil
				}
			}
			next.ServeHTTP(w, r)
			return nil, nil
		}))
	}
	mux.Handle("/", next)
	return mux
}

// allowedWhileSuspended lets a suspended user leave a room through the
// state endpoint.
func allowedWhileSuspended(r *http.Request, uid id.UserID) bool {
	return ownLeave(r, uid)
}

// ownLeave reports whether r is uid's own leave sent through the state
// endpoint; the body stays readable for the handler.
func ownLeave(r *http.Request, uid id.UserID) bool {
	if r.Method != http.MethodPut || r.PathValue("eventType") != "m.room.member" {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, rooms.MaxEventBytes+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return false
	}
	var c struct {
		Membership string `json:"membership"`
	}
	json.Unmarshal(b, &c)
	return c.Membership == "leave" && r.PathValue("stateKey") == string(uid)
}

// routeRoomBlocked resolves a room ID or local alias and reports whether
// the room is blocked.
func (s *Service) routeRoomBlocked(r *http.Request, target string) (bool, error) {
	roomID := id.RoomID(target)
	if strings.HasPrefix(target, "#") {
		var err error
		if roomID, err = s.rooms.ResolveAlias(r.Context(), id.RoomAlias(target)); err != nil || roomID == "" {
			return false, err
		}
	}
	blocked, _, err := s.RoomBlocked(r.Context(), roomID)
	return blocked, err
}

// RoomBlocked reports whether a room is blocked, and by whom.
func (s *Service) RoomBlocked(ctx context.Context, roomID id.RoomID) (bool, id.UserID, error) {
	var by id.UserID
	err := s.db.QueryRow(ctx, "SELECT blocked_by FROM blocked_rooms WHERE room_id = $1", roomID).Scan(&by)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	return true, by, nil
}
