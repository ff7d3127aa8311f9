package admin

import (
	"context"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// MediaInfo describes one local upload for the admin API.
type MediaInfo struct {
	MediaID            string `json:"media_id"`
	MediaType          string `json:"media_type"`
	MediaLength        int64  `json:"media_length"`
	UploadName         string `json:"upload_name,omitempty"`
	CreatedTS          int64  `json:"created_ts"`
	LastAccessTS       int64  `json:"last_access_ts,omitempty"`
	QuarantinedBy      string `json:"quarantined_by,omitempty"`
	SafeFromQuarantine bool   `json:"safe_from_quarantine"`
}

// MediaAdmin is what the admin API needs from the media repository.
type MediaAdmin interface {
	// UserMedia lists the user's uploads, newest first, from offset from
	// (at most limit), with the total count.
	UserMedia(ctx context.Context, user id.UserID, from, limit int) ([]MediaInfo, int, error)
	// Exists reports whether the media is stored.
	Exists(ctx context.Context, serverName, mediaID string) (bool, error)
	// Quarantine makes a file unavailable for download, recording the
	// admin who did it (or, with on false, makes it available again).
	Quarantine(ctx context.Context, serverName, mediaID string, by id.UserID, on bool) error
	// Delete removes a file (and its thumbnails) for good.
	Delete(ctx context.Context, serverName, mediaID string) error
}

var errNoMedia = &mxhttp.Error{Status: http.StatusNotImplemented, Code: "M_UNRECOGNIZED", Message: "the media repository is not available on this node"}

func (s *Service) mediaRoutes(mux *http.ServeMux) {
	const v1 = "/_synapse/admin/v1"
	mux.HandleFunc("GET "+v1+"/users/{userId}/media", s.admin(s.userMedia))
	mux.HandleFunc("GET "+v1+"/room/{roomId}/media", s.admin(s.roomMedia))
	mux.HandleFunc("POST "+v1+"/room/{roomId}/media/quarantine", s.admin(s.quarantineRoomMedia))
	mux.HandleFunc("POST "+v1+"/media/quarantine/{serverName}/{mediaId}", s.admin(s.quarantineMedia(true)))
	mux.HandleFunc("POST "+v1+"/media/unquarantine/{serverName}/{mediaId}", s.admin(s.quarantineMedia(false)))
	mux.HandleFunc("DELETE "+v1+"/media/{serverName}/{mediaId}", s.admin(s.deleteMedia))
}

func (s *Service) userMedia(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if s.Media == nil {
		return nil, errNoMedia
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	list, total, err := s.Media.UserMedia(r.Context(), u.ID, from, limit)
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []MediaInfo{}
	}
	resp := map[string]any{"media": list, "total": total}
	if from+len(list) < total {
		resp["next_token"] = from + len(list)
	}
	return resp, nil
}

// roomMedia lists the mxc:// URIs the room's events mention, split into
// this server's and others'.
func (s *Service) roomMedia(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, err
	}
	uris, err := s.rooms.MediaURIs(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	local, remote := []string{}, []string{}
	for _, u := range uris {
		if strings.HasPrefix(u, "mxc://"+s.serverName+"/") {
			local = append(local, u)
		} else {
			remote = append(remote, u)
		}
	}
	return map[string]any{"local": local, "remote": remote}, nil
}

func (s *Service) quarantineRoomMedia(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if s.Media == nil {
		return nil, errNoMedia
	}
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	uris, err := s.rooms.MediaURIs(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, u := range uris {
		server, mediaID, ok := strings.Cut(strings.TrimPrefix(u, "mxc://"), "/")
		if !ok {
			continue
		}
		if server != s.serverName {
			// Another server's media counts once this node keeps a copy.
			if kept, err := s.Media.Exists(r.Context(), server, mediaID); err != nil || !kept {
				continue
			}
		}
		if err := s.Media.Quarantine(r.Context(), server, mediaID, sess.UserID, true); err != nil {
			s.log.Warn("quarantine room media", "room_id", roomID, "uri", u, "err", err)
			continue
		}
		n++
	}
	return map[string]int{"num_quarantined": n}, nil
}

func (s *Service) quarantineMedia(on bool) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		server, mediaID, err := s.storedMedia(r)
		if err != nil {
			return nil, err
		}
		if err := s.Media.Quarantine(r.Context(), server, mediaID, sess.UserID, on); err != nil {
			return nil, err
		}
		s.log.Info("media quarantine changed", "admin", sess.UserID, "server", server, "media_id", mediaID, "quarantined", on)
		return mxhttp.Empty, nil
	}
}

// storedMedia reads the {serverName}/{mediaId} path values of media the
// node stores.
func (s *Service) storedMedia(r *http.Request) (server, mediaID string, err error) {
	if s.Media == nil {
		return "", "", errNoMedia
	}
	server, mediaID = r.PathValue("serverName"), r.PathValue("mediaId")
	ok, err := s.Media.Exists(r.Context(), server, mediaID)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", mxhttp.NotFound("media not found")
	}
	return server, mediaID, nil
}

func (s *Service) deleteMedia(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	server, mediaID, err := s.storedMedia(r)
	if err != nil {
		return nil, err
	}
	if server != s.serverName {
		return nil, mxhttp.InvalidParam("can only delete local media")
	}
	if err := s.Media.Delete(r.Context(), server, mediaID); err != nil {
		return nil, err
	}
	s.log.Info("media deleted", "admin", sess.UserID, "media_id", mediaID)
	return map[string]any{"deleted_media": []string{mediaID}, "total": 1}, nil
}
