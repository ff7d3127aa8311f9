package clientapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// transferredState are the state events (state key "") an upgrade copies
// into the replacement room, after the power levels.
var transferredState = []string{
	"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.room.pinned_events",
	"m.room.canonical_alias",
}

// plLevelKeys are the power level content's single levels; plMapKeys its
// maps of levels.
var (
	plLevelKeys = []string{"ban", "kick", "redact", "invite", "events_default", "state_default", "users_default"}
	plMapKeys   = []string{"events", "users", "notifications"}
)

type upgradeRequest struct {
	NewVersion         id.RoomVersion `json:"new_version"`
	AdditionalCreators []id.UserID    `json:"additional_creators"`
}

// upgradeRoom serves POST /rooms/{roomId}/upgrade: it creates a
// replacement room of the new version that points back to the old one,
// copies the transferable state, moves the local aliases and the directory
// listing, then tombstones the old room and restricts who may speak there.
func (s *Service) upgradeRoom(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req upgradeRequest
	roomID, err := s.roomIDAndBody(r, &req)
	if err != nil {
		return nil, err
	}
	if req.NewVersion == "" {
		return nil, mxhttp.MissingParam("missing new_version")
	}
	if !rooms.IsSupported(req.NewVersion) {
		return nil, mxhttp.UnsupportedRoomV("room version %q is not supported", req.NewVersion)
	}
	for _, u := range req.AdditionalCreators {
		if _, _, err := u.Parse(); err != nil {
			return nil, mxhttp.InvalidParam("invalid user ID in additional_creators: %q", u)
		}
	}
	ctx := r.Context()
	oldVersion, err := s.rooms.Version(ctx, roomID)
	if err != nil || s.rooms.Membership(sess.UserID, roomID) != "join" {
		return nil, mxhttp.Forbidden("you are not in room %s", roomID)
	}
	pl, err := s.rooms.PowerLevels(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if pl.GetUserLevel(sess.UserID) < pl.GetEventLevel(stateType("m.room.tombstone")) {
		return nil, mxhttp.Forbidden("you are not allowed to upgrade this room")
	}
	state, err := s.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	current := map[string]*rooms.Event{}
	var bans []*rooms.Event
	for _, ev := range state {
		if *ev.StateKey == "" {
			current[ev.Type] = ev
		}
		if ev.Type == "m.room.member" && ev.Membership() == "ban" {
			bans = append(bans, ev)
		}
	}
	createContent, err := s.replacementCreate(ctx, roomID, req, current["m.room.create"])
	if err != nil {
		return nil, err
	}
	protos := s.replacementState(ctx, sess, oldVersion, req, current, bans)
	newRoom, _, err := s.rooms.CreateRoom(ctx, req.NewVersion, sess.UserID, createContent, protos)
	if err != nil {
		return nil, err
	}
	if err := s.moveDirectory(ctx, roomID, newRoom); err != nil {
		return nil, err
	}
	empty := ""
	if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{
		Type: "m.room.tombstone", StateKey: &empty, Sender: sess.UserID,
		Content: mustJSON(map[string]any{"body": "This room has been replaced", "replacement_room": newRoom}),
	}); err != nil {
		return nil, err
	}
	s.retireOldRoom(ctx, sess.UserID, roomID, current)
	return map[string]any{"replacement_room": newRoom}, nil
}

// replacementCreate is the new room's m.room.create content: the
// predecessor, the room type and federation flag carried over, and the
// additional creators where the new version has them.
func (s *Service) replacementCreate(ctx context.Context, oldRoom id.RoomID, req upgradeRequest, oldCreate *rooms.Event) (map[string]any, error) {
	predecessor := map[string]any{"room_id": oldRoom}
	if !req.NewVersion.PrivilegedRoomCreators() {
		// Before v12 the predecessor names the old room's last event.
		last, err := s.rooms.LatestEventID(ctx, oldRoom)
		if err != nil {
			return nil, err
		}
		predecessor["event_id"] = last
	}
	content := map[string]any{"predecessor": predecessor}
	if oldCreate != nil {
		var old map[string]json.RawMessage
		json.Unmarshal(oldCreate.Content(), &old)
		for _, k := range []string{"type", "m.federate"} {
			if v, ok := old[k]; ok {
				content[k] = v
			}
		}
	}
	if req.NewVersion.PrivilegedRoomCreators() && len(req.AdditionalCreators) > 0 {
		content["additional_creators"] = req.AdditionalCreators
	}
	return content, nil
}

