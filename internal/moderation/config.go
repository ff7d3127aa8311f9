package moderation

import (
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// ConfigType is the state event (state key "") that turns protections on
// in a room and configures them.
const ConfigType = "org.matrixos.protections"

// Limits on a configuration, so one event cannot make every message slow.
const (
	maxListEntries = 500
	maxEntryLen    = 200
	maxFloodWindow = 3600
)

// Config is a room's protections, the content of its ConfigType event.
// Every protection is off unless configured.
type Config struct {
	// ModeratorsRoom receives the reports of what the protections did
	// and of users' reports; empty uses the node's (admin API).
	ModeratorsRoom id.RoomID `json:"moderators_room,omitempty"`
	// PolicyLists are the rooms whose m.policy.rule.* events apply here,
	// beside the lists the whole node subscribes to.
	PolicyLists []id.RoomID `json:"policy_lists,omitempty"`
	// RedactOnBan redacts a user's recent messages when a policy rule
	// bans them.
	RedactOnBan bool `json:"redact_on_ban,omitempty"`
	// UnbanOnRuleRemoval lifts the bans and ACL entries a rule caused
	// when the rule is removed.
	UnbanOnRuleRemoval bool `json:"unban_on_rule_removal,omitempty"`

	Flood        *FloodConfig   `json:"flood,omitempty"`
	Mentions     *MentionConfig `json:"mentions,omitempty"`
	Words        []string       `json:"words,omitempty"`
	BlockedLinks []string       `json:"blocked_links,omitempty"`
	NewAccounts  *NewAccountCfg `json:"new_accounts,omitempty"`
	FirstMessage *FirstMsgCfg   `json:"first_message,omitempty"`
	// Classifier flags (and redacts) messages the node's spam
	// classifier finds like those its moderators removed.
	Classifier bool `json:"classifier,omitempty"`
	// ExemptPowerLevel: senders at or above it are never acted on; 0
	// means 50.
	ExemptPowerLevel int `json:"exempt_power_level,omitempty"`
}

// FloodConfig stops a user sending more than Messages events in Seconds.
type FloodConfig struct {
	Messages int `json:"messages"`
	Seconds  int `json:"seconds"`
	// Action is "mute" (the default: a power level below events_default)
	// or "redact" (the messages over the limit).
	Action string `json:"action,omitempty"`
}

// MentionConfig redacts a message that mentions more than Max users.
type MentionConfig struct {
	Max int `json:"max"`
}

// NewAccountCfg redacts the messages of this node's accounts younger
// than MinAgeSeconds.
type NewAccountCfg struct {
	MinAgeSeconds int64 `json:"min_age_seconds"`
}

// FirstMsgCfg limits what a user's first message in the room may hold.
type FirstMsgCfg struct {
	NoLinks    bool `json:"no_links,omitempty"`
	NoMentions bool `json:"no_mentions,omitempty"`
}

// ParseConfig decodes and checks a ConfigType event's content. An empty
// object turns every protection off. Errors are M_BAD_JSON, as the room
// engine answers the sender of a bad configuration.
func ParseConfig(content []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(content)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, mxhttp.BadJSON("%s: %v", ConfigType, err)
	}
	if err := c.check(); err != nil {
		return nil, mxhttp.BadJSON("%s: %v", ConfigType, err)
	}
	return &c, nil
}

// CheckConfig is the room engine's check of a locally sent ConfigType
// event (rooms.Engine.StateChecks).
func CheckConfig(content json.RawMessage) error {
	_, err := ParseConfig(content)
	return err
}

func (c *Config) check() error {
	if c.ModeratorsRoom != "" && !validRoomID(c.ModeratorsRoom) {
		return fmt.Errorf("moderators_room %q is not a room ID", c.ModeratorsRoom)
	}
	if len(c.PolicyLists) > maxListEntries {
		return fmt.Errorf("policy_lists: more than %d rooms", maxListEntries)
	}
	for _, r := range c.PolicyLists {
		if !validRoomID(r) {
			return fmt.Errorf("policy_lists: %q is not a room ID", r)
		}
	}
	if f := c.Flood; f != nil {
		if f.Messages < 1 || f.Seconds < 1 || f.Seconds > maxFloodWindow {
			return fmt.Errorf("flood: messages must be at least 1 and seconds between 1 and %d", maxFloodWindow)
		}
		if f.Action != "" && f.Action != "mute" && f.Action != "redact" {
			return fmt.Errorf("flood: action must be mute or redact, not %q", f.Action)
		}
	}
	if c.Mentions != nil && c.Mentions.Max < 1 {
		return fmt.Errorf("mentions: max must be at least 1")
	}
	if c.NewAccounts != nil && c.NewAccounts.MinAgeSeconds < 1 {
		return fmt.Errorf("new_accounts: min_age_seconds must be at least 1")
	}
	if err := checkEntries("words", c.Words); err != nil {
		return err
	}
	if err := checkEntries("blocked_links", c.BlockedLinks); err != nil {
		return err
	}
	if c.ExemptPowerLevel < 0 {
		return fmt.Errorf("exempt_power_level must not be negative")
	}
	return nil
}

func checkEntries(name string, list []string) error {
	if len(list) > maxListEntries {
		return fmt.Errorf("%s: more than %d entries", name, maxListEntries)
	}
	for _, w := range list {
		if strings.TrimSpace(w) == "" || len(w) > maxEntryLen {
			return fmt.Errorf("%s: entries must be non-empty and at most %d bytes", name, maxEntryLen)
		}
	}
	return nil
}

func validRoomID(r id.RoomID) bool {
	s := string(r)
	return len(s) > 1 && s[0] == '!' && len(s) <= 255
}

// exemptLevel is the power level at and above which senders are exempt.
func (c *Config) exemptLevel() int {
	if c.ExemptPowerLevel == 0 {
		return 50
	}
	return c.ExemptPowerLevel
}
