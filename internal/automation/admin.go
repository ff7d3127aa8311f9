package automation

import (
	"errors"
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

const adminPrefix = "/_matrixos/admin/v1/automation/rooms/{roomId}/rules"

// RuleView is a rule as the admin API shows it.
type RuleView struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Author string `json:"author"`
	Rule   *Rule  `json:"rule"`
	// Webhook is the secret path of a webhook rule.
	Webhook string `json:"webhook,omitempty"`
	LastRun int64  `json:"last_run,omitempty"`
}

// Routes registers the incoming webhooks and the admin endpoints:
//
//	POST   /_matrixos/automation/v1/hooks/{hookId}/{secret}           runs a webhook rule
//	GET    /_matrixos/admin/v1/automation/rooms/{roomId}/rules        a room's rules (both sources)
//	PUT    /_matrixos/admin/v1/automation/rooms/{roomId}/rules/{name} sets an admin rule
//	DELETE /_matrixos/admin/v1/automation/rooms/{roomId}/rules/{name} removes it
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+hookPrefix+"{hookId}/{secret}", mxhttp.Handle(s.postHook))
	mux.HandleFunc("GET "+adminPrefix, s.admin(s.getRules))
	mux.HandleFunc("PUT "+adminPrefix+"/{name}", s.admin(s.putRule))
	mux.HandleFunc("DELETE "+adminPrefix+"/{name}", s.admin(s.deleteRule))
}

type adminHandler func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error)

// admin checks the caller is a server admin and the room exists.
func (s *Service) admin(h adminHandler) http.HandlerFunc {
	return s.opts.Accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if !sess.IsAdmin {
			return nil, mxhttp.Forbidden("you are not a server admin")
		}
		roomID, err := mxhttp.RoomIDParam(r)
		if err != nil {
			return nil, err
		}
		if _, err := s.opts.Rooms.Version(r.Context(), roomID); errors.Is(err, rooms.ErrNoRoom) {
			return nil, mxhttp.NotFound("this node does not know room %s", roomID)
		} else if err != nil {
			return nil, err
		}
		return h(w, r, sess)
	})
}

func (s *Service) views(rules []*storedRule) []RuleView {
	out := make([]RuleView, 0, len(rules))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rules {
		v := RuleView{Name: r.Name, Source: r.Source, Author: string(r.Author), Rule: r.Rule}
		if r.HookID != "" {
			v.Webhook = WebhookPath(r.HookID, r.HookSecret)
		}
		if r.Rule.Trigger.Type == TriggerSchedule {
			v.LastRun = r.LastRun.UnixMilli()
		}
		out = append(out, v)
	}
	return out
}

func (s *Service) getRules(w http.ResponseWriter, r *http.Request, _ *accounts.Session) (any, error) {
	roomID, _ := mxhttp.RoomIDParam(r)
	return map[string]any{"rules": s.views(s.roomRules(roomID))}, nil
}

func (s *Service) putRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, _ := mxhttp.RoomIDParam(r)
	body, err := mxhttp.ReadBody(r, maxRuleBytes)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	if _, err := ParseRule(name, body); err != nil {
		return nil, mxhttp.InvalidParam("%v", err)
	}
	rule, err := s.SetRule(r.Context(), roomID, SourceAdmin, name, sess.UserID, body)
	if err != nil {
		return nil, err
	}
	return s.views([]*storedRule{rule})[0], nil
}

func (s *Service) deleteRule(w http.ResponseWriter, r *http.Request, _ *accounts.Session) (any, error) {
	roomID, _ := mxhttp.RoomIDParam(r)
	ok, err := s.RemoveRule(r.Context(), roomID, SourceAdmin, r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("no such rule")
	}
	return mxhttp.Empty, nil
}
