package storage

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestAfterCommitRunsBeforeVisible: AfterCommit functions run once their
// write has committed and before its positions become visible, so memory
// they update covers every position a reader sees; those of a write that
// failed inside a batch never run.
func TestAfterCommitRunsBeforeVisible(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Hold the writer so that the next writes are committed as one batch.
	holding, release := make(chan struct{}), make(chan struct{})
	held := db.Enqueue(ctx, func(tx *Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	type seen struct {
		pos, visible int64
		ran          bool
	}
	var ok, failed seen
	okWait := db.Enqueue(ctx, func(tx *Tx) error {
		ok.pos = tx.NextPos()
		tx.AfterCommit(func() { ok.ran, ok.visible = true, db.Visible() })
		return nil
	})
	errRefused := errors.New("refused")
	failedWait := db.Enqueue(ctx, func(tx *Tx) error {
		failed.pos = tx.NextPos()
		tx.AfterCommit(func() { failed.ran = true })
		return errRefused
	})
	close(release)
	if err := held(); err != nil {
		t.Fatalf("holding write: %v", err)
	}
	if err := okWait(); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := failedWait(); !errors.Is(err, errRefused) {
		t.Fatalf("failing write: got %v, want %v", err, errRefused)
	}
	if !ok.ran {
		t.Fatal("AfterCommit of a committed write did not run before Write returned")
	}
	if ok.visible >= ok.pos {
		t.Errorf("AfterCommit ran with position %d already visible (Visible %d)", ok.pos, ok.visible)
	}
	if v := db.Visible(); v < ok.pos {
		t.Errorf("Visible = %d after the write of position %d returned", v, ok.pos)
	}
	if failed.ran {
		t.Error("AfterCommit of a failed write ran")
	}
}

// TestAfterAbort: exactly one of a write's AfterCommit and AfterAbort
// functions runs: AfterAbort for a write whose function failed, alone or
// inside a batch, and never for one that committed.
func TestAfterAbort(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	errRefused := errors.New("refused")
	type outcome struct{ committed, aborted int }
	write := func(o *outcome, fail bool) func() error {
		return db.Enqueue(ctx, func(tx *Tx) error {
			tx.AfterCommit(func() { o.committed++ })
			tx.AfterAbort(func() { o.aborted++ })
			if fail {
				return errRefused
			}
			return nil
		})
	}

	var alone outcome
	if err := write(&alone, true)(); !errors.Is(err, errRefused) {
		t.Fatalf("failing write: got %v, want %v", err, errRefused)
	}
	if alone != (outcome{aborted: 1}) {
		t.Errorf("a failed write alone: %+v, want one abort", alone)
	}

	// Hold the writer so that the next writes are committed as one batch.
	holding, release := make(chan struct{}), make(chan struct{})
	held := db.Enqueue(ctx, func(tx *Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	var ok, failed outcome
	okWait, failedWait := write(&ok, false), write(&failed, true)
	close(release)
	if err := held(); err != nil {
		t.Fatalf("holding write: %v", err)
	}
	if err := okWait(); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := failedWait(); !errors.Is(err, errRefused) {
		t.Fatalf("failing write: got %v, want %v", err, errRefused)
	}
	if ok != (outcome{committed: 1}) {
		t.Errorf("a committed write in a batch: %+v, want one commit", ok)
	}
	if failed != (outcome{aborted: 1}) {
		t.Errorf("a failed write in a batch: %+v, want one abort", failed)
	}
}
