package rooms

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// JoinAuthoriser answers, for user about to join roomID, who authorises
// the join under a restricted or knock_restricted join rule: the join
// event names them in join_authorised_via_users_server. It returns "" when
// the join needs no authoriser (another join rule, a room version without
// restricted joins, or a user already invited or joined). A user who is
// joined to none of the rooms the rule allows, or a room where no local
// member can invite, gets M_FORBIDDEN.
func (e *Engine) JoinAuthoriser(ctx context.Context, roomID id.RoomID, user id.UserID) (id.UserID, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return "", err
	}
	st := r.view()
	rule, allow := st.joinRule()
	restricted := (rule == event.JoinRuleRestricted && r.version.RestrictedJoins()) ||
		(rule == event.JoinRuleKnockRestricted && r.version.KnockRestricted())
	if m := st.members[user]; !restricted || m == "join" || m == "invite" {
		return "", nil
	}
	pl, members := st.powerLevels(), st.members

	switch e.allowedMembership(ctx, user, allow) {
	case allowedUnknown:
		return "", ErrAllowedRoomsUnknown
	case allowedNotJoined:
		if rule == event.JoinRuleKnockRestricted {
			return "", mxhttp.Forbidden("only members of the rooms the join rule allows may join; knock to ask for an invite")
		}
		return "", mxhttp.Forbidden("only members of the rooms the join rule allows may join")
	}
	if via := e.localInviter(pl, members); via != "" {
		return via, nil
	}
	return "", ErrNoLocalAuthoriser
}

// ErrAllowedRoomsUnknown is JoinAuthoriser's answer for a restricted join
// of a user of another server when this server is in none of the rooms
// the rule allows that could admit them (it left them, or never joined):
// it cannot tell whether the user is in one. It is make_join's 400
// M_UNABLE_TO_AUTHORISE_JOIN; another server of the room may tell.
var ErrAllowedRoomsUnknown = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNABLE_TO_AUTHORISE_JOIN",
	Message: "this server is in none of the rooms the join rule allows, so it cannot tell whether the user may join"}

// ErrNoLocalAuthoriser is JoinAuthoriser's answer for a restricted join
// that a member of this server could not authorise, none being allowed
// to invite: a server of the room whose member may can, over federation.
// It is make_join's 400 M_UNABLE_TO_GRANT_JOIN, which tells the joining
// server to try another.
var ErrNoLocalAuthoriser = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNABLE_TO_GRANT_JOIN",
	Message: "no member of this server in the room may invite, so none can authorise the join"}

// authorizeJoinVia applies the authorising server's own duty under a
// restricted join rule, which the auth rules leave to it: this server signs
// every local event, so a join naming an authoriser passes them whoever
// wrote that name. It is accepted only when the server would have
// authorised the join itself: the sender, not yet invited or joined, is
// joined to one of the rooms the rule allows, in the state st the join
// was built on.
func (e *Engine) authorizeJoinVia(st *roomState, ev *Event) error {
	if ev.Type != "m.room.member" || ev.Membership() != "join" {
		return nil
	}
	var c struct {
		Via id.UserID `json:"join_authorised_via_users_server"`
	}
	if json.Unmarshal(ev.PDU.Content, &c) != nil || c.Via == "" {
		return nil
	}
	if m := st.members[ev.Sender]; m == "join" || m == "invite" {
		return nil // the auth rules do not look at the authoriser then
	}
	if _, allow := st.joinRule(); e.allowedMembership(context.Background(), ev.Sender, allow) != allowedJoined {
		return mxhttp.Forbidden("only members of the rooms the join rule allows may join")
	}
	return nil
}

// joinRule returns the state's join rule and its allow list (invite when
// there is none, as the auth rules assume). Allow entries that are not
// objects of the right shape are left out, as the spec says, rather than
// making the whole rule unreadable: a restricted rule whose entries are
// all bad admits nobody uninvited.
func (s *roomState) joinRule() (event.JoinRule, []event.JoinRuleAllow) {
	st := s.get("m.room.join_rules", "")
	if st == nil {
		return event.JoinRuleInvite, nil
	}
	var c struct {
		JoinRule event.JoinRule    `json:"join_rule"`
		Allow    []json.RawMessage `json:"allow"`
	}
	if err := json.Unmarshal(st.PDU.Content, &c); err != nil {
		var rule struct {
			JoinRule event.JoinRule `json:"join_rule"`
		}
		if json.Unmarshal(st.PDU.Content, &rule) != nil || rule.JoinRule == "" {
			return event.JoinRuleInvite, nil
		}
		return rule.JoinRule, nil // an allow that is not a list allows nothing
	}
	allow := make([]event.JoinRuleAllow, 0, len(c.Allow))
	for _, raw := range c.Allow {
		var a event.JoinRuleAllow
		if json.Unmarshal(raw, &a) == nil && a.Type != "" {
			allow = append(allow, a)
		}
	}
	return c.JoinRule, allow
}

// What this server knows of a user's membership in the rooms a restricted
// join rule allows.
const (
	allowedJoined    = iota // joined to one of them
	allowedNotJoined        // joined to none of them
	allowedUnknown          // joined to none this server can see into
)

// allowedMembership tells whether user is joined to one of the rooms allow
// names. The membership of a user of another server is known only in a
// room this server is in: one it left keeps the memberships it last saw,
// which may have changed since.
func (e *Engine) allowedMembership(ctx context.Context, user id.UserID, allow []event.JoinRuleAllow) int {
	local := user.Homeserver() == e.signer.ServerName
	out := allowedNotJoined
	for _, a := range allow {
		if a.Type != event.JoinRuleAllowRoomMembership {
			continue
		}
		if !local && !e.ServerInRoom(ctx, e.signer.ServerName, a.RoomID) {
			out = allowedUnknown
			continue
		}
		if e.Membership(user, a.RoomID) == "join" {
			return allowedJoined
		}
	}
	return out
}

// localInviter picks the joined member of this server with the most power
// who may invite (the first by user ID among equals), or "" if none may.
func (e *Engine) localInviter(pl *event.PowerLevelsEventContent, members map[id.UserID]string) id.UserID {
	var best id.UserID
	bestLevel := math.MinInt
	for u, m := range members {
		if m != "join" || u.Homeserver() != e.signer.ServerName {
			continue
		}
		level := pl.GetUserLevel(u)
		if level < pl.Invite() {
			continue
		}
		if level > bestLevel || (level == bestLevel && u < best) {
			best, bestLevel = u, level
		}
	}
	return best
}

// localKey is the auth rules' key lookup: it knows this server's own
// signing key (a join that a local user authorises carries only this
// server's signature) and no other.
func (e *Engine) localKey(serverName string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	if serverName != e.signer.ServerName || keyID != e.signer.KeyID || e.signer.Key == nil {
		return "", time.Time{}, fmt.Errorf("no key for %s %s", serverName, keyID)
	}
	pub := e.signer.Key.Public().(ed25519.PublicKey)
	// The node's key does not expire.
	return id.SigningKey(base64.RawStdEncoding.EncodeToString(pub)), time.UnixMilli(1 << 53), nil
}