// replacementState lists the events that follow the new room's create
// event: the upgrader's join, the power levels (with the upgrader raised
// while the state is copied, where creators are not privileged), the
// transferred state, the bans, and the final power levels.
func (s *Service) replacementState(ctx context.Context, sess *accounts.Session, oldVersion id.RoomVersion, req upgradeRequest,
	current map[string]*rooms.Event, bans []*rooms.Event) []rooms.Proto {
	var protos []rooms.Proto
	add := func(typ string, sk string, content json.RawMessage) {
		protos = append(protos, rooms.Proto{Type: typ, StateKey: &sk, Sender: sess.UserID, Content: content})
	}
	member := s.creatorMember(ctx, sess.UserID)
	add("m.room.member", string(sess.UserID), mustJSON(member))

	// Without power levels the old room's creator had 100.
	final := map[string]any{"users": map[string]any{string(sess.UserID): int64(100)}}
	if ev := current["m.room.power_levels"]; ev != nil {
		final = normalizePowerLevels(ev.Content())
	}
	users, _ := final["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	final["users"] = users
	if oldVersion.PrivilegedRoomCreators() && !req.NewVersion.PrivilegedRoomCreators() {
		// The old room's creators keep their power as plain levels.
		for _, c := range creators(current["m.room.create"]) {
			users[string(c)] = max(levelOf(users[string(c)]), 100)
		}
	}
	initial := final
	if req.NewVersion.PrivilegedRoomCreators() {
		delete(users, string(sess.UserID))
		for _, c := range req.AdditionalCreators {
			delete(users, string(c))
		}
	} else if need := maxLevel(final); levelOf(users[string(sess.UserID)]) < need {
		initial = clonePowerLevels(final)
		initial["users"].(map[string]any)[string(sess.UserID)] = need
	}
	add("m.room.power_levels", "", mustJSON(initial))
	for _, t := range transferredState {
		if ev := current[t]; ev != nil {
			add(t, "", ev.Content())
		}
	}
	for _, ban := range bans {
		if *ban.StateKey == string(sess.UserID) {
			continue
		}
		content := map[string]any{"membership": "ban"}
		var c struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(ban.Content(), &c) == nil && c.Reason != "" {
			content["reason"] = c.Reason
		}
		add("m.room.member", *ban.StateKey, mustJSON(content))
	}
	if !jsonEqual(mustJSON(initial), mustJSON(final)) {
		add("m.room.power_levels", "", mustJSON(final))
	}
	return protos
}

// creators lists a v12+ room's creators (sender and additional creators).
func creators(create *rooms.Event) []id.UserID {
	if create == nil {
		return nil
	}
	out := []id.UserID{create.Sender}
	var c struct {
		AdditionalCreators []id.UserID `json:"additional_creators"`
	}
	json.Unmarshal(create.Content(), &c)
	return append(out, c.AdditionalCreators...)
}

// normalizePowerLevels decodes power levels content with every level as an
// integer (old room versions allowed strings) and drops unusable values.
func normalizePowerLevels(raw json.RawMessage) map[string]any {
	var in map[string]any
	json.Unmarshal(raw, &in)
	out := map[string]any{}
	for k, v := range in {
		out[k] = v
	}
	for _, k := range plLevelKeys {
		if v, ok := in[k]; ok {
			if n, ok := toLevel(v); ok {
				out[k] = n
			} else {
				delete(out, k)
			}
		}
	}
	for _, k := range plMapKeys {
		m, ok := in[k].(map[string]any)
		if !ok {
			delete(out, k)
			continue
		}
		nm := map[string]any{}
		for mk, mv := range m {
			if n, ok := toLevel(mv); ok {
				nm[mk] = n
			}
		}
		out[k] = nm
	}
	return out
}

func toLevel(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53-1 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func levelOf(v any) int64 {
	n, _ := toLevel(v)
	return n
}

// maxLevel is the highest level the content requires for anything (at
// least 100), which lets its holder send every event while copying state.
func maxLevel(pl map[string]any) int64 {
	need := int64(100)
	for _, k := range plLevelKeys {
		need = max(need, levelOf(pl[k]))
	}
	for _, k := range []string{"events", "notifications"} {
		if m, ok := pl[k].(map[string]any); ok {
			for _, v := range m {
				need = max(need, levelOf(v))
			}
		}
	}
	return need
}

func clonePowerLevels(pl map[string]any) map[string]any {
	out := make(map[string]any, len(pl))
	for k, v := range pl {
		if m, ok := v.(map[string]any); ok {
			nm := make(map[string]any, len(m))
			for mk, mv := range m {
				nm[mk] = mv
			}
			v = nm
		}
		out[k] = v
	}
	return out
}

// moveDirectory moves the old room's local aliases and directory listing
// to the new room.
func (s *Service) moveDirectory(ctx context.Context, oldRoom, newRoom id.RoomID) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE room_aliases SET room_id = $1 WHERE room_id = $2", newRoom, oldRoom); err != nil {
			return err
		}
		var published bool
		if err := tx.QueryRow(ctx, "SELECT published FROM rooms WHERE room_id = $1", oldRoom).Scan(&published); err != nil {
			return err
		}
		if !published {
			return nil
		}
		if _, err := tx.Exec(ctx, "UPDATE rooms SET published = TRUE WHERE room_id = $1", newRoom); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE rooms SET published = FALSE WHERE room_id = $1", oldRoom)
		return err
	})
}

// retireOldRoom clears the old room's canonical alias (its aliases moved)
// and raises the levels needed to speak and invite there. Both are best
// effort: the upgrader may lack the power.
func (s *Service) retireOldRoom(ctx context.Context, user id.UserID, roomID id.RoomID, current map[string]*rooms.Event) {
	empty := ""
	if ev := current["m.room.canonical_alias"]; ev != nil && !jsonEqual(ev.Content(), json.RawMessage("{}")) {
		if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.canonical_alias", StateKey: &empty, Sender: user, Content: json.RawMessage("{}")}); err != nil {
			s.log.Info("upgrade: could not clear the old room's canonical alias", "room_id", roomID, "err", err)
		}
	}
	ev := current["m.room.power_levels"]
	if ev == nil {
		return
	}
	pl := normalizePowerLevels(ev.Content())
	restricted := max(int64(50), levelOf(pl["users_default"])+1)
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		if levelOf(pl[k]) < restricted {
			pl[k] = restricted
			changed = true
		}
	}
	if !changed {
		return
	}
	if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.power_levels", StateKey: &empty, Sender: user, Content: mustJSON(pl)}); err != nil {
		s.log.Info("upgrade: could not restrict the old room's power levels", "room_id", roomID, "err", err)
	}
}
