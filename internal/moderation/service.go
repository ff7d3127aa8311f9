package moderation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/admin"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	// BotLocalpart is the moderation user's localpart: it joins the
	// protected rooms and acts in them as a moderator.
	BotLocalpart = "moderation"
	followerName = "events"
	stepSize     = 200
	// followInterval is how often the follower looks for events without
	// a wake-up.
	followInterval = time.Second
	// saveInterval is how often a changed classifier is saved.
	saveInterval = 30 * time.Second
	// maxQueuedReports bounds the users' reports waiting for the
	// follower; past it a report is kept for the admin API only.
	maxQueuedReports = 1000
	// maxProtectedRooms bounds the rooms the node protects (their
	// configurations and remembered messages are kept in memory); a room
	// past it is logged and left unprotected.
	maxProtectedRooms = 10_000
	// maxArrived bounds the arrival times kept for the follower.
	maxArrived = 100_000
	// maxAttempts is how many times in a row the follower tries an event
	// whose handling fails before it logs and skips it.
	maxAttempts = 3
)

// Watch roles of a room (moderation_watch).
const (
	roleProtected  = "protected"
	roleList       = "list"
	roleModerators = "moderators"
)

// Options configure a Service.
type Options struct {
	DB       *storage.DB
	Rooms    *rooms.Engine
	Accounts *accounts.Service
	Log      *slog.Logger
	// RoomVersion is the version of the node's own policy list room.
	RoomVersion id.RoomVersion
}

// Service runs the protections and policy lists of the node's rooms off
// the send path: the room engine's OnEvent hook only wakes its follower,
// which reads the committed events of the rooms it watches.
type Service struct {
	opts Options
	log  *slog.Logger

	reports  chan admin.Report // users' reports the follower posts
	stepMu   sync.Mutex        // one step, settings change or undo at a time
	mark     *follower.Mark
	follower *follower.Follower

	// Guarded by stepMu.
	settings Settings
	configs  map[id.RoomID]*Config
	teachers map[id.RoomID]bool            // protected rooms whose moderators teach the classifier
	lists    map[id.RoomID]map[string]Rule // list room -> rule key -> rule
	recent   map[id.RoomID][]*recentMsg
	// recentBytes is the size of the bodies in recent, by room.
	recentBytes map[id.RoomID]int
	flood       map[string][]int64 // room + user -> recent message receive times
	// floodTold is when a flooding user was last warned (redact mode),
	// by room + user.
	floodTold map[string]int64
	loaded    bool
	// watched holds the rooms the follower reads (moderation_watch).
	watched *follower.RoomSet
	// failedPos is the event whose handling failed at the last step and
	// failures how many times in a row.
	failedPos int64
	failures  int

	// arrived is when each message the follower has yet to read was
	// committed (Unix ms), by position: the flood limit counts local
	// receive times, not the origin_server_ts a sender chooses.
	arrivedMu sync.Mutex
	arrived   map[int64]int64

	// roomBans is the room rules that ban rooms, of every list the node
	// or a protected room follows: RoomPolicy reads it without waiting
	// for the follower, which replaces it (refreshRoomBans).
	roomBans atomic.Pointer[[]Rule]

	clsMu    sync.Mutex
	cls      *Classifier
	clsDirty bool
	clsSaved time.Time
}

// Settings are the node's moderation settings (admin API).
type Settings struct {
	// ModeratorsRoom receives reports for rooms that name none.
	ModeratorsRoom id.RoomID `json:"moderators_room,omitempty"`
	// PolicyLists apply to every protected room.
	PolicyLists []id.RoomID `json:"policy_lists,omitempty"`
	// ListRoom is the node's own policy list, created on its first rule.
	ListRoom id.RoomID `json:"list_room,omitempty"`
}

// New returns the service; Start starts its follower.
func New(opts Options) *Service {
	if opts.RoomVersion == "" {
		opts.RoomVersion = id.RoomV11
	}
	s := &Service{opts: opts, log: opts.Log.With("component", "moderation"),
		reports: make(chan admin.Report, maxQueuedReports), mark: follower.NewMark(opts.DB, "moderation_marks", followerName),
		watched: follower.NewRoomSet(opts.DB, "SELECT DISTINCT room_id FROM moderation_watch"),
		configs: map[id.RoomID]*Config{}, teachers: map[id.RoomID]bool{}, lists: map[id.RoomID]map[string]Rule{},
		recent: map[id.RoomID][]*recentMsg{}, recentBytes: map[id.RoomID]int{}, flood: map[string][]int64{}, floodTold: map[string]int64{},
		arrived: map[int64]int64{}, cls: NewClassifier()}
	s.follower = follower.New("moderation", followInterval, s.log, s.Step)
	s.follower.AfterRound(func(ctx context.Context) error { return s.saveClassifier(ctx, false) })
	return s
}

