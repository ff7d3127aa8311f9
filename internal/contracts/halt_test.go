package contracts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/rooms"
)

// TestTimeoutsHaltTheAttachment checks that a call the wall clock stops
// is not done (the step fails and runs it again) until its third stop on
// the same input, which halts the attachment with an error log line.
func TestTimeoutsHaltTheAttachment(t *testing.T) {
	var logged bytes.Buffer
	var halts []Halt
	onHalt := func(_ context.Context, h Halt) { halts = append(halts, h) }
	s := &Service{opts: Options{Log: slog.New(slog.NewTextHandler(&logged, nil)), OnHalt: onHalt},
		timeouts: map[string]int{}, halted: map[string]bool{}}
	ev := &rooms.Event{RoomID: "!room:x", ID: "$input"}
	a := Attachment{Name: "loop", Module: "abc"}
	stop := errors.Join(ErrTimedOut)
	for try := 1; try < maxTimeouts; try++ {
		if s.failedOn(t.Context(), ev, a, stop, maxTimeouts) {
			t.Fatalf("halted after %d stops, want %d", try, maxTimeouts)
		}
		if s.halted[haltKey(ev.RoomID, a)] || len(halts) != 0 {
			t.Fatalf("halted after %d stops", try)
		}
	}
	if !s.failedOn(t.Context(), ev, a, stop, maxTimeouts) || !s.halted[haltKey(ev.RoomID, a)] {
		t.Fatalf("not halted after %d stops", maxTimeouts)
	}
	if len(halts) != 1 || halts[0].Attachment != "loop" || halts[0].RoomID != ev.RoomID || halts[0].EventID != string(ev.ID) {
		t.Fatalf("OnHalt told %+v, want the loop attachment once", halts)
	}
	if !strings.Contains(logged.String(), "attachment halted") || !strings.Contains(logged.String(), "attachment=loop") {
		t.Fatalf("log %q, want the halt named", logged.String())
	}
	other := Attachment{Name: "poll", Module: "def"}
	if s.halted[haltKey(ev.RoomID, other)] {
		t.Fatal("another attachment is halted too")
	}
}
