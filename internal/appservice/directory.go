package appservice

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

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

// NetworkRooms returns the rooms published in the directory of the network
// instanceID names (InstanceID), or of every appservice network when
// instanceID is "". An instance ID of no registered appservice has none.
func (s *Service) NetworkRooms(ctx context.Context, instanceID string) ([]id.RoomID, error) {
	query := "SELECT DISTINCT room_id FROM appservice_room_directory ORDER BY room_id"
	var args []any
	if instanceID != "" {
		asID, networkID, ok := strings.Cut(instanceID, "|")
		if !ok || s.Registry.ByID(asID) == nil {
			return nil, nil
		}
		query = "SELECT room_id FROM appservice_room_directory WHERE appservice_id = $1 AND network_id = $2 ORDER BY room_id"
		args = []any{asID, networkID}
	}
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("network rooms: %w", err)
	}
	defer rows.Close()
	var out []id.RoomID
	for rows.Next() {
		var roomID id.RoomID
		if err := rows.Scan(&roomID); err != nil {
			return nil, err
		}
		out = append(out, roomID)
	}
	return out, rows.Err()
}