// Bot is the moderation user.
func (s *Service) Bot() id.UserID { return s.opts.Accounts.UserID(BotLocalpart) }

// OnEvent is the room engine's hook: for a configuration and the events
// of the rooms it watches (as the follower last read them) it notes when
// a message arrived and wakes the follower; other events cost no round,
// and the next round still reads past them. It never blocks.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Pos <= 0 || ev.Type != ConfigType && !s.watched.MayHave(ev.RoomID) {
		return
	}
	if isMessageType(ev.Type) {
		s.arrivedMu.Lock()
		if len(s.arrived) >= maxArrived {
			clear(s.arrived) // a follower far behind judges by origin_server_ts
		}
		s.arrived[ev.Pos] = time.Now().UnixMilli()
		s.arrivedMu.Unlock()
	}
	s.wakeUp()
}

// isMessageType reports whether the protections look at events of a type.
func isMessageType(evType string) bool {
	return evType == "m.room.message" || evType == "m.sticker" || evType == "m.room.encrypted"
}

// receivedAt returns when the node committed a message: noted by OnEvent,
// or, for one committed before the node started (or while the follower
// was far behind), its origin_server_ts.
func (s *Service) receivedAt(ev storedEvent) int64 {
	s.arrivedMu.Lock()
	defer s.arrivedMu.Unlock()
	if t, ok := s.arrived[ev.pos]; ok {
		return t
	}
	return ev.ts()
}

// forgetArrivals drops the arrival times of the events up to pos, which
// the follower has read.
func (s *Service) forgetArrivals(pos int64) {
	s.arrivedMu.Lock()
	defer s.arrivedMu.Unlock()
	for p := range s.arrived {
		if p <= pos {
			delete(s.arrived, p)
		}
	}
}

// wakeUp has the follower look for events now.
func (s *Service) wakeUp() { s.follower.Wake() }

// Start runs the follower until Close.
func (s *Service) Start() { s.follower.Start() }

// Close stops the follower and saves the classifier.
func (s *Service) Close(ctx context.Context) error {
	s.follower.Close()
	return s.saveClassifier(ctx, true)
}

// storedEvent is one event the follower reads.
type storedEvent struct {
	pos      int64
	roomID   id.RoomID
	eventID  id.EventID
	evType   string
	stateKey sql.NullString
	sender   id.UserID
	json     []byte
}

func (ev storedEvent) content() gjson.Result { return gjson.GetBytes(ev.json, "content") }

func (ev storedEvent) ts() int64 { return gjson.GetBytes(ev.json, "origin_server_ts").Int() }

// Step handles the next committed events (at most stepSize, up to and
// including the next configuration change) and reports whether more may
// be waiting. An event whose handling fails ends the step with the error
// and is tried again at the next, the mark just before it; after
// maxAttempts failures it is logged and skipped. The follower calls it;
// tests call it to catch up at once.
func (s *Service) Step(ctx context.Context) (more bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	if err := s.load(ctx); err != nil {
		return false, err
	}
	s.postReports(ctx)
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
	done := mark
	for _, ev := range evs {
		if err := s.handle(ctx, ev); err != nil && !s.skip(ctx, ev, err) {
			// Handled again at the next step; the events before it are
			// done and are not.
			if done > mark {
				err = errors.Join(err, s.mark.Set(ctx, done))
			}
			return false, err
		}
		done = ev.pos
	}
	s.forgetArrivals(through)
	if len(evs) == 0 {
		return through < visible, s.mark.Skip(ctx, through)
	}
	// After a configuration another step reads what came meanwhile: an
	// event of a room it watches now that came before the rooms were
	// forgotten woke no round.
	configured := evs[len(evs)-1].evType == ConfigType
	return through < visible || configured, s.mark.Set(ctx, through)
}

