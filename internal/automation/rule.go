package automation

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/netguard"
)

// StateType is the state event that holds a room's rule; its state key
// names the rule.
const StateType = "org.matrixos.automation.rule"

// Trigger types.
const (
	TriggerMessage  = "message"
	TriggerJoin     = "join"
	TriggerReaction = "reaction"
	TriggerSchedule = "schedule"
	TriggerWebhook  = "webhook"
)

// Action types.
const (
	ActionSend     = "send"
	ActionInvite   = "invite"
	ActionTag      = "tag"
	ActionForward  = "forward"
	ActionWebhook  = "webhook"
	ActionContract = "contract"
)

// Limits on a rule.
const (
	maxActions    = 10
	maxPattern    = 500
	maxRuleBytes  = 16 << 10
	maxNameLength = 100
)

// Rule is what a room admin writes: a trigger, conditions that must all
// hold, and the actions run in order when they do.
type Rule struct {
	Trigger    Trigger    `json:"trigger"`
	Conditions Conditions `json:"conditions,omitzero"`
	Actions    []Action   `json:"actions"`
}

// Trigger starts a rule.
type Trigger struct {
	Type string `json:"type"`
	// Pattern (message) is a regular expression (RE2) the body must
	// match; empty matches every message the node can read.
	Pattern string `json:"pattern,omitempty"`
	// Key (reaction) is the reaction that triggers; empty means any.
	Key string `json:"key,omitempty"`
	// At (schedule) is the time of day, "HH:MM" UTC, the rule runs at;
	// Weekdays, when set, limits it to those days (0 is Sunday).
	At       string `json:"at,omitempty"`
	Weekdays []int  `json:"weekdays,omitempty"`

	pattern *regexp.Regexp
	at      time.Duration // since midnight
}

// Conditions narrow a trigger: the sender must be one of Senders (when
// set) and none of NotSenders, and the time (UTC) within Hours and
// Weekdays (when set). The rule's room is its room condition.
type Conditions struct {
	Senders    []id.UserID `json:"senders,omitempty"`
	NotSenders []id.UserID `json:"not_senders,omitempty"`
	// Hours is [from, to) in hours of the day, UTC; from > to wraps
	// around midnight.
	Hours    *[2]int `json:"hours,omitempty"`
	Weekdays []int   `json:"weekdays,omitempty"`
}

