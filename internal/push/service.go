package push

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// RoomState is what the service reads about rooms; *rooms.Engine has it.
type RoomState interface {
	ServerName() string
	StateEvent(ctx context.Context, roomID id.RoomID, evType, stateKey string) (*rooms.Event, error)
	PowerLevels(ctx context.Context, roomID id.RoomID) (*event.PowerLevelsEventContent, error)
	Event(ctx context.Context, evID id.EventID) (*rooms.Event, error)
	// StateAt returns the state of a snapshot (an event's SnapshotBefore).
	StateAt(ctx context.Context, snap int64) ([]*rooms.Event, error)
}

// Options configure the service.
type Options struct {
	// DisplayName, if set, returns a user's display name in a room for the
	// contains_display_name condition. By default it is read from the
	// user's m.room.member state event.
	DisplayName func(ctx context.Context, roomID id.RoomID, user id.UserID) string
	// Wake, if set, wakes the users' /sync long-polls after their push
	// rules or unread counts changed (typically (*sync.Notifier).Wake).
	Wake func(users ...id.UserID)
	// ThreadSubscriptionRules enables MSC4306's two postcontent rules by
	// default. Off, they are listed disabled: a thread message notifies
	// as any message does, which clients that never subscribe to threads
	// need. A user may enable or disable them either way.
	ThreadSubscriptionRules bool
}

// Service owns push rules and unread notification counts.
type Service struct {
	db    *storage.DB
	log   *slog.Logger
	acc   *accounts.Service
	rooms RoomState
	opts  Options

	ruleWriteMu sync.Mutex // serialises rule changes
	mu          sync.RWMutex
	users       map[id.UserID]*userRules

	countsMu sync.Mutex // guards unread; never held while queueing writes
	unread   map[id.UserID]map[id.RoomID]*roomUnread

	names nameCache

	// rulesChanged moves on with every change to users' rules (see
	// rosterOf); rosters are the rooms' rosters.
	rulesChanged atomic.Uint64
	rosters      rosters

	// slots numbers the users each room's events notified (slots.go).
	slots slotTable

	// template is the predefined ruleset as every member whose rules are
	// unchanged shares its evaluation (see defaultTemplate).
	template func() *defaultTemplate

	// OnNotify hooks run after an event's notifications are recorded,
	// once per user the event notifies (see [NotifyFunc]): once the
	// event's transaction has committed and before the send that wrote it
	// returns (the pushers tests rely on that order).
	OnNotify []NotifyFunc

	// ThreadSubscribed, when set, reports whether user is subscribed to
	// the thread (MSC4306), for the thread_subscription condition. It
	// runs while the room's pipeline is held (see rooms.Engine.OnAccept)
	// and must not wait for the room or the database writer. Unset, no
	// one is subscribed to any thread.
	ThreadSubscribed func(user id.UserID, roomID id.RoomID, thread id.EventID) bool

	// IgnoredUsers, when set, returns the users that user ignores (their
	// m.ignored_user_list): events those users send notify nobody who
	// ignores them. It runs while the room's pipeline is held, like
	// ThreadSubscribed, so it should answer from memory (as
	// (*accountdata.Service).IgnoredUsers does once it has read a user's
	// list). Unset, no one ignores anyone.
	IgnoredUsers func(ctx context.Context, user id.UserID) (map[id.UserID]bool, error)

	// IgnoreListsVersion, when set with IgnoredUsers, returns a number
	// that changes whenever anyone's ignored users may have changed, by
	// the time the change is visible to IgnoredUsers (as
	// (*accountdata.Service).IgnoreListsVersion does): a room's members'
	// lists are then read once and kept until it changes (see roster).
	// Unset, they are read again for every event.
	IgnoreListsVersion func() uint64
}

// New returns the service; call Load before use. acc may be nil when the
// HTTP routes are not used.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, rs RoomState, opts Options) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		db: db, log: log, acc: acc, rooms: rs, opts: opts,
		users:  map[id.UserID]*userRules{},
		unread: map[id.UserID]map[id.RoomID]*roomUnread{},
	}
	s.template = sync.OnceValue(func() *defaultTemplate { return newDefaultTemplate(s) })
	return s
}

