package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// ActionRemove is the node taking one of its users out of a room a
// policy list's room rule bans.
const ActionRemove = "remove"

// RoomPolicy is the room engine's RoomPolicy: a room that a room rule
// (m.policy.rule.room, recommendation m.ban) of a list the node or a
// protected room follows matches, by room ID or alias, is refused with
// M_FORBIDDEN naming the rule. It reads a snapshot the follower keeps,
// never waiting for it.
func (s *Service) RoomPolicy(ctx context.Context, roomID id.RoomID) error {
	rules := s.roomBans.Load()
	if rules == nil || len(*rules) == 0 {
		return nil
	}
	r, ok := roomBannedBy(*rules, roomID, s.roomAliases(ctx, *rules, roomID))
	if !ok {
		return nil
	}
	return mxhttp.Forbidden("%s is banned on this server by %s", roomID, describeRule(r))
}

// describeRule names a rule for people: its list, entity and reason.
func describeRule(r Rule) string {
	out := fmt.Sprintf("policy list %s, rule %q", r.List, r.Entity)
	if r.Reason != "" {
		out += ": " + r.Reason
	}
	return out
}

// roomBannedBy returns the first room rule that bans a room, by its ID or
// one of its aliases.
func roomBannedBy(rules []Rule, roomID id.RoomID, aliases []string) (Rule, bool) {
	for _, r := range rules {
		if !r.bans() || r.Kind != KindRoom {
			continue
		}
		if r.matches(string(roomID)) || slices.ContainsFunc(aliases, r.matches) {
			return r, true
		}
	}
	return Rule{}, false
}

// roomAliases returns a room's canonical and alternative aliases, read
// only when a rule names aliases.
func (s *Service) roomAliases(ctx context.Context, rules []Rule, roomID id.RoomID) []string {
	if !slices.ContainsFunc(rules, func(r Rule) bool { return strings.HasPrefix(r.Entity, "#") || strings.HasPrefix(r.Entity, "*") }) {
		return nil
	}
	ev, err := s.opts.Rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return nil
	}
	var c struct {
		Alias      string   `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil {
		return nil
	}
	if c.Alias != "" {
		return append(c.AltAliases, c.Alias)
	}
	return c.AltAliases
}

// followedLists returns every policy list the node or a protected room
// follows.
func (s *Service) followedLists() []id.RoomID {
	out := s.listsOf(&Config{})
	for _, cfg := range s.configs {
		for _, l := range cfg.PolicyLists {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// refreshRoomBans recomputes the room rules RoomPolicy applies from the
// followed lists and, when they changed, takes the node's users out of
// every room they now ban.
func (s *Service) refreshRoomBans(ctx context.Context) error {
	var bans []Rule
	for _, l := range s.followedLists() {
		rules, err := s.rulesOf(ctx, l)
		if err != nil {
			s.log.Debug("moderation: policy list unreadable", "room_id", l, "err", err)
			continue
		}
		for _, r := range rules {
			if r.bans() && r.Kind == KindRoom {
				bans = append(bans, r)
			}
		}
	}
	slices.SortFunc(bans, func(a, b Rule) int { return strings.Compare(a.key(), b.key()) })
	if old := s.roomBans.Load(); old != nil && slices.Equal(*old, bans) {
		return nil
	}
	s.roomBans.Store(&bans)
	if len(bans) == 0 {
		return nil
	}
	return s.leaveBannedRooms(ctx, bans)
}

// leaveBannedRooms takes the node's users out of every room a room rule
// bans: each joined, invited or knocking local user leaves with the
// rule as the reason (a leave the node sends for its own user, which no
// power level can refuse), logged and reported to the moderators' room.
func (s *Service) leaveBannedRooms(ctx context.Context, bans []Rule) error {
	all, err := s.opts.Rooms.AllRooms(ctx)
	if err != nil {
		return fmt.Errorf("list rooms for the room rules: %w", err)
	}
	for _, roomID := range all {
		r, ok := roomBannedBy(bans, roomID, s.roomAliases(ctx, bans, roomID))
		if !ok {
			continue
		}
		for _, u := range s.localMembers(ctx, roomID) {
			if err := s.removeLocal(ctx, roomID, u, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// localMembers returns the node's users who are joined, invited or
// knocking in a room, sorted.
func (s *Service) localMembers(ctx context.Context, roomID id.RoomID) []id.UserID {
	var out []id.UserID
	for u, m := range s.opts.Rooms.Members(ctx, roomID) {
		if s.local(u) && (m == "join" || m == "invite" || m == "knock") {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// removeLocal has a local user leave a room a rule bans, and logs and
// reports it. A leave the room refuses is reported, not an error.
func (s *Service) removeLocal(ctx context.Context, roomID id.RoomID, u id.UserID, r Rule) error {
	reason := "room banned by " + describeRule(r)
	b, _ := json.Marshal(map[string]string{"membership": "leave", "reason": reason})
	sk := string(u)
	if _, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: u, Content: b}); err != nil {
		s.refused(ctx, roomID, fmt.Sprintf("remove %s from %s (%s)", u, roomID, reason), err)
		return nil
	}
	a, err := s.logAction(ctx, Action{RoomID: roomID, Action: ActionRemove, Target: string(u), Reason: reason, Rule: r.key()})
	if err != nil {
		return err
	}
	text := fmt.Sprintf("%s removed from %s by the room rule of %s. The node refuses joins, invites and knocks there until the rule is lifted.",
		u, roomID, describeRule(r))
	for _, mods := range s.moderatorsRoomsFollowing(r.List) {
		s.notifyModerators(ctx, &Config{ModeratorsRoom: mods}, text, map[string]any{"action": a.Action, "action_id": a.ID,
			"room_id": a.RoomID, "target": a.Target})
	}
	return nil
}

// moderatorsRoomsFollowing returns the moderators' rooms of those who
// follow a policy list: the node's, when the node follows it, and each
// protected room's that follows it (its own moderators' room, or the
// node's), without repeats. A room rule acts for the whole node, so its
// removals are told to all of them, not to the banned room's.
func (s *Service) moderatorsRoomsFollowing(list id.RoomID) []id.RoomID {
	var out []id.RoomID
	add := func(cfg *Config) {
		if !slices.Contains(s.listsOf(cfg), list) {
			return
		}
		if room := s.moderatorsRoom(cfg); room != "" && !slices.Contains(out, room) {
			out = append(out, room)
		}
	}
	add(&Config{})
	for _, roomID := range slices.Sorted(maps.Keys(s.configs)) {
		add(s.configs[roomID])
	}
	return out
}

// reasonOrNone returns a rule's reason, or "none given".
func reasonOrNone(reason string) string {
	if reason == "" {
		return "none given"
	}
	return reason
}
