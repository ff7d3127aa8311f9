package follower

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
)

func openMarks(t *testing.T) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, []storage.Migration{{Component: "followertest", Version: 1,
		SQL: "CREATE TABLE test_marks (follower TEXT PRIMARY KEY, pos BIGINT NOT NULL);"}}); err != nil {
		t.Fatal(err)
	}
	return db
}

func storedMark(t *testing.T, db *storage.DB) int64 {
	t.Helper()
	var pos int64
	err := db.QueryRow(context.Background(), "SELECT pos FROM test_marks WHERE follower = 'events'").Scan(&pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return pos
}

// TestMark: Set stores the mark; Skip moves it in memory only, until it is
// skipSaveEvery past the stored one; a fresh Mark reads the stored one.
func TestMark(t *testing.T) {
	ctx := context.Background()
	db := openMarks(t)
	m := NewMark(db, "test_marks", "events")
	steps := []struct {
		name        string
		do          func() error
		pos, stored int64
	}{
		{"fresh", func() error { return nil }, 0, 0},
		{"set", func() error { return m.Set(ctx, 10) }, 10, 10},
		{"skip a little", func() error { return m.Skip(ctx, 500) }, 500, 10},
		{"skip far", func() error { return m.Skip(ctx, 10+skipSaveEvery) }, 10 + skipSaveEvery, 10 + skipSaveEvery},
		{"skip again", func() error { return m.Skip(ctx, 20+skipSaveEvery) }, 20 + skipSaveEvery, 10 + skipSaveEvery},
		{"set in a write", func() error {
			return db.Write(ctx, func(tx *storage.Tx) error { return m.SetTx(ctx, tx, 30+skipSaveEvery) })
		}, 30 + skipSaveEvery, 30 + skipSaveEvery},
		{"a failed write moves nothing", func() error {
			err := db.Write(ctx, func(tx *storage.Tx) error {
				if err := m.SetTx(ctx, tx, 99999); err != nil {
					return err
				}
				return errors.New("fails")
			})
			if err == nil {
				return errors.New("the failing write succeeded")
			}
			return nil
		}, 30 + skipSaveEvery, 30 + skipSaveEvery},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		pos, err := m.Pos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pos != s.pos || storedMark(t, db) != s.stored {
			t.Fatalf("%s: mark %d stored %d, want %d stored %d", s.name, pos, storedMark(t, db), s.pos, s.stored)
		}
	}
	if pos, err := NewMark(db, "test_marks", "events").Pos(ctx); err != nil || pos != 30+skipSaveEvery {
		t.Fatalf("a fresh mark reads %d (%v), want %d", pos, err, 30+skipSaveEvery)
	}
}

// TestFollowerHooks: AfterRound runs after each round of steps and Every
// on its own clock.
func TestFollowerHooks(t *testing.T) {
	var steps, rounds atomic.Int64
	f := New("test", time.Hour, slog.New(slog.DiscardHandler), func(context.Context) (bool, error) {
		steps.Add(1)
		return false, nil
	})
	roundDone := make(chan struct{}, 10)
	f.AfterRound(func(context.Context) error {
		if rounds.Add(1) > steps.Load() {
			t.Error("a round ended before its step ran")
		}
		roundDone <- struct{}{}
		return nil
	})
	everyDone := make(chan struct{}, 10)
	f.Every(10*time.Millisecond, func(context.Context) error {
		select {
		case everyDone <- struct{}{}:
		default:
		}
		return nil
	})
	f.Start()
	wait := func(c chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5 s", what)
		}
	}
	wait(roundDone, "round at start")
	f.Wake()
	wait(roundDone, "round after a wake-up")
	wait(everyDone, "scheduled call")
	f.Close()
}

// TestBurstSharesRounds: wake-ups that come one after another, as a burst
// of sends makes them, are followed in a few rounds that each take many
// events, and every event is followed.
func TestBurstSharesRounds(t *testing.T) {
	const events = 200
	var sent, followed, rounds atomic.Int64
	f := New("test", time.Hour, slog.New(slog.DiscardHandler), func(context.Context) (bool, error) {
		if n := sent.Load(); n > followed.Load() {
			followed.Store(n)
			rounds.Add(1)
		}
		return false, nil
	})
	f.Start()
	defer f.Close()
	for range events {
		sent.Add(1)
		f.Wake()
		time.Sleep(time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); followed.Load() < events; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events followed after 5 s", followed.Load(), events)
		}
	}
	if n := rounds.Load(); n > events/2 {
		t.Errorf("%d rounds for %d wake-ups, each an event: want them to share rounds", n, events)
	}
}

// TestLoneWakeUpSettles: the round a lone wake-up asks for starts no
// sooner than wakeSettle after it, out of the way of the long-polls the
// same send woke (a lower bound, which no load can break).
func TestLoneWakeUpSettles(t *testing.T) {
	rounds := make(chan time.Time, 10)
	f := New("test", time.Hour, slog.New(slog.DiscardHandler), func(context.Context) (bool, error) {
		rounds <- time.Now()
		return false, nil
	})
	f.Start()
	defer f.Close()
	<-rounds            // the round at start
	time.Sleep(wakeGap) // the next wake-up is a lone one
	woke := time.Now()
	f.Wake()
	select {
	case at := <-rounds:
		if at.Sub(woke) < wakeSettle {
			t.Fatalf("round %v after its wake-up, want at least %v", at.Sub(woke), wakeSettle)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no round within 5 s of a wake-up")
	}
}

// TestWakeEvery: with WakeEvery(n), the first n-1 wake-ups after a round
// ask for none (the interval follows their events), the n-th does.
func TestWakeEvery(t *testing.T) {
	f := New("test", time.Hour, slog.New(slog.DiscardHandler), func(context.Context) (bool, error) { return false, nil })
	f.WakeEvery(3)
	for i := 1; i <= 3; i++ {
		f.Wake()
		if asked := len(f.wake) == 1; asked != (i == 3) {
			t.Fatalf("wake-up %d of 3: round asked for %v", i, asked)
		}
	}
}
