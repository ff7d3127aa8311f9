package assistant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// builtin is one of the assistant's own commands.
type builtin struct {
	help string
	run  func(ctx context.Context, req request, args string) Reply
}

// builtinOrder is the order "!assistant help" lists the built-ins in.
var builtinOrder = []string{"summary", "ask", "translate", "draft", "language", "log", "settings", "forget", "leave", "help"}

func (s *session) builtins() map[string]builtin {
	return map[string]builtin{
		"help":      {"this list", func(context.Context, request, string) Reply { return Reply{Text: s.help()} }},
		"":          {"", func(context.Context, request, string) Reply { return Reply{Text: s.help()} }},
		"leave":     {"I leave this room and forget what I read here (members who may change the room's state)", s.roomAdminsOnly("leave", func(ctx context.Context, req request, _ string) Reply { return s.leave(ctx, req) })},
		"summary":   {"sum up what was said since your last read receipt, or over a period: summary last 2h | today | last 3 days", s.summary},
		"ask":       {"answer a question from this room's messages, with links to them (a question without the word ask works too)", s.ask},
		"translate": {"reply to a message with: translate [language] (the language in your settings, else English)", s.translate},
		"draft":     {"draft a reply to the recent conversation: draft [what to say]", s.draft},
		"language":  {"reply to a message with: language (which language it is in)", s.language},
		"log":       {"what I read and sent in this room: log [n]", s.showLog},
		"settings":  {"settings | settings room model on|off (off by default in encrypted rooms) | settings me language CODE", s.settings},
		"forget":    {"forget everything I read in this room and leave: forget | forget keep (and stay) (members who may change the room's state)", s.roomAdminsOnly("forget", s.forget)},
	}
}

// remember records a message in the store (an edit updates the message
// it edits, and remember reports true). Commands to the assistant are
// not kept.
func (s *session) remember(ctx context.Context, evt *event.Event, msg *event.MessageEventContent) (edit bool) {
	if target := msg.RelatesTo.GetReplaceID(); target != "" {
		if msg.NewContent != nil {
			if err := s.store.editMessage(ctx, evt.RoomID, target, evt.Sender, msg.NewContent.Body); err != nil {
				s.a.opts.Log.Warn("assistant: store", "err", err)
			}
		}
		return true
	}
	if _, ok := addressed(msg, s.client.UserID); ok || msg.MsgType == event.MsgNotice || msg.Body == "" {
		return false
	}
	switch msg.MsgType {
	case event.MsgText, event.MsgEmote:
	default:
		return false
	}
	m := Message{EventID: evt.ID, Sender: evt.Sender, Time: time.UnixMilli(evt.Timestamp), Body: msg.Body,
		ThreadRoot: msg.RelatesTo.GetThreadParent()}
	if err := s.store.addMessage(ctx, evt.RoomID, m); err != nil {
		s.a.opts.Log.Warn("assistant: store", "err", err)
	}
	return false
}

// onRedaction forgets a redacted message.
func (s *session) onRedaction(ctx context.Context, evt *event.Event) {
	target := evt.Redacts
	if target == "" {
		target = evt.Content.AsRedaction().Redacts
	}
	if err := s.store.deleteMessage(ctx, evt.RoomID, target); err != nil {
		s.a.opts.Log.Warn("assistant: store", "err", err)
	}
}

// onReceipt records the members' read receipts, which summary starts
// from.
func (s *session) onReceipt(ctx context.Context, evt *event.Event) {
	receipts, ok := evt.Content.Parsed.(*event.ReceiptEventContent)
	if !ok {
		return
	}
	for _, byType := range *receipts {
		for _, typ := range []event.ReceiptType{event.ReceiptTypeRead, event.ReceiptTypeReadPrivate} {
			for user, r := range byType[typ] {
				if err := s.store.setReceipt(ctx, evt.RoomID, user, r.Timestamp); err != nil {
					s.a.opts.Log.Warn("assistant: store", "err", err)
				}
			}
		}
	}
}

// onOwnLeave forgets a room the assistant left or was removed from.
func (s *session) onOwnLeave(ctx context.Context, evt *event.Event) {
	if err := s.store.forget(ctx, evt.RoomID); err != nil {
		s.a.opts.Log.Warn("assistant: forget a room it left", "room_id", evt.RoomID, "err", err)
	}
	if err := s.store.forgetJoins(ctx, evt.RoomID); err != nil {
		s.a.opts.Log.Warn("assistant: forget a room it left", "room_id", evt.RoomID, "err", err)
	}
}