// skip reports whether an event whose handling failed is given up: after
// maxAttempts failures in a row (or never, when the node is stopping). A
// failure that is not passing, such as a send the room refuses, must not
// stall the follower, nor the events after it be replayed.
func (s *Service) skip(ctx context.Context, ev storedEvent, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if s.failedPos != ev.pos {
		s.failedPos, s.failures = ev.pos, 0
	}
	s.failures++
	if s.failures < maxAttempts {
		return false
	}
	s.log.Error("moderation: event skipped after failing repeatedly", "room_id", ev.roomID, "event_id", ev.eventID,
		"type", ev.evType, "attempts", s.failures, "err", err)
	s.failedPos, s.failures = 0, 0
	return true
}

// scan reads the committed events after mark that the follower must
// see: those of the rooms it watches, and every protections
// configuration, up to and including the next (which may change the
// watched rooms).
func (s *Service) scan(ctx context.Context, mark, visible int64) ([]storedEvent, int64, error) {
	watched, err := s.watched.Get(ctx)
	if err != nil {
		return nil, 0, err
	}
	filter := rooms.EventFilter{Types: []string{ConfigType}, Rooms: func(r id.RoomID) bool { return watched[r] }}
	evs, through, err := s.opts.Rooms.CommittedEvents(ctx, mark, visible, filter, stepSize)
	if err != nil {
		return nil, 0, fmt.Errorf("read events for moderation: %w", err)
	}
	out := make([]storedEvent, 0, len(evs))
	for _, ev := range evs {
		out = append(out, newStoredEvent(ev))
		if ev.Type == ConfigType {
			return out, ev.Pos, nil
		}
	}
	return out, through, nil
}

func newStoredEvent(ev *rooms.Event) storedEvent {
	se := storedEvent{pos: ev.Pos, roomID: ev.RoomID, eventID: ev.ID, evType: ev.Type, sender: ev.Sender, json: ev.JSON}
	if ev.StateKey != nil {
		se.stateKey = sql.NullString{String: *ev.StateKey, Valid: true}
	}
	return se
}

// load reads, once, the node's settings, the classifier and the
// configuration of every protected room.
func (s *Service) load(ctx context.Context) error {
	if s.loaded {
		return nil
	}
	if v, ok, err := s.setting(ctx, "settings"); err != nil {
		return err
	} else if ok {
		if err := json.Unmarshal([]byte(v), &s.settings); err != nil {
			return fmt.Errorf("moderation settings: %w", err)
		}
	}
	if v, ok, err := s.setting(ctx, "classifier"); err != nil {
		return err
	} else if ok {
		if err := s.cls.UnmarshalJSON([]byte(v)); err != nil {
			return fmt.Errorf("moderation classifier: %w", err)
		}
	}
	rows, err := s.opts.DB.Query(ctx, "SELECT room_id FROM moderation_watch WHERE role = $1", roleProtected)
	if err != nil {
		return fmt.Errorf("read protected rooms: %w", err)
	}
	var protected []id.RoomID
	for rows.Next() {
		var r id.RoomID
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return fmt.Errorf("read protected rooms: %w", err)
		}
		protected = append(protected, r)
	}
	rows.Close()
	for _, r := range protected {
		ev, err := s.opts.Rooms.StateEvent(ctx, r, ConfigType, "")
		if err != nil || ev == nil {
			continue
		}
		if cfg, err := ParseConfig(ev.Content()); err == nil && !cfg.empty() && len(s.configs) < maxProtectedRooms {
			s.configs[r] = cfg
			s.teachers[r] = s.setByAdmin(ctx, ev)
		}
	}
	if err := s.refreshRoomBans(ctx); err != nil {
		return err
	}
	s.loaded = true
	return nil
}

func (s *Service) setting(ctx context.Context, name string) (string, bool, error) {
	var v string
	err := s.opts.DB.QueryRow(ctx, "SELECT value FROM moderation_settings WHERE name = $1", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read moderation setting %s: %w", name, err)
	}
	return v, true, nil
}

func (s *Service) setSetting(ctx context.Context, name, value string) error {
	return s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO moderation_settings (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
		return err
	})
}

// saveClassifier stores the classifier when it changed, at most every
// saveInterval unless now is set. It lives in memory: what was learnt
// since the last save is lost if the node dies.
func (s *Service) saveClassifier(ctx context.Context, now bool) error {
	s.clsMu.Lock()
	if !s.clsDirty || (!now && time.Since(s.clsSaved) < saveInterval) {
		s.clsMu.Unlock()
		return nil
	}
	b, err := s.cls.MarshalJSON()
	s.clsDirty, s.clsSaved = false, time.Now()
	s.clsMu.Unlock()
	if err != nil {
		return err
	}
	return s.setSetting(ctx, "classifier", string(b))
}

