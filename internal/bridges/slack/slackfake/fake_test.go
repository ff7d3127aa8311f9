package slackfake

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

func newClient(s *Server) *slack.Client {
	return slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL), slack.OptionAppLevelToken(s.AppToken()))
}

func TestWebAPI(t *testing.T) {
	s := New(t)
	ctx := context.Background()
	api := newClient(s)
	alice := s.AddUser("alice", "Alice Liddell")
	general := s.AddChannel("general", alice, s.BotUserID())

	auth, err := api.AuthTestContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if auth.TeamID != s.TeamID() || auth.UserID != s.BotUserID() || auth.BotID == "" {
		t.Fatalf("auth.test = %+v", auth)
	}
	if _, err := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL)).AuthTestContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("auth.test with a wrong token: %v, want invalid_auth", err)
	}

	user, err := api.GetUserInfoContext(ctx, alice)
	if err != nil || user.Profile.DisplayName != "Alice Liddell" || user.Profile.Image512 == "" {
		t.Fatalf("users.info = %+v, %v", user, err)
	}
	channels, _, err := api.GetConversationsContext(ctx, &slack.GetConversationsParameters{Types: []string{"public_channel", "im"}})
	if err != nil || len(channels) != 1 || channels[0].ID != general || !channels[0].IsMember {
		t.Fatalf("conversations.list = %+v, %v", channels, err)
	}

	_, ts, err := api.PostMessageContext(ctx, general, slack.MsgOptionText("hello &amp; welcome", false), slack.MsgOptionUsername("Bob (Matrix)"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, general, ts, slack.MsgOptionText("edited", false)); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "tada", slack.NewRefToMessage(general, ts)); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "tada", slack.NewRefToMessage(general, ts)); err == nil || err.Error() != "already_reacted" {
		t.Fatalf("second reactions.add: %v, want already_reacted", err)
	}
	msgs := s.Messages(general)
	if len(msgs) != 1 || msgs[0].Text != "edited" || msgs[0].Username != "Bob (Matrix)" || len(msgs[0].Reactions) != 1 {
		t.Fatalf("messages = %+v", msgs)
	}
	aliceTS := s.Post(general, alice, "mine")
	if _, _, err := api.DeleteMessageContext(ctx, general, aliceTS); err == nil || err.Error() != "cant_delete_message" {
		t.Fatalf("deleting another user's message: %v, want cant_delete_message", err)
	}
	if _, _, err := api.PostMessageContext(ctx, general, slack.MsgOptionText(strings.Repeat("x", MaxTextLength+1), false)); err == nil || err.Error() != "msg_too_long" {
		t.Fatalf("oversized message: %v, want msg_too_long", err)
	}
	history, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: general})
	if err != nil || len(history.Messages) != 2 || history.Messages[0].Timestamp != aliceTS {
		t.Fatalf("conversations.history = %+v, %v", history, err)
	}
}

func TestFilesRoundTrip(t *testing.T) {
	s := New(t)
	ctx := context.Background()
	api := newClient(s)
	alice := s.AddUser("alice", "Alice")
	general := s.AddChannel("general", alice, s.BotUserID())

	data := []byte("file content")
	summary, err := api.UploadFileContext(ctx, slack.UploadFileParameters{
		Reader: bytes.NewReader(data), FileSize: len(data), Filename: "notes.txt", Channel: general, InitialComment: "here",
	})
	if err != nil {
		t.Fatal(err)
	}
	file, _, _, err := api.GetFileInfoContext(ctx, summary.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	shares := file.Shares.Public[general]
	if len(shares) != 1 {
		t.Fatalf("shares = %+v", file.Shares)
	}
	msgs := s.Messages(general)
	if len(msgs) != 1 || msgs[0].Timestamp != shares[0].Ts || msgs[0].Text != "here" || len(msgs[0].Files) != 1 {
		t.Fatalf("messages = %+v", msgs)
	}
	var got bytes.Buffer
	if err := api.GetFileContext(ctx, file.URLPrivateDownload, &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(data) {
		t.Fatalf("downloaded %q, want %q", got.String(), data)
	}
	var denied bytes.Buffer
	if err := slack.New("xoxb-other", slack.OptionAPIURL(s.APIURL)).GetFileContext(ctx, file.URLPrivateDownload, &denied); err == nil {
		t.Fatal("download with another token succeeded")
	}
}

func TestRateLimited(t *testing.T) {
	s := New(t)
	api := newClient(s)
	s.RateLimit("auth.test", 1, 7)
	_, err := api.AuthTestContext(context.Background())
	var limited *slack.RateLimitedError
	if !errors.As(err, &limited) || limited.RetryAfter != 7*time.Second {
		t.Fatalf("rate-limited auth.test: %v, want RateLimitedError with 7s", err)
	}
	if _, err := api.AuthTestContext(context.Background()); err != nil {
		t.Fatalf("auth.test after the limit: %v", err)
	}
	if n := s.Calls("auth.test"); n != 2 {
		t.Fatalf("auth.test calls = %d, want 2", n)
	}
}

// TestSocketModeRedeliversUnacked checks the Socket Mode side: events typed
// in the workspace arrive as events_api envelopes, and an envelope the
// client does not ack is delivered again on its next connection.
func TestSocketModeRedeliversUnacked(t *testing.T) {
	s := New(t)
	alice := s.AddUser("alice", "Alice")
	general := s.AddChannel("general", alice, s.BotUserID())
	s.Post(general, alice, "first")

	texts := make(chan string, 10)
	run := func(ctx context.Context, ack bool) {
		sm := socketmode.New(newClient(s))
		go func() { _ = sm.RunContext(ctx) }()
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-sm.Events:
				if evt.Type != socketmode.EventTypeEventsAPI {
					continue
				}
				api := evt.Data.(slackevents.EventsAPIEvent)
				if msg, ok := api.InnerEvent.Data.(*slackevents.MessageEvent); ok {
					texts <- msg.Text
					if ack {
						sm.Ack(*evt.Request)
					}
				}
			}
		}
	}
	wait := func(want string) {
		t.Helper()
		for {
			select {
			case got := <-texts:
				if got == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no message event %q", want)
			}
		}
	}

	ctx1, stop1 := context.WithCancel(context.Background())
	go run(ctx1, false)
	wait("first")
	stop1()
	waitCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(waitCtx, func() bool { return s.Connections() == 0 }); err != nil {
		t.Fatal("connection still open after the client stopped")
	}
	if s.Pending() != 2 { // member_joined_channel and the message
		t.Fatalf("pending = %d, want 2", s.Pending())
	}

	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go run(ctx2, true)
	wait("first")
	if err := s.Wait(waitCtx, func() bool { return s.Pending() == 1 }); err != nil {
		t.Fatalf("pending = %d after the ack, want 1 (the unacked join event)", s.Pending())
	}
	s.Post(general, alice, "second")
	wait("second")
}
