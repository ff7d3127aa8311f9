package assistant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// Message is a room message the assistant read (decrypted, when the room
// is encrypted).
type Message struct {
	EventID    id.EventID
	Sender     id.UserID
	Time       time.Time
	Body       string
	ThreadRoot id.EventID // "" outside threads
	// Link is the message's matrix.to link (not stored: the assistant
	// fills it for the engines).
	Link string

	seq int64 // the order the assistant stored it in
}

// horizon is the earliest message an asker may read: one the assistant
// stored after the message numbered seq and that was sent at or after
// ts. Both bounds count: the order of arrival holds against a join whose
// origin_server_ts was set in the past, the time against a message sent
// before the join that arrived (or was decrypted) after it. The zero
// horizon bounds nothing.
type horizon struct {
	seq int64
	ts  time.Time
}

// admits reports whether m is at or after h.
func (h horizon) admits(m Message) bool {
	return m.seq > h.seq && !m.Time.Before(h.ts)
}

// LogEntry is one line of a room's log: what the assistant read or sent
// there, or did on someone's request.
type LogEntry struct {
	Time   time.Time
	Action string // "read", "sent", "joined", "forgot", "settings"
	Detail string
}

// store is the assistant's own record of the rooms it is in, in its
// SQLite database beside the crypto store: the messages it read since it
// joined, the log, the last read receipt and the latest join of each
// member, and settings.
type store struct {
	db *sql.DB
}

// storeSchema creates the store's tables (the crypto store's are
// mautrix's own, in the same file).
var storeSchema = []string{
	`CREATE TABLE IF NOT EXISTS assistant_messages (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		room_id TEXT NOT NULL,
		event_id TEXT NOT NULL,
		sender TEXT NOT NULL,
		ts INTEGER NOT NULL,
		thread_root TEXT NOT NULL,
		body TEXT NOT NULL,
		UNIQUE (room_id, event_id))`,
	`CREATE INDEX IF NOT EXISTS assistant_messages_room_ts ON assistant_messages (room_id, ts)`,
	`CREATE TABLE IF NOT EXISTS assistant_log (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		room_id TEXT NOT NULL,
		ts INTEGER NOT NULL,
		action TEXT NOT NULL,
		detail TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS assistant_log_room ON assistant_log (room_id, seq)`,
	`CREATE TABLE IF NOT EXISTS assistant_receipts (
		room_id TEXT NOT NULL,
		user_id TEXT NOT NULL,
		ts INTEGER NOT NULL,
		PRIMARY KEY (room_id, user_id))`,
	`CREATE TABLE IF NOT EXISTS assistant_joins (
		room_id TEXT NOT NULL,
		user_id TEXT NOT NULL,
		after_seq INTEGER NOT NULL,
		ts INTEGER NOT NULL,
		PRIMARY KEY (room_id, user_id))`,
	`CREATE TABLE IF NOT EXISTS assistant_settings (
		scope TEXT NOT NULL,
		name TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (scope, name))`,
}

// openStoreTables creates the store's tables in db.
func openStoreTables(ctx context.Context, db *sql.DB) (*store, error) {
	for _, stmt := range storeSchema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("assistant store schema: %w", err)
		}
	}
	return &store{db: db}, nil
}

// addMessage records a message read in room (again: nothing changes).
func (s *store) addMessage(ctx context.Context, room id.RoomID, m Message) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO assistant_messages (room_id, event_id, sender, ts, thread_root, body)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, event_id) DO NOTHING`,
		room, m.EventID, m.Sender, m.Time.UnixMilli(), m.ThreadRoot, m.Body)
	if err != nil {
		return fmt.Errorf("store message: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return s.addLog(ctx, room, "read", fmt.Sprintf("%s from %s", m.EventID, m.Sender))
	}
	return nil
}

// editMessage replaces the body of a stored message (an edit by its
// sender).
func (s *store) editMessage(ctx context.Context, room id.RoomID, evID id.EventID, sender id.UserID, body string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE assistant_messages SET body = $1 WHERE room_id = $2 AND event_id = $3 AND sender = $4",
		body, room, evID, sender)
	if err != nil {
		return fmt.Errorf("store edit: %w", err)
	}
	return nil
}

// deleteMessage forgets a redacted message.
func (s *store) deleteMessage(ctx context.Context, room id.RoomID, evID id.EventID) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM assistant_messages WHERE room_id = $1 AND event_id = $2", room, evID); err != nil {
		return fmt.Errorf("store redaction: %w", err)
	}
	return nil
}

// messages returns room's messages sent after since and at or after the
// horizon h, oldest first, at most limit (the newest ones).
func (s *store) messages(ctx context.Context, room id.RoomID, since time.Time, h horizon, limit int) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, event_id, sender, ts, thread_root, body FROM (
		SELECT seq, event_id, sender, ts, thread_root, body FROM assistant_messages
		WHERE room_id = $1 AND ts > $2 AND seq > $3 AND ts >= $4 ORDER BY ts DESC, seq DESC LIMIT $5) ORDER BY ts, seq`,
		room, since.UnixMilli(), h.seq, h.ts.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var ts int64
		if err := rows.Scan(&m.seq, &m.EventID, &m.Sender, &ts, &m.ThreadRoot, &m.Body); err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		m.Time = time.UnixMilli(ts)
		out = append(out, m)
	}
	return out, rows.Err()
}

