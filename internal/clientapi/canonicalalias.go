package clientapi

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// canonicalAliasContent is the part of m.room.canonical_alias this server checks.
type canonicalAliasContent struct {
	Alias      string   `json:"alias"`
	AltAliases []string `json:"alt_aliases"`
}

// aliases lists the alias and the alt aliases of c.
func (c canonicalAliasContent) aliases() []string {
	if c.Alias == "" {
		return c.AltAliases
	}
	return append([]string{c.Alias}, c.AltAliases...)
}

// checkCanonicalAlias does what the spec asks of a server before it sends a
// client's m.room.canonical_alias: every alias the event adds (not those
// already in the room's current one) must be well formed (else M_INVALID_PARAM)
// and must point to the room (else M_BAD_ALIAS), an alias of another server
// as that server answers over federation.
func (s *Service) checkCanonicalAlias(ctx context.Context, roomID id.RoomID, content json.RawMessage) error {
	var next canonicalAliasContent
	if err := json.Unmarshal(content, &next); err != nil {
		return mxhttp.BadJSON("invalid m.room.canonical_alias content: %v", err)
	}
	cur, err := s.currentCanonicalAlias(ctx, roomID)
	if err != nil {
		return err
	}
	present := cur.aliases()
	for _, alias := range next.aliases() {
		if slices.Contains(present, alias) {
			continue
		}
		if err := s.checkAliasPointsTo(ctx, id.RoomAlias(alias), roomID); err != nil {
			return err
		}
	}
	return nil
}

// checkAliasPointsTo reports whether alias is well formed and names roomID:
// in this server's directory, or, for an alias of another server, in that
// server's as ResolveAlias asks it over federation. An alias that names
// another room, or that cannot be resolved (unknown, its server unreachable
// or not asked without federation), is refused with M_BAD_ALIAS.
func (s *Service) checkAliasPointsTo(ctx context.Context, alias id.RoomAlias, roomID id.RoomID) error {
	if _, _, err := splitAlias(alias); err != nil {
		return err
	}
	target, _, err := s.ResolveAlias(ctx, alias)
	if err != nil {
		if me, ok := mxhttp.AsError(err); !ok || me.Code == "M_INVALID_PARAM" {
			return err // this server's failure, or a malformed alias
		}
		return mxhttp.BadAlias("the alias %q could not be resolved: %v", alias, err)
	}
	if target != roomID {
		return mxhttp.BadAlias("the alias %q does not point to this room", alias)
	}
	return nil
}

// currentCanonicalAlias reads the room's m.room.canonical_alias; an absent or
// malformed one lists no aliases.
func (s *Service) currentCanonicalAlias(ctx context.Context, roomID id.RoomID) (canonicalAliasContent, error) {
	var c canonicalAliasContent
	ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return c, err
	}
	_ = json.Unmarshal(ev.Content(), &c)
	return c, nil
}

// dropCanonicalAlias removes a deleted alias from the room's
// m.room.canonical_alias, sent by the user who deleted it, so the room no
// longer advertises an alias that leads nowhere. A user without the power to
// send the event keeps the deletion: the event is then left as it was.
func (s *Service) dropCanonicalAlias(ctx context.Context, roomID id.RoomID, alias id.RoomAlias, sess *accounts.Session) {
	ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return
	}
	var content map[string]json.RawMessage
	if json.Unmarshal(ev.Content(), &content) != nil {
		return
	}
	changed := false
	var main string
	if json.Unmarshal(content["alias"], &main) == nil && main == string(alias) {
		delete(content, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(content["alt_aliases"], &alt) == nil && slices.Contains(alt, string(alias)) {
		alt = slices.DeleteFunc(alt, func(a string) bool { return a == string(alias) })
		if len(alt) == 0 {
			delete(content, "alt_aliases")
		} else {
			content["alt_aliases"], _ = json.Marshal(alt)
		}
		changed = true
	}
	if !changed {
		return
	}
	body, err := json.Marshal(content)
	if err != nil {
		return
	}
	empty := ""
	_, err = s.rooms.Send(ctx, roomID, rooms.Proto{
		Type: "m.room.canonical_alias", StateKey: &empty, Sender: sess.UserID, Content: body, DeviceID: sess.DeviceID,
	})
	if err != nil {
		s.log.Info("alias deleted, but the room's canonical alias could not be updated", "room_id", roomID, "alias", alias, "err", err)
	}
}

// splitAlias checks alias against the spec's grammar, #localpart:server, at
// most 255 bytes, and returns its parts.
func splitAlias(alias id.RoomAlias) (localpart, server string, err error) {
	lp, server, ok := strings.Cut(strings.TrimPrefix(string(alias), "#"), ":")
	if !strings.HasPrefix(string(alias), "#") || !ok || lp == "" || server == "" || len(alias) > maxAliasLength {
		return "", "", mxhttp.InvalidParam("invalid room alias %q", alias)
	}
	return lp, server, nil
}
