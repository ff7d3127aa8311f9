package clientapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

func (s *Service) resolveLocalAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, error) {
	var roomID id.RoomID
	err := s.db.QueryRow(ctx, "SELECT room_id FROM room_aliases WHERE alias = $1", alias).Scan(&roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return roomID, err
}

func (s *Service) createAlias(ctx context.Context, alias id.RoomAlias, roomID id.RoomID, creator id.UserID) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM room_aliases WHERE alias = $1", alias).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return &mxhttp.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Message: "room alias already exists"}
		}
		_, err := tx.Exec(ctx, "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)", alias, roomID, creator)
		return err
	})
}

// maxAliasLength bounds a room alias in bytes, sigil and server name
// included, as the spec bounds it.
const maxAliasLength = 255

// localAlias returns the alias on this server with localpart lp, or
// M_INVALID_PARAM when lp is empty, makes the alias too long, or holds a
// character no alias here may hold (':', '#', whitespace, control
// characters, invalid UTF-8).
func (s *Service) localAlias(lp string) (id.RoomAlias, error) {
	if lp == "" {
		return "", mxhttp.InvalidParam("a room alias needs a localpart")
	}
	if !utf8.ValidString(lp) || strings.ContainsFunc(lp, func(r rune) bool {
		return r == ':' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return "", mxhttp.InvalidParam("a room alias localpart may not hold ':', '#', whitespace or control characters")
	}
	alias := id.RoomAlias("#" + lp + ":" + s.serverName)
	if len(alias) > maxAliasLength {
		return "", mxhttp.InvalidParam("room alias is %d bytes long, more than %d", len(alias), maxAliasLength)
	}
	return alias, nil
}

func (s *Service) parseAlias(r *http.Request) (id.RoomAlias, error) {
	alias := id.RoomAlias(r.PathValue("roomAlias"))
	if _, _, err := splitAlias(alias); err != nil {
		return "", err
	}
	return alias, nil
}

func (s *Service) putAlias(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	alias, err := s.parseAlias(r)
	if err != nil {
		return nil, err
	}
	lp, server, _ := splitAlias(alias) // parseAlias checked it
	if server != s.serverName {
		return nil, mxhttp.InvalidParam("alias must be on this server")
	}
	if _, err := s.localAlias(lp); err != nil {
		return nil, err
	}
	if err := s.checkAliasNotExclusive(alias, sess); err != nil {
		return nil, err
	}
	var req struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.RoomID == "" {
		return nil, mxhttp.MissingParam("missing room_id")
	}
	if _, err := s.rooms.Version(r.Context(), req.RoomID); err != nil {
		return nil, mxhttp.NotFound("room not found")
	}
	if s.rooms.Membership(sess.UserID, req.RoomID) != "join" && !sess.IsAdmin {
		return nil, mxhttp.Forbidden("you must be in the room to give it an alias")
	}
	if err := s.createAlias(r.Context(), alias, req.RoomID, sess.UserID); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) getAlias(w http.ResponseWriter, r *http.Request) {
	mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		alias, err := s.parseAlias(r)
		if err != nil {
			return nil, err
		}
		roomID, servers, err := s.ResolveAlias(r.Context(), alias)
		if err != nil {
			return nil, err
		}
		return map[string]any{"room_id": roomID, "servers": servers}, nil
	})(w, r)
}

func (s *Service) deleteAlias(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	alias, err := s.parseAlias(r)
	if err != nil {
		return nil, err
	}
	var roomID id.RoomID
	var creator id.UserID
	err = s.db.QueryRow(r.Context(), "SELECT room_id, creator FROM room_aliases WHERE alias = $1", alias).Scan(&roomID, &creator)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxhttp.NotFound("room alias not found")
	}
	if err != nil {
		return nil, err
	}
	if creator != sess.UserID && !sess.IsAdmin {
		pl, err := s.rooms.PowerLevels(r.Context(), roomID)
		if err != nil {
			return nil, err
		}
		need := pl.GetEventLevel(stateType("m.room.canonical_alias"))
		if pl.GetUserLevel(sess.UserID) < need {
			return nil, mxhttp.Forbidden("you may not delete this alias")
		}
	}
	err = s.db.Write(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.Exec(r.Context(), "DELETE FROM room_aliases WHERE alias = $1", alias)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.dropCanonicalAlias(r.Context(), roomID, alias, sess)
	return mxhttp.Empty, nil
}

func (s *Service) getRoomAliases(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.requireVisible(r.Context(), sess.UserID, roomID); err != nil {
		return nil, err
	}
	aliases, err := s.LocalAliases(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"aliases": aliases}, nil
}

// LocalAliases lists the room's aliases in this server's alias directory,
// sorted.
func (s *Service) LocalAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	rows, err := s.db.Query(ctx, "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", roomID)
	if err != nil {
		return nil, fmt.Errorf("aliases of %s: %w", roomID, err)
	}
	defer rows.Close()
	aliases := []id.RoomAlias{}
	for rows.Next() {
		var a id.RoomAlias
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("aliases of %s: %w", roomID, err)
		}
		aliases = append(aliases, a)
	}
	return aliases, rows.Err()
}

func (s *Service) setPublished(ctx context.Context, roomID id.RoomID, published bool) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE rooms SET published = $1 WHERE room_id = $2", published, roomID)
		return err
	})
}

func (s *Service) getVisibility(w http.ResponseWriter, r *http.Request) {
	mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		roomID, err := mxhttp.RoomIDParam(r)
		if err != nil {
			return nil, err
		}
		var published bool
		err = s.db.QueryRow(r.Context(), "SELECT published FROM rooms WHERE room_id = $1", roomID).Scan(&published)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, mxhttp.NotFound("room not found")
		}
		if err != nil {
			return nil, err
		}
		v := "private"
		if published {
			v = "public"
		}
		return map[string]string{"visibility": v}, nil
	})(w, r)
}

func (s *Service) putVisibility(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Visibility string `json:"visibility"`
	}
	roomID, err := s.roomIDAndBody(r, &req)
	if err != nil {
		return nil, err
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		return nil, mxhttp.InvalidParam("visibility must be public or private")
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, mxhttp.NotFound("room not found")
	}
	if !sess.IsAdmin {
		pl, err := s.rooms.PowerLevels(r.Context(), roomID)
		if err != nil {
			return nil, err
		}
		if pl.GetUserLevel(sess.UserID) < pl.GetEventLevel(stateType("m.room.canonical_alias")) {
			return nil, mxhttp.Forbidden("you may not change this room's visibility")
		}
	}
	return mxhttp.Empty, s.setPublished(r.Context(), roomID, req.Visibility == "public")
}
