package moderation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

const (
	// recentPerRoom and recentBytesPerRoom bound the messages remembered
	// per protected room (for redact_on_ban and for learning from
	// redactions): 500 of them, 1 MiB of bodies.
	recentPerRoom      = 500
	recentBytesPerRoom = 1 << 20
	// minSpamToFlag is how many spam messages the classifier must have
	// learnt before it flags anything.
	minSpamToFlag = 5
	// spamThreshold is the probability from which a message is flagged.
	spamThreshold = 0.95
)

// recentMsg is a message of a protected room the follower remembers.
type recentMsg struct {
	eventID  id.EventID
	sender   id.UserID
	body     string
	tokens   []string
	learnt   int // the class it was learnt as, or -1
	redacted bool
}

// remember keeps a message among the room's recent ones, forgetting the
// oldest past recentPerRoom messages or recentBytesPerRoom of bodies.
func (s *Service) remember(roomID id.RoomID, m *recentMsg) {
	list := append(s.recent[roomID], m)
	size := s.recentBytes[roomID] + len(m.body)
	drop := 0
	for drop < len(list)-1 && (len(list)-drop > recentPerRoom || size > recentBytesPerRoom) {
		size -= len(list[drop].body)
		drop++
	}
	s.recent[roomID] = slices.Clone(list[drop:])
	s.recentBytes[roomID] = size
}

// forgetRoom drops what the follower remembers of a room whose
// protections went off.
func (s *Service) forgetRoom(roomID id.RoomID) {
	delete(s.recent, roomID)
	delete(s.recentBytes, roomID)
	prefix := string(roomID) + "\x00"
	for key := range s.flood {
		if strings.HasPrefix(key, prefix) {
			delete(s.flood, key)
			delete(s.floodTold, key)
		}
	}
}

// remembered returns how many messages the follower remembers, in all
// protected rooms.
func (s *Service) remembered() int {
	n := 0
	for _, list := range s.recent {
		n += len(list)
	}
	return n
}

func (s *Service) findRecent(roomID id.RoomID, evID id.EventID) *recentMsg {
	for _, m := range s.recent[roomID] {
		if m.eventID == evID {
			return m
		}
	}
	return nil
}

// verdict is what a protection found wrong with a message.
type verdict struct {
	protection string
	reason     string
}

// protect runs a protected room's protections on a message. The sender's
// power level at or above the room's exempt level (and the moderation
// user) are never acted on. Only flood and new-account limits see an
// encrypted message; the others need its plaintext.
func (s *Service) protect(ctx context.Context, cfg *Config, ev storedEvent) error {
	pl, err := s.opts.Rooms.PowerLevels(ctx, ev.roomID)
	if err != nil {
		return fmt.Errorf("read power levels of %s: %w", ev.roomID, err)
	}
	if pl.GetUserLevel(ev.sender) >= cfg.exemptLevel() {
		return nil
	}
	body := ev.content().Get("body").Str
	encrypted := ev.evType == "m.room.encrypted"
	if cfg.Flood != nil && s.flooding(cfg.Flood, ev) {
		return s.stopFlood(ctx, cfg, ev, body)
	}
	v, err := s.check(ctx, cfg, ev, body, encrypted)
	if err != nil {
		return err
	}
	if v != nil {
		return s.act(ctx, ev, body, *v)
	}
	if encrypted || body == "" {
		return nil
	}
	m := &recentMsg{eventID: ev.eventID, sender: ev.sender, body: body, learnt: -1}
	s.remember(ev.roomID, m)
	if !cfg.Classifier {
		return nil
	}
	m.tokens = Tokens(body)
	s.clsMu.Lock()
	_, spamDocs := s.cls.Docs()
	p := s.cls.SpamProbability(m.tokens)
	flag := spamDocs >= minSpamToFlag && p >= spamThreshold
	if !flag && s.teachers[ev.roomID] {
		s.cls.Learn(m.tokens, Ham)
		m.learnt = Ham
		s.clsDirty = true
	}
	s.clsMu.Unlock()
	if flag {
		return s.flag(ctx, ev, m, p)
	}
	return nil
}

