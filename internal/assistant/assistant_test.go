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