// empty reports whether a configuration turns nothing on.
func (c *Config) empty() bool {
	return c.ModeratorsRoom == "" && len(c.PolicyLists) == 0 && c.Flood == nil && c.Mentions == nil &&
		len(c.Words) == 0 && len(c.BlockedLinks) == 0 && c.NewAccounts == nil && c.FirstMessage == nil && !c.Classifier
}

// handle does what one event calls for.
func (s *Service) handle(ctx context.Context, ev storedEvent) error {
	if ev.evType == ConfigType && ev.stateKey.Valid && ev.stateKey.String == "" {
		return s.configure(ctx, ev.roomID)
	}
	if ev.stateKey.Valid && isRuleType(ev.evType) && s.isList(ev.roomID) {
		return s.ruleChanged(ctx, ev.roomID, ev.evType, ev.stateKey.String)
	}
	if ev.evType == "m.room.redaction" && s.isList(ev.roomID) {
		return s.ruleRedacted(ctx, ev)
	}
	if ev.sender == s.Bot() {
		return nil
	}
	if ev.evType == "m.reaction" && s.isModeratorsRoom(ev.roomID) {
		return s.undoByReaction(ctx, ev)
	}
	cfg := s.configs[ev.roomID]
	if cfg == nil {
		return nil
	}
	switch ev.evType {
	case "m.room.member":
		return s.memberChanged(ctx, cfg, ev)
	case "m.room.redaction":
		return s.learnFromRedaction(ctx, ev)
	case "m.room.message", "m.sticker", "m.room.encrypted":
		return s.protect(ctx, cfg, ev)
	}
	return nil
}

// configure applies a room's new configuration: the watched rooms, the
// moderation user's memberships, then its policy lists.
func (s *Service) configure(ctx context.Context, roomID id.RoomID) error {
	ev, err := s.opts.Rooms.StateEvent(ctx, roomID, ConfigType, "")
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", ConfigType, roomID, err)
	}
	var cfg *Config
	if ev != nil {
		if cfg, err = ParseConfig(ev.Content()); err != nil {
			// A remote server sent it; local sends are checked.
			s.log.Warn("moderation: configuration ignored", "room_id", roomID, "err", err)
			cfg = nil
		}
	}
	if cfg == nil || cfg.empty() {
		delete(s.configs, roomID)
		delete(s.teachers, roomID)
		s.forgetRoom(roomID)
		s.log.Info("moderation: protections off", "room_id", roomID)
		if err := s.writeWatch(ctx); err != nil {
			return err
		}
		return s.refreshRoomBans(ctx)
	}
	if _, known := s.configs[roomID]; !known && len(s.configs) >= maxProtectedRooms {
		s.log.Warn("moderation: protections not turned on: the node protects too many rooms", "room_id", roomID, "max", maxProtectedRooms)
		return nil
	}
	s.configs[roomID] = cfg
	s.teachers[roomID] = s.setByAdmin(ctx, ev)
	s.log.Info("moderation: protections configured", "room_id", roomID, "teaches_classifier", s.teachers[roomID])
	if err := s.writeWatch(ctx); err != nil {
		return err
	}
	s.joinAll(ctx, append([]id.RoomID{roomID}, s.related(cfg)...))
	if err := s.refreshRoomBans(ctx); err != nil {
		return err
	}
	return s.enforce(ctx, roomID)
}

// setByAdmin reports whether a protections event was sent by a server
// admin of this node. Only the moderators of such rooms teach the node's
// classifier: a room anyone else configures, on this node or another,
// uses it without training it, so it cannot be poisoned from there.
func (s *Service) setByAdmin(ctx context.Context, ev *rooms.Event) bool {
	if ev == nil || !s.local(ev.Sender) {
		return false
	}
	u, ok, err := s.opts.Accounts.GetUser(ctx, ev.Sender)
	if err != nil {
		s.log.Warn("moderation: read the sender of a configuration", "room_id", ev.RoomID, "user_id", ev.Sender, "err", err)
		return false
	}
	return ok && u.IsAdmin
}

// local reports whether a user is an account of this node.
func (s *Service) local(u id.UserID) bool { return serverOf(u) == s.opts.Accounts.ServerName() }

// related returns the rooms a protected room's configuration names.
func (s *Service) related(cfg *Config) []id.RoomID {
	out := slices.Clone(s.listsOf(cfg))
	if m := s.moderatorsRoom(cfg); m != "" {
		out = append(out, m)
	}
	return out
}

