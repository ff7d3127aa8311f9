package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/admin"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

const adminPrefix = "/_matrixos/admin/v1/moderation"

// Routes registers the admin API (server admins only):
//
//	GET    /_matrixos/admin/v1/moderation                      settings, list room, classifier
//	PUT    /_matrixos/admin/v1/moderation                      {moderators_room, policy_lists}
//	PUT    /_matrixos/admin/v1/moderation/rules/{kind}/{entity} {reason}: publish a ban rule
//	DELETE /_matrixos/admin/v1/moderation/rules/{kind}/{entity} withdraw it
//	GET    /_matrixos/admin/v1/moderation/actions?limit=       the action log, newest first
//	POST   /_matrixos/admin/v1/moderation/actions/{id}/undo    undo an action
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+adminPrefix, s.admin(s.getSettings))
	mux.HandleFunc("PUT "+adminPrefix, s.admin(s.putSettings))
	mux.HandleFunc("PUT "+adminPrefix+"/rules/{kind}/{entity}", s.admin(s.putRule))
	mux.HandleFunc("DELETE "+adminPrefix+"/rules/{kind}/{entity}", s.admin(s.deleteRule))
	mux.HandleFunc("GET "+adminPrefix+"/actions", s.admin(s.listActions))
	mux.HandleFunc("POST "+adminPrefix+"/actions/{id}/undo", s.admin(s.undoAction))
}

func (s *Service) admin(h accounts.AuthedHandler) http.HandlerFunc {
	return s.opts.Accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if !sess.IsAdmin {
			return nil, mxhttp.Forbidden("you are not a server admin")
		}
		s.log.Info("admin API call", "admin", sess.UserID, "method", r.Method, "path", r.URL.Path)
		return h(w, r, sess)
	})
}

