//go:build goolm

package assistant_test

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/testnode"
)

// long is a registered command whose answer is longer than an event may
// be.
type long struct{}

func (long) Name() string { return "long" }
func (long) Help() string { return "a very long answer" }
func (long) Run(context.Context, id.RoomID, id.UserID, string) (assistant.Reply, error) {
	return assistant.Reply{Text: strings.Repeat("a very long answer ", 10000)}, nil
}

// TestAssistantCutsLongAnswers: a summary of messages that are each one
// very long sentence, and a command's answer longer than an event may
// be, still reach the room, cut.
func TestAssistantCutsLongAnswers(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	if err := n.Assistant.Register(long{}); err != nil {
		t.Fatalf("register: %v", err)
	}
	alice := n.Register("alice")
	room := plainRoom(t, alice, event.HistoryVisibilityShared)
	for i := range 3 {
		p := string(rune('a' + i))
		testnode.SendText(t, alice, room, strings.Repeat(p+"planet "+p+"moon "+p+"star ", 2500)) // 50,000 bytes, one sentence
	}
	got := ask(t, alice, room, "!assistant summary last 1h")
	if !strings.Contains(got, "Summary of 3 messages") || len(got) > 16<<10 {
		t.Errorf("summary of three long sentences is %d bytes:\n%.500s", len(got), got)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "• ") && !strings.Contains(line, "…") {
			t.Errorf("a long sentence is not cut: %.200s", line)
		}
	}
	got = ask(t, alice, room, "!assistant long")
	if len(got) > 16<<10 || !strings.HasSuffix(got, "(cut)") || !strings.HasPrefix(got, "a very long answer") {
		t.Errorf("a command's long answer is %d bytes, ending %q", len(got), got[max(0, len(got)-40):])
	}
}
