package clientapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// TestRemoteJoinsBounded: joins over federation that hang fill the bound;
// one more is refused with 429 M_LIMIT_EXCEEDED once its wait is over,
// the same user's join of a room already being joined follows that join
// instead of starting another, and a slot freed by a finished join is
// taken by the next one.
func TestRemoteJoinsBounded(t *testing.T) {
	ctx := context.Background()
	j := &remoteJoins{limit: 2}
	release := make(chan struct{})
	var started atomic.Int32
	hang := func() error {
		started.Add(1)
		<-release
		return errors.New("the remote never answered")
	}
	const alice, bob = id.UserID("@alice:here"), id.UserID("@bob:here")
	first, err := j.start(ctx, alice, "!one:there", time.Second, hang)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.start(ctx, alice, "!two:there", time.Second, hang); err != nil {
		t.Fatal(err)
	}
	_, err = j.start(ctx, bob, "!three:there", 50*time.Millisecond, hang)
	if me, ok := mxhttp.AsError(err); !ok || me.Code != "M_LIMIT_EXCEEDED" || me.Status != 429 {
		t.Fatalf("a join past the bound: %v, want 429 M_LIMIT_EXCEEDED", err)
	}
	again, err := j.start(ctx, alice, "!one:there", 50*time.Millisecond, hang)
	if err != nil || again != first {
		t.Fatalf("alice's join of !one asked again: %p (%v), want the one going on, %p", again, err, first)
	}
	if n := started.Load(); n > 2 {
		t.Fatalf("%d joins started, want at most 2", n)
	}

	// A join that ends frees its slot for a waiting one.
	waiting := make(chan error, 1)
	go func() {
		_, err := j.start(ctx, bob, "!three:there", 10*time.Second, func() error { return nil })
		waiting <- err
	}()
	close(release)
	<-first.done
	if first.err == nil {
		t.Error("the failed join's error is lost")
	}
	if err := <-waiting; err != nil {
		t.Fatalf("a join waiting for a slot: %v", err)
	}
	listed := func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return len(j.running)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(j.slots) > 0 || listed() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still taken, %d joins still listed after every join ended", len(j.slots), listed())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
