package assistant

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Prefix starts a command to the assistant in a message.
const Prefix = "!assistant"

// session is a running assistant: its client and what it handles.
type session struct {
	a      *Assistant
	client *mautrix.Client
	ctx    context.Context // ends when Run stops
	store  *store
}

// request is one message addressed to the assistant.
type request struct {
	evt  *event.Event
	msg  *event.MessageEventContent
	text string // what follows the prefix or the mention
}

// onMember accepts invites of the assistant and records the members'
// joins, which bound what each may ask about (see horizon).
func (s *session) onMember(ctx context.Context, evt *event.Event) {
	if evt.GetStateKey() != s.client.UserID.String() {
		s.onOtherMember(ctx, evt)
		return
	}
	switch membership := evt.Content.AsMember().Membership; {
	case membership.IsLeaveOrBan() && evt.Mautrix.EventSource&event.SourceInvite == 0:
		s.onOwnLeave(ctx, evt)
		return
	case membership != event.MembershipInvite || evt.Mautrix.EventSource&event.SourceInvite == 0:
		return
	}
	if !s.a.opts.RemoteInvites && evt.Sender.Homeserver() != s.client.UserID.Homeserver() {
		s.decline(evt)
		return
	}
	if _, err := s.client.JoinRoomByID(ctx, evt.RoomID); err != nil {
		s.a.opts.Log.Warn("assistant: join on invite", "room_id", evt.RoomID, "inviter", evt.Sender, "err", err)
		return
	}
	s.a.opts.Log.Info("assistant: joined on invite", "room_id", evt.RoomID, "inviter", evt.Sender)
	s.logAction(ctx, evt.RoomID, "joined", "invited by "+evt.Sender.String())
}

// decline rejects the invite of another server's user, on its own
// goroutine: a rejection the node refuses at once (the invite it just
// received not yet recorded) is tried again a few times.
func (s *session) decline(evt *event.Event) {
	s.a.opts.Log.Info("assistant: declining the invite of another server's user", "room_id", evt.RoomID, "inviter", evt.Sender)
	s.a.running.Add(1)
	go func() {
		defer s.a.running.Done()
		req := &mautrix.ReqLeave{Reason: "this server's assistant joins only at the invitation of its own users"}
		var err error
		for try := range 5 {
			if _, err = s.client.LeaveRoom(s.ctx, evt.RoomID, req); err == nil {
				return
			}
			select {
			case <-time.After(time.Duration(try+1) * time.Second):
			case <-s.ctx.Done():
				return
			}
		}
		s.a.opts.Log.Warn("assistant: decline an invite", "room_id", evt.RoomID, "inviter", evt.Sender, "err", err)
	}()
}

// onOtherMember records a member's join (a change of display name or
// avatar, a join after a join, is none).
func (s *session) onOtherMember(ctx context.Context, evt *event.Event) {
	if evt.Mautrix.EventSource&event.SourceInvite != 0 || evt.Content.AsMember().Membership != event.MembershipJoin {
		return
	}
	if prev := evt.Unsigned.PrevContent; prev != nil && prev.Raw["membership"] == string(event.MembershipJoin) {
		return
	}
	user := id.UserID(evt.GetStateKey())
	if err := s.store.addJoin(ctx, evt.RoomID, user, time.UnixMilli(evt.Timestamp)); err != nil {
		s.a.opts.Log.Warn("assistant: store", "err", err)
	}
}

// onMessage answers a message addressed to the assistant. Messages of
// the first sync (before the assistant ever ran) are not answered.
func (s *session) onMessage(ctx context.Context, evt *event.Event) {
	if evt.Sender == s.client.UserID || evt.Mautrix.EventSource&event.SourceTimeline == 0 {
		return
	}
	msg := evt.Content.AsMessage()
	if s.remember(ctx, evt, msg) {
		return // an edit
	}
	if msg.MsgType == event.MsgNotice {
		return // bots' notices are not requests
	}
	if ctx.Value(mautrix.SyncTokenContextKey) == "" {
		return
	}
	text, ok := addressed(msg, s.client.UserID)
	if !ok {
		return
	}
	req := request{evt: evt, msg: msg, text: text}
	if ok, why := s.a.take(evt.Sender, evt.RoomID); !ok {
		s.refuse(req, why)
		return
	}
	s.a.running.Add(1)
	go func() {
		defer s.a.running.Done()
		defer func() { <-s.a.queued }()
		mu := s.a.roomLock(evt.RoomID)
		mu.Lock()
		defer mu.Unlock()
		select {
		case s.a.working <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.a.working }()
		s.answer(s.ctx, req)
	}()
}

// refuse logs a request the assistant will not answer and tells its
// sender why, once a minute at most.
func (s *session) refuse(req request, why string) {
	s.a.opts.Log.Info("assistant: request refused", "room_id", req.evt.RoomID, "sender", req.evt.Sender, "why", why)
	if !s.a.tellRefused(req.evt.Sender) {
		return
	}
	s.a.running.Add(1)
	go func() {
		defer s.a.running.Done()
		if err := s.sendText(s.ctx, req, "Not now: "+why+"."); err != nil {
			s.a.opts.Log.Warn("assistant: send", "room_id", req.evt.RoomID, "err", err)
		}
	}()
}