// locked runs f with the follower paused and the settings loaded.
func (s *Service) locked(ctx context.Context, f func() (any, error)) (any, error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return f()
}

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request, _ *accounts.Session) (any, error) {
	return s.locked(r.Context(), func() (any, error) {
		ham, spam := s.ClassifierDocs()
		protected := make([]id.RoomID, 0, len(s.configs))
		for r := range s.configs {
			protected = append(protected, r)
		}
		slices.Sort(protected)
		return map[string]any{
			"bot": s.Bot(), "moderators_room": s.settings.ModeratorsRoom, "policy_lists": orEmpty(s.settings.PolicyLists),
			"list_room": s.settings.ListRoom, "protected_rooms": protected,
			"classifier":          map[string]int64{"ham": ham, "spam": spam, "vocabulary": int64(s.classifierVocabulary())},
			"remembered_messages": s.remembered(),
		}, nil
	})
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Service) putSettings(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		ModeratorsRoom id.RoomID   `json:"moderators_room"`
		PolicyLists    []id.RoomID `json:"policy_lists"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ModeratorsRoom != "" && !validRoomID(req.ModeratorsRoom) {
		return nil, mxhttp.InvalidParam("moderators_room %q is not a room ID", req.ModeratorsRoom)
	}
	if len(req.PolicyLists) > maxListEntries {
		return nil, mxhttp.InvalidParam("policy_lists: more than %d rooms", maxListEntries)
	}
	for _, l := range req.PolicyLists {
		if !validRoomID(l) {
			return nil, mxhttp.InvalidParam("policy_lists: %q is not a room ID", l)
		}
	}
	return s.locked(r.Context(), func() (any, error) {
		s.settings.ModeratorsRoom, s.settings.PolicyLists = req.ModeratorsRoom, req.PolicyLists
		if err := s.saveSettings(r.Context()); err != nil {
			return nil, err
		}
		s.log.Info("moderation: settings changed", "admin", sess.UserID, "moderators_room", req.ModeratorsRoom, "policy_lists", req.PolicyLists)
		if err := s.enforceAll(r.Context()); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	})
}

func (s *Service) saveSettings(ctx context.Context) error {
	if err := s.setSetting(ctx, "settings", mustJSON(s.settings)); err != nil {
		return err
	}
	return s.writeWatch(ctx)
}

// enforceAll joins the rooms the settings name and applies the lists to
// every protected room.
func (s *Service) enforceAll(ctx context.Context) error {
	rooms := slices.Clone(s.settings.PolicyLists)
	if s.settings.ModeratorsRoom != "" {
		rooms = append(rooms, s.settings.ModeratorsRoom)
	}
	s.joinAll(ctx, rooms)
	if err := s.refreshRoomBans(ctx); err != nil {
		return err
	}
	for roomID := range s.configs {
		if err := s.enforce(ctx, roomID); err != nil {
			return err
		}
	}
	return nil
}

// ruleParams reads {kind} and {entity}.
func ruleParams(r *http.Request) (kind, entity string, err error) {
	kind, entity = r.PathValue("kind"), r.PathValue("entity")
	if kind != KindUser && kind != KindRoom && kind != KindServer {
		return "", "", mxhttp.InvalidParam("kind must be user, room or server, not %q", kind)
	}
	if entity == "" || len(entity) > maxEntryLen {
		return "", "", mxhttp.InvalidParam("the entity must be non-empty and at most %d bytes", maxEntryLen)
	}
	return kind, entity, nil
}

func (s *Service) putRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, entity, err := ruleParams(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if kind == KindServer && bansServer(entity, s.opts.Accounts.ServerName()) {
		return nil, mxhttp.InvalidParam("the rule would ban this server, %s", s.opts.Accounts.ServerName())
	}
	content := map[string]string{"entity": entity, "recommendation": RecommendationBan, "reason": req.Reason}
	return s.publish(r.Context(), sess.UserID, kind, entity, content)
}

func (s *Service) deleteRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, entity, err := ruleParams(r)
	if err != nil {
		return nil, err
	}
	return s.publish(r.Context(), sess.UserID, kind, entity, map[string]string{})
}

// publish sends a rule (or, with empty content, its removal) to the
// node's own policy list room, created on the first rule. The follower
// applies it like any list's rule.
func (s *Service) publish(ctx context.Context, by id.UserID, kind, entity string, content map[string]string) (any, error) {
	out, err := s.locked(ctx, func() (any, error) {
		list, err := s.listRoom(ctx)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(content)
		sk := "rule:" + entity
		ev, err := s.opts.Rooms.Send(ctx, list, rooms.Proto{Type: RuleType(kind), StateKey: &sk, Sender: s.Bot(), Content: b})
		if err != nil {
			return nil, fmt.Errorf("publish policy rule: %w", err)
		}
		s.log.Info("moderation: policy rule published", "admin", by, "kind", kind, "entity", entity, "removed", len(content) == 0, "list_room", list)
		return map[string]any{"list_room": list, "event_id": ev.ID}, nil
	})
	s.wakeUp()
	return out, err
}

// listRoom returns the node's policy list room, creating it: a public
// room where only the moderation user may post, so other rooms and
// servers can follow it.
func (s *Service) listRoom(ctx context.Context) (id.RoomID, error) {
	if s.settings.ListRoom != "" {
		return s.settings.ListRoom, nil
	}
	if err := s.ensureBot(ctx); err != nil {
		return "", err
	}
	bot := s.Bot()
	users := map[id.UserID]int{bot: 100}
	if s.opts.RoomVersion.PrivilegedRoomCreators() {
		users = map[id.UserID]int{}
	}
	var protos []rooms.Proto
	add := func(typ, sk string, content any) {
		b, _ := json.Marshal(content)
		protos = append(protos, rooms.Proto{Type: typ, StateKey: &sk, Sender: bot, Content: b})
	}
	add("m.room.member", string(bot), map[string]string{"membership": "join", "displayname": "Moderation"})
	add("m.room.power_levels", "", map[string]any{"users": users, "users_default": 0, "events_default": 50, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 50})
	add("m.room.join_rules", "", map[string]string{"join_rule": "public"})
	add("m.room.history_visibility", "", map[string]string{"history_visibility": "shared"})
	add("m.room.name", "", map[string]string{"name": "Policy list of " + s.opts.Accounts.ServerName()})
	roomID, _, err := s.opts.Rooms.CreateRoom(ctx, s.opts.RoomVersion, bot, nil, protos)
	if err != nil {
		return "", fmt.Errorf("create the policy list room: %w", err)
	}
	s.settings.ListRoom = roomID
	if err := s.saveSettings(ctx); err != nil {
		return "", err
	}
	s.log.Info("moderation: policy list room created", "room_id", roomID)
	return roomID, nil
}

func (s *Service) listActions(w http.ResponseWriter, r *http.Request, _ *accounts.Session) (any, error) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, mxhttp.InvalidParam("limit must be between 1 and 1000")
		}
		limit = n
	}
	acts, err := s.Actions(r.Context(), limit)
	if err != nil {
		return nil, err
	}
	return map[string]any{"actions": orEmpty(acts)}, nil
}

func (s *Service) undoAction(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || n < 1 {
		return nil, mxhttp.InvalidParam("the action ID must be a positive integer")
	}
	return s.locked(r.Context(), func() (any, error) {
		acts, err := s.queryActions(r.Context(), "SELECT "+actionColumns+" FROM moderation_actions WHERE id = $1", n)
		if err != nil {
			return nil, err
		}
		if len(acts) == 0 {
			return nil, mxhttp.NotFound("no such action")
		}
		if !undoable(acts[0].Action) {
			return nil, mxhttp.InvalidParam("a %s cannot be undone", acts[0].Action)
		}
		if err := s.undo(r.Context(), acts[0], sess.UserID); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	})
}

// ReportToModerators queues a user's report (admin.Service.OnReport) for
// the follower, which posts it to the moderators' room of the reported
// room, or the node's. It never waits: /report does not hold up on a step
// in progress, and a report past the queue's bound is kept for the admin
// API only (logged).
func (s *Service) ReportToModerators(_ context.Context, rep admin.Report) {
	select {
	case s.reports <- rep:
		s.wakeUp()
	default:
		s.log.Warn("moderation: report not posted: too many reports waiting", "report_id", rep.ID)
	}
}

// postReports posts the queued reports; the caller holds stepMu.
func (s *Service) postReports(ctx context.Context) {
	for {
		select {
		case rep := <-s.reports:
			s.postReport(ctx, rep)
		default:
			return
		}
	}
}

// postReport posts one user's report to the moderators' room.
func (s *Service) postReport(ctx context.Context, rep admin.Report) {
	var text string
	switch rep.Kind {
	case admin.KindEvent:
		text = fmt.Sprintf("Report %d: %s reported event %s by %s in %s", rep.ID, rep.Reporter, rep.EventID, rep.TargetUser, rep.RoomID)
	case admin.KindRoom:
		text = fmt.Sprintf("Report %d: %s reported the room %s", rep.ID, rep.Reporter, rep.RoomID)
	default:
		text = fmt.Sprintf("Report %d: %s reported the user %s", rep.ID, rep.Reporter, rep.TargetUser)
	}
	if rep.Reason != "" {
		text += ": " + excerpt(rep.Reason)
	}
	meta := map[string]any{"report_id": rep.ID, "kind": rep.Kind, "reporter": rep.Reporter,
		"room_id": rep.RoomID, "event_id": rep.EventID, "target": rep.TargetUser}
	if s.notifyModerators(ctx, s.configs[rep.RoomID], text, meta) == "" {
		s.log.Info("moderation: report not posted: no moderators' room", "report_id", rep.ID)
	}
}
