package automation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strconv"

	"github.com/tidwall/gjson"
	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// maxWebhookAnswer bounds what is read of an outgoing webhook's answer.
const maxWebhookAnswer = 64 << 10

// run runs a rule's actions for a trigger, if the room's rate allows;
// a failed action is logged and the next one runs.
func (s *Service) run(ctx context.Context, r *storedRule, t trigger) {
	if !s.allow("room\x00"+string(r.RoomID), roomRate, roomBurst) {
		s.opts.Log.Warn("automation: rate limited, rule not run", "room_id", r.RoomID, "rule", r.Name, "trigger", t.id)
		return
	}
	v := vars{sender: t.sender, body: gjson.GetBytes(t.content, "body").String(), room: r.RoomID, rule: r.Name}
	for i, a := range r.Rule.Actions {
		txn := "automation/" + r.Source + "/" + r.Name + "/" + t.id + "/" + strconv.Itoa(i)
		if err := s.act(ctx, r, t, a, v, txn); err != nil {
			s.opts.Log.Warn("automation: action failed", "room_id", r.RoomID, "rule", r.Name, "action", a.Type, "trigger", t.id, "err", err)
		}
	}
}

// allow takes a token from the bucket named key.
func (s *Service) allow(key string, r rate.Limit, burst int) bool {
	s.mu.Lock()
	l, ok := s.limits[key]
	if !ok {
		l = rate.NewLimiter(r, burst)
		s.limits[key] = l
	}
	s.mu.Unlock()
	return l.AllowN(s.now(), 1)
}

func (s *Service) act(ctx context.Context, r *storedRule, t trigger, a Action, v vars, txn string) error {
	switch a.Type {
	case ActionSend:
		return s.sendText(ctx, r.RoomID, "m.text", expand(a.Body, v), txn)
	case ActionInvite:
		user, err := s.localUser(a.UserID, t)
		if err != nil {
			return err
		}
		if s.opts.Rooms.Membership(user, r.RoomID) == "join" {
			return nil
		}
		sk := string(user)
		_, err = s.opts.Rooms.Send(ctx, r.RoomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: s.Bot(),
			Content: json.RawMessage(`{"membership":"invite"}`), TxnID: txn})
		return err
	case ActionTag:
		return s.tag(ctx, r, t, a)
	case ActionForward:
		return s.forward(ctx, r, t, a, txn)
	case ActionWebhook:
		return s.callWebhook(ctx, r, t, a)
	case ActionContract:
		content := map[string]any{}
		if err := json.Unmarshal(a.Content, &content); err != nil {
			return fmt.Errorf("contract content: %w", err)
		}
		content["org.matrixos.automation"] = map[string]any{"rule": r.Name, "trigger": t.id}
		b, _ := json.Marshal(content)
		_, err := s.opts.Rooms.Send(ctx, r.RoomID, rooms.Proto{Type: a.EventType, Sender: s.Bot(), Content: b, TxnID: txn})
		return err
	}
	return fmt.Errorf("unknown action %q", a.Type)
}

func (s *Service) sendText(ctx context.Context, roomID id.RoomID, msgtype, body, txn string) error {
	b, _ := json.Marshal(map[string]string{"msgtype": msgtype, "body": body})
	_, err := s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: s.Bot(), Content: b, TxnID: txn})
	return err
}

// notice tells a room something about its rules.
func (s *Service) notice(ctx context.Context, roomID id.RoomID, body, txn string) {
	if err := s.join(ctx, roomID); err != nil {
		s.opts.Log.Warn("automation: notice not sent", "room_id", roomID, "err", err)
		return
	}
	if err := s.sendText(ctx, roomID, "m.notice", body, "automation/"+txn); err != nil {
		s.opts.Log.Warn("automation: notice not sent", "room_id", roomID, "err", err)
	}
}

