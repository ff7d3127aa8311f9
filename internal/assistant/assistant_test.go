//go:build goolm

package assistant_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/assistant/openaifake"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// echo is a registered command that answers its arguments and who asked.
type echo struct{}

func (echo) Name() string { return "echo" }
func (echo) Help() string { return "says its arguments back" }
func (echo) Run(ctx context.Context, room id.RoomID, sender id.UserID, args string) (assistant.Reply, error) {
	return assistant.Reply{Text: "echo from " + sender.String() + ": " + args}, nil
}

// assistantID is the assistant of the test node (server name localhost).
const assistantID id.UserID = "@assistant:localhost"

// encryptedRoom has alice create an encrypted room and invite the
// assistant, and waits until it has joined.
func encryptedRoom(t *testing.T, alice *testnode.E2EEDevice) id.RoomID {
	t.Helper()
	room := testnode.CreateRoom(t, alice.C, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})
	testnode.Invite(t, alice.C, room, assistantID)
	alice.SyncUntil(30*time.Second, "the assistant's join", func() bool {
		return alice.Member(room, assistantID, event.MembershipJoin)
	})
	return room
}

// replyTo syncs alice until the assistant's decrypted answer to evID
// (a reply to it or in its thread) arrives, and returns it.
func replyTo(t *testing.T, alice *testnode.E2EEDevice, evID id.EventID) *event.Event {
	t.Helper()
	var found *event.Event
	alice.SyncUntil(30*time.Second, "the assistant's answer to "+evID.String(), func() bool {
		for _, evt := range alice.Decrypted() {
			msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
			if evt.Sender == assistantID && ok && msg.RelatesTo.GetReplyTo() == evID {
				found = evt
				return true
			}
		}
		return false
	})
	return found
}

// link is the matrix.to link the assistant gives an event of the test
// node.
func link(room id.RoomID, evID id.EventID) string {
	return room.EventURI(evID, "localhost").MatrixToURL()
}

func body(evt *event.Event) string {
	return evt.Content.AsMessage().Body
}

