package analytics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	// stepSize is the most events one step of the follower reads.
	stepSize = 500
	// followInterval is how often the follower looks for events without
	// a wake-up (see wakeEvery).
	followInterval = 30 * time.Second
	// wakeEvery is how many messages wake the follower before its
	// interval: a report catches the figures up itself, so a lone send
	// costs no commit of the follower's, whose fdatasync would delay the
	// next send's.
	wakeEvery    = 256
	followerName = "events"
)

// Options configure a Service.
type Options struct {
	DB       *storage.DB
	Rooms    *rooms.Engine
	Accounts *accounts.Service
	Log      *slog.Logger
	// Now is the clock reports end at; time.Now when nil.
	Now func() time.Time
}

// Service keeps the aggregates and answers reports.
type Service struct {
	opts Options
	// stepMu serialises steps: two at once would count the same
	// messages from the same mark.
	stepMu   sync.Mutex
	mark     *follower.Mark
	follower *follower.Follower
}

// New returns the service; Start starts its follower.
func New(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{opts: opts, mark: follower.NewMark(opts.DB, "analytics_marks", followerName)}
	s.follower = follower.New("analytics", followInterval, opts.Log, s.Step)
	s.follower.WakeEvery(wakeEvery)
	return s
}

// OnEvent is the room engine's hook: it wakes the follower. It never
// blocks.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Pos > 0 {
		s.follower.Wake()
	}
}

// Start runs the follower until Close.
func (s *Service) Start() { s.follower.Start() }

// Close stops the follower.
func (s *Service) Close() { s.follower.Close() }

// CatchUp runs Step until everything committed is counted.
func (s *Service) CatchUp(ctx context.Context) error { return s.follower.CatchUp(ctx) }

// Step counts the next committed messages (at most stepSize) and
// reports whether more may be waiting. The buckets and the mark move in
// one transaction, so a message is counted exactly once.
func (s *Service) Step(ctx context.Context) (more bool, err error) {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	mark, err := s.mark.Pos(ctx)
	if err != nil {
		return false, err
	}
	visible := s.opts.DB.Visible()
	if visible <= mark {
		return false, nil
	}
	msgs, through, err := s.scan(ctx, mark, visible)
	if err != nil {
		return false, err
	}
	more = through < visible
	if len(msgs) == 0 {
		return more, s.mark.Skip(ctx, through)
	}
	b := newBatch()
	for _, m := range msgs {
		prev, ok := b.last[m.RoomID]
		if !ok {
			if prev, ok, err = s.lastMessage(ctx, m.RoomID); err != nil {
				return false, err
			}
		}
		b.add(m, prev, ok)
	}
	if err := s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		if err := b.write(ctx, tx); err != nil {
			return err
		}
		return s.mark.SetTx(ctx, tx, through)
	}); err != nil {
		return false, fmt.Errorf("store analytics: %w", err)
	}
	return more, nil
}

// scan reads the next committed messages (state events of a message
// type are not messages) and the position it read up to.
func (s *Service) scan(ctx context.Context, mark, visible int64) ([]Message, int64, error) {
	evs, through, err := s.opts.Rooms.CommittedEvents(ctx, mark, visible, rooms.EventFilter{Types: MessageTypes}, stepSize)
	if err != nil {
		return nil, 0, fmt.Errorf("read events for analytics: %w", err)
	}
	var msgs []Message
	for _, ev := range evs {
		if ev.StateKey == nil {
			msgs = append(msgs, Message{RoomID: ev.RoomID, Sender: ev.Sender, TS: ev.TS})
		}
	}
	return msgs, through, nil
}

func (s *Service) lastMessage(ctx context.Context, roomID id.RoomID) (last, bool, error) {
	var l last
	err := s.opts.DB.QueryRow(ctx, "SELECT sender, ts FROM analytics_last WHERE room_id = $1", roomID).Scan(&l.sender, &l.ts)
	if errors.Is(err, sql.ErrNoRows) {
		return last{}, false, nil
	}
	if err != nil {
		return last{}, false, fmt.Errorf("read the last message of %s: %w", roomID, err)
	}
	return l, true, nil
}

// write adds the batch to the bucket tables.
func (b *batch) write(ctx context.Context, tx *storage.Tx) error {
	for k, n := range b.hours {
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_hours (room_id, hour, messages) VALUES ($1, $2, $3)
			ON CONFLICT (room_id, hour) DO UPDATE SET messages = analytics_hours.messages + excluded.messages`, k.room, k.hour, n); err != nil {
			return err
		}
	}
	for k, n := range b.senders {
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_senders (room_id, day, sender, messages) VALUES ($1, $2, $3, $4)
			ON CONFLICT (room_id, day, sender) DO UPDATE SET messages = analytics_senders.messages + excluded.messages`, k.room, k.day, k.sender, n); err != nil {
			return err
		}
	}
	for k, n := range b.replies {
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_replies (room_id, day, bin, replies) VALUES ($1, $2, $3, $4)
			ON CONFLICT (room_id, day, bin) DO UPDATE SET replies = analytics_replies.replies + excluded.replies`, k.room, k.day, k.bin, n); err != nil {
			return err
		}
	}
	for room, l := range b.last {
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_last (room_id, sender, ts) VALUES ($1, $2, $3)
			ON CONFLICT (room_id) DO UPDATE SET sender = excluded.sender, ts = excluded.ts`, room, l.sender, l.ts); err != nil {
			return err
		}
	}
	return nil
}

// PurgeRoom forgets a purged room's figures (a rooms.Engine OnPurge hook).
func PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	for _, table := range []string{"analytics_hours", "analytics_senders", "analytics_replies", "analytics_last"} {
		if _, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE room_id = $1", roomID); err != nil {
			return fmt.Errorf("purge %s: %w", table, err)
		}
	}
	return nil
}