// message returns one stored message.
func (s *store) message(ctx context.Context, room id.RoomID, evID id.EventID) (Message, bool, error) {
	m := Message{EventID: evID}
	var ts int64
	err := s.db.QueryRowContext(ctx, "SELECT seq, sender, ts, thread_root, body FROM assistant_messages WHERE room_id = $1 AND event_id = $2",
		room, evID).Scan(&m.seq, &m.Sender, &ts, &m.ThreadRoot, &m.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("read message: %w", err)
	}
	m.Time = time.UnixMilli(ts)
	return m, true, nil
}

// countMessages says how many messages of room are stored.
func (s *store) countMessages(ctx context.Context, room id.RoomID) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM assistant_messages WHERE room_id = $1", room).Scan(&n); err != nil {
		return 0, fmt.Errorf("count messages: %w", err)
	}
	return n, nil
}

// addJoin records that user joined room, at ts by its event: the
// messages stored so far were sent before.
func (s *store) addJoin(ctx context.Context, room id.RoomID, user id.UserID, ts time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO assistant_joins (room_id, user_id, after_seq, ts)
		VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) FROM assistant_messages), $3)
		ON CONFLICT (room_id, user_id) DO UPDATE SET after_seq = excluded.after_seq, ts = excluded.ts`,
		room, user, ts.UnixMilli())
	if err != nil {
		return fmt.Errorf("store join: %w", err)
	}
	return nil
}

// joinHorizon is the horizon of user's latest join of room; a join the
// assistant never saw is taken as happening now.
func (s *store) joinHorizon(ctx context.Context, room id.RoomID, user id.UserID) (horizon, error) {
	var h horizon
	var ts int64
	err := s.db.QueryRowContext(ctx, "SELECT after_seq, ts FROM assistant_joins WHERE room_id = $1 AND user_id = $2",
		room, user).Scan(&h.seq, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		ts = time.Now().UnixMilli()
		err = s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM assistant_messages").Scan(&h.seq)
	}
	if err != nil {
		return horizon{}, fmt.Errorf("read join: %w", err)
	}
	h.ts = time.UnixMilli(ts)
	return h, nil
}

// forgetJoins deletes the joins recorded in room (which forget keeps:
// they are the room's membership, not what was said).
func (s *store) forgetJoins(ctx context.Context, room id.RoomID) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM assistant_joins WHERE room_id = $1", room); err != nil {
		return fmt.Errorf("forget joins of %s: %w", room, err)
	}
	return nil
}

// forget deletes everything stored about room: messages, log, receipts
// and the room's settings.
func (s *store) forget(ctx context.Context, room id.RoomID) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("forget %s: %w", room, err)
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		"DELETE FROM assistant_messages WHERE room_id = $1",
		"DELETE FROM assistant_log WHERE room_id = $1",
		"DELETE FROM assistant_receipts WHERE room_id = $1",
		"DELETE FROM assistant_settings WHERE scope = $1",
	} {
		if _, err := tx.ExecContext(ctx, stmt, room); err != nil {
			return fmt.Errorf("forget %s: %w", room, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("forget %s: %w", room, err)
	}
	return nil
}

// addLog appends to room's log.
func (s *store) addLog(ctx context.Context, room id.RoomID, action, detail string) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO assistant_log (room_id, ts, action, detail) VALUES ($1, $2, $3, $4)",
		room, time.Now().UnixMilli(), action, detail)
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// log returns the last n entries of room's log, oldest first.
func (s *store) log(ctx context.Context, room id.RoomID, n int) ([]LogEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ts, action, detail FROM (
		SELECT seq, ts, action, detail FROM assistant_log WHERE room_id = $1 ORDER BY seq DESC LIMIT $2) ORDER BY seq`, room, n)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var out []LogEntry
	for rows.Next() {
		var e LogEntry
		var ts int64
		if err := rows.Scan(&ts, &e.Action, &e.Detail); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		e.Time = time.UnixMilli(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// setReceipt records user's read receipt in room at ts (a later one
// only).
func (s *store) setReceipt(ctx context.Context, room id.RoomID, user id.UserID, ts time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO assistant_receipts (room_id, user_id, ts) VALUES ($1, $2, $3)
		ON CONFLICT (room_id, user_id) DO UPDATE SET ts = MAX(ts, excluded.ts)`, room, user, ts.UnixMilli())
	if err != nil {
		return fmt.Errorf("store receipt: %w", err)
	}
	return nil
}

// receipt returns when user last read room, as the assistant saw.
func (s *store) receipt(ctx context.Context, room id.RoomID, user id.UserID) (time.Time, bool, error) {
	var ts int64
	err := s.db.QueryRowContext(ctx, "SELECT ts FROM assistant_receipts WHERE room_id = $1 AND user_id = $2", room, user).Scan(&ts)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read receipt: %w", err)
	}
	return time.UnixMilli(ts), true, nil
}

// setting returns a setting of scope (a room or user ID); "" when unset.
func (s *store) setting(ctx context.Context, scope, name string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM assistant_settings WHERE scope = $1 AND name = $2", scope, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read setting: %w", err)
	}
	return v, nil
}

// setSetting sets (or, with an empty value, clears) a setting of scope.
func (s *store) setSetting(ctx context.Context, scope, name, value string) error {
	var err error
	if value == "" {
		_, err = s.db.ExecContext(ctx, "DELETE FROM assistant_settings WHERE scope = $1 AND name = $2", scope, name)
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO assistant_settings (scope, name, value) VALUES ($1, $2, $3)
			ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value`, scope, name, value)
	}
	if err != nil {
		return fmt.Errorf("write setting: %w", err)
	}
	return nil
}