// horizon is where user may start reading room: anywhere when the room
// is not encrypted and its history_visibility is shared or
// world_readable; else from the user's latest join, as a member of a
// room of joined (or invited) history sees, and as an encrypted room's
// member holds the keys of what was sent since they joined, no more.
func (s *session) horizon(ctx context.Context, room id.RoomID, user id.UserID) (horizon, error) {
	encrypted, err := s.encrypted(ctx, room)
	if err != nil {
		return horizon{}, err
	}
	if !encrypted {
		var hv event.HistoryVisibilityEventContent
		err := s.client.StateEvent(ctx, room, event.StateHistoryVisibility, "", &hv)
		if err != nil && !errors.Is(err, mautrix.MNotFound) {
			return horizon{}, fmt.Errorf("history visibility of %s: %w", room, err)
		}
		// Without the event the history is shared (the spec's default).
		if err != nil || hv.HistoryVisibility == event.HistoryVisibilityShared || hv.HistoryVisibility == event.HistoryVisibilityWorldReadable {
			return horizon{}, nil
		}
	}
	return s.store.joinHorizon(ctx, room, user)
}

// encrypted reports whether room has end-to-end encryption on.
func (s *session) encrypted(ctx context.Context, room id.RoomID) (bool, error) {
	var enc event.EncryptionEventContent
	err := s.client.StateEvent(ctx, room, event.StateEncryption, "", &enc)
	if errors.Is(err, mautrix.MNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("encryption of %s: %w", room, err)
	}
	return enc.Algorithm != "", nil
}

// readable returns what req's sender may read of the room's messages sent
// after since: at most limit, the newest.
func (s *session) readable(ctx context.Context, req request, since time.Time, limit int) ([]Message, error) {
	h, err := s.horizon(ctx, req.evt.RoomID, req.evt.Sender)
	if err != nil {
		return nil, err
	}
	return s.store.messages(ctx, req.evt.RoomID, since, h, limit)
}

// logAction appends to the room's log, logging a failure.
func (s *session) logAction(ctx context.Context, room id.RoomID, action, detail string) {
	if s.store == nil {
		return
	}
	if err := s.store.addLog(ctx, room, action, detail); err != nil {
		s.a.opts.Log.Warn("assistant: log", "err", err)
	}
}

// link is the matrix.to link of an event of room.
func (s *session) link(room id.RoomID, evID id.EventID) string {
	return room.EventURI(evID, s.client.UserID.Homeserver()).MatrixToURL()
}

// withLinks fills the messages' links.
func (s *session) withLinks(room id.RoomID, msgs []Message) []Message {
	for i := range msgs {
		msgs[i].Link = s.link(room, msgs[i].EventID)
	}
	return msgs
}

// engine is the engine that answers in room: the model if there is one
// and the room allows it (modelOn).
func (s *session) engine(ctx context.Context, room id.RoomID) Engine {
	if s.a.opts.Model == nil {
		return Offline{}
	}
	if on, err := s.modelOn(ctx, room); err != nil || !on {
		if err != nil {
			s.a.opts.Log.Warn("assistant: room setting", "room_id", room, "err", err)
		}
		return Offline{}
	}
	return s.a.opts.Model
}

// modelOn reports whether room lets the model server see its messages:
// as its setting model says, and without one, unless the room is
// encrypted: its members chose that nothing leave their devices
// readable, so the model sees it only once someone who may change the
// room's state turns it on.
func (s *session) modelOn(ctx context.Context, room id.RoomID) (bool, error) {
	switch v, err := s.store.setting(ctx, room.String(), "model"); {
	case err != nil:
		return false, err
	case v != "":
		return v == "on", nil
	}
	encrypted, err := s.encrypted(ctx, room)
	return !encrypted, err
}

// modelFailed starts an answer the offline engine gave because the model
// server failed; what failed is in the node's log, not in the room (it
// may name the model server's internal addresses).
const modelFailed = "The model server failed (the node's log says why); "

// userError is an error meant for the asker: a period not understood, a
// reply to a message missing. Any other error is the node's: logged, and
// answered in general terms (see failed).
type userError string

func (e userError) Error() string { return string(e) }

func userErrorf(format string, args ...any) error { return userError(fmt.Sprintf(format, args...)) }

