package rooms

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// Memberships of local users in rooms this node is not in: an invite
// received over federation, and the leave that rejects it (or rescinds a
// knock). They are kept beside the timeline (the room is unknown) with a
// membership row at a fresh position, so /sync shows them like any
// membership change, with the stripped state the inviting server sent.

// maxInviteState bounds the stripped state kept with an invite.
const maxInviteState = 50

// ReceiveInvite is /invite on the invitee's server: it checks the event
// (a signed invite of one of this server's users by a user of origin, in a
// room version this node supports, allowed by the room's state when a
// local user is joined to the room), adds this server's signature and shows the invite
// in the invitee's /sync with strippedState (invite_room_state). It
// returns the signed event.
func (e *Engine) ReceiveInvite(ctx context.Context, origin string, version id.RoomVersion, raw json.RawMessage, strippedState []json.RawMessage) (json.RawMessage, error) {
	if e.Remote == nil {
		return nil, errNoFederation
	}
	if usesV1Format(version) || !IsSupported(version) {
		return nil, incompatibleRoomVersion(version)
	}
	ev, err := e.parseRemote(ctx, version, raw)
	if err != nil {
		return nil, err
	}
	switch {
	case ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "invite":
		return nil, mxhttp.BadJSON("the event is not an invite")
	case id.UserID(*ev.StateKey).Homeserver() != e.signer.ServerName:
		return nil, mxhttp.BadJSON("the invitee %s is not a user of this server", *ev.StateKey)
	case ev.Sender.Homeserver() != origin:
		return nil, mxhttp.Forbidden("the inviter is not a user of %s", origin)
	}
	if err := e.CheckRoomPolicy(ctx, ev.RoomID); err != nil {
		return nil, err
	}
	if err := e.countersign(version, ev); err != nil {
		return nil, err
	}
	r, err := e.room(ctx, ev.RoomID)
	switch {
	case err == nil && e.ServerInRoom(ctx, e.signer.ServerName, r.id):
		if r.version != version {
			return nil, mxhttp.BadJSON("room %s has version %s, not %s", r.id, r.version, version)
		}
		// This node is in the room: the invite joins its DAG like any
		// event (and is answered the same when the inviter sends it on).
		if err := e.receive(ctx, r, origin, ev, true); err != nil {
			return nil, err
		}
		return ev.JSON, nil
	case err != nil && !errors.Is(err, ErrNoRoom):
		return nil, err
	}
	// This node is not in the room, or no longer (its members left or were
	// banned, and it missed what happened since): the invite is kept beside
	// the timeline, and accepting it joins through the inviter's server.
	if err := e.storeOutOfRoom(ctx, version, ev, strippedOf(strippedState)); err != nil {
		return nil, err
	}
	return ev.JSON, nil
}

// StoreOutOfRoomMembership stores a local user's membership in a room
// this node is not in, made through another server (a leave rejecting a
// remote invite or rescinding a knock, signed by this server through
// SignTemplate and accepted by send_leave). A room this node is in takes
// the event through its DAG instead.
func (e *Engine) StoreOutOfRoomMembership(ctx context.Context, version id.RoomVersion, raw json.RawMessage) (*Event, error) {
	if usesV1Format(version) || !IsSupported(version) {
		return nil, incompatibleRoomVersion(version)
	}
	ev, err := e.parseRemote(ctx, version, raw)
	if err != nil {
		return nil, err
	}
	if ev.Type != "m.room.member" || ev.StateKey == nil || id.UserID(*ev.StateKey).Homeserver() != e.signer.ServerName {
		return nil, mxhttp.BadJSON("the event is not a membership of a user of this server")
	}
	if r, err := e.room(ctx, ev.RoomID); err == nil {
		if e.Remote == nil {
			return nil, errNoFederation
		}
		return e.acceptRemote(ctx, r, ev, receiveOpts{})
	} else if !errors.Is(err, ErrNoRoom) {
		return nil, err
	}
	if err := e.storeOutOfRoom(ctx, version, ev, nil); err != nil {
		return nil, err
	}
	return ev, nil
}

// strippedOf keeps the stripped state events that name a type and state
// key, at most maxInviteState of them.
func strippedOf(raws []json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	for _, raw := range raws {
		if len(out) == maxInviteState {
			break
		}
		r := gjson.ParseBytes(raw)
		if !r.IsObject() || r.Get("type").Type != gjson.String || r.Get("state_key").Type != gjson.String {
			continue
		}
		out = append(out, raw)
	}
	return out
}

