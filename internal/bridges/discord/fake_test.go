package discord

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/matrixos/matrixos/internal/bridges/discord/discordfake"
)

// These tests run discordgo itself against discordfake, through the
// endpoints the connector's config sets, so that the fake is known to
// speak the protocol the connector's library expects.

func startFake(t *testing.T) *discordfake.Server {
	t.Helper()
	fake := discordfake.Start(t, discordfake.Options{})
	c := NewConnector()
	c.Config.APIURL = fake.URL()
	c.Config.CDNURL = fake.URL()
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start connector: %v", err)
	}
	return fake
}

func newSession(t *testing.T, token string) *discordgo.Session {
	t.Helper()
	s, err := discordgo.New("Bot " + token)
	if err != nil {
		t.Fatal(err)
	}
	s.Identify.Intents = intents
	s.SyncEvents = true
	s.LogLevel = -1
	return s
}

// eventLog collects gateway events in arrival order.
type eventLog struct {
	mu     sync.Mutex
	events []any
	wake   chan struct{}
}

func newEventLog(s *discordgo.Session) *eventLog {
	l := &eventLog{wake: make(chan struct{}, 1)}
	s.AddHandler(func(_ *discordgo.Session, e any) {
		switch e.(type) {
		case *discordgo.Event, *discordgo.Connect, *discordgo.Disconnect, *discordgo.RateLimit:
			return
		}
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	})
	return l
}

// wait returns the first event after index from that match.
func (l *eventLog) wait(t *testing.T, from int, match func(any) bool) (any, int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if match(l.events[i]) {
				e := l.events[i]
				l.mu.Unlock()
				return e, i
			}
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-deadline:
			t.Fatalf("timed out waiting for a gateway event")
		}
	}
}

func TestFakeGatewayIdentifyAndResume(t *testing.T) {
	fake := startFake(t)
	guild := fake.AddGuild("Test guild")
	general := fake.AddChannel(guild.ID, "general")
	alice := fake.AddUser("alice")

	s := newSession(t, fake.Token())
	events := newEventLog(s)
	if err := s.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		// discordgo's reader may race with Close and reconnect otherwise.
		s.ShouldReconnectOnError = false
		s.Close()
	})

	e, _ := events.wait(t, 0, func(e any) bool { _, ok := e.(*discordgo.Ready); return ok })
	if ready := e.(*discordgo.Ready); ready.User.ID != fake.Bot().ID || len(ready.Guilds) != 1 {
		t.Fatalf("READY = %+v", ready)
	}
	e, i := events.wait(t, 0, func(e any) bool { _, ok := e.(*discordgo.GuildCreate); return ok })
	if gc := e.(*discordgo.GuildCreate); len(gc.Channels) != 1 || gc.Channels[0].ID != general.ID {
		t.Fatalf("GUILD_CREATE channels = %+v", gc.Channels)
	}

	first, err := fake.Post(general.ID, alice.ID, "before the drop")
	if err != nil {
		t.Fatal(err)
	}
	_, i = events.wait(t, i, isMessage(first.ID))

	// Cut the connection and post while the client is away: RESUME must
	// replay the message, on the same session.
	fake.DropGatewayConnections()
	missed, err := fake.Post(general.ID, alice.ID, "while away")
	if err != nil {
		t.Fatal(err)
	}
	e, _ = events.wait(t, i, isMessage(missed.ID))
	if got := e.(*discordgo.MessageCreate).Content; got != "while away" {
		t.Fatalf("replayed content = %q", got)
	}
	events.wait(t, i, func(e any) bool { _, ok := e.(*discordgo.Resumed); return ok })
	if n := fake.GatewaySessions(); n != 1 {
		t.Fatalf("gateway sessions = %d, want 1 (resumed, not identified again)", n)
	}
}

func isMessage(id string) func(any) bool {
	return func(e any) bool {
		m, ok := e.(*discordgo.MessageCreate)
		return ok && m.ID == id
	}
}

func TestFakeGatewayRefusesBadToken(t *testing.T) {
	startFake(t)
	s := newSession(t, "wrong-token")
	err := s.Open()
	if err == nil {
		s.Close()
		t.Fatal("open with a bad token succeeded")
	}
}

func TestFakeRESTRefusesBadToken(t *testing.T) {
	startFake(t)
	s := newSession(t, "wrong-token")
	_, err := s.User("@me")
	var restErr *discordgo.RESTError
	if !errors.As(err, &restErr) || restErr.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /users/@me with a bad token: %v, want 401", err)
	}
}

