package moderation

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
)

// Command is "!assistant mod", the moderators' way to the service from a
// room: the room's protections, its action log, undoing an action and,
// for server admins, the node's own policy list. Only the room's
// moderators (the ban power level) may run it.
type Command struct{ s *Service }

// Command returns the assistant command (register it with the node's
// assistant).
func (s *Service) Command() *Command { return &Command{s: s} }

// Name is the command's word.
func (c *Command) Name() string { return "mod" }

// Help is its line in "!assistant help".
func (c *Command) Help() string {
	return "moderation: status | log | undo <action id> | ban <user or server> <entity> [reason] | unban <user or server> <entity>"
}

// Run answers one "!assistant mod ..." request.
func (c *Command) Run(ctx context.Context, room id.RoomID, sender id.UserID, args string) (assistant.Reply, error) {
	if ok, err := c.moderator(ctx, room, sender); err != nil {
		return assistant.Reply{}, err
	} else if !ok {
		return text("Only this room's moderators (those who may ban) may use !assistant mod."), nil
	}
	fields := strings.Fields(args)
	if len(fields) == 0 {
		fields = []string{"status"}
	}
	switch fields[0] {
	case "status":
		return c.status(ctx, room)
	case "log":
		return c.log(ctx, room)
	case "undo":
		return c.undo(ctx, room, sender, fields[1:])
	case "ban", "unban":
		return c.rule(ctx, sender, fields)
	}
	return text("Unknown subcommand %q. %s", fields[0], c.Help()), nil
}

func text(format string, args ...any) assistant.Reply {
	return assistant.Reply{Text: fmt.Sprintf(format, args...)}
}

// moderator reports whether sender may ban in the room.
func (c *Command) moderator(ctx context.Context, room id.RoomID, sender id.UserID) (bool, error) {
	return c.s.mayBan(ctx, room, sender)
}

func (c *Command) status(ctx context.Context, room id.RoomID) (assistant.Reply, error) {
	out, err := c.s.locked(ctx, func() (any, error) {
		ham, spam := c.s.ClassifierDocs()
		cfg := c.s.configs[room]
		if cfg == nil {
			return text("Protections are off in this room (send an %s state event to turn them on). The classifier has learnt %d ordinary and %d spam messages.",
				ConfigType, ham, spam), nil
		}
		var on []string
		for name, set := range map[string]bool{"flood": cfg.Flood != nil, "mentions": cfg.Mentions != nil, "words": len(cfg.Words) > 0,
			"blocked_links": len(cfg.BlockedLinks) > 0, "new_accounts": cfg.NewAccounts != nil, "first_message": cfg.FirstMessage != nil,
			"classifier": cfg.Classifier} {
			if set {
				on = append(on, name)
			}
		}
		slices.Sort(on)
		return text("Protections on: %s. Policy lists followed: %d. Moderators' room: %s. The classifier has learnt %d ordinary and %d spam messages.",
			strings.Join(orNone(on), ", "), len(c.s.listsOf(cfg)), orDash(string(c.s.moderatorsRoom(cfg))), ham, spam), nil
	})
	if err != nil {
		return assistant.Reply{}, err
	}
	return out.(assistant.Reply), nil
}

func (c *Command) log(ctx context.Context, room id.RoomID) (assistant.Reply, error) {
	acts, err := c.s.queryActions(ctx, "SELECT "+actionColumns+" FROM moderation_actions WHERE room_id = $1 ORDER BY id DESC LIMIT 10", room)
	if err != nil {
		return assistant.Reply{}, err
	}
	if len(acts) == 0 {
		return text("No moderation actions in this room yet."), nil
	}
	lines := []string{"Latest moderation actions here (undo with !assistant mod undo <id>):"}
	for _, a := range acts {
		line := fmt.Sprintf("%d: %s %s (%s)", a.ID, a.Action, a.Target, a.Reason)
		if a.Undone {
			line += ", undone"
		}
		lines = append(lines, line)
	}
	return text("%s", strings.Join(lines, "\n")), nil
}

func (c *Command) undo(ctx context.Context, room id.RoomID, sender id.UserID, args []string) (assistant.Reply, error) {
	if len(args) != 1 {
		return text("Usage: !assistant mod undo <action id> (see !assistant mod log)."), nil
	}
	n, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil {
		return text("%q is not an action ID.", args[0]), nil
	}
	out, err := c.s.locked(ctx, func() (any, error) {
		acts, err := c.s.queryActions(ctx, "SELECT "+actionColumns+" FROM moderation_actions WHERE id = $1 AND room_id = $2", n, room)
		if err != nil {
			return nil, err
		}
		switch {
		case len(acts) == 0:
			return text("No action %d in this room.", n), nil
		case acts[0].Undone:
			return text("Action %d is already undone.", n), nil
		case !undoable(acts[0].Action):
			return text("A %s cannot be undone.", acts[0].Action), nil
		}
		if err := c.s.undo(ctx, acts[0], sender); err != nil {
			return nil, err
		}
		return text("Undone: %s of %s.", acts[0].Action, acts[0].Target), nil
	})
	if err != nil {
		return assistant.Reply{}, err
	}
	return out.(assistant.Reply), nil
}

// rule publishes or withdraws a rule of the node's own list: server
// admins only, since every protected room of the node follows it.
func (c *Command) rule(ctx context.Context, sender id.UserID, fields []string) (assistant.Reply, error) {
	u, ok, err := c.s.opts.Accounts.GetUser(ctx, sender)
	if err != nil {
		return assistant.Reply{}, err
	}
	if !ok || !u.IsAdmin {
		return text("Only server admins may change the node's policy list."), nil
	}
	if len(fields) < 3 || (fields[1] != KindUser && fields[1] != KindServer && fields[1] != KindRoom) {
		return text("Usage: !assistant mod %s <user|server|room> <entity> [reason]", fields[0]), nil
	}
	kind, entity := fields[1], fields[2]
	if len(entity) > maxEntryLen {
		return text("The entity is too long."), nil
	}
	content := map[string]string{}
	if fields[0] == "ban" {
		if kind == KindServer && globMatch(entity, c.s.opts.Accounts.ServerName()) {
			return text("That rule would ban this server."), nil
		}
		content = map[string]string{"entity": entity, "recommendation": RecommendationBan, "reason": strings.Join(fields[3:], " ")}
	}
	if _, err := c.s.publish(ctx, sender, kind, entity, content); err != nil {
		return assistant.Reply{}, err
	}
	if fields[0] == "ban" {
		return text("Published: ban %s %s in the node's policy list.", kind, entity), nil
	}
	return text("Withdrawn: the rule on %s %s.", kind, entity), nil
}

func orNone(s []string) []string {
	if len(s) == 0 {
		return []string{"none"}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