// storeOutOfRoom records ev, a local user's membership in a room this
// node is not in, beside the timeline, with stripped (when not nil) as
// the state its /sync shows, and moves the user's membership.
func (e *Engine) storeOutOfRoom(ctx context.Context, version id.RoomVersion, ev *Event, stripped []json.RawMessage) error {
	user := id.UserID(*ev.StateKey)
	membership := ev.Membership()
	var pos int64
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		if err := storeOutlier(ctx, tx, ev, kindOutlier, ""); err != nil {
			return err
		}
		if stripped != nil {
			b, _ := json.Marshal(stripped)
			if _, err := tx.Exec(ctx, `INSERT INTO invite_state (event_id, room_id, state) VALUES ($1, $2, $3)
				ON CONFLICT (event_id) DO UPDATE SET state = excluded.state`, ev.ID, ev.RoomID, string(b)); err != nil {
				return fmt.Errorf("store invite state: %w", err)
			}
		}
		pos = tx.NextPos()
		if err := upsertMembership(ctx, tx, ev.RoomID, ev, pos); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.setMembershipLocked(user, ev.RoomID, membership)
			e.memberPos[user] = max(e.memberPos[user], pos)
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("store membership: %w", err)
	}
	ev.Outlier = true
	info := &RoomInfo{ID: ev.RoomID, Version: version, Members: map[id.UserID]string{user: membership}}
	for _, h := range e.OnVisible {
		h(ev, info)
	}
	for _, h := range e.OnEvent {
		h(ev, info)
	}
	return nil
}

// InviteState returns the stripped state kept with an invite to a room
// this node is not in (nil when there is none).
func (e *Engine) InviteState(ctx context.Context, eventID id.EventID) ([]json.RawMessage, error) {
	var raw string
	err := e.db.QueryRow(ctx, "SELECT state FROM invite_state WHERE event_id = $1", eventID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load invite state: %w", err)
	}
	var out []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return nil, fmt.Errorf("decode invite state: %w", err)
	}
	return out, nil
}

// receiveRescinded takes a PDU of a room this node is not in. Only one is
// kept: the inviter withdrawing a local user's invite (the invitee's
// leave, sent by the inviter, whose auth events name the invite), which
// the inviter's server sends here because the invitee's membership
// changes; it is stored as the user's membership, so their /sync shows
// the invite withdrawn. Anything else is refused as for an unknown room.
func (e *Engine) receiveRescinded(ctx context.Context, origin string, roomID id.RoomID, raw json.RawMessage) (id.EventID, error) {
	var head struct {
		Type     string  `json:"type"`
		StateKey *string `json:"state_key"`
		Content  struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.Type != "m.room.member" || head.StateKey == nil || head.Content.Membership != "leave" {
		return "", ErrNoRoom
	}
	invitee := id.UserID(*head.StateKey)
	if invitee.Homeserver() != e.signer.ServerName {
		return "", ErrNoRoom
	}
	memberID, err := e.MembershipEventID(ctx, invitee, roomID)
	if err != nil {
		return "", err
	}
	invite, err := e.storedEvent(ctx, memberID)
	if err != nil || invite == nil {
		return "", cmp.Or(err, error(ErrNoRoom))
	}
	version, err := e.outOfRoomVersion(ctx, invite)
	if err != nil {
		return "", err
	}
	if evID := EventIDOf(version, raw); evID == invite.ID {
		return evID, nil // received again
	}
	if invite.Membership() != "invite" {
		return "", ErrNoRoom
	}
	ev, err := e.parseRemote(ctx, version, raw)
	if err != nil {
		return "", err
	}
	switch {
	case ev.RoomID != roomID || ev.Membership() != "leave" || ev.StateKey == nil || *ev.StateKey != string(invitee):
		return ev.ID, mxhttp.BadJSON("the event is not %s's leave of %s", invitee, roomID)
	case ev.Sender != invite.Sender || ev.Sender.Homeserver() != origin:
		return ev.ID, mxhttp.Forbidden("only %s, who invited %s, may withdraw the invite", invite.Sender, invitee)
	case !slices.Contains(ev.PDU.AuthEvents, invite.ID):
		return ev.ID, mxhttp.Forbidden("the leave does not follow %s's invite", invitee)
	}
	return ev.ID, e.storeOutOfRoom(ctx, version, ev, nil)
}

// outOfRoomVersion returns the version of a room this node is not in, as
// a local user's membership event in it (an invite, or the leave after
// one) tells: the version the invite's stripped create event names, or
// else the newest supported version under which the event's ID is its
// own (event IDs differ from room version 4 on; later versions agree on
// what a member event's checks need).
func (e *Engine) outOfRoomVersion(ctx context.Context, invite *Event) (id.RoomVersion, error) {
	stripped, err := e.InviteState(ctx, invite.ID)
	if err != nil {
		return "", err
	}
	for _, raw := range stripped {
		if gjson.GetBytes(raw, "type").Str == "m.room.create" {
			v := id.RoomVersion(cmp.Or(gjson.GetBytes(raw, "content.room_version").Str, "1"))
			if usesV1Format(v) || !IsSupported(v) {
				return "", incompatibleRoomVersion(v)
			}
			return v, nil
		}
	}
	for _, v := range slices.Backward(SupportedVersions) {
		if !usesV1Format(v) && EventIDOf(v, invite.JSON) == invite.ID {
			return v, nil
		}
	}
	return "", mxhttp.NotFound("the version of room %s is not known here", invite.RoomID)
}