// Action is one thing a rule does. Text fields take the placeholders
// {sender}, {body}, {room} and {rule}.
type Action struct {
	Type string `json:"type"`
	// Body (send) is the message's text.
	Body string `json:"body,omitempty"`
	// UserID (invite, tag) is who is invited or whose room is tagged;
	// "{sender}" or empty means the trigger's sender.
	UserID string `json:"user_id,omitempty"`
	// Tag (tag) is the tag name, as in m.tag.
	Tag string `json:"tag,omitempty"`
	// RoomID (forward) is where the triggering message is copied.
	RoomID id.RoomID `json:"room_id,omitempty"`
	// URL (webhook) receives a POST of the trigger as JSON.
	URL string `json:"url,omitempty"`
	// EventType and Content (contract) are the input event sent into
	// the room for the contracts attached to it.
	EventType string          `json:"event_type,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
}

// ParseRule reads and checks a rule's JSON; the error says what is wrong.
func ParseRule(name string, content []byte) (*Rule, error) {
	if name == "" || len(name) > maxNameLength {
		return nil, fmt.Errorf("a rule's name must have 1 to %d bytes", maxNameLength)
	}
	if len(content) > maxRuleBytes {
		return nil, fmt.Errorf("a rule is at most %d bytes", maxRuleBytes)
	}
	var r Rule
	if err := json.Unmarshal(content, &r); err != nil {
		return nil, fmt.Errorf("rule %s: %w", name, err)
	}
	if err := r.Trigger.check(); err != nil {
		return nil, fmt.Errorf("rule %s: trigger: %w", name, err)
	}
	if err := r.Conditions.check(); err != nil {
		return nil, fmt.Errorf("rule %s: conditions: %w", name, err)
	}
	if len(r.Actions) == 0 || len(r.Actions) > maxActions {
		return nil, fmt.Errorf("rule %s: a rule has 1 to %d actions", name, maxActions)
	}
	for i := range r.Actions {
		if err := r.Actions[i].check(); err != nil {
			return nil, fmt.Errorf("rule %s: action %d: %w", name, i, err)
		}
		if r.Actions[i].Type == ActionForward && r.Trigger.Type != TriggerMessage && r.Trigger.Type != TriggerWebhook {
			return nil, fmt.Errorf("rule %s: action %d: forward needs a message or webhook trigger", name, i)
		}
	}
	return &r, nil
}

func (t *Trigger) check() error {
	switch t.Type {
	case TriggerMessage:
		if len(t.Pattern) > maxPattern {
			return fmt.Errorf("pattern longer than %d bytes", maxPattern)
		}
		p, err := regexp.Compile(t.Pattern)
		if err != nil {
			return fmt.Errorf("pattern: %w", err)
		}
		t.pattern = p
	case TriggerSchedule:
		at, err := time.Parse("15:04", t.At)
		if err != nil {
			return fmt.Errorf(`at must be "HH:MM" (UTC)`)
		}
		t.at = time.Duration(at.Hour())*time.Hour + time.Duration(at.Minute())*time.Minute
		if err := checkWeekdays(t.Weekdays); err != nil {
			return err
		}
	case TriggerJoin, TriggerReaction, TriggerWebhook:
	default:
		return fmt.Errorf("unknown type %q (message, join, reaction, schedule or webhook)", t.Type)
	}
	return nil
}

func checkWeekdays(days []int) error {
	for _, d := range days {
		if d < 0 || d > 6 {
			return fmt.Errorf("weekday %d is not 0 (Sunday) to 6", d)
		}
	}
	return nil
}

func (c *Conditions) check() error {
	for _, u := range slices.Concat(c.Senders, c.NotSenders) {
		if _, _, err := u.ParseAndValidateRelaxed(); err != nil {
			return fmt.Errorf("sender %q: %w", u, err)
		}
	}
	if c.Hours != nil {
		for _, h := range c.Hours {
			if h < 0 || h > 24 {
				return fmt.Errorf("hours must be 0 to 24")
			}
		}
	}
	return checkWeekdays(c.Weekdays)
}

func (a *Action) check() error {
	switch a.Type {
	case ActionSend:
		if a.Body == "" {
			return fmt.Errorf("send needs a body")
		}
	case ActionInvite, ActionTag:
		if a.UserID != "" && a.UserID != "{sender}" {
			if _, _, err := id.UserID(a.UserID).ParseAndValidateRelaxed(); err != nil {
				return fmt.Errorf("user_id: %w", err)
			}
		}
		if a.Type == ActionTag && (a.Tag == "" || len(a.Tag) > 255) {
			return fmt.Errorf("tag needs a tag of at most 255 bytes")
		}
	case ActionForward:
		if !strings.HasPrefix(string(a.RoomID), "!") {
			return fmt.Errorf("forward needs a room_id")
		}
	case ActionWebhook:
		u, err := url.Parse(a.URL)
		if err != nil {
			return fmt.Errorf("webhook url: %w", err)
		}
		if err := netguard.CheckURLScheme(u.Scheme); err != nil {
			return err
		}
		if u.Host == "" {
			return fmt.Errorf("webhook needs an absolute url")
		}
	case ActionContract:
		if a.EventType == "" || strings.HasPrefix(a.EventType, "m.") {
			return fmt.Errorf("contract needs an event_type outside the m. namespace")
		}
		if len(a.Content) == 0 {
			a.Content = json.RawMessage("{}")
		}
		var obj map[string]any
		if err := json.Unmarshal(a.Content, &obj); err != nil {
			return fmt.Errorf("contract content must be a JSON object")
		}
	default:
		return fmt.Errorf("unknown type %q (send, invite, tag, forward, webhook or contract)", a.Type)
	}
	return nil
}

// allows reports whether the conditions hold for a trigger by sender at
// t; sender conditions do not apply to triggers without a sender
// (schedules, webhooks).
func (c *Conditions) allows(sender id.UserID, t time.Time) bool {
	if sender != "" && (len(c.Senders) > 0 && !slices.Contains(c.Senders, sender) || slices.Contains(c.NotSenders, sender)) {
		return false
	}
	t = t.UTC()
	if len(c.Weekdays) > 0 && !slices.Contains(c.Weekdays, int(t.Weekday())) {
		return false
	}
	if c.Hours != nil {
		from, to, h := c.Hours[0], c.Hours[1], t.Hour()
		if from <= to && (h < from || h >= to) || from > to && h < from && h >= to {
			return false
		}
	}
	return true
}

// nextRun is the first time after last the schedule triggers at.
func (t *Trigger) nextRun(last time.Time) time.Time {
	day := last.UTC().Truncate(24 * time.Hour)
	for range 8 {
		at := day.Add(t.at)
		if at.After(last) && (len(t.Weekdays) == 0 || slices.Contains(t.Weekdays, int(at.Weekday()))) {
			return at
		}
		day = day.Add(24 * time.Hour)
	}
	return day.Add(t.at) // unreachable with valid weekdays
}

// expand fills the placeholders of a text.
func expand(s string, v vars) string {
	return strings.NewReplacer("{sender}", string(v.sender), "{body}", v.body, "{room}", string(v.room), "{rule}", v.rule).Replace(s)
}

// vars are what placeholders stand for.
type vars struct {
	sender id.UserID
	body   string
	room   id.RoomID
	rule   string
}