// TestAssistantInEncryptedRoom: the assistant joins an encrypted room only
// when invited, decrypts a command and answers it encrypted (a registered
// command, in the main timeline and in a thread, and by mention); a room it
// was not invited to gets nothing, it cannot log in by password, its store
// is private, and it leaves when asked.
func TestAssistantInEncryptedRoom(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	if err := n.Assistant.Register(echo{}); err != nil {
		t.Fatalf("register echo: %v", err)
	}
	alice := testnode.NewE2EEDevice(t, "alice", n.Register("alice"))

	// A room it was not invited to: a mention there is not answered.
	other := testnode.CreateRoom(t, alice.C, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	testnode.SendText(t, alice.C, other, "!assistant echo not invited")

	room := encryptedRoom(t, alice)
	asked := alice.Send(room, "!assistant echo hello there")
	reply := replyTo(t, alice, asked)
	if want := "echo from " + alice.C.UserID.String() + ": hello there"; body(reply) != want {
		t.Errorf("answer = %q, want %q", body(reply), want)
	}

	// In a thread, the answer is in the thread.
	root := alice.Send(room, "thread root")
	inThread := &event.MessageEventContent{MsgType: event.MsgText, Body: "!assistant echo in thread"}
	inThread.RelatesTo = (&event.RelatesTo{}).SetThread(root, root)
	threaded := alice.SendContent(room, inThread)
	reply = replyTo(t, alice, threaded)
	if rel := reply.Content.AsMessage().RelatesTo; rel.GetThreadParent() != root {
		t.Errorf("answer in thread relates to %+v, want thread %s", rel, root)
	}

	// A mention asks too.
	mention := &event.MessageEventContent{MsgType: event.MsgText, Body: "Assistant: echo by mention",
		Mentions: &event.Mentions{UserIDs: []id.UserID{assistantID}}}
	reply = replyTo(t, alice, alice.SendContent(room, mention))
	if !strings.HasSuffix(body(reply), ": by mention") {
		t.Errorf("answer to a mention = %q", body(reply))
	}

	// The uninvited room: the assistant never joined and said nothing
	// there, although it answered everything after it in the other room.
	if alice.Member(other, assistantID, event.MembershipJoin) || alice.Member(other, assistantID, event.MembershipInvite) {
		t.Errorf("the assistant is in a room it was not invited to")
	}
	msgs, err := alice.C.Messages(context.Background(), other, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("messages of the uninvited room: %v", err)
	}
	for _, evt := range msgs.Chunk {
		if evt.Sender == assistantID {
			t.Errorf("the assistant sent %s in a room it was not invited to", evt.Type)
		}
	}

	// Nobody logs in as the assistant with a password.
	_, err = n.Client().Login(context.Background(), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: assistantID.String()}, Password: ""})
	if code, _ := testnode.ErrCode(err); code != "M_FORBIDDEN" {
		t.Errorf("password login as the assistant: %v, want M_FORBIDDEN", err)
	}
	for _, f := range []string{assistant.StoreFile, "pickle.key"} {
		st, err := os.Stat(filepath.Join(n.Config.DataDir, "assistant", f))
		if err != nil {
			t.Fatalf("assistant store: %v", err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f, st.Mode().Perm())
		}
	}

	// It read the conversation: a summary and an answer quote the right
	// messages with their links.
	said := map[string]id.EventID{}
	for _, text := range []string{
		"Good morning!",
		"The migration tool fails on large databases because of the index rebuild.",
		"We decided to rebuild the index after the migration, and Bob fixes the migration tool this week.",
		"lol",
		"We agreed on March 3rd for the release of the migration tool.",
	} {
		said[text] = alice.Send(room, text)
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant summary last 1h"))
	decided := said["We decided to rebuild the index after the migration, and Bob fixes the migration tool this week."]
	for _, want := range []string{"We decided to rebuild the index", link(room, decided), "answered by the offline engine"} {
		if !strings.Contains(body(reply), want) {
			t.Errorf("summary lacks %q:\n%s", want, body(reply))
		}
	}
	if strings.Contains(body(reply), "lol") || strings.Contains(body(reply), "not invited") {
		t.Errorf("summary has chit-chat or another room's message:\n%s", body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant ask when is the release?"))
	if want := link(room, said["We agreed on March 3rd for the release of the migration tool."]); !strings.Contains(body(reply), want) {
		t.Errorf("answer lacks the link %s:\n%s", want, body(reply))
	}
	// Nothing of the uninvited room was read.
	reply = replyTo(t, alice, alice.Send(room, "!assistant ask invited?"))
	if !strings.Contains(body(reply), "I found nothing") {
		t.Errorf("the assistant answers from a room it was not invited to:\n%s", body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant log"))
	if !strings.Contains(body(reply), "I keep 6 messages") || !strings.Contains(body(reply), "read "+decided.String()) {
		t.Errorf("log:\n%s", body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant translate"))
	if !strings.Contains(body(reply), "reply to the message") {
		t.Errorf("translate without a reply: %s", body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant forget keep"))
	reply = replyTo(t, alice, alice.Send(room, "!assistant log"))
	if !strings.Contains(body(reply), "I keep 0 messages") {
		t.Errorf("log after forget:\n%s", body(reply))
	}

	// Asked to leave, it leaves.
	alice.Send(room, "!assistant leave")
	alice.SyncUntil(30*time.Second, "the assistant's leave", func() bool {
		return alice.Member(room, assistantID, event.MembershipLeave)
	})
}

// TestRegisterRefusesTakenNames: a built-in's name, a second command of
// the same name and a name that is not a word are refused.
func TestRegisterRefusesTakenNames(t *testing.T) {
	a := assistant.New(assistant.Options{Dir: t.TempDir()})
	if err := a.Register(echo{}); err != nil {
		t.Fatalf("register echo: %v", err)
	}
	for _, cmd := range []assistant.Command{echo{}, named("help"), named("summary"), named("Two Words"), named("")} {
		if err := a.Register(cmd); err == nil {
			t.Errorf("Register(%q) succeeded", cmd.Name())
		}
	}
}

type named string

func (n named) Name() string { return string(n) }
func (n named) Help() string { return "" }
func (n named) Run(context.Context, id.RoomID, id.UserID, string) (assistant.Reply, error) {
	return assistant.Reply{}, nil
}

// TestAssistantWithModelServer: with a model server configured, an
// encrypted room gets the offline engine until a member who may change
// its state turns the model on; then the assistant's summary comes from
// the model (which got the decrypted messages) and says so; a room that
// turns the model off gets the offline engine, and a failing model
// server falls back to it with a note.
func TestAssistantWithModelServer(t *testing.T) {
	fake := openaifake.Start(t, func(r openaifake.Request) string { return "The team picked March 3rd." }, nil)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("sekret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant, func(c *config.Config) {
		c.AssistantModelURL, c.AssistantModel, c.AssistantAPIKeyFile = fake.URL, "fake-model", keyFile
		c.AssistantModelPrivate = true
	})
	alice := testnode.NewE2EEDevice(t, "alice", n.Register("alice"))
	room := encryptedRoom(t, alice)
	alice.Send(room, "We agreed on March 3rd for the release.")
	reply := replyTo(t, alice, alice.Send(room, "!assistant summary last 1h"))
	if !strings.Contains(body(reply), "answered by the offline engine") || len(fake.Requests()) != 0 {
		t.Fatalf("an encrypted room's messages went to the model server (%d requests) before the room turned it on:\n%s", len(fake.Requests()), body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant settings room model on"))
	if !strings.Contains(body(reply), "now on") {
		t.Fatalf("settings: %s", body(reply))
	}
	reply = replyTo(t, alice, alice.Send(room, "!assistant summary last 1h"))
	if !strings.HasPrefix(strings.SplitN(body(reply), "\n", 2)[1], "The team picked March 3rd.") || !strings.Contains(body(reply), "answered by the model fake-model") {
		t.Errorf("summary by the model:\n%s", body(reply))
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0].Prompt(), "We agreed on March 3rd for the release.") || reqs[0].Authorization != "Bearer sekret" {
		t.Fatalf("model requests: %+v", reqs)
	}

	fake.Fail(500, "model overloaded")
	reply = replyTo(t, alice, alice.Send(room, "!assistant summary last 1h"))
	if !strings.Contains(body(reply), "The model server failed") || strings.Contains(body(reply), "model overloaded") || !strings.Contains(body(reply), "answered by the offline engine") {
		t.Errorf("summary when the model fails:\n%s", body(reply))
	}
	fake.Fail(0, "")

	reply = replyTo(t, alice, alice.Send(room, "!assistant settings room model off"))
	if !strings.Contains(body(reply), "now off") {
		t.Fatalf("settings: %s", body(reply))
	}
	before := len(fake.Requests())
	reply = replyTo(t, alice, alice.Send(room, "!assistant summary last 1h"))
	if !strings.Contains(body(reply), "answered by the offline engine") || len(fake.Requests()) != before {
		t.Errorf("with the model off the model was asked (%d requests) or the answer is:\n%s", len(fake.Requests())-before, body(reply))
	}
}