// check runs the protections other than flood and the classifier.
func (s *Service) check(ctx context.Context, cfg *Config, ev storedEvent, body string, encrypted bool) (*verdict, error) {
	if na := cfg.NewAccounts; na != nil {
		young, err := s.youngAccount(ctx, ev, na.MinAgeSeconds)
		if err != nil {
			return nil, err
		}
		if young {
			return &verdict{"new_accounts", "your account is too new to post here yet"}, nil
		}
	}
	if encrypted {
		return nil, nil
	}
	mentions := s.mentions(ev, body)
	if cfg.Mentions != nil && mentions > cfg.Mentions.Max {
		return &verdict{"mentions", fmt.Sprintf("too many mentions in one message (%d, at most %d)", mentions, cfg.Mentions.Max)}, nil
	}
	lower := strings.ToLower(body)
	for _, w := range cfg.Words {
		if containsWord(lower, strings.ToLower(w)) {
			return &verdict{"words", "a word this room filters"}, nil
		}
	}
	hosts := links(body)
	for _, h := range hosts {
		for _, b := range cfg.BlockedLinks {
			if hostBlocked(h, strings.ToLower(b)) {
				return &verdict{"blocked_links", "a link to " + h + ", which this room blocks"}, nil
			}
		}
	}
	if fm := cfg.FirstMessage; fm != nil && ((fm.NoLinks && len(hosts) > 0) || (fm.NoMentions && mentions > 0)) {
		first, err := s.firstMessage(ctx, ev)
		if err != nil {
			return nil, err
		}
		if first {
			return &verdict{"first_message", "a first message here may not hold links or mentions"}, nil
		}
	}
	return nil, nil
}

// act redacts a message a protection refused, warns its sender and
// reports it to the moderators.
func (s *Service) act(ctx context.Context, ev storedEvent, body string, v verdict) error {
	a, err := s.redact(ctx, ev.roomID, ev.eventID, ev.sender, v.protection+": "+v.reason, body)
	if err != nil {
		s.refused(ctx, ev.roomID, fmt.Sprintf("redact %s's message %s in %s (%s: %s)", ev.sender, ev.eventID, ev.roomID,
			protectionName(v.protection), v.reason), err)
		return nil
	}
	s.warn(ctx, ev.roomID, ev.sender, "your message was removed by "+protectionName(v.protection)+": "+v.reason+".")
	s.report(ctx, a, fmt.Sprintf("%s's message %s in %s redacted by %s: %s.", ev.sender, ev.eventID, ev.roomID,
		protectionName(v.protection), v.reason))
	return nil
}

// flooding counts the message in its sender's window and reports whether
// the sender is over the limit. The window counts when the node received
// each message, not the origin_server_ts remote servers and appservices
// set, so spacing the timestamps out does not get around it; a backlog
// read late is still judged as it arrived.
func (s *Service) flooding(f *FloodConfig, ev storedEvent) bool {
	key := floodKey(ev)
	ts := s.receivedAt(ev)
	since := ts - int64(f.Seconds)*1000
	window := s.flood[key][:0:0]
	for _, t := range s.flood[key] {
		if t > since {
			window = append(window, t)
		}
	}
	window = append(window, ts)
	s.flood[key] = window
	if len(s.flood) > 100_000 {
		clear(s.flood) // bound the memory of a flood of senders
		clear(s.floodTold)
	}
	return len(window) > f.Messages
}

func floodKey(ev storedEvent) string { return string(ev.roomID) + "\x00" + string(ev.sender) }

// stopFlood mutes the sender (the default) or redacts the message. In
// redact mode the sender is warned and the moderators told once per
// window, not for every message over the limit; a sender already muted
// (the rest of a backlog read after the mute) is not muted again.
func (s *Service) stopFlood(ctx context.Context, cfg *Config, ev storedEvent, body string) error {
	key := floodKey(ev)
	reason := fmt.Sprintf("%d messages in %d s (the limit is %d)", len(s.flood[key]), cfg.Flood.Seconds, cfg.Flood.Messages)
	if cfg.Flood.Action == "redact" {
		now := s.receivedAt(ev)
		if told, ok := s.floodTold[key]; ok && now-told < int64(cfg.Flood.Seconds)*1000 {
			if _, err := s.redact(ctx, ev.roomID, ev.eventID, ev.sender, "flood: "+reason, body); err != nil {
				s.refused(ctx, ev.roomID, fmt.Sprintf("redact %s's message %s in %s (the flood protection: %s)", ev.sender, ev.eventID, ev.roomID, reason), err)
			}
			return nil
		}
		s.floodTold[key] = now
		return s.act(ctx, ev, body, verdict{"flood", reason})
	}
	delete(s.flood, key)
	pl, err := s.opts.Rooms.PowerLevels(ctx, ev.roomID)
	if err != nil {
		return fmt.Errorf("read power levels of %s: %w", ev.roomID, err)
	}
	if pl.GetUserLevel(ev.sender) < pl.EventsDefault {
		return nil // muted already
	}
	a, err := s.mute(ctx, ev.roomID, ev.sender, "flood: "+reason)
	if err != nil {
		s.stopFloodWithoutMute(ctx, ev, body, reason, err)
		return nil
	}
	s.warn(ctx, ev.roomID, ev.sender, "you are muted by the flood protection: "+reason+".")
	s.report(ctx, a, fmt.Sprintf("%s muted in %s by the flood protection: %s.", ev.sender, ev.roomID, reason))
	return nil
}