func TestFakeMessagesRepliesAttachmentsReactionsThreads(t *testing.T) {
	fake := startFake(t)
	guild := fake.AddGuild("g")
	ch := fake.AddChannel(guild.ID, "c")
	alice := fake.AddUser("alice")
	s := newSession(t, fake.Token())

	orig, err := fake.Post(ch.ID, alice.ID, "original")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.ChannelMessageSendComplex(ch.ID, &discordgo.MessageSend{
		Content:   "reply with file",
		Reference: &discordgo.MessageReference{MessageID: orig.ID},
		Files:     []*discordgo.File{{Name: "a.txt", ContentType: "text/plain", Reader: bytes.NewReader([]byte("file body"))}},
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if sent.MessageReference == nil || sent.MessageReference.MessageID != orig.ID || len(sent.Attachments) != 1 {
		t.Fatalf("sent = %+v", sent)
	}
	data, ct, ok := fake.Attachment(sent.Attachments[0].URL)
	if !ok || string(data) != "file body" || ct != "text/plain" {
		t.Fatalf("attachment = %q %q %v", data, ct, ok)
	}

	// A reply to a message that does not exist is refused, as on Discord.
	_, err = s.ChannelMessageSendReply(ch.ID, "x", &discordgo.MessageReference{MessageID: "1"})
	var restErr *discordgo.RESTError
	if !errors.As(err, &restErr) || restErr.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("reply to unknown message: %v, want 400", err)
	}

	if _, err := s.ChannelMessageEdit(ch.ID, sent.ID, "edited"); err != nil {
		t.Fatalf("edit: %v", err)
	}
	if _, err := s.ChannelMessageEdit(ch.ID, orig.ID, "not mine"); err == nil {
		t.Fatal("editing another user's message succeeded")
	}
	if err := s.MessageReactionAdd(ch.ID, orig.ID, "👍"); err != nil {
		t.Fatalf("react: %v", err)
	}
	if got := fake.Reactions(orig.ID)["👍"]; len(got) != 1 || got[0] != fake.Bot().ID {
		t.Fatalf("reactions = %v", fake.Reactions(orig.ID))
	}
	if err := s.MessageReactionRemove(ch.ID, orig.ID, "👍", "@me"); err != nil {
		t.Fatalf("unreact: %v", err)
	}
	if got := fake.Reactions(orig.ID); len(got) != 0 {
		t.Fatalf("reactions after removal = %v", got)
	}
	thread, err := s.MessageThreadStart(ch.ID, orig.ID, "topic", 1440)
	if err != nil {
		t.Fatalf("start thread: %v", err)
	}
	if thread.ID != orig.ID || thread.ParentID != ch.ID || !thread.IsThread() {
		t.Fatalf("thread = %+v", thread)
	}
	if _, err := s.ChannelMessageSend(thread.ID, "in thread"); err != nil {
		t.Fatalf("send in thread: %v", err)
	}
	msgs, err := s.ChannelMessages(ch.ID, 100, "", orig.ID, "")
	if err != nil || len(msgs) != 1 || msgs[0].ID != sent.ID || msgs[0].Content != "edited" {
		t.Fatalf("messages after %s = %+v, %v", orig.ID, msgs, err)
	}
	if err := s.ChannelMessageDelete(ch.ID, sent.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := fake.Messages(ch.ID); len(got) != 1 {
		t.Fatalf("%d messages after delete, want 1", len(got))
	}
	if _, err := s.ChannelMessageSend(ch.ID, string(bytes.Repeat([]byte("x"), 2001))); err == nil {
		t.Fatal("a message over 2000 characters was accepted")
	}
}

// TestFakeRateLimits checks that the fake's buckets and forced 429s are
// what discordgo's limiter waits out, so no request is lost or doubled.
func TestFakeRateLimits(t *testing.T) {
	fake := startFake(t)
	ch := fake.AddChannel(fake.AddGuild("g").ID, "c")
	fake.SetRateLimit(2, 300*time.Millisecond)
	fake.ForceRateLimit(1)
	s := newSession(t, fake.Token())
	for i := range 5 {
		if _, err := s.ChannelMessageSend(ch.ID, "m"+string(rune('0'+i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := len(fake.Messages(ch.ID)); n != 5 {
		t.Fatalf("%d messages stored, want 5", n)
	}
	if fake.RateLimited() < 1 {
		t.Fatalf("no 429 was served")
	}
}