func (s *Service) wake(users ...id.UserID) {
	if s.opts.Wake != nil && len(users) > 0 {
		s.opts.Wake(users...)
	}
}

// defaultChange is a user's change to a server-default rule.
type defaultChange struct {
	enabled *bool
	actions []json.RawMessage // nil: unchanged
}

// userRules is an immutable snapshot of one user's rule changes.
type userRules struct {
	custom   map[Kind][]*Rule
	defaults map[string]defaultChange
	pos      int64 // stream position of the last change; 0 if none

	once sync.Once
	rs   *Ruleset
	cs   *compiledSet

	sharedOnce sync.Once
	unchanged  bool        // see isUnchanged
	member     memberRules // when unchanged
}

// isUnchanged reports whether the user's rules are the predefined ones:
// no rule of their own and no change to a predefined rule.
func (u *userRules) isUnchanged() bool {
	if len(u.defaults) > 0 {
		return false
	}
	for _, list := range u.custom {
		if len(list) > 0 {
			return false
		}
	}
	return true
}

// shared returns, when the user's rules are unchanged, the user's own
// versions of the predefined rules that depend on the member, compiled
// once: the user shares the evaluation of the others (see defaultPlan).
func (u *userRules) shared(s *Service, user id.UserID) (memberRules, bool) {
	u.sharedOnce.Do(func() {
		if u.unchanged = u.isUnchanged(); u.unchanged {
			u.member = s.template().memberRules(s, user)
		}
	})
	return u.member, u.unchanged
}

func (u *userRules) copy() *userRules {
	c := &userRules{custom: map[Kind][]*Rule{}, defaults: map[string]defaultChange{}, pos: u.pos}
	for k, l := range u.custom {
		c.custom[k] = slices.Clone(l)
	}
	for k, v := range u.defaults {
		c.defaults[k] = v
	}
	return c
}

// defaults returns the predefined rules as this service starts them.
func (s *Service) defaults(user id.UserID) *Ruleset {
	d := Defaults(user)
	if !s.opts.ThreadSubscriptionRules {
		for _, r := range d.PostContent {
			r.Enabled = false
		}
	}
	return d
}

// build assembles (once) the user's full ruleset and its compiled form
// from the service's predefined rules.
func (u *userRules) build(s *Service, user id.UserID) (*Ruleset, *compiledSet) {
	u.once.Do(func() {
		d := s.defaults(user)
		for _, k := range Kinds {
			for _, r := range d.List(k) {
				if ch, ok := u.defaults[r.RuleID]; ok {
					if ch.enabled != nil {
						r.Enabled = *ch.enabled
					}
					if ch.actions != nil {
						r.Actions = ch.actions
					}
				}
			}
		}
		rs := &Ruleset{}
		for _, k := range Kinds {
			custom := u.custom[k]
			def := d.List(k)
			var list []*Rule
			if k == Override && len(def) > 0 && def[0].RuleID == RuleMaster {
				// .m.rule.master outranks even user-defined rules.
				list = append(list, def[0])
				def = def[1:]
			}
			list = append(list, custom...)
			list = append(list, def...)
			rs.set(k, list)
		}
		u.rs, u.cs = rs, compile(rs)
	})
	return u.rs, u.cs
}

