package appservice

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// DirectoryMigrations hold the rooms appservices publish in the room
// directories of their networks (PUT /directory/list/appservice/...).
var DirectoryMigrations = []storage.Migration{{
	Component: "appservice_directory",
	Version:   1,
	SQL: `CREATE TABLE appservice_room_directory (
	appservice_id TEXT NOT NULL,
	network_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	PRIMARY KEY (appservice_id, network_id, room_id)
);`,
}}

// InstanceID names a network of an appservice in the room directory and in
// /thirdparty/protocols: "appservice ID|network ID".
func InstanceID(appserviceID, networkID string) string { return appserviceID + "|" + networkID }

func (s *Service) setNetworkPublished(ctx context.Context, appserviceID, networkID string, roomID id.RoomID, public bool) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM appservice_room_directory WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3",
			appserviceID, networkID, roomID); err != nil {
			return err
		}
		if !public {
			return nil
		}
		_, err := tx.Exec(ctx, "INSERT INTO appservice_room_directory (appservice_id, network_id, room_id) VALUES ($1, $2, $3)",
			appserviceID, networkID, roomID)
		return err
	})
	if err != nil {
		return fmt.Errorf("publish %s in network %s of appservice %s: %w", roomID, networkID, appserviceID, err)
	}
	return nil
}

// mayPublish answers whether the appservice may publish the room in its
// networks' directories: the room must be known here, and be its business:
// in its room namespaces, with a joined member in its user namespaces, or
// with an alias (in this server's alias directory or the room's
// m.room.canonical_alias) in its alias namespaces. The spec says nothing
// of which rooms an appservice may list; without this any appservice
// could put any room, a private one included, in a public directory.
// Unknown rooms are 404 M_NOT_FOUND, others 403 M_FORBIDDEN.
func (s *Service) mayPublish(ctx context.Context, reg *Registration, roomID id.RoomID) error {
	if s.Rooms == nil {
		return nil
	}
	if _, err := s.Rooms.Version(ctx, roomID); err != nil {
		return mxhttp.NotFound("room not found")
	}
	if reg.InterestedInRoom(roomID) || namespaceMemberIn(reg, s.Rooms.Members(ctx, roomID)) {
		return nil
	}
	aliases, err := s.roomAliases(ctx, roomID)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(aliases, reg.InterestedInAlias) {
		return nil
	}
	return mxhttp.Forbidden("the application service has no user joined to %s, and neither the room nor any of its aliases is in its namespaces", roomID)
}

// roomAliases are the room's aliases in this server's alias directory and
// in its m.room.canonical_alias.
func (s *Service) roomAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	var aliases []id.RoomAlias
	if s.LocalAliases != nil {
		local, err := s.LocalAliases(ctx, roomID)
		if err != nil {
			return nil, fmt.Errorf("aliases of %s: %w", roomID, err)
		}
		aliases = local
	}
	if ev, err := s.Rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", ""); err == nil && ev != nil {
		aliases = append(aliases, aliasesOf(ev)...)
	}
	return aliases, nil
}

// NetworkRooms returns the rooms published in the directory of the network
// instanceID names (InstanceID), or of every appservice network when
// instanceID is "". Only the rows of registered appservices count: those
// of an appservice whose registration was removed are hidden (and kept,
// for when it is back), from the reload that removed it on.
func (s *Service) NetworkRooms(ctx context.Context, instanceID string) ([]id.RoomID, error) {
	query := "SELECT appservice_id, room_id FROM appservice_room_directory ORDER BY room_id"
	var args []any
	if instanceID != "" {
		asID, networkID, ok := strings.Cut(instanceID, "|")
		if !ok || s.Registry.ByID(asID) == nil {
			return nil, nil
		}
		query = "SELECT appservice_id, room_id FROM appservice_room_directory WHERE appservice_id = $1 AND network_id = $2 ORDER BY room_id"
		args = []any{asID, networkID}
	}
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("network rooms: %w", err)
	}
	defer rows.Close()
	var out []id.RoomID
	for rows.Next() {
		var asID string
		var roomID id.RoomID
		if err := rows.Scan(&asID, &roomID); err != nil {
			return nil, fmt.Errorf("network rooms: %w", err)
		}
		if s.Registry.ByID(asID) == nil || (len(out) > 0 && out[len(out)-1] == roomID) {
			continue
		}
		out = append(out, roomID)
	}
	return out, rows.Err()
}
