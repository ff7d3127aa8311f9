package ledger

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// AdminRoomPath is the admin API endpoint that reads (GET) and turns on or
// off (PUT {"enabled": bool}) a room's ledger.
const AdminRoomPath = "/_matrixos/admin/v1/ledger/rooms/{roomId}"

// stateEventType is StateType as a mautrix state event type.
var stateEventType = event.Type{Type: StateType, Class: event.StateEventType}

// RoomLedger is what the admin endpoint answers: the room's ledger state
// event and whether it turns the ledger on, and who sent it.
type RoomLedger struct {
	RoomID  id.RoomID  `json:"room_id"`
	Enabled bool       `json:"enabled"`
	EventID id.EventID `json:"event_id,omitempty"`
	Sender  id.UserID  `json:"sender,omitempty"`
	// All says that the node logs every room (ledger: all) whatever the
	// room's state says.
	All bool `json:"all"`
	// Unchanged says that a PUT found the room's ledger as asked and sent
	// nothing.
	Unchanged bool `json:"unchanged,omitempty"`
}

// switchRequest is the PUT body: the state to set and, optionally, the
// local member to send the state event as.
type switchRequest struct {
	Enabled *bool     `json:"enabled"`
	Sender  id.UserID `json:"sender"`
}

// adminRoutes serves AdminRoomPath to server admins.
func (l *Log) adminRoutes(mux *http.ServeMux, acc *accounts.Service, engine *rooms.Engine) {
	admin := func(h func(r *http.Request, roomID id.RoomID, sess *accounts.Session) (any, error)) http.Handler {
		return acc.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
			if !sess.IsAdmin {
				return nil, mxhttp.Forbidden("you are not a server admin")
			}
			roomID, err := mxhttp.RoomIDParam(r)
			if err != nil {
				return nil, err
			}
			l.log.Info("admin API call", "admin", sess.UserID, "method", r.Method, "path", r.URL.Path)
			return h(r, roomID, sess)
		})
	}
	mux.Handle("GET "+AdminRoomPath, admin(func(r *http.Request, roomID id.RoomID, _ *accounts.Session) (any, error) {
		return l.roomLedger(r.Context(), engine, roomID)
	}))
	mux.Handle("PUT "+AdminRoomPath, admin(func(r *http.Request, roomID id.RoomID, _ *accounts.Session) (any, error) {
		var req switchRequest
		if err := mxhttp.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Enabled == nil {
			return nil, mxhttp.MissingParam("enabled (true or false) is required")
		}
		return l.SetRoom(r.Context(), engine, roomID, *req.Enabled, req.Sender)
	}))
}

// roomLedger reads the room's ledger state event.
func (l *Log) roomLedger(ctx context.Context, engine *rooms.Engine, roomID id.RoomID) (*RoomLedger, error) {
	if engine.Members(ctx, roomID) == nil {
		return nil, mxhttp.NotFound("this server knows no room %s", roomID)
	}
	ev, err := engine.StateEvent(ctx, roomID, StateType, "")
	if err != nil {
		return nil, err
	}
	out := &RoomLedger{RoomID: roomID, All: l.opts.All}
	if ev != nil {
		out.EventID, out.Sender = ev.ID, ev.Sender
		out.Enabled = gjson.GetBytes(ev.JSON, "content.enabled").Type == gjson.True
	}
	return out, nil
}

// SetRoom turns the room's ledger on or off by sending its state event as
// sender, a local member with the power to, or, when sender is empty, as
// the local member with the most power in the room. It refuses, saying
// why, when no local member may: the room's power levels decide, not the
// server. A room already as asked gets nothing sent.
func (l *Log) SetRoom(ctx context.Context, engine *rooms.Engine, roomID id.RoomID, enabled bool, sender id.UserID) (*RoomLedger, error) {
	cur, err := l.roomLedger(ctx, engine, roomID)
	if err != nil {
		return nil, err
	}
	if cur.EventID != "" && cur.Enabled == enabled {
		cur.Unchanged = true
		return cur, nil
	}
	pl, err := engine.PowerLevels(ctx, roomID)
	if err != nil {
		return nil, err
	}
	sender, err = ledgerSender(pl, engine.Members(ctx, roomID), engine.ServerName(), roomID, sender)
	if err != nil {
		return nil, err
	}
	content, err := json.Marshal(map[string]bool{"enabled": enabled})
	if err != nil {
		return nil, err
	}
	empty := ""
	ev, err := engine.Send(ctx, roomID, rooms.Proto{Type: StateType, StateKey: &empty, Sender: sender, Content: content})
	if err != nil {
		return nil, err
	}
	l.log.Info("ledger: room's ledger set by an admin", "room", roomID, "enabled", enabled, "sender", sender, "event", ev.ID)
	return &RoomLedger{RoomID: roomID, Enabled: enabled, EventID: ev.ID, Sender: sender, All: l.opts.All}, nil
}

// ledgerSender checks the asked sender, or picks the joined member of
// this server with the most power (the first by user ID among equals),
// and refuses when that member lacks the power to set StateType.
func ledgerSender(pl *event.PowerLevelsEventContent, members map[id.UserID]string, server string, roomID id.RoomID, asked id.UserID) (id.UserID, error) {
	need := pl.GetEventLevel(stateEventType)
	if asked != "" {
		if asked.Homeserver() != server || members[asked] != "join" {
			return "", mxhttp.Forbidden("%s is not a member of %s on this server: the ledger's state event is sent as a joined local member", asked, roomID)
		}
		if level := pl.GetUserLevel(asked); level < need {
			return "", mxhttp.Forbidden("%s has power %d in %s; setting %s needs %d (the room's power levels decide)", asked, level, roomID, StateType, need)
		}
		return asked, nil
	}
	var best id.UserID
	bestLevel := 0
	for u, m := range members {
		if m != "join" || u.Homeserver() != server {
			continue
		}
		level := pl.GetUserLevel(u)
		if best == "" || level > bestLevel || (level == bestLevel && u < best) {
			best, bestLevel = u, level
		}
	}
	switch {
	case best == "":
		return "", mxhttp.Forbidden("no user of this server is joined to %s: ask one of its members to set %s", roomID, StateType)
	case bestLevel < need:
		return "", mxhttp.Forbidden("no user of this server may set %s in %s: it needs power %d, and the most any local member has is %d (%s); ask one of the room's admins to set it, or to raise a local member's power", StateType, roomID, need, bestLevel, best)
	}
	return best, nil
}