// mentionPrefix matches a leading mention of the assistant in a body:
// its user ID or its name, with an optional colon or comma.
var mentionPrefix = regexp.MustCompile(`(?i)^@?assistant(:[^\s:,]+(:\d+)?)?\s*[:,]?\s*`)

// addressed reports whether msg asks the assistant something and returns
// what it asks: the text after "!assistant", or the body of a message
// that mentions the assistant (m.mentions or its user ID in the body)
// with a leading mention removed.
func addressed(msg *event.MessageEventContent, me id.UserID) (string, bool) {
	body := strings.TrimSpace(msg.Body)
	if rest, ok := cutPrefixFold(body, Prefix); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\n') {
		return strings.TrimSpace(rest), true
	}
	mentioned := msg.Mentions != nil && msg.Mentions.Has(me)
	if !mentioned && !strings.Contains(body, me.String()) {
		return "", false
	}
	body = strings.ReplaceAll(body, me.String(), "")
	body = mentionPrefix.ReplaceAllString(strings.TrimSpace(body), "")
	return strings.TrimSpace(body), true
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// answer runs what req asks and sends the reply.
func (s *session) answer(ctx context.Context, req request) {
	reply := s.run(ctx, req)
	if err := s.send(ctx, req, reply); err != nil {
		s.a.opts.Log.Warn("assistant: send reply", "room_id", req.evt.RoomID, "err", err)
	}
}

// run works out the reply to req: a built-in command, a registered one,
// or help.
func (s *session) run(ctx context.Context, req request) Reply {
	name, args := splitCommand(req.text)
	if builtin, ok := s.builtins()[name]; ok {
		return builtin.run(ctx, req, args)
	}
	cmd, ok := s.a.commands.lookup(name)
	if !ok {
		// Anything else is a question about the room.
		return s.ask(ctx, req, req.text)
	}
	reply, err := cmd.Run(ctx, req.evt.RoomID, req.evt.Sender, args)
	if err != nil {
		s.a.opts.Log.Warn("assistant: command failed", "command", name, "room_id", req.evt.RoomID, "err", err)
		return Reply{Text: fmt.Sprintf("%s: %v", name, err)}
	}
	return reply
}

// help lists the built-in and registered commands.
func (s *session) help() string {
	lines := []string{"I answer messages that start with !assistant or mention me; anything that is not a command is a question about this room. Commands:"}
	for _, name := range builtinOrder {
		lines = append(lines, fmt.Sprintf("!assistant %s: %s", name, s.builtins()[name].help))
	}
	return strings.Join(append(lines, s.a.commands.help()...), "\n")
}

// leave has the assistant leave the room after saying so.
func (s *session) leave(ctx context.Context, req request) Reply {
	if err := s.sendText(ctx, req, "Leaving this room, as asked by "+req.evt.Sender.String()+"."); err != nil {
		s.a.opts.Log.Warn("assistant: send", "room_id", req.evt.RoomID, "err", err)
	}
	if _, err := s.client.LeaveRoom(ctx, req.evt.RoomID); err != nil {
		return s.failed("leave", req, err)
	}
	s.a.opts.Log.Info("assistant: left on request", "room_id", req.evt.RoomID, "by", req.evt.Sender)
	return Reply{}
}

// maxReplyText bounds the text of a reply (a model's answer may be
// megabytes), so that its event stays under the 65,536 bytes an event
// may have even encrypted (base64 adds a third) with its HTML beside;
// an HTML form longer than that is dropped rather than cut mid-tag.
const maxReplyText = 16 << 10

// send sends reply's text and file, if any, in answer to req.
func (s *session) send(ctx context.Context, req request, reply Reply) error {
	if reply.Text != "" {
		content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: cutText(reply.Text, maxReplyText)}
		if reply.HTML != "" && len(reply.HTML) <= maxReplyText {
			content.Format, content.FormattedBody = event.FormatHTML, reply.HTML
		}
		if err := s.sendContent(ctx, req, content); err != nil {
			return err
		}
	}
	if reply.File != nil {
		return s.sendFile(ctx, req, reply.File)
	}
	return nil
}

// cutText cuts text to at most limit bytes, at a character's boundary,
// marking the cut.
func cutText(text string, limit int) string {
	const mark = "\n… (cut)"
	if len(text) <= limit {
		return text
	}
	cut := limit - len(mark)
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + mark
}

// sendText sends a plain notice in answer to req.
func (s *session) sendText(ctx context.Context, req request, text string) error {
	return s.sendContent(ctx, req, &event.MessageEventContent{MsgType: event.MsgNotice, Body: text})
}

// sendContent sends content in answer to req: in req's thread when it is
// in one, else as a reply to it. The client encrypts it when the room is
// encrypted.
func (s *session) sendContent(ctx context.Context, req request, content *event.MessageEventContent) error {
	if req.msg.RelatesTo.GetThreadParent() != "" {
		content.SetThread(req.evt)
	} else {
		content.SetReply(req.evt)
	}
	resp, err := s.client.SendMessageEvent(ctx, req.evt.RoomID, event.EventMessage, content)
	if err != nil {
		return fmt.Errorf("send to %s: %w", req.evt.RoomID, err)
	}
	s.logAction(ctx, req.evt.RoomID, "sent", fmt.Sprintf("%s in answer to %s", resp.EventID, req.evt.ID))
	return nil
}