// stopFloodWithoutMute stops a flooder the moderation user may not mute
// (it lacks the power to change power levels) with what it may do:
// redact the flooder's messages it remembers in the room, the one over
// the limit included, and kick them. The report says so and why.
func (s *Service) stopFloodWithoutMute(ctx context.Context, ev storedEvent, body, reason string, muteErr error) {
	why := "flood: " + reason
	var done []string
	redacted, redactErr := 0, error(nil)
	if _, err := s.redact(ctx, ev.roomID, ev.eventID, ev.sender, why, body); err != nil {
		redactErr = err
	} else {
		redacted++
		for _, m := range s.recent[ev.roomID] {
			if m.sender != ev.sender || m.redacted {
				continue
			}
			if _, err := s.redact(ctx, ev.roomID, m.eventID, ev.sender, why, m.body); err != nil {
				redactErr = err
				break
			}
			m.redacted = true
			redacted++
		}
	}
	if redacted > 0 {
		done = append(done, fmt.Sprintf("redacted %d of their messages", redacted))
	}
	kicked, kickErr := s.kick(ctx, ev.roomID, ev.sender, why)
	if kickErr == nil {
		done = append(done, "kicked them")
	}
	what := fmt.Sprintf("mute %s in %s (the flood protection: %s)", ev.sender, ev.roomID, reason)
	if len(done) == 0 {
		s.refused(ctx, ev.roomID, what, errors.Join(muteErr, redactErr, kickErr))
		return
	}
	text := fmt.Sprintf("%s flooded %s, stopped by the flood protection: %s. Could not mute them (%v), so instead %s.",
		ev.sender, ev.roomID, reason, muteErr, strings.Join(done, " and "))
	if kickErr != nil {
		text += fmt.Sprintf(" Could not kick them: %v.", kickErr)
	}
	if kicked == nil {
		s.warn(ctx, ev.roomID, ev.sender, "your messages were removed by the flood protection: "+reason+".")
		s.notifyModerators(ctx, s.configs[ev.roomID], text+" Undo a redaction with \"!assistant mod undo <id>\" (see \"!assistant mod log\").", nil)
		return
	}
	s.report(ctx, kicked, text+" They may join again.")
}

// mentions counts the users a message mentions: m.mentions or the user
// IDs in its body, whichever is more.
func (s *Service) mentions(ev storedEvent, body string) int {
	n := len(ev.content().Get("m\\.mentions.user_ids").Array())
	inBody := 0
	for _, f := range strings.Fields(body) {
		f = strings.TrimRightFunc(f, func(r rune) bool { return r == ',' || r == ':' || r == '.' })
		if strings.HasPrefix(f, "@") && strings.Contains(f[1:], ":") {
			inBody++
		}
	}
	return max(n, inBody)
}

// containsWord reports whether w occurs in s (both lower case) with no
// letter or digit right before or after it: "ass" does not match "class".
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		before, _ := utf8.DecodeLastRuneInString(s[:start])
		after, _ := utf8.DecodeRuneInString(s[end:])
		if !isWordRune(before) && !isWordRune(after) {
			return true
		}
		i = start + 1
	}
}

func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// hostBlocked reports whether a link's host is an entry of
// blocked_links: the domain itself, a subdomain of it, or a glob match.
func hostBlocked(host, entry string) bool {
	return host == entry || strings.HasSuffix(host, "."+entry) || globMatch(entry, host)
}

// youngAccount reports whether the sender is an account of this node
// younger than minAge at the time of the message.
func (s *Service) youngAccount(ctx context.Context, ev storedEvent, minAge int64) (bool, error) {
	if serverOf(ev.sender) != s.opts.Accounts.ServerName() {
		return false, nil
	}
	u, ok, err := s.opts.Accounts.GetUser(ctx, ev.sender)
	if err != nil || !ok {
		return false, err
	}
	return s.receivedAt(ev)-u.CreatedTS < minAge*1000, nil
}

