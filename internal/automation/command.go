package automation

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
)

// SourceAssistant marks rules set with the assistant's rule command.
const SourceAssistant = "assistant"

// CommandHelp is the one-line help of the rule command.
const CommandHelp = "add <name> <rule JSON> | list | remove <name>: this room's automation rules (docs/automation.md)"

// Command runs the assistant's rule command for sender in room: add and
// remove need the power level that writing the rule's state event
// takes; list shows every rule of the room, without the secret paths of
// webhooks (the admin API shows those).
func (s *Service) Command(ctx context.Context, room id.RoomID, sender id.UserID, args string) (string, error) {
	verb, rest, _ := strings.Cut(strings.TrimSpace(args), " ")
	rest = strings.TrimSpace(rest)
	switch verb {
	case "list":
		return s.listText(room), nil
	case "add", "remove":
		if err := s.mayWriteRules(ctx, room, sender); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("usage: rule %s", CommandHelp)
	}
	name, ruleJSON, _ := strings.Cut(rest, " ")
	if name == "" {
		return "", fmt.Errorf("usage: rule %s", CommandHelp)
	}
	if verb == "remove" {
		ok, err := s.RemoveRule(ctx, room, SourceAssistant, name)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("no rule %s was added with this command", name)
		}
		return "Removed rule " + name + ".", nil
	}
	r, err := s.SetRule(ctx, room, SourceAssistant, name, sender, []byte(strings.TrimSpace(ruleJSON)))
	if err != nil {
		return "", err
	}
	text := fmt.Sprintf("Rule %s set: on %s, %d action(s).", name, r.Rule.Trigger.Type, len(r.Rule.Actions))
	if r.HookID != "" {
		text += " Its webhook's secret URL is shown to server admins by the admin API."
	}
	return text, nil
}

func (s *Service) mayWriteRules(ctx context.Context, room id.RoomID, sender id.UserID) error {
	pl, err := s.opts.Rooms.PowerLevels(ctx, room)
	if err != nil {
		return err
	}
	need := pl.GetEventLevel(event.Type{Type: StateType, Class: event.StateEventType})
	if pl.GetUserLevel(sender) < need {
		return fmt.Errorf("changing rules takes power level %d in this room", need)
	}
	return nil
}

func (s *Service) listText(room id.RoomID) string {
	rules := s.roomRules(room)
	if len(rules) == 0 {
		return "This room has no automation rules."
	}
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "%s (%s, by %s): on %s", r.Name, r.Source, r.Author, r.Rule.Trigger.Type)
		switch r.Rule.Trigger.Type {
		case TriggerMessage:
			fmt.Fprintf(&b, " matching %q", r.Rule.Trigger.Pattern)
		case TriggerSchedule:
			fmt.Fprintf(&b, " at %s UTC", r.Rule.Trigger.At)
		case TriggerReaction:
			if r.Rule.Trigger.Key != "" {
				fmt.Fprintf(&b, " %s", r.Rule.Trigger.Key)
			}
		}
		acts := make([]string, len(r.Rule.Actions))
		for i, a := range r.Rule.Actions {
			acts[i] = a.Type
		}
		fmt.Fprintf(&b, " → %s\n", strings.Join(acts, ", "))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Commands is the assistant's "rule" command (see Command).
func (s *Service) Commands() []assistant.Command { return []assistant.Command{ruleCommand{s}} }

type ruleCommand struct{ s *Service }

func (ruleCommand) Name() string { return "rule" }
func (ruleCommand) Help() string { return CommandHelp }

func (c ruleCommand) Run(ctx context.Context, room id.RoomID, sender id.UserID, args string) (assistant.Reply, error) {
	text, err := c.s.Command(ctx, room, sender, args)
	return assistant.Reply{Text: text}, err
}
