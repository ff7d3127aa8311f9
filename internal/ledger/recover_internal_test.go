package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"

	"github.com/matrixos/matrixos/internal/keys"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// openTestDB opens a database with the rooms' and the ledger's tables,
// closed when the test ends.
func openTestDB(t *testing.T) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, append(rooms.Migrations, Migrations...)); err != nil {
		t.Fatal(err)
	}
	return db
}

// storeEvents writes n message events of a room straight into the events
// table and returns their entries.
func storeEvents(t *testing.T, db *storage.DB, from, n int) []Entry {
	t.Helper()
	var out []Entry
	err := db.Write(context.Background(), func(tx *storage.Tx) error {
		for i := from; i < from+n; i++ {
			e := Entry{RoomID: "!r:test", EventID: fmt.Sprintf("$e%d", i), ContentHash: fmt.Sprintf("h%d", i)}
			_, err := tx.Exec(context.Background(), `INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
				VALUES ($1, $2, $3, 'm.room.message', '@a:test', $4, 0, $5, 0)`, tx.NextPos(), e.EventID, e.RoomID, i,
				`{"hashes":{"sha256":"`+e.ContentHash+`"}}`)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrashBetweenAppendAndMark: entries integrated into the log whose
// mark was never recorded (the process died in between) are matched with
// their events on the next start instead of being appended again; an
// entry whose event is gone is left behind, and the events after it still
// land once each.
func TestCrashBetweenAppendAndMark(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTestDB(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The engine reads the rows storeEvents writes; it never committed them.
	engine := rooms.New(db, log, rooms.Signer{ServerName: "test", KeyID: "ed25519:t", Key: key})
	opts := Options{Dir: filepath.Join(dir, "ledger"), Origin: EventsOrigin("test"), Key: key, All: true, States: engine}
	open := func() *Log {
		l, err := Open(ctx, db, log, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	catchUp := func(l *Log) {
		for {
			more, err := l.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !more {
				return
			}
		}
	}

	evs := storeEvents(t, db, 0, 5)
	l := open()
	catchUp(l)
	// The "crash": the next three events and one whose event row never
	// committed reach the log, but no mark records them.
	evs = append(evs, storeEvents(t, db, 5, 5)...)
	if _, err := l.appendBatch(ctx, append(evs[5:8:8], Entry{RoomID: "!r:test", EventID: "$never", ContentHash: "x"})); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	l = open()
	defer l.Close(ctx)
	catchUp(l)
	size, err := l.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if size != 11 {
		t.Fatalf("log size %d, want 11 (10 events once each and the orphan)", size)
	}
	want := map[string]uint64{"$e0": 0, "$e4": 4, "$e5": 5, "$e7": 7, "$e8": 9, "$e9": 10}
	for evID, idx := range want {
		got, err := l.prover.Index(ctx, evID)
		if err != nil || got != idx {
			t.Errorf("%s at %d (%v), want %d", evID, got, err, idx)
		}
	}
	entries, err := readEntries(ctx, client.FileFetcher{Root: opts.Dir}.ReadEntryBundle, 0, size, size)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.EventID] {
			t.Fatalf("%s logged twice", e.EventID)
		}
		seen[e.EventID] = true
	}
}

// TestKeysCrashBetweenAppendAndRecord: a key entry integrated into the
// keys log but never recorded (the process died in between) is recorded
// on the next step instead of being appended again.
func TestKeysCrashBetweenAppendAndRecord(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, append(keys.Migrations, Migrations...)); err != nil {
		t.Fatal(err)
	}
	err = db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ('@a:test', 'D', '{"keys":{"ed25519:D":"k"}}')`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO e2e_device_changes (pos, user_id, viewer) VALUES ($1, '@a:test', '')`, tx.NextPos())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k, err := OpenKeys(ctx, db, log, filepath.Join(dir, "keys"), "test", key)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	// The "crash": the entry reached the log, its record did not.
	if _, err := appendData(ctx, k.t.appender, [][]byte{KeyEntry{UserID: "@a:test", Key: "device:D", PublicKeys: "ed25519:D=k"}.Marshal()}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Step(ctx); err != nil {
		t.Fatal(err)
	}
	size, err := k.Size(ctx)
	if err != nil || size != 1 {
		t.Fatalf("keys log size %d (%v), want 1: the recovered entry appended again", size, err)
	}
}

// sizeCounter counts the reads of the log's size.
type sizeCounter struct {
	tessera.LogReader
	reads int
}

func (c *sizeCounter) IntegratedSize(ctx context.Context) (uint64, error) {
	c.reads++
	return c.LogReader.IntegratedSize(ctx)
}

// TestStepReadsSizeOnce: the follower reads the log's size (a file lock
// and a read of the log's state) at its first step only, not at every
// step, and again after a record that failed, when the log may hold
// entries no mark records; those are then matched, not appended twice.
func TestStepReadsSizeOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, append(rooms.Migrations, Migrations...)); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine := rooms.New(db, log, rooms.Signer{ServerName: "test", KeyID: "ed25519:t", Key: key})
	l, err := Open(ctx, db, log, Options{Dir: filepath.Join(dir, "ledger"), Origin: EventsOrigin("test"), Key: key, All: true, States: engine})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	counter := &sizeCounter{LogReader: l.reader}
	l.reader = counter
	step := func() {
		t.Helper()
		if _, err := l.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}

	for i := range 5 {
		storeEvents(t, db, i, 1)
		step()
	}
	if counter.reads != 1 {
		t.Errorf("five steps read the log's size %d times, want once", counter.reads)
	}

	// A record that fails after its entries were appended (the database
	// refuses the mark): the next step reads the size again and matches
	// the entries the log already holds.
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "ALTER TABLE ledger_marks RENAME TO ledger_marks_away")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	storeEvents(t, db, 5, 2)
	if _, err := l.Step(ctx); err == nil {
		t.Fatal("step with no ledger_marks table succeeded")
	}
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "ALTER TABLE ledger_marks_away RENAME TO ledger_marks")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reads := counter.reads
	step()
	if counter.reads != reads+1 {
		t.Errorf("the step after a failed record read the size %d times, want once", counter.reads-reads)
	}
	size, err := l.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if size != 7 {
		t.Errorf("log size %d, want 7 (each event once)", size)
	}
}