// listsOf returns the policy lists that apply to a protected room: its
// own, the node's subscriptions and the node's own list.
func (s *Service) listsOf(cfg *Config) []id.RoomID {
	out := slices.Clone(cfg.PolicyLists)
	for _, l := range append(slices.Clone(s.settings.PolicyLists), s.settings.ListRoom) {
		if l == "" {
			continue
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func (s *Service) moderatorsRoom(cfg *Config) id.RoomID {
	if cfg != nil && cfg.ModeratorsRoom != "" {
		return cfg.ModeratorsRoom
	}
	return s.settings.ModeratorsRoom
}

func (s *Service) isList(roomID id.RoomID) bool {
	if slices.Contains(s.settings.PolicyLists, roomID) || s.settings.ListRoom == roomID {
		return true
	}
	for _, cfg := range s.configs {
		if slices.Contains(cfg.PolicyLists, roomID) {
			return true
		}
	}
	return false
}

func (s *Service) isModeratorsRoom(roomID id.RoomID) bool {
	if s.settings.ModeratorsRoom == roomID {
		return true
	}
	for _, cfg := range s.configs {
		if cfg.ModeratorsRoom == roomID {
			return true
		}
	}
	return false
}

// writeWatch rewrites the watched rooms from the configurations and the
// node's settings.
func (s *Service) writeWatch(ctx context.Context) error {
	type watch struct {
		room id.RoomID
		role string
	}
	set := map[watch]bool{}
	if s.settings.ModeratorsRoom != "" {
		set[watch{s.settings.ModeratorsRoom, roleModerators}] = true
	}
	// The node's lists are read even with no protected room: their
	// room rules apply to the whole node.
	for _, l := range s.listsOf(&Config{}) {
		set[watch{l, roleList}] = true
	}
	for r, cfg := range s.configs {
		set[watch{r, roleProtected}] = true
		for _, l := range s.listsOf(cfg) {
			set[watch{l, roleList}] = true
		}
		if cfg.ModeratorsRoom != "" {
			set[watch{cfg.ModeratorsRoom, roleModerators}] = true
		}
	}
	// The rules of a list no longer followed are forgotten: while
	// unwatched, its changes go unread, so if it is followed again its
	// rules are read afresh from its state.
	for l := range s.lists {
		if !set[watch{l, roleList}] {
			delete(s.lists, l)
		}
	}
	s.watched.Forget() // read again at the next step
	return s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM moderation_watch"); err != nil {
			return err
		}
		for w := range set {
			if _, err := tx.Exec(ctx, "INSERT INTO moderation_watch (room_id, role) VALUES ($1, $2)", w.room, w.role); err != nil {
				return err
			}
		}
		return nil
	})
}

// joinAll has the moderation user join rooms, logging what fails (a
// private room must invite it first).
func (s *Service) joinAll(ctx context.Context, roomIDs []id.RoomID) {
	for _, r := range roomIDs {
		if err := s.join(ctx, r); err != nil {
			s.log.Warn("moderation: the moderation user could not join; invite it", "room_id", r, "err", err)
		}
	}
}

// join makes sure the moderation user exists and is in the room.
func (s *Service) join(ctx context.Context, roomID id.RoomID) error {
	bot := s.Bot()
	if s.opts.Rooms.Membership(bot, roomID) == "join" {
		return nil
	}
	if err := s.ensureBot(ctx); err != nil {
		return err
	}
	sk := string(bot)
	_, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: bot,
		Content: json.RawMessage(`{"membership":"join","displayname":"Moderation"}`)})
	return err
}

// EnsureBot creates the moderation user if it does not exist; the node
// calls it at start, so the user is there (to invite, to give a power
// level) before any room turns protections on.
func (s *Service) EnsureBot(ctx context.Context) error { return s.ensureBot(ctx) }

// ensureBot creates the moderation user if it does not exist.
func (s *Service) ensureBot(ctx context.Context) error {
	bot := s.Bot()
	u, exists, err := s.opts.Accounts.GetUser(ctx, bot)
	if err != nil {
		return err
	}
	if exists && u.PasswordHash != "" {
		return fmt.Errorf("%s is a user account with a password, not the moderation user", bot)
	}
	if !exists {
		if _, err := s.opts.Accounts.CreateUser(ctx, BotLocalpart, "", false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
			return fmt.Errorf("create the moderation user: %w", err)
		}
	}
	return nil
}