// failed is the answer to a command (what) that failed with err: a
// userError's text, or for any other error a general one, the error
// going to the log.
func (s *session) failed(what string, req request, err error) Reply {
	var ue userError
	if errors.As(err, &ue) {
		return Reply{Text: ue.Error()}
	}
	s.a.opts.Log.Warn("assistant: "+what+" failed", "room_id", req.evt.RoomID, "sender", req.evt.Sender, "err", err)
	return Reply{Text: what + ": that failed on the node (its log says why)."}
}

// answered appends which engine answered.
func answered(text string, e Engine) Reply {
	return Reply{Text: text + "\n\n— answered by " + e.Name()}
}

// maxRead bounds the messages one answer reads from the store.
const maxRead = 5000

// summary sums up the room (or the thread asked in) since the asker's
// last read receipt, or over the period args names.
func (s *session) summary(ctx context.Context, req request, args string) Reply {
	room := req.evt.RoomID
	since, label, err := s.summaryStart(ctx, req, args)
	if err != nil {
		return s.failed("summary", req, err)
	}
	msgs, err := s.readable(ctx, req, since, maxRead)
	if err != nil {
		return s.failed("summary", req, err)
	}
	if root := req.msg.RelatesTo.GetThreadParent(); root != "" {
		msgs = inThread(msgs, root)
		label += " in this thread"
	}
	msgs = s.withLinks(room, msgs)
	s.logAction(ctx, room, "read", fmt.Sprintf("%d messages for a summary %s asked by %s", len(msgs), label, req.evt.Sender))
	sentences := min(max(len(msgs)/5, 3), 8)
	e := s.engine(ctx, room)
	text, err := e.Summarize(ctx, msgs, sentences)
	if err != nil && e != (Offline{}) {
		s.a.opts.Log.Warn("assistant: model", "room_id", room, "err", err)
		e = Offline{}
		text, err = e.Summarize(ctx, msgs, sentences)
		text = modelFailed + text
	}
	if err != nil {
		return s.failed("summary", req, err)
	}
	return answered("Since "+label+":\n"+text, e)
}

// inThread keeps the messages of the thread rooted at root.
func inThread(msgs []Message, root id.EventID) []Message {
	var out []Message
	for _, m := range msgs {
		if m.ThreadRoot == root || m.EventID == root {
			out = append(out, m)
		}
	}
	return out
}

// periodPattern is "last 2h", "3 days", "past week"...
var periodPattern = regexp.MustCompile(`^(?:(?:last|past)\s+)?(\d+)?\s*(m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)$`)

// summaryStart is where a summary starts: the period args names, or the
// asker's last read receipt, or a day ago.
func (s *session) summaryStart(ctx context.Context, req request, args string) (time.Time, string, error) {
	now := time.Now()
	args = strings.ToLower(strings.TrimSpace(args))
	switch args {
	case "":
		ts, ok, err := s.store.receipt(ctx, req.evt.RoomID, req.evt.Sender)
		if err != nil {
			return time.Time{}, "", err
		}
		if ok {
			return ts, "your last read receipt (" + ts.UTC().Format("2006-01-02 15:04 UTC") + ")", nil
		}
		return now.Add(-24 * time.Hour), "a day ago (I saw no read receipt of yours)", nil
	case "today":
		y, m, d := now.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), "midnight UTC", nil
	case "yesterday":
		y, m, d := now.UTC().AddDate(0, 0, -1).Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), "yesterday midnight UTC", nil
	}
	match := periodPattern.FindStringSubmatch(args)
	if match == nil {
		return time.Time{}, "", userErrorf("summary: I understand \"last 2h\", \"last 30m\", \"last 3 days\", \"last week\", \"today\" and \"yesterday\", not %q", args)
	}
	n := 1
	if match[1] != "" {
		n, _ = strconv.Atoi(match[1])
	}
	unit := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[match[2][0]]
	d := time.Duration(n) * unit
	if n <= 0 || d > 365*24*time.Hour {
		return time.Time{}, "", userErrorf("summary: a period from a minute to a year, please")
	}
	return now.Add(-d), "the last " + strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(args, "last"), "past")), nil
}

// ask answers a question from the room's messages it matches best.
func (s *session) ask(ctx context.Context, req request, question string) Reply {
	room := req.evt.RoomID
	if strings.TrimSpace(question) == "" {
		return Reply{Text: "Ask me a question about this room, like: !assistant ask when is the release?"}
	}
	msgs, err := s.readable(ctx, req, time.Time{}, maxRead)
	if err != nil {
		return s.failed("ask", req, err)
	}
	e := s.engine(ctx, room)
	sources := s.withLinks(room, s.rank(ctx, e, question, search(msgs, question, 10)))
	s.logAction(ctx, room, "read", fmt.Sprintf("%d messages searched, %d quoted, for a question of %s", len(msgs), len(sources), req.evt.Sender))
	text, err := e.Answer(ctx, question, sources)
	if err != nil && e != (Offline{}) {
		s.a.opts.Log.Warn("assistant: model", "room_id", room, "err", err)
		e = Offline{}
		text, _ = e.Answer(ctx, question, sources)
		text = modelFailed + text
	}
	return answered(text, e)
}

