package push

import (
	"encoding/json"
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Routes registers the /pushrules endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const p = "/_matrix/client/v3/pushrules"
	mux.HandleFunc("GET "+p, s.acc.Auth(s.getAll))
	mux.HandleFunc("GET "+p+"/{$}", s.acc.Auth(s.getAll))
	mux.HandleFunc("GET "+p+"/global", s.acc.Auth(s.getGlobal))
	mux.HandleFunc("GET "+p+"/global/{$}", s.acc.Auth(s.getGlobal))
	mux.HandleFunc("GET "+p+"/global/{kind}/{ruleId}", s.acc.Auth(s.getRule))
	mux.HandleFunc("PUT "+p+"/global/{kind}/{ruleId}", s.acc.Auth(s.putRule))
	mux.HandleFunc("DELETE "+p+"/global/{kind}/{ruleId}", s.acc.Auth(s.deleteRule))
	mux.HandleFunc("GET "+p+"/global/{kind}/{ruleId}/enabled", s.acc.Auth(s.getEnabled))
	mux.HandleFunc("PUT "+p+"/global/{kind}/{ruleId}/enabled", s.acc.Auth(s.putEnabled))
	mux.HandleFunc("GET "+p+"/global/{kind}/{ruleId}/actions", s.acc.Auth(s.getActions))
	mux.HandleFunc("PUT "+p+"/global/{kind}/{ruleId}/actions", s.acc.Auth(s.putActions))
}

func (s *Service) getAll(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return map[string]*Ruleset{"global": s.Rules(sess.UserID)}, nil
}

func (s *Service) getGlobal(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return s.Rules(sess.UserID), nil
}

// pathRule reads {kind} and {ruleId} of a request that creates a rule, where an
// unknown kind is a bad request.
func pathRule(r *http.Request) (Kind, string, error) {
	return pathRuleOr(r, mxhttp.InvalidParam("unknown push rule kind %q", r.PathValue("kind")))
}

// existingRulePath reads {kind} and {ruleId} of a request about a rule that must
// exist. No rule exists in an unknown kind, so the answer is the spec's 404 for a
// missing rule: clients probe for optional rules of kinds a server may not know
// (MSC4306's postcontent) and take any other status as the rule's existence.
func existingRulePath(r *http.Request) (Kind, string, error) {
	return pathRuleOr(r, errRuleNotFound)
}

// pathRuleOr reads {kind} and {ruleId}, answering unknownKind for a kind it does not know.
func pathRuleOr(r *http.Request, unknownKind error) (Kind, string, error) {
	kind, ok := ParseKind(r.PathValue("kind"))
	if !ok {
		return "", "", unknownKind
	}
	ruleID := r.PathValue("ruleId")
	if ruleID == "" {
		return "", "", mxhttp.InvalidParam("missing rule ID")
	}
	return kind, ruleID, nil
}

// findRule returns an existing rule of the user.
func (s *Service) findRule(r *http.Request, sess *accounts.Session) (*Rule, error) {
	kind, ruleID, err := existingRulePath(r)
	if err != nil {
		return nil, err
	}
	rule := s.Rules(sess.UserID).Find(kind, ruleID)
	if rule == nil {
		return nil, errRuleNotFound
	}
	return rule, nil
}

func (s *Service) getRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return s.findRule(r, sess)
}

func (s *Service) getEnabled(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	rule, err := s.findRule(r, sess)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"enabled": rule.Enabled}, nil
}

func (s *Service) getActions(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	rule, err := s.findRule(r, sess)
	if err != nil {
		return nil, err
	}
	return map[string][]json.RawMessage{"actions": rule.Actions}, nil
}

func (s *Service) putRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, ruleID, err := pathRule(r)
	if err != nil {
		return nil, err
	}
	if err := ValidateRuleID(ruleID); err != nil {
		return nil, err
	}
	var body struct {
		Actions    []json.RawMessage `json:"actions"`
		Conditions []json.RawMessage `json:"conditions"`
		Pattern    *string           `json:"pattern"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	nr := NewRule{Actions: body.Actions, Conditions: body.Conditions, Before: q.Get("before"), After: q.Get("after")}
	if body.Pattern != nil {
		nr.Pattern = *body.Pattern
	}
	if err := s.PutRule(r.Context(), sess.UserID, kind, ruleID, nr); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) deleteRule(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, ruleID, err := existingRulePath(r)
	if err != nil {
		return nil, err
	}
	if err := s.DeleteRule(r.Context(), sess.UserID, kind, ruleID); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) putEnabled(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, ruleID, err := existingRulePath(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, mxhttp.MissingParam("enabled is required")
	}
	if err := s.SetEnabled(r.Context(), sess.UserID, kind, ruleID, *body.Enabled); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) putActions(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	kind, ruleID, err := existingRulePath(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Actions []json.RawMessage `json:"actions"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := s.SetActions(r.Context(), sess.UserID, kind, ruleID, body.Actions); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