func (s *Service) rulesOf(user id.UserID) *userRules {
	s.mu.RLock()
	u := s.users[user]
	s.mu.RUnlock()
	if u != nil {
		return u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u = s.users[user]; u == nil {
		u = &userRules{custom: map[Kind][]*Rule{}, defaults: map[string]defaultChange{}}
		s.users[user] = u // the predefined rules, as before: no change
	}
	return u
}

// Rules returns the user's full ruleset ("global"). The result is shared:
// callers must not modify it.
func (s *Service) Rules(user id.UserID) *Ruleset {
	rs, _ := s.rulesOf(user).build(s, user)
	return rs
}

// RulesPos returns the stream position of the user's last rule change (0
// if the user never changed their rules).
func (s *Service) RulesPos(user id.UserID) int64 { return s.rulesOf(user).pos }

// AccountData returns the content of the user's m.push_rules account-data
// event: {"global": ruleset}.
func (s *Service) AccountData(user id.UserID) json.RawMessage {
	b, err := json.Marshal(map[string]*Ruleset{"global": s.Rules(user)})
	if err != nil {
		s.log.Error("encode push rules", "user_id", user, "err", err)
		return json.RawMessage(`{"global":{}}`)
	}
	return b
}

// Evaluate runs the user's rules against an event in a room with
// memberCount joined members.
func (s *Service) Evaluate(ctx context.Context, user id.UserID, ev *rooms.Event, memberCount int) (Outcome, error) {
	x, err := s.evalCtx(ctx, ev, memberCount, nil)
	if err != nil {
		return Outcome{}, err
	}
	_, cs := s.rulesOf(user).build(s, user)
	x.user = user
	return cs.match(x), nil
}

// evalCtx prepares the evaluation of ev. The room's power levels and
// display names come from info when it carries the state after the event
// (OnAccept runs while the room's pipeline is held, so it must not read
// the room), else from the room's current state.
func (s *Service) evalCtx(ctx context.Context, ev *rooms.Event, memberCount int, info *rooms.RoomInfo) (*evalCtx, error) {
	x, err := newEvalCtx(ev, memberCount)
	if err != nil {
		return nil, err
	}
	if ev.ThreadID != "" && s.ThreadSubscribed != nil {
		x.subscribed = func(user id.UserID) bool { return s.ThreadSubscribed(user, ev.RoomID, ev.ThreadID) }
	}
	if info != nil && info.HasState() {
		x.powerLevels = info.PowerLevels
		x.displayName = func(user id.UserID) string {
			if s.opts.DisplayName != nil {
				return s.opts.DisplayName(ctx, ev.RoomID, user)
			}
			return s.names.of(info.StateEvent("m.room.member", string(user)))
		}
		return x, nil
	}
	x.powerLevels = func() *event.PowerLevelsEventContent {
		if s.rooms == nil {
			return nil
		}
		pl, err := s.rooms.PowerLevels(ctx, ev.RoomID)
		if err != nil {
			return nil
		}
		return pl
	}
	x.displayName = func(user id.UserID) string { return s.displayName(ctx, ev.RoomID, user) }
	return x, nil
}

func (s *Service) displayName(ctx context.Context, roomID id.RoomID, user id.UserID) string {
	if s.opts.DisplayName != nil {
		return s.opts.DisplayName(ctx, roomID, user)
	}
	if s.rooms == nil {
		return ""
	}
	ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.member", string(user))
	if err != nil {
		return ""
	}
	return memberDisplayName(ev)
}

// nameCache holds the display names of member events: every message
// without m.mentions is matched against each member's display name
// (.m.rule.contains_display_name), which would otherwise decode each
// member's event for each message.
type nameCache struct {
	mu    sync.Mutex
	names map[id.EventID]string // by the member event's ID: a pointer key would keep the events alive
}

// maxCachedNames bounds nameCache; it starts afresh when full.
const maxCachedNames = 100_000

// of returns the display name of a member event ("" for nil).
func (c *nameCache) of(ev *rooms.Event) string {
	if ev == nil {
		return ""
	}
	c.mu.Lock()
	name, ok := c.names[ev.ID]
	c.mu.Unlock()
	if ok {
		return name
	}
	name = memberDisplayName(ev)
	c.mu.Lock()
	if c.names == nil || len(c.names) >= maxCachedNames {
		c.names = map[id.EventID]string{}
	}
	c.names[ev.ID] = name
	c.mu.Unlock()
	return name
}

// memberDisplayName reads the display name of an m.room.member event ("" for
// nil).
func memberDisplayName(ev *rooms.Event) string {
	if ev == nil || ev.PDU == nil {
		return ""
	}
	var c struct {
		DisplayName string `json:"displayname"`
	}
	json.Unmarshal(ev.PDU.Content, &c)
	return c.DisplayName
}

// Load reads every user's rule changes and unread notifications.
func (s *Service) Load(ctx context.Context) error {
	users := map[id.UserID]*userRules{}
	get := func(u id.UserID) *userRules {
		if users[u] == nil {
			users[u] = &userRules{custom: map[Kind][]*Rule{}, defaults: map[string]defaultChange{}}
		}
		return users[u]
	}
	rows, err := s.db.Query(ctx, `SELECT user_id, kind, rule_id, enabled, actions, conditions, pattern
		FROM push_rules ORDER BY user_id, kind, priority`)
	if err != nil {
		return fmt.Errorf("load push rules: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var kind, actions, conditions string
		r := &Rule{}
		if err := rows.Scan(&user, &kind, &r.RuleID, &r.Enabled, &actions, &conditions, &r.Pattern); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(actions), &r.Actions); err != nil {
			return fmt.Errorf("push rule %s actions: %w", r.RuleID, err)
		}
		if r.Actions == nil {
			r.Actions = []json.RawMessage{}
		}
		if conditions != "" {
			if err := json.Unmarshal([]byte(conditions), &r.Conditions); err != nil {
				return fmt.Errorf("push rule %s conditions: %w", r.RuleID, err)
			}
			if r.Conditions == nil {
				r.Conditions = []json.RawMessage{}
			}
		}
		u := get(user)
		u.custom[Kind(kind)] = append(u.custom[Kind(kind)], r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load push rules: %w", err)
	}
	rows, err = s.db.Query(ctx, "SELECT user_id, rule_id, enabled, actions FROM push_rule_defaults")
	if err != nil {
		return fmt.Errorf("load push rule defaults: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var ruleID string
		var enabled sql.NullBool
		var actions sql.NullString
		if err := rows.Scan(&user, &ruleID, &enabled, &actions); err != nil {
			return err
		}
		var ch defaultChange
		if enabled.Valid {
			ch.enabled = &enabled.Bool
		}
		if actions.Valid {
			if err := json.Unmarshal([]byte(actions.String), &ch.actions); err != nil {
				return fmt.Errorf("push rule %s actions: %w", ruleID, err)
			}
			if ch.actions == nil {
				ch.actions = []json.RawMessage{}
			}
		}
		get(user).defaults[ruleID] = ch
		return nil
	})
	if err != nil {
		return fmt.Errorf("load push rule defaults: %w", err)
	}
	rows, err = s.db.Query(ctx, "SELECT user_id, pos FROM push_rules_stream")
	if err != nil {
		return fmt.Errorf("load push rule positions: %w", err)
	}
	err = scanRows(rows, func() error {
		var user id.UserID
		var pos int64
		if err := rows.Scan(&user, &pos); err != nil {
			return err
		}
		get(user).pos = pos
		return nil
	})
	if err != nil {
		return fmt.Errorf("load push rule positions: %w", err)
	}
	if err := s.convertLegacyUnread(ctx); err != nil {
		return err
	}
	if err := s.loadSlots(ctx); err != nil {
		return err
	}
	unread, err := s.loadUnread(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.users = users
	s.rulesChanged.Add(1)
	s.mu.Unlock()
	s.countsMu.Lock()
	s.unread = unread
	s.countsMu.Unlock()
	return nil
}

func scanRows(rows *sql.Rows, scan func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(); err != nil {
			return err
		}
	}
	return rows.Err()
}

// OnDeactivated forgets a deactivated user's push rules and unread
// notifications (an accounts.Hooks.Deactivated hook). The push_events rows
// that name the user are left as they are: push_gone_users keeps the last
// position recorded, at or below which loadUnread skips the user.
func (s *Service) OnDeactivated(ctx context.Context, user id.UserID) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, q := range []string{
			"DELETE FROM push_rules WHERE user_id = $1",
			"DELETE FROM push_rule_defaults WHERE user_id = $1",
			"DELETE FROM push_rules_stream WHERE user_id = $1",
			"DELETE FROM push_read_marks WHERE user_id = $1",
		} {
			if _, err := tx.Exec(ctx, q, user); err != nil {
				return err
			}
		}
		var last int64
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(pos), 0) FROM push_events").Scan(&last); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO push_gone_users (user_id, pos) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET pos = excluded.pos`, user, last)
		return err
	})
	if err != nil {
		s.log.Error("forget push rules of deactivated user", "user_id", user, "err", err)
		return
	}
	s.mu.Lock()
	delete(s.users, user)
	s.rulesChanged.Add(1)
	s.mu.Unlock()
	s.countsMu.Lock()
	delete(s.unread, user)
	s.countsMu.Unlock()
}