// ranker is an engine that can order an answer's candidate sources
// better than the offline search (by embeddings).
type ranker interface {
	Rank(ctx context.Context, question string, candidates []Message) ([]Message, error)
}

// rank keeps the best 3 of candidates, ordered by e when it ranks.
func (s *session) rank(ctx context.Context, e Engine, question string, candidates []Message) []Message {
	if r, ok := e.(ranker); ok {
		ranked, err := r.Rank(ctx, question, candidates)
		if err == nil {
			candidates = ranked
		} else {
			s.a.opts.Log.Warn("assistant: rank by embeddings", "err", err)
		}
	}
	return candidates[:min(3, len(candidates))]
}

// repliedTo returns the stored message req replies to.
func (s *session) repliedTo(ctx context.Context, req request, what string) (Message, error) {
	target := req.msg.RelatesTo.GetReplyTo()
	if target == "" || target == req.msg.RelatesTo.GetThreadParent() && req.msg.RelatesTo.IsFallingBack {
		return Message{}, userErrorf("%s: reply to the message you mean", what)
	}
	m, ok, err := s.store.message(ctx, req.evt.RoomID, target)
	if err != nil {
		return Message{}, err
	}
	if ok {
		h, err := s.horizon(ctx, req.evt.RoomID, req.evt.Sender)
		if err != nil {
			return Message{}, err
		}
		ok = h.admits(m)
	}
	if !ok {
		return Message{}, userErrorf("%s: I did not read that message (I read only what was sent since I joined)", what)
	}
	return m, nil
}

// translate translates the message req replies to.
func (s *session) translate(ctx context.Context, req request, args string) Reply {
	m, err := s.repliedTo(ctx, req, "translate")
	if err != nil {
		return s.failed("translate", req, err)
	}
	target := strings.TrimSpace(args)
	if target == "" {
		target, _ = s.store.setting(ctx, req.evt.Sender.String(), "language")
	}
	if target == "" {
		target = "en"
	}
	e := s.engine(ctx, req.evt.RoomID)
	text, err := e.Translate(ctx, m.Body, target)
	if errors.Is(err, ErrNeedsModel) {
		detected := "a language I cannot tell"
		if l, ok := DetectLanguage(m.Body); ok {
			detected = l.Name
		}
		return answered(fmt.Sprintf("Translation %s. The message looks like %s.", err.Error(), detected), e)
	}
	if err != nil {
		return s.failed("translate", req, err)
	}
	return answered(text, e)
}

// draft drafts a reply to the last messages of the room or thread.
func (s *session) draft(ctx context.Context, req request, args string) Reply {
	room := req.evt.RoomID
	msgs, err := s.readable(ctx, req, time.Time{}, 30)
	if err != nil {
		return s.failed("draft", req, err)
	}
	if root := req.msg.RelatesTo.GetThreadParent(); root != "" {
		msgs = inThread(msgs, root)
	}
	e := s.engine(ctx, room)
	text, err := e.Draft(ctx, msgs, args)
	if errors.Is(err, ErrNeedsModel) {
		return answered("Drafting "+err.Error()+".", e)
	}
	if err != nil {
		return s.failed("draft", req, err)
	}
	s.logAction(ctx, room, "read", fmt.Sprintf("%d messages for a draft asked by %s", len(msgs), req.evt.Sender))
	return answered("Draft:\n"+text, e)
}

// language says which language the replied-to message (or args) is in.
func (s *session) language(ctx context.Context, req request, args string) Reply {
	text := strings.TrimSpace(args)
	if text == "" {
		m, err := s.repliedTo(ctx, req, "language")
		if err != nil {
			return s.failed("language", req, err)
		}
		text = m.Body
	}
	if l, ok := DetectLanguage(text); ok {
		return answered(fmt.Sprintf("That looks like %s (%s).", l.Name, l.Code), Offline{})
	}
	return answered("I cannot tell which language that is.", Offline{})
}