// localUser resolves an action's user_id: the trigger's sender by
// default; only users of this node.
func (s *Service) localUser(userID string, t trigger) (id.UserID, error) {
	user := id.UserID(userID)
	if userID == "" || userID == "{sender}" {
		user = t.sender
	}
	if user == "" {
		return "", fmt.Errorf("the trigger has no sender")
	}
	if user.Homeserver() != s.Bot().Homeserver() {
		return "", fmt.Errorf("%s is not a user of this node", user)
	}
	return user, nil
}

// tag adds a tag to the rule's room in a member's m.tag account data.
func (s *Service) tag(ctx context.Context, r *storedRule, t trigger, a Action) error {
	user, err := s.localUser(a.UserID, t)
	if err != nil {
		return err
	}
	if s.opts.Rooms.Membership(user, r.RoomID) != "join" {
		return fmt.Errorf("%s is not in the room", user)
	}
	if s.opts.Tags == nil {
		return fmt.Errorf("no account data store")
	}
	_, err = s.opts.Tags.Update(ctx, user, r.RoomID, "m.tag", func(old json.RawMessage) (json.RawMessage, bool, error) {
		content := map[string]json.RawMessage{}
		tags := map[string]json.RawMessage{}
		if len(old) > 0 {
			json.Unmarshal(old, &content)
			json.Unmarshal(content["tags"], &tags)
		}
		if _, ok := tags[a.Tag]; ok {
			return nil, false, nil
		}
		tags = maps.Clone(tags)
		tags[a.Tag] = json.RawMessage("{}")
		b, err := json.Marshal(tags)
		if err != nil {
			return nil, false, err
		}
		content["tags"] = b
		out, err := json.Marshal(content)
		return out, err == nil, err
	})
	return err
}

// forward copies the triggering message (or a webhook's text) to another
// room the automation user is in and the rule's author is a member of.
func (s *Service) forward(ctx context.Context, r *storedRule, t trigger, a Action, txn string) error {
	if s.opts.Rooms.Membership(s.Bot(), a.RoomID) != "join" {
		return fmt.Errorf("the automation user is not in %s", a.RoomID)
	}
	if s.opts.Rooms.Membership(r.Author, a.RoomID) != "join" && r.Source != SourceAdmin {
		return fmt.Errorf("the rule's author %s is not in %s", r.Author, a.RoomID)
	}
	content := map[string]json.RawMessage{}
	if err := json.Unmarshal(t.content, &content); err != nil || t.evType != "m.room.message" && t.evType != "" ||
		gjson.GetBytes(t.content, "body").Type != gjson.String {
		return fmt.Errorf("only messages and webhook texts are forwarded")
	}
	delete(content, "m.relates_to")
	delete(content, "m.new_content")
	b, _ := json.Marshal(content)
	_, err := s.opts.Rooms.Send(ctx, a.RoomID, rooms.Proto{Type: "m.room.message", Sender: s.Bot(), Content: b, TxnID: txn})
	return err
}

// WebhookCall is the JSON body an outgoing webhook receives.
type WebhookCall struct {
	Rule    string          `json:"rule"`
	RoomID  id.RoomID       `json:"room_id"`
	Trigger string          `json:"trigger"`
	EventID string          `json:"event_id,omitempty"`
	Type    string          `json:"type,omitempty"`
	Sender  id.UserID       `json:"sender,omitempty"`
	TS      int64           `json:"origin_server_ts"`
	Content json.RawMessage `json:"content,omitempty"`
}

// callWebhook POSTs the trigger to the action's URL with the guarded
// client, which refuses private and loopback addresses.
func (s *Service) callWebhook(ctx context.Context, r *storedRule, t trigger, a Action) error {
	call := WebhookCall{Rule: r.Name, RoomID: r.RoomID, Trigger: r.Rule.Trigger.Type, Type: t.evType, Sender: t.sender,
		TS: t.ts.UnixMilli(), Content: t.content}
	if t.evType != "" {
		call.EventID = t.id
	}
	body, err := json.Marshal(call)
	if err != nil {
		return err
	}
	req, err := httpRequest(ctx, a.URL, body)
	if err != nil {
		return err
	}
	resp, err := s.opts.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("call %s: %w", a.URL, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("call %s: status %d", a.URL, resp.StatusCode)
	}
	return nil
}
