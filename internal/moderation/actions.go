package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Actions, as logged in moderation_actions.
const (
	ActionBan    = "ban"
	ActionUnban  = "unban"
	ActionRedact = "redact"
	ActionMute   = "mute"
	ActionACL    = "server_acl"
	ActionFlag   = "flag"
	ActionKick   = "kick"
)

// Action is one logged moderator action of the moderation user.
type Action struct {
	ID     int64     `json:"id"`
	TS     int64     `json:"ts"`
	RoomID id.RoomID `json:"room_id"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// EventID is the event acted on (a redacted message), if any.
	EventID id.EventID `json:"event_id,omitempty"`
	Reason  string     `json:"reason"`
	// Rule names the policy rule that caused it (list room, type,
	// state key), if any.
	Rule string `json:"rule,omitempty"`
	// Detail is what undoing needs: a redacted message's body, a muted
	// user's earlier power level.
	Detail string `json:"-"`
	// ReportEvent is the report in the moderators' room; a moderator's
	// UndoKey reaction to it undoes the action.
	ReportEvent id.EventID `json:"report_event,omitempty"`
	Undone      bool       `json:"undone"`
}

// errNoPower is the error of an action the moderation user lacks the
// power level for.
type errNoPower struct {
	action string
	room   id.RoomID
	need   int
	has    int
}

func (e *errNoPower) Error() string {
	return fmt.Sprintf("the moderation user may not %s in %s: it has power level %d and needs %d", e.action, e.room, e.has, e.need)
}

// mayAct checks that the moderation user is joined to the room with the
// power level need picks from the room's power levels.
func (s *Service) mayAct(ctx context.Context, roomID id.RoomID, action string, need func(*event.PowerLevelsEventContent) int) (*event.PowerLevelsEventContent, error) {
	if s.opts.Rooms.Membership(s.Bot(), roomID) != "join" {
		return nil, fmt.Errorf("the moderation user may not %s in %s: it is not in the room; invite it", action, roomID)
	}
	pl, err := s.opts.Rooms.PowerLevels(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("read power levels of %s: %w", roomID, err)
	}
	if has, n := pl.GetUserLevel(s.Bot()), need(pl); has < n {
		return nil, &errNoPower{action: action, room: roomID, need: n, has: has}
	}
	return pl, nil
}

func banLevel(pl *event.PowerLevelsEventContent) int    { return pl.Ban() }
func redactLevel(pl *event.PowerLevelsEventContent) int { return pl.Redact() }
func kickLevel(pl *event.PowerLevelsEventContent) int   { return pl.Kick() }
func stateLevel(evType string) func(*event.PowerLevelsEventContent) int {
	return func(pl *event.PowerLevelsEventContent) int {
		return pl.GetEventLevel(event.Type{Type: evType, Class: event.StateEventType})
	}
}

// refused logs an action the moderation user could not take and tells
// the moderators' room what it meant to do (what: the action, its
// target and the protection or rule with its reason) and why it could
// not, so a missing power level is seen, not silent.
func (s *Service) refused(ctx context.Context, roomID id.RoomID, what string, err error) {
	s.log.Warn("moderation: action refused", "room_id", roomID, "action", what, "err", err)
	s.notifyModerators(ctx, s.configs[roomID], "⚠️ Could not "+what+": "+err.Error()+".", nil)
}

// protectionNames are the protections as notices name them.
var protectionNames = map[string]string{
	"flood":         "the flood protection",
	"mentions":      "the mention-spam protection",
	"words":         "the word filter",
	"blocked_links": "the link filter",
	"new_accounts":  "the new-account limit",
	"first_message": "the first-message limit",
	"classifier":    "the spam classifier",
}

// protectionName names a protection for a notice.
func protectionName(p string) string {
	if n, ok := protectionNames[p]; ok {
		return n
	}
	return "the " + p + " protection"
}

// setMembership sends a membership event as the moderation user.
func (s *Service) setMembership(ctx context.Context, roomID id.RoomID, user id.UserID, membership, reason string) error {
	b, _ := json.Marshal(map[string]string{"membership": membership, "reason": reason})
	sk := string(user)
	_, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: s.Bot(), Content: b})
	return err
}

// ban bans a user from a room and logs it.
func (s *Service) ban(ctx context.Context, roomID id.RoomID, user id.UserID, reason, rule string) (*Action, error) {
	pl, err := s.mayAct(ctx, roomID, "ban", banLevel)
	if err != nil {
		return nil, err
	}
	if pl.GetUserLevel(user) >= pl.GetUserLevel(s.Bot()) {
		return nil, fmt.Errorf("the moderation user may not ban %s in %s: their power level is not below its own", user, roomID)
	}
	if err := s.setMembership(ctx, roomID, user, "ban", reason); err != nil {
		return nil, fmt.Errorf("ban %s from %s: %w", user, roomID, err)
	}
	return s.logAction(ctx, Action{RoomID: roomID, Action: ActionBan, Target: string(user), Reason: reason, Rule: rule})
}

// unban lifts a ban (the user may join again) and logs it.
func (s *Service) unban(ctx context.Context, roomID id.RoomID, user id.UserID, reason string) error {
	if _, err := s.mayAct(ctx, roomID, "unban", banLevel); err != nil {
		return err
	}
	if s.opts.Rooms.Membership(user, roomID) != "ban" {
		return nil
	}
	if err := s.setMembership(ctx, roomID, user, "leave", reason); err != nil {
		return fmt.Errorf("unban %s in %s: %w", user, roomID, err)
	}
	_, err := s.logAction(ctx, Action{RoomID: roomID, Action: ActionUnban, Target: string(user), Reason: reason})
	return err
}

// redact redacts an event and logs it; body is kept so that the action
// can be undone (the message sent again).
func (s *Service) redact(ctx context.Context, roomID id.RoomID, evID id.EventID, sender id.UserID, reason, body string) (*Action, error) {
	if _, err := s.mayAct(ctx, roomID, "redact", redactLevel); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(map[string]string{"reason": reason})
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.redaction", Sender: s.Bot(), Redacts: evID, Content: b,
		TxnID: "moderation/redact/" + string(evID)}); err != nil {
		return nil, fmt.Errorf("redact %s in %s: %w", evID, roomID, err)
	}
	return s.logAction(ctx, Action{RoomID: roomID, Action: ActionRedact, Target: string(sender), EventID: evID, Reason: reason, Detail: body})
}

// mute lowers a user's power level below events_default and logs it,
// with the earlier level kept so the mute can be undone.
func (s *Service) mute(ctx context.Context, roomID id.RoomID, user id.UserID, reason string) (*Action, error) {
	pl, err := s.mayAct(ctx, roomID, "change power levels", stateLevel("m.room.power_levels"))
	if err != nil {
		return nil, err
	}
	before := pl.GetUserLevel(user)
	if before >= pl.GetUserLevel(s.Bot()) {
		return nil, fmt.Errorf("the moderation user may not mute %s in %s: their power level is not below its own", user, roomID)
	}
	if err := s.setUserLevel(ctx, roomID, pl, user, pl.EventsDefault-1); err != nil {
		return nil, err
	}
	return s.logAction(ctx, Action{RoomID: roomID, Action: ActionMute, Target: string(user), Reason: reason, Detail: strconv.Itoa(before)})
}

// kick removes a user from a room (they may join again) and logs it.
func (s *Service) kick(ctx context.Context, roomID id.RoomID, user id.UserID, reason string) (*Action, error) {
	pl, err := s.mayAct(ctx, roomID, "kick", kickLevel)
	if err != nil {
		return nil, err
	}
	if pl.GetUserLevel(user) >= pl.GetUserLevel(s.Bot()) {
		return nil, fmt.Errorf("the moderation user may not kick %s in %s: their power level is not below its own", user, roomID)
	}
	if err := s.setMembership(ctx, roomID, user, "leave", reason); err != nil {
		return nil, fmt.Errorf("kick %s from %s: %w", user, roomID, err)
	}
	return s.logAction(ctx, Action{RoomID: roomID, Action: ActionKick, Target: string(user), Reason: reason})
}

// setUserLevel sends the room's power levels with one user's changed.
func (s *Service) setUserLevel(ctx context.Context, roomID id.RoomID, pl *event.PowerLevelsEventContent, user id.UserID, level int) error {
	pl = pl.Clone()
	pl.SetUserLevel(user, level)
	b, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	sk := ""
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.power_levels", StateKey: &sk, Sender: s.Bot(), Content: b}); err != nil {
		return fmt.Errorf("set the power level of %s in %s: %w", user, roomID, err)
	}
	return nil
}

// sendNotice sends an m.notice as the moderation user.
func (s *Service) sendNotice(ctx context.Context, roomID id.RoomID, text string) error {
	b, _ := json.Marshal(map[string]any{"msgtype": "m.notice", "body": text})
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: s.Bot(), Content: b}); err != nil {
		return fmt.Errorf("send a notice to %s: %w", roomID, err)
	}
	return nil
}

// warn tells a user in the room why the moderation user acted.
func (s *Service) warn(ctx context.Context, roomID id.RoomID, user id.UserID, text string) {
	b, _ := json.Marshal(map[string]any{"msgtype": "m.notice", "body": string(user) + ": " + text,
		"m.mentions": map[string]any{"user_ids": []id.UserID{user}}})
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: s.Bot(), Content: b}); err != nil {
		s.log.Warn("moderation: warning not sent", "room_id", roomID, "user_id", user, "err", err)
	}
}

// notifyModerators posts a notice to the moderators' room of a protected
// room (or the node's) and returns its event ID; "" when there is no
// moderators' room or the moderation user cannot post there (logged).
func (s *Service) notifyModerators(ctx context.Context, cfg *Config, text string, meta map[string]any) id.EventID {
	room := s.moderatorsRoom(cfg)
	if room == "" {
		return ""
	}
	if err := s.join(ctx, room); err != nil {
		s.log.Warn("moderation: the moderators' room is closed to the moderation user; invite it", "room_id", room, "err", err)
		return ""
	}
	content := map[string]any{"msgtype": "m.notice", "body": text}
	if meta != nil {
		content["org.matrixos.moderation"] = meta
	}
	b, _ := json.Marshal(content)
	ev, err := s.opts.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: s.Bot(), Content: b})
	if err != nil {
		s.log.Warn("moderation: report to the moderators' room not sent", "room_id", room, "err", err)
		return ""
	}
	return ev.ID
}

// report posts an action to the moderators' room with the way to undo
// it, and remembers the report so that a moderator's UndoKey reaction to
// it undoes the action.
func (s *Service) report(ctx context.Context, a *Action, text string) {
	undo := ""
	if undoable(a.Action) {
		undo = fmt.Sprintf(" Undo: react with %s to this message, or send \"!assistant mod undo %d\" in %s.", UndoKey, a.ID, a.RoomID)
	}
	reportID := s.notifyModerators(ctx, s.configs[a.RoomID], text+undo, map[string]any{"action": a.Action, "action_id": a.ID,
		"room_id": a.RoomID, "target": a.Target, "event_id": a.EventID})
	if reportID == "" {
		return
	}
	a.ReportEvent = reportID
	err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE moderation_actions SET report_event = $1 WHERE id = $2", reportID, a.ID)
		return err
	})
	if err != nil {
		s.log.Warn("moderation: report not recorded", "action_id", a.ID, "err", err)
	}
}

func undoable(action string) bool {
	return action == ActionBan || action == ActionRedact || action == ActionMute || action == ActionFlag
}

// logAction stores an action in the log and logs it.
func (s *Service) logAction(ctx context.Context, a Action) (*Action, error) {
	a.TS = time.Now().UnixMilli()
	err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(id), 0) + 1 FROM moderation_actions").Scan(&a.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO moderation_actions (id, ts, room_id, action, target, event_id, reason, rule, detail, report_event, undone)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', FALSE)`,
			a.ID, a.TS, a.RoomID, a.Action, a.Target, a.EventID, a.Reason, a.Rule, a.Detail)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("log moderation action: %w", err)
	}
	s.log.Info("moderation action", "action", a.Action, "room_id", a.RoomID, "target", a.Target, "event_id", a.EventID,
		"reason", a.Reason, "rule", a.Rule, "action_id", a.ID)
	return &a, nil
}

const actionColumns = "id, ts, room_id, action, target, event_id, reason, rule, detail, report_event, undone"

func scanAction(scan func(...any) error) (*Action, error) {
	var a Action
	err := scan(&a.ID, &a.TS, &a.RoomID, &a.Action, &a.Target, &a.EventID, &a.Reason, &a.Rule, &a.Detail, &a.ReportEvent, &a.Undone)
	return &a, err
}

// Actions returns the newest logged actions, newest first.
func (s *Service) Actions(ctx context.Context, limit int) ([]*Action, error) {
	return s.queryActions(ctx, "SELECT "+actionColumns+" FROM moderation_actions ORDER BY id DESC LIMIT $1", limit)
}

func (s *Service) queryActions(ctx context.Context, q string, args ...any) ([]*Action, error) {
	rows, err := s.opts.DB.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read moderation actions: %w", err)
	}
	defer rows.Close()
	var out []*Action
	for rows.Next() {
		a, err := scanAction(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("read moderation actions: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *Service) setUndone(ctx context.Context, actionID int64) error {
	return s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE moderation_actions SET undone = TRUE WHERE id = $1", actionID)
		return err
	})
}