// showLog shows the last entries of the room's log.
func (s *session) showLog(ctx context.Context, req request, args string) Reply {
	n, err := strconv.Atoi(strings.TrimSpace(args))
	if err != nil || n <= 0 {
		n = 20
	}
	n = min(n, 200)
	entries, err := s.store.log(ctx, req.evt.RoomID, n)
	if err != nil {
		return s.failed("log", req, err)
	}
	count, err := s.store.countMessages(ctx, req.evt.RoomID)
	if err != nil {
		return s.failed("log", req, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "I keep %d messages of this room. The last %d entries of my log:\n", count, len(entries))
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s %s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Action, e.Detail)
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

// settings shows or changes the room's and the asker's settings.
func (s *session) settings(ctx context.Context, req request, args string) Reply {
	room, user := req.evt.RoomID.String(), req.evt.Sender.String()
	f := strings.Fields(strings.ToLower(args))
	switch {
	case len(f) == 0:
		model := "off"
		if on, err := s.modelOn(ctx, req.evt.RoomID); err != nil {
			return s.failed("settings", req, err)
		} else if on {
			model = "on"
		}
		lang, _ := s.store.setting(ctx, user, "language")
		return Reply{Text: fmt.Sprintf("Room: model %s (%s). You: language %s.",
			model, s.modelNote(), orDefault(lang, "en"))}
	case len(f) == 3 && f[0] == "room" && f[1] == "model" && (f[2] == "on" || f[2] == "off"):
		if ok, err := s.mayChangeRoom(ctx, req); err != nil || !ok {
			return Reply{Text: "settings: only members who may change the room's state may change its settings"}
		}
		if err := s.store.setSetting(ctx, room, "model", f[2]); err != nil {
			return s.failed("settings", req, err)
		}
		s.logAction(ctx, req.evt.RoomID, "settings", fmt.Sprintf("model %s, by %s", f[2], req.evt.Sender))
		return Reply{Text: "The model server is now " + f[2] + " for this room."}
	case len(f) == 3 && f[0] == "me" && f[1] == "language" && len(f[2]) <= 16:
		if err := s.store.setSetting(ctx, user, "language", f[2]); err != nil {
			return s.failed("settings", req, err)
		}
		return Reply{Text: "I will translate into " + f[2] + " for you."}
	}
	return Reply{Text: "settings: say settings, settings room model on|off or settings me language CODE"}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// modelNote says whether a model server is configured.
func (s *session) modelNote() string {
	if s.a.opts.Model == nil {
		return "no model server is configured: the offline engine answers"
	}
	return s.a.opts.Model.Name() + " is configured; it sees the messages it answers from"
}

// mayChangeRoom reports whether req's sender may send state events in
// the room (its power level reaches state_default; a creator of a room
// of version 12 always may).
func (s *session) mayChangeRoom(ctx context.Context, req request) (bool, error) {
	var pl event.PowerLevelsEventContent
	if err := s.client.StateEvent(ctx, req.evt.RoomID, event.StatePowerLevels, "", &pl); err != nil {
		return false, err
	}
	create, err := s.client.FullStateEvent(ctx, req.evt.RoomID, event.StateCreate, "")
	if err != nil {
		return false, err
	}
	pl.CreateEvent = create
	return pl.GetUserLevel(req.evt.Sender) >= pl.StateDefault(), nil
}

// roomAdminsOnly runs run only for members who may change the room's
// state (mayChangeRoom), and tells the others so.
func (s *session) roomAdminsOnly(what string, run func(ctx context.Context, req request, args string) Reply) func(ctx context.Context, req request, args string) Reply {
	return func(ctx context.Context, req request, args string) Reply {
		ok, err := s.mayChangeRoom(ctx, req)
		if err != nil {
			s.a.opts.Log.Warn("assistant: power levels", "room_id", req.evt.RoomID, "err", err)
		}
		if !ok {
			return Reply{Text: what + ": only members who may change the room's state may ask me that"}
		}
		return run(ctx, req, args)
	}
}

// forget deletes what the assistant read in the room and leaves, or with
// "keep" stays.
func (s *session) forget(ctx context.Context, req request, args string) Reply {
	if err := s.store.forget(ctx, req.evt.RoomID); err != nil {
		return s.failed("forget", req, err)
	}
	if strings.TrimSpace(strings.ToLower(args)) == "keep" {
		s.logAction(ctx, req.evt.RoomID, "forgot", "everything before, as "+req.evt.Sender.String()+" asked")
		return Reply{Text: "I forgot everything I read in this room, and I stay."}
	}
	return s.leave(ctx, req)
}
