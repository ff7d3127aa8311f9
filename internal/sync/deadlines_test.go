package sync

import (
	"testing"
	"time"
)

// TestDeadlines: parked long-polls leave the deadlines when theirs has
// come, one taken out before never fires, and each knows its slot in the
// heap meanwhile.
func TestDeadlines(t *testing.T) {
	var d deadlines
	now := time.Now()
	// Running, not waiting: woken takes nothing, so no Service is needed.
	poll := func(after time.Duration) *parkedSync {
		return &parkedSync{deadline: now.Add(after), slot: -1, state: parkRunning}
	}
	late, early, gone, never := poll(60*time.Millisecond), poll(20*time.Millisecond), poll(40*time.Millisecond), poll(time.Hour)
	for _, p := range []*parkedSync{late, never, early, gone} {
		d.add(p)
	}
	d.remove(gone)
	if gone.slot != -1 {
		t.Fatalf("a removed poll has slot %d", gone.slot)
	}
	var left []*parkedSync
	for _, want := range []*parkedSync{early, late} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d.mu.Lock()
			fired := want.slot == -1
			left = append(left[:0], d.polls...)
			d.mu.Unlock()
			if fired {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a deadline did not fire")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if len(left) != 1 || left[0] != never || never.slot != 0 {
		t.Fatalf("left %d polls, want only the one of an hour (slot %d)", len(left), never.slot)
	}
	d.remove(never)
	if len(d.polls) != 0 {
		t.Fatalf("%d polls left", len(d.polls))
	}
}
