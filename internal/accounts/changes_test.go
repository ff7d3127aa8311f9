package accounts

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/storage"
)

// TestChangesOfRerunWriteCountOnce: when a later write of its batch
// fails, the batch runs again (see storage.DB.Write); a write's changes
// are those of its committed run only, so they are applied (device
// deleted and deactivation hooks run) once, not once per run.
func TestChangesOfRerunWriteCountOnce(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Hold the writer so that the two writes are committed as one batch.
	holding, release := make(chan struct{}), make(chan struct{})
	held := db.Enqueue(ctx, func(tx *storage.Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	var cs changes
	runs := 0
	recorded := db.Enqueue(ctx, cs.collect(func(tx *storage.Tx, cs *changes) error {
		runs++
		return cs.record(ctx, tx, changeUserChanged, accountChange{UserID: "@alice:example.org"})
	}))
	errRefused := errors.New("refused")
	failed := db.Enqueue(ctx, func(tx *storage.Tx) error { return errRefused })
	close(release)
	if err := held(); err != nil {
		t.Fatalf("holding write: %v", err)
	}
	if err := recorded(); err != nil {
		t.Fatalf("recording write: %v", err)
	}
	if err := failed(); !errors.Is(err, errRefused) {
		t.Fatalf("failing write: got %v, want %v", err, errRefused)
	}
	if runs != 2 {
		t.Fatalf("the recording write ran %d times, want 2 (its batch run again without the failed write)", runs)
	}
	if len(cs) != 1 {
		t.Fatalf("changes after a write run twice: %d, want 1: %+v", len(cs), cs)
	}
	var pending int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pending_changes WHERE id = $1", cs[0].ID).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 1 {
		t.Errorf("the change collected (id %d) is not the one committed", cs[0].ID)
	}
}
