package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

// RoomRemote is what the room engine needs from other servers (it
// implements rooms.Remote): keys through the KeyRing, events and state
// through the signed federation client. The engine checks everything it
// gets this way as it checks any PDU.
type RoomRemote struct {
	Client *federation.Client
	Keys   *KeyRing
}

// RoomRemote returns the service's adapter for the room engine.
func (s *Service) RoomRemote() *RoomRemote { return &RoomRemote{Client: s.Client, Keys: s.Keys} }

// VerifyKey returns server's key keyID valid at validAt.
func (r *RoomRemote) VerifyKey(ctx context.Context, server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, error) {
	return r.Keys.VerifyKey(ctx, server, keyID, validAt)
}

// GetMissingEvents asks server for the events of the room between
// earliest and latest (/get_missing_events).
func (r *RoomRemote) GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, earliest, latest []id.EventID, limit int, minDepth int64) ([]json.RawMessage, error) {
	resp, err := r.Client.GetMissingEvents(ctx, &federation.ReqGetMissingEvents{
		ServerName: server, RoomID: roomID, EarliestEvents: earliest, LatestEvents: latest,
		Limit: limit, MinDepth: int(minDepth),
	})
	if err != nil {
		return nil, fmt.Errorf("get_missing_events from %s: %w", server, err)
	}
	return resp.Events, nil
}

// GetStateIDs asks server for the IDs of the room's state before an event
// and of its auth chain (/state_ids).
func (r *RoomRemote) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) (state, authChain []id.EventID, err error) {
	resp, err := r.Client.GetStateIDs(ctx, server, roomID, eventID)
	if err != nil {
		return nil, nil, fmt.Errorf("state_ids from %s: %w", server, err)
	}
	return resp.PDUs, resp.AuthChain, nil
}

// GetEvent asks server for one event (/event).
func (r *RoomRemote) GetEvent(ctx context.Context, server string, eventID id.EventID) (json.RawMessage, error) {
	resp, err := r.Client.GetEvent(ctx, server, eventID)
	if err != nil {
		return nil, fmt.Errorf("event %s from %s: %w", eventID, server, err)
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("event %s from %s: %d PDUs in the answer, want 1", eventID, server, len(resp.PDUs))
	}
	return resp.PDUs[0], nil
}

// Backfill asks server for up to limit events of the room before (and
// including) the events of from (/backfill).
func (r *RoomRemote) Backfill(ctx context.Context, server string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error) {
	resp, err := r.Client.Backfill(ctx, &federation.ReqBackfill{ServerName: server, RoomID: roomID, Limit: limit, BackfillFrom: from})
	if err != nil {
		return nil, fmt.Errorf("backfill from %s: %w", server, err)
	}
	return resp.PDUs, nil
}