// firstMessage reports whether the event is its sender's first message
// in the room.
func (s *Service) firstMessage(ctx context.Context, ev storedEvent) (bool, error) {
	var n int
	err := s.opts.DB.QueryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room_id = $1 AND sender = $2
		AND type = 'm.room.message' AND pos > 0 AND pos < $3 LIMIT 1) AS earlier`, ev.roomID, ev.sender, ev.pos).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count earlier messages: %w", err)
	}
	return n == 0, nil
}

// flag redacts a message the classifier finds like the spam moderators
// removed and reports it to the moderators' room, where a reaction
// restores it (and teaches the classifier it was not spam).
func (s *Service) flag(ctx context.Context, ev storedEvent, m *recentMsg, p float64) error {
	reason := "classifier: like the spam moderators removed here"
	a, err := s.redact(ctx, ev.roomID, ev.eventID, ev.sender, reason, m.body)
	if err != nil {
		s.refused(ctx, ev.roomID, fmt.Sprintf("redact %s's message %s in %s (the spam classifier: %.0f%% likely spam)", ev.sender, ev.eventID, ev.roomID, p*100), err)
		return nil
	}
	m.redacted = true
	a.Action = ActionFlag
	if err := s.retype(ctx, a.ID, ActionFlag); err != nil {
		return err
	}
	s.report(ctx, a, fmt.Sprintf("%s's message %s in %s redacted by the spam classifier: %.0f%% likely spam: %q.", ev.sender, ev.eventID, ev.roomID, p*100, excerpt(m.body)))
	return nil
}

func (s *Service) retype(ctx context.Context, actionID int64, action string) error {
	err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE moderation_actions SET action = $1 WHERE id = $2", action, actionID)
		return err
	})
	if err != nil {
		return fmt.Errorf("log moderation action: %w", err)
	}
	return nil
}

func excerpt(body string) string {
	if utf8.RuneCountInString(body) <= 200 {
		return body
	}
	return string([]rune(body)[:200]) + "…"
}

// learnFromRedaction teaches the classifier that a message a moderator
// of this node (not its sender, not the moderation user) redacted in a
// room that teaches it was spam.
func (s *Service) learnFromRedaction(ctx context.Context, ev storedEvent) error {
	if !s.teachers[ev.roomID] || !s.local(ev.sender) {
		return nil
	}
	target := id.EventID(ev.content().Get("redacts").Str)
	if target == "" {
		target = id.EventID(gjson.GetBytes(ev.json, "redacts").Str)
	}
	m := s.findRecent(ev.roomID, target)
	if m == nil || m.sender == ev.sender {
		return nil
	}
	pl, err := s.opts.Rooms.PowerLevels(ctx, ev.roomID)
	if err != nil {
		return fmt.Errorf("read power levels of %s: %w", ev.roomID, err)
	}
	if pl.GetUserLevel(ev.sender) < pl.Redact() {
		return nil
	}
	m.redacted = true
	s.learnSpam(m)
	return nil
}

// learnFromBan teaches the classifier that the recent messages of a user
// a moderator of this node banned from a room that teaches it were spam.
func (s *Service) learnFromBan(roomID id.RoomID, moderator, u id.UserID) {
	if !s.teachers[roomID] || !s.local(moderator) {
		return
	}
	for _, m := range s.recent[roomID] {
		if m.sender == u {
			s.learnSpam(m)
		}
	}
}

func (s *Service) learnSpam(m *recentMsg) {
	if m.tokens == nil || m.learnt == Spam {
		return
	}
	s.clsMu.Lock()
	defer s.clsMu.Unlock()
	if m.learnt == Ham {
		s.cls.Unlearn(m.tokens, Ham)
	}
	s.cls.Learn(m.tokens, Spam)
	m.learnt = Spam
	s.clsDirty = true
}

func (s *Service) classifierVocabulary() int {
	s.clsMu.Lock()
	defer s.clsMu.Unlock()
	return s.cls.Vocabulary()
}

// ClassifierDocs returns how many ham and spam messages the classifier
// has learnt.
func (s *Service) ClassifierDocs() (ham, spam int64) {
	s.clsMu.Lock()
	defer s.clsMu.Unlock()
	return s.cls.Docs()
}

// UndoKey is the reaction that undoes an action: the key of an
// m.annotation, in the action's moderators' room, to the report of the
// action, from a user with the ban power level in the room acted in.
// The key is compared without emoji variation selectors, so "↩" and
// "↩️" both undo.
const UndoKey = "↩️"

// undoByReaction undoes the action a moderator reacted to with UndoKey
// in the action's moderators' room. Other reactions, reactions in
// another moderators' room and reactions of users who may not ban in the
// room acted in are ignored.
func (s *Service) undoByReaction(ctx context.Context, ev storedEvent) error {
	rel := ev.content().Get("m\\.relates_to")
	if rel.Get("rel_type").Str != "m.annotation" || !isUndoKey(rel.Get("key").Str) {
		return nil
	}
	acts, err := s.queryActions(ctx, "SELECT "+actionColumns+" FROM moderation_actions WHERE report_event = $1", rel.Get("event_id").Str)
	if err != nil || len(acts) == 0 {
		return err
	}
	a := acts[0]
	if ev.roomID != s.moderatorsRoom(s.configs[a.RoomID]) {
		s.log.Info("moderation: undo ignored: reaction outside the action's moderators' room", "action_id", a.ID, "room_id", ev.roomID, "by", ev.sender)
		return nil
	}
	if ok, err := s.mayBan(ctx, a.RoomID, ev.sender); err != nil || !ok {
		if err == nil {
			s.log.Info("moderation: undo ignored: the reactor may not ban in the room", "action_id", a.ID, "room_id", a.RoomID, "by", ev.sender)
		}
		return err
	}
	return s.undo(ctx, a, ev.sender)
}

// isUndoKey reports whether a reaction's key is UndoKey, variation
// selectors aside.
func isUndoKey(key string) bool {
	strip := func(k string) string { return strings.ReplaceAll(strings.ReplaceAll(k, "\ufe0f", ""), "\ufe0e", "") }
	return key != "" && strip(key) == strip(UndoKey)
}

// mayBan reports whether user has the ban power level in a room.
func (s *Service) mayBan(ctx context.Context, roomID id.RoomID, user id.UserID) (bool, error) {
	pl, err := s.opts.Rooms.PowerLevels(ctx, roomID)
	if err != nil {
		return false, fmt.Errorf("read power levels of %s: %w", roomID, err)
	}
	return pl.GetUserLevel(user) >= pl.Ban(), nil
}

// undo reverses an action: a ban is lifted, a mute's power level
// restored, a redacted message sent again by the moderation user (Matrix
// cannot unredact) and, for a flag, learnt as not spam.
func (s *Service) undo(ctx context.Context, a *Action, by id.UserID) error {
	if a.Undone || !undoable(a.Action) {
		return nil
	}
	var err error
	switch a.Action {
	case ActionBan:
		err = s.unban(ctx, a.RoomID, id.UserID(a.Target), "undone by "+string(by))
	case ActionMute:
		err = s.unmute(ctx, a, by)
	case ActionRedact, ActionFlag:
		err = s.restore(ctx, a, by)
	}
	if err != nil {
		s.refused(ctx, a.RoomID, fmt.Sprintf("undo action %d (%s of %s in %s) for %s", a.ID, a.Action, a.Target, a.RoomID, by), err)
		return nil
	}
	if err := s.setUndone(ctx, a.ID); err != nil {
		return err
	}
	s.log.Info("moderation action undone", "action_id", a.ID, "action", a.Action, "by", by)
	s.notifyModerators(ctx, s.configs[a.RoomID], fmt.Sprintf("Undone by %s: %s of %s in %s.", by, a.Action, a.Target, a.RoomID), nil)
	return nil
}

func (s *Service) unmute(ctx context.Context, a *Action, by id.UserID) error {
	pl, err := s.mayAct(ctx, a.RoomID, "change power levels", stateLevel("m.room.power_levels"))
	if err != nil {
		return err
	}
	before, _ := strconv.Atoi(a.Detail)
	return s.setUserLevel(ctx, a.RoomID, pl, id.UserID(a.Target), before)
}

// restore sends a redacted message again, as the moderation user, naming
// its sender; a flagged one is learnt as ham where the room teaches the
// classifier.
func (s *Service) restore(ctx context.Context, a *Action, by id.UserID) error {
	if a.Action == ActionFlag && s.teachers[a.RoomID] {
		toks := Tokens(a.Detail)
		s.clsMu.Lock()
		s.cls.Learn(toks, Ham)
		s.clsDirty = true
		s.clsMu.Unlock()
	}
	text := fmt.Sprintf("Restored by %s: %s wrote: %s", by, a.Target, a.Detail)
	return s.sendNotice(ctx, a.RoomID, text)
}
