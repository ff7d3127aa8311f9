package automation

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	// BotLocalpart is the automation user's localpart: it joins the
	// rooms that have rules and runs their actions, as an ordinary user.
	BotLocalpart = "automation"
	// SourceState and SourceAdmin say where a rule comes from.
	SourceState = "state"
	SourceAdmin = "admin"

	followerName   = "events"
	stepSize       = 100
	followInterval = 5 * time.Second
	// scheduleInterval is how often scheduled rules are looked at.
	scheduleInterval = 20 * time.Second
)

// Rates: the runs of a room's rules, and the calls of one incoming
// webhook.
var (
	roomRate  = rate.Every(2 * time.Second) // 30 a minute
	roomBurst = 10
	hookRate  = rate.Every(6 * time.Second) // 10 a minute
	hookBurst = 5
)

// Tagger stores a user's account data (accountdata.Service).
type Tagger interface {
	Update(ctx context.Context, user id.UserID, roomID id.RoomID, typ string,
		fn func(old json.RawMessage) (json.RawMessage, bool, error)) (bool, error)
}

// Options configure a Service.
type Options struct {
	DB       *storage.DB
	Rooms    *rooms.Engine
	Accounts *accounts.Service
	Tags     Tagger
	// HTTP makes the outgoing webhook calls; it must refuse private
	// addresses (a netguard client).
	HTTP *http.Client
	Log  *slog.Logger
	// Now is the clock of schedules, conditions and rate limits;
	// time.Now when nil (see SetClock).
	Now func() time.Time
}

// storedRule is a rule in force.
type storedRule struct {
	RoomID     id.RoomID
	Source     string
	Name       string
	Author     id.UserID
	Rule       *Rule
	HookID     string
	HookSecret string
	LastRun    time.Time
}

func (r *storedRule) key() string { return r.Source + "\x00" + r.Name }

// Service runs the rules of the node's rooms.
type Service struct {
	opts Options

	mu    sync.Mutex
	rules map[id.RoomID]map[string]*storedRule
	hooks map[string]*storedRule
	// limits hold a token bucket per room (rule runs) and per hook
	// (incoming calls).
	limits map[string]*rate.Limiter

	stepMu sync.Mutex
	// scheduleMu serialises RunDue, so a rule due runs once.
	scheduleMu sync.Mutex
	clock      atomic.Pointer[func() time.Time]
	mark       *follower.Mark
	follower   *follower.Follower
}

// New returns the service with the rules stored; Start starts it.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{opts: opts, rules: map[id.RoomID]map[string]*storedRule{}, hooks: map[string]*storedRule{},
		limits: map[string]*rate.Limiter{}, mark: follower.NewMark(opts.DB, "automation_marks", followerName)}
	s.follower = follower.New("automation", followInterval, opts.Log, s.Step)
	s.follower.Every(scheduleInterval, s.RunDue)
	s.clock.Store(&opts.Now)
	return s, s.load(ctx)
}

// SetClock replaces the clock of schedules, conditions and rate limits
// (tests run schedules under a fake clock).
func (s *Service) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Service) now() time.Time {
	return (*s.clock.Load())()
}

// Bot is the automation user.
func (s *Service) Bot() id.UserID { return s.opts.Accounts.UserID(BotLocalpart) }

