package contracts

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestTimeoutsHaltTheAttachment checks that a call the wall clock stops
// is not done (the step fails and runs it again) until its third stop on
// the same input, which halts the attachment with an error log line.
func TestTimeoutsHaltTheAttachment(t *testing.T) {
	var logged bytes.Buffer
	s := &Service{opts: Options{Log: slog.New(slog.NewTextHandler(&logged, nil))}, timeouts: map[string]int{}, halted: map[string]bool{}}
	ev := storedEvent{roomID: "!room:x", eventID: "$input"}
	a := Attachment{Name: "loop", Module: "abc"}
	stop := errors.Join(ErrTimedOut)
	for try := 1; try < maxTimeouts; try++ {
		if s.timedOut(ev, a, stop) {
			t.Fatalf("halted after %d stops, want %d", try, maxTimeouts)
		}
		if s.halted[haltKey(ev.roomID, a)] {
			t.Fatalf("halted after %d stops", try)
		}
	}
	if !s.timedOut(ev, a, stop) || !s.halted[haltKey(ev.roomID, a)] {
		t.Fatalf("not halted after %d stops", maxTimeouts)
	}
	if !strings.Contains(logged.String(), "attachment halted") || !strings.Contains(logged.String(), "attachment=loop") {
		t.Fatalf("log %q, want the halt named", logged.String())
	}
	other := Attachment{Name: "poll", Module: "def"}
	if s.halted[haltKey(ev.roomID, other)] {
		t.Fatal("another attachment is halted too")
	}
}
