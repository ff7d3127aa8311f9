package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

// TestBatchRunsAgainWithoutFailedWrite: the writes of a batch run without
// savepoints; when one fails in the middle, the batch is rolled back and
// run again without it. Every other write commits exactly once (its row
// is there once, with the position its last run took), the writes before
// the failed one ran twice with their first run aborted (AfterAbort), the
// failed one answers its own error and leaves nothing, and a write that
// fails only when run again fails alone. SQLite and PostgreSQL (where a
// failed statement aborts the whole transaction).
func TestBatchRunsAgainWithoutFailedWrite(t *testing.T) {
	errRefused := errors.New("refused")
	type write struct {
		fail        bool // returns errRefused after inserting its row
		failAgain   bool // returns errRefused on its second run
		duplicateOf int  // inserts the row of this write (a unique violation) when > 0
	}
	type want struct {
		runs, commits, aborts int
		err                   bool
	}
	cases := []struct {
		name   string
		writes []write
		want   []want
	}{{
		name:   "the function fails",
		writes: []write{{}, {}, {fail: true}, {}, {}},
		want:   []want{{2, 1, 1, false}, {2, 1, 1, false}, {1, 0, 1, true}, {1, 1, 0, false}, {1, 1, 0, false}},
	}, {
		name:   "a statement fails",
		writes: []write{{}, {}, {duplicateOf: 1}, {}},
		want:   []want{{2, 1, 1, false}, {2, 1, 1, false}, {1, 0, 1, true}, {1, 1, 0, false}},
	}, {
		name:   "the first write fails",
		writes: []write{{fail: true}, {}, {}},
		want:   []want{{1, 0, 1, true}, {1, 1, 0, false}, {1, 1, 0, false}},
	}, {
		name:   "another write fails when run again",
		writes: []write{{}, {failAgain: true}, {}, {fail: true}, {}},
		want:   []want{{2, 1, 1, false}, {2, 0, 2, true}, {2, 1, 1, false}, {1, 0, 1, true}, {1, 1, 0, false}},
	}}
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, c := range cases {
			t.Run(engine+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				dsn := filepath.Join(t.TempDir(), "test.db")
				if engine == "postgres" {
					dsn = pgtest.Start(t)
				}
				db, err := storage.Open(ctx, dsn, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if err := db.Write(ctx, func(tx *storage.Tx) error {
					_, err := tx.Exec(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, pos BIGINT NOT NULL)")
					return err
				}); err != nil {
					t.Fatal(err)
				}

				// Hold the writer so that the writes are committed as one batch.
				holding, release := make(chan struct{}), make(chan struct{})
				held := db.Enqueue(ctx, func(tx *storage.Tx) error {
					close(holding)
					<-release
					return nil
				})
				<-holding
				got := make([]want, len(c.writes))
				pos := make([]int64, len(c.writes))
				waits := make([]func() error, len(c.writes))
				for i, w := range c.writes {
					waits[i] = db.Enqueue(ctx, func(tx *storage.Tx) error {
						got[i].runs++
						tx.AfterCommit(func() { got[i].commits++ })
						tx.AfterAbort(func() { got[i].aborts++ })
						pos[i] = tx.NextPos()
						row := i + 1
						if w.duplicateOf > 0 {
							row = w.duplicateOf
						}
						if _, err := tx.Exec(ctx, "INSERT INTO t (id, pos) VALUES ($1, $2)", row, pos[i]); err != nil {
							return fmt.Errorf("insert row %d: %w", row, err)
						}
						if w.fail || w.failAgain && got[i].runs == 2 {
							return errRefused
						}
						return nil
					})
				}
				close(release)
				if err := held(); err != nil {
					t.Fatalf("holding write: %v", err)
				}
				for i, wait := range waits {
					got[i].err = wait() != nil
				}
				for i := range c.writes {
					if got[i] != c.want[i] {
						t.Errorf("write %d: %+v, want %+v", i, got[i], c.want[i])
					}
				}

				rows, err := db.Query(ctx, "SELECT id, pos FROM t ORDER BY id")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				stored := map[int]int64{}
				for rows.Next() {
					var id int
					var p int64
					if err := rows.Scan(&id, &p); err != nil {
						t.Fatal(err)
					}
					stored[id] = p
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				for i, w := range c.want {
					p, ok := stored[i+1]
					switch {
					case w.err && ok:
						t.Errorf("write %d failed but its row is stored", i)
					case !w.err && !ok:
						t.Errorf("write %d committed but its row is missing", i)
					case !w.err && p != pos[i]:
						t.Errorf("write %d: row stored with position %d, its last run took %d", i, p, pos[i])
					case !w.err && p > db.Visible():
						t.Errorf("write %d: position %d is past the visible %d", i, p, db.Visible())
					}
				}
			})
		}
	}
}