func (s *Service) load(ctx context.Context) error {
	rows, err := s.opts.DB.Query(ctx, "SELECT room_id, source, name, author, rule, hook_id, hook_secret, last_run FROM automation_rules")
	if err != nil {
		return fmt.Errorf("read automation rules: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r storedRule
		var raw string
		var hookID, secret sql.NullString
		var last int64
		if err := rows.Scan(&r.RoomID, &r.Source, &r.Name, &r.Author, &raw, &hookID, &secret, &last); err != nil {
			return fmt.Errorf("read automation rules: %w", err)
		}
		if r.Rule, err = ParseRule(r.Name, []byte(raw)); err != nil {
			s.opts.Log.Warn("automation: stored rule refused", "room_id", r.RoomID, "rule", r.Name, "err", err)
			continue
		}
		r.HookID, r.HookSecret, r.LastRun = hookID.String, secret.String, time.UnixMilli(last)
		s.remember(&r)
	}
	return rows.Err()
}

func (s *Service) remember(r *storedRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(r.RoomID, r.Source, r.Name)
	if s.rules[r.RoomID] == nil {
		s.rules[r.RoomID] = map[string]*storedRule{}
	}
	s.rules[r.RoomID][r.key()] = r
	if r.HookID != "" {
		s.hooks[r.HookID] = r
	}
}

func (s *Service) forgetLocked(roomID id.RoomID, source, name string) {
	old := s.rules[roomID][source+"\x00"+name]
	if old == nil {
		return
	}
	delete(s.rules[roomID], old.key())
	if len(s.rules[roomID]) == 0 {
		delete(s.rules, roomID)
	}
	if old.HookID != "" {
		delete(s.hooks, old.HookID)
	}
}

// roomRules returns a room's rules, by source and name.
func (s *Service) roomRules(roomID id.RoomID) []*storedRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*storedRule, 0, len(s.rules[roomID]))
	for _, r := range s.rules[roomID] {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *storedRule) int {
		if a.Source != b.Source {
			return compare(a.Source, b.Source)
		}
		return compare(a.Name, b.Name)
	})
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SetRule stores a rule in force in a room (from its state or the admin
// API), keeping the webhook ID and secret of the rule it replaces, and
// has the automation user join the room.
func (s *Service) SetRule(ctx context.Context, roomID id.RoomID, source, name string, author id.UserID, raw []byte) (*storedRule, error) {
	rule, err := ParseRule(name, raw)
	if err != nil {
		return nil, err
	}
	r := &storedRule{RoomID: roomID, Source: source, Name: name, Author: author, Rule: rule, LastRun: s.now()}
	s.mu.Lock()
	if old := s.rules[roomID][r.key()]; old != nil {
		r.HookID, r.HookSecret, r.LastRun = old.HookID, old.HookSecret, old.LastRun
	}
	s.mu.Unlock()
	if rule.Trigger.Type == TriggerWebhook && r.HookID == "" {
		r.HookID, r.HookSecret = randomHex(16), randomHex(32)
	}
	if rule.Trigger.Type != TriggerWebhook {
		r.HookID, r.HookSecret = "", ""
	}
	canonical, _ := json.Marshal(rule)
	err = s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO automation_rules (room_id, source, name, author, rule, hook_id, hook_secret, last_run)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (room_id, source, name) DO UPDATE SET author = excluded.author, rule = excluded.rule,
			hook_id = excluded.hook_id, hook_secret = excluded.hook_secret, last_run = excluded.last_run`,
			roomID, source, name, author, string(canonical), nullIfEmpty(r.HookID), nullIfEmpty(r.HookSecret), r.LastRun.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store automation rule: %w", err)
	}
	s.remember(r)
	if err := s.join(ctx, roomID); err != nil {
		s.opts.Log.Warn("automation: the automation user could not join", "room_id", roomID, "err", err)
	}
	return r, nil
}

// RemoveRule drops a rule; it reports whether there was one.
func (s *Service) RemoveRule(ctx context.Context, roomID id.RoomID, source, name string) (bool, error) {
	var n int64
	err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, "DELETE FROM automation_rules WHERE room_id = $1 AND source = $2 AND name = $3", roomID, source, name)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("remove automation rule: %w", err)
	}
	s.mu.Lock()
	s.forgetLocked(roomID, source, name)
	s.mu.Unlock()
	return n > 0, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// join has the automation user join a room it is not in. A room that is
// not public must invite it first.
func (s *Service) join(ctx context.Context, roomID id.RoomID) error {
	bot := s.Bot()
	if s.opts.Rooms.Membership(bot, roomID) == "join" {
		return nil
	}
	u, exists, err := s.opts.Accounts.GetUser(ctx, bot)
	if err != nil {
		return err
	}
	if exists && u.PasswordHash != "" {
		return fmt.Errorf("%s is a user account with a password, not the automation user", bot)
	}
	if !exists {
		if _, err := s.opts.Accounts.CreateUser(ctx, BotLocalpart, "", false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
			return fmt.Errorf("create the automation user: %w", err)
		}
	}
	sk := string(bot)
	_, err = s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: bot,
		Content: json.RawMessage(`{"membership":"join","displayname":"Automation"}`)})
	return err
}

// OnEvent is the room engine's hook: it wakes the follower for the events
// scan reads (rule changes, the automation user's memberships, the events
// of rooms with rules); other events cost no round, and the next round
// still reads past them. It never blocks.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Pos <= 0 {
		return
	}
	if ev.Type == StateType || ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == string(s.Bot()) || s.hasRules(ev.RoomID) {
		s.follower.Wake()
	}
}

// hasRules reports whether the room has a rule.
func (s *Service) hasRules(roomID id.RoomID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rules[roomID]) > 0
}

// Start runs the follower and the schedule until Close.
func (s *Service) Start() { s.follower.Start() }

// Close stops the follower and the schedule.
func (s *Service) Close() { s.follower.Close() }

// CatchUp runs Step until every committed event was looked at.
func (s *Service) CatchUp(ctx context.Context) error { return s.follower.CatchUp(ctx) }

// trigger is what set a rule off.
type trigger struct {
	id       string // event ID, or schedule/hook run
	evType   string
	roomID   id.RoomID
	sender   id.UserID
	stateKey *string
	ts       time.Time
	content  json.RawMessage
	json     []byte
}

// Step looks at the next committed events (at most stepSize) and
// reports whether more may be waiting. Rule changes apply in order, so a
// message after a rule's state event is matched against it.
func (s *Service) Step(ctx context.Context) (more bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	mark, err := s.mark.Pos(ctx)
	if err != nil {
		return false, err
	}
	visible := s.opts.DB.Visible()
	if visible <= mark {
		return false, nil
	}
	evs, through, err := s.scan(ctx, mark, visible)
	if err != nil {
		return false, err
	}
	for _, t := range evs {
		if err := s.handle(ctx, t); err != nil {
			return false, err
		}
	}
	if len(evs) == 0 {
		return through < visible, s.mark.Skip(ctx, through)
	}
	// After a rule change another step reads what came meanwhile: an
	// event of its room that came before the rule did woke no round.
	ruled := evs[len(evs)-1].evType == StateType
	return through < visible || ruled, s.mark.Set(ctx, through)
}

// scan reads the committed events after mark that the follower must look
// at: rule changes (up to and including the next, which changes the
// rooms with rules), the events of rooms with rules, and the automation
// user's invites.
func (s *Service) scan(ctx context.Context, mark, visible int64) ([]trigger, int64, error) {
	filter := rooms.EventFilter{Types: []string{StateType, "m.room.member"},
		Rooms: func(r id.RoomID) bool { return len(s.roomRules(r)) > 0 }}
	evs, through, err := s.opts.Rooms.CommittedEvents(ctx, mark, visible, filter, stepSize)
	if err != nil {
		return nil, 0, fmt.Errorf("read events for automation: %w", err)
	}
	bot := string(s.Bot())
	var out []trigger
	for _, ev := range evs {
		if ev.Type == "m.room.member" && (ev.StateKey == nil || *ev.StateKey != bot) && len(s.roomRules(ev.RoomID)) == 0 {
			continue
		}
		out = append(out, newTrigger(ev))
		if ev.Type == StateType {
			return out, ev.Pos, nil
		}
	}
	return out, through, nil
}

func newTrigger(ev *rooms.Event) trigger {
	return trigger{id: string(ev.ID), evType: ev.Type, roomID: ev.RoomID, sender: ev.Sender, stateKey: ev.StateKey,
		ts: time.UnixMilli(ev.TS), json: ev.JSON, content: json.RawMessage(gjson.GetBytes(ev.JSON, "content").Raw)}
}

// handle applies a rule change, or runs the rules an event triggers. The
// automation user's own events trigger nothing, so a rule cannot set
// itself off.
func (s *Service) handle(ctx context.Context, t trigger) error {
	if t.evType == StateType && t.stateKey != nil {
		return s.ruleEvent(ctx, t)
	}
	if t.sender == s.Bot() {
		return nil
	}
	if t.evType == "m.room.member" && t.stateKey != nil && id.UserID(*t.stateKey) == s.Bot() {
		return s.invited(ctx, t)
	}
	for _, r := range s.roomRules(t.roomID) {
		if r.Rule.matches(t) && r.Rule.Conditions.allows(t.sender, t.ts) {
			s.run(ctx, r, t)
		}
	}
	return nil
}

// invited accepts an invite of the automation user, so a room that is
// not public can invite it before writing rules, and a room can take
// forwarded messages.
func (s *Service) invited(ctx context.Context, t trigger) error {
	if gjson.GetBytes(t.content, "membership").String() != "invite" || s.opts.Rooms.Membership(s.Bot(), t.roomID) != "invite" {
		return nil
	}
	if err := s.join(ctx, t.roomID); err != nil {
		s.opts.Log.Warn("automation: invite not accepted", "room_id", t.roomID, "err", err)
	}
	return nil
}

// ruleEvent applies a rule's state event: empty content removes the
// rule; a rule that does not parse is removed too, and the automation
// user says why in the room.
func (s *Service) ruleEvent(ctx context.Context, t trigger) error {
	name := *t.stateKey
	var fields map[string]json.RawMessage
	if json.Unmarshal(t.content, &fields) != nil || len(fields) == 0 {
		_, err := s.RemoveRule(ctx, t.roomID, SourceState, name)
		return err
	}
	if _, err := ParseRule(name, t.content); err != nil {
		if _, err := s.RemoveRule(ctx, t.roomID, SourceState, name); err != nil {
			return err
		}
		s.notice(ctx, t.roomID, "automation rule refused: "+err.Error(), "refused/"+t.id)
		return nil
	}
	_, err := s.SetRule(ctx, t.roomID, SourceState, name, t.sender, t.content)
	return err
}

// matches reports whether t sets the rule's trigger off.
func (r *Rule) matches(t trigger) bool {
	switch r.Trigger.Type {
	case TriggerMessage:
		if t.evType != "m.room.message" {
			return false
		}
		msgtype := gjson.GetBytes(t.content, "msgtype").String()
		body := gjson.GetBytes(t.content, "body")
		// Notices are what bots send: answering them could loop between
		// two bots.
		return msgtype != "m.notice" && body.Type == gjson.String && r.Trigger.pattern.MatchString(body.String())
	case TriggerJoin:
		return t.evType == "m.room.member" && t.stateKey != nil && *t.stateKey == string(t.sender) &&
			gjson.GetBytes(t.content, "membership").String() == "join" &&
			gjson.GetBytes(t.json, "unsigned.prev_content.membership").String() != "join"
	case TriggerReaction:
		key := gjson.GetBytes(t.content, `m\.relates_to.key`)
		return t.evType == "m.reaction" && key.Type == gjson.String && (r.Trigger.Key == "" || r.Trigger.Key == key.String())
	}
	return false
}

// PurgeRoom forgets a purged room's rules (a rooms.Engine OnPurge hook):
// in the database inside the purge's write, in memory once it committed,
// so a purge that rolls back leaves the rules working.
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM automation_rules WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge automation rules: %w", err)
	}
	tx.AfterCommit(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.rules[roomID] {
			s.forgetLocked(roomID, r.Source, r.Name)
		}
	})
	return nil
}
