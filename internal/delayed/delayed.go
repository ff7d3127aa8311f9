package delayed

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Migrations are the table of scheduled delayed events.
var Migrations = []storage.Migration{{
	Component: "delayed",
	Version:   1,
	SQL: `
CREATE TABLE delayed_events (
	delay_id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_key TEXT NOT NULL,
	room_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	state_key TEXT,
	content TEXT NOT NULL,
	delay_ms BIGINT NOT NULL,
	running_since BIGINT NOT NULL
);
CREATE INDEX delayed_events_user ON delayed_events (user_id);
`,
}}

// Sender sends events into rooms (rooms.Engine).
type Sender interface {
	Send(ctx context.Context, roomID id.RoomID, p rooms.Proto) (*rooms.Event, error)
}

// Event is a scheduled delayed event.
type Event struct {
	DelayID  string
	User     id.UserID
	Device   id.DeviceID
	TxnKey   string // the device's transaction it was scheduled by; "" for state events
	RoomID   id.RoomID
	Type     string
	StateKey *string
	Content  json.RawMessage
	Delay    time.Duration
	// RunningSince is when the delay started (scheduling or the last
	// restart); the event is due at RunningSince + Delay.
	RunningSince time.Time
}

// due is when the event is to be sent.
func (e *Event) due() time.Time { return e.RunningSince.Add(e.Delay) }

// ErrNotFound is returned for a delay_id that names no scheduled event.
var ErrNotFound = errors.New("delayed: no such delayed event")

// Service schedules, stores and sends delayed events.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	rooms    Sender
	maxDelay time.Duration
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]*Event // by delay ID
	// perUser counts each user's scheduled events, those being stored
	// included, against MaxPerUser.
	perUser map[id.UserID]int
	kick    chan struct{} // wakes the scheduler after a change
	stop    func()
}

// New returns the service; maxDelay is the longest delay it accepts.
func New(db *storage.DB, log *slog.Logger, sender Sender, maxDelay time.Duration) *Service {
	return &Service{db: db, log: log, rooms: sender, maxDelay: maxDelay, now: time.Now,
		pending: map[string]*Event{}, perUser: map[id.UserID]int{}, kick: make(chan struct{}, 1)}
}

// MaxDelay is the longest delay the service accepts.
func (s *Service) MaxDelay() time.Duration { return s.maxDelay }

// Load reads the scheduled events from the database.
func (s *Service) Load(ctx context.Context) error {
	rows, err := s.db.Query(ctx, `SELECT delay_id, user_id, device_id, txn_key, room_id, event_type, state_key,
		content, delay_ms, running_since FROM delayed_events`)
	if err != nil {
		return fmt.Errorf("load delayed events: %w", err)
	}
	defer rows.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var e Event
		var content string
		var delayMS, since int64
		if err := rows.Scan(&e.DelayID, &e.User, &e.Device, &e.TxnKey, &e.RoomID, &e.Type, &e.StateKey,
			&content, &delayMS, &since); err != nil {
			return fmt.Errorf("load delayed events: %w", err)
		}
		e.Content = json.RawMessage(content)
		e.Delay = time.Duration(delayMS) * time.Millisecond
		e.RunningSince = time.UnixMilli(since)
		s.pending[e.DelayID] = &e
		s.perUser[e.User]++
	}
	return rows.Err()
}

// Schedule stores e (DelayID and RunningSince are set here) and returns its
// delay ID. A second event scheduled by the same device's transaction
// (e.TxnKey) is not stored: the first one's delay ID is returned.
func (s *Service) Schedule(ctx context.Context, e Event) (string, error) {
	if e.TxnKey != "" {
		if prev := s.ByTxn(e.User, e.Device, e.TxnKey); prev != "" {
			return prev, nil
		}
	}
	if err := s.reserve(e.User); err != nil {
		return "", err
	}
	e.DelayID = newDelayID()
	e.RunningSince = s.now().Truncate(time.Millisecond)
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO delayed_events (delay_id, user_id, device_id, txn_key, room_id,
			event_type, state_key, content, delay_ms, running_since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			e.DelayID, e.User, e.Device, e.TxnKey, e.RoomID, e.Type, e.StateKey, string(e.Content),
			e.Delay.Milliseconds(), e.RunningSince.UnixMilli())
		return err
	})
	if err != nil {
		s.mu.Lock()
		s.forgetOneLocked(e.User)
		s.mu.Unlock()
		return "", fmt.Errorf("schedule delayed event: %w", err)
	}
	s.mu.Lock()
	s.pending[e.DelayID] = &e
	s.mu.Unlock()
	s.wake()
	return e.DelayID, nil
}

// MaxPerUser is how many delayed events one user may have scheduled at
// once; Schedule refuses more with 429 M_LIMIT_EXCEEDED.
const MaxPerUser = 100

// reserve counts one more scheduled event for user, or refuses it when
// the user has MaxPerUser already.
func (s *Service) reserve(user id.UserID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[user] >= MaxPerUser {
		return mxhttp.LimitExceeded("you have %d delayed events scheduled, the most this server keeps for one user; cancel or send some first", MaxPerUser)
	}
	s.perUser[user]++
	return nil
}

// forgetOneLocked counts one scheduled event of user less. s.mu is held.
func (s *Service) forgetOneLocked(user id.UserID) {
	if s.perUser[user]--; s.perUser[user] <= 0 {
		delete(s.perUser, user)
	}
}

// ByTxn returns the delay ID that the device's transaction scheduled, or
// "" if none is scheduled.
func (s *Service) ByTxn(user id.UserID, device id.DeviceID, txnKey string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.pending {
		if e.User == user && e.Device == device && e.TxnKey == txnKey {
			return e.DelayID
		}
	}
	return ""
}

// Get returns a copy of the scheduled event, or nil.
func (s *Service) Get(delayID string) *Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.pending[delayID]; e != nil {
		c := *e
		return &c
	}
	return nil
}

// List returns the user's scheduled events, oldest first.
func (s *Service) List(user id.UserID) []Event {
	s.mu.Lock()
	var out []Event
	for _, e := range s.pending {
		if e.User == user {
			out = append(out, *e)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Event) int {
		if c := a.RunningSince.Compare(b.RunningSince); c != 0 {
			return c
		}
		return cmp.Compare(a.DelayID, b.DelayID)
	})
	return out
}

// Cancel forgets the scheduled event.
func (s *Service) Cancel(ctx context.Context, delayID string) error {
	_, err := s.take(ctx, delayID)
	return err
}

// Restart starts the event's delay again from now.
func (s *Service) Restart(ctx context.Context, delayID string) error {
	now := s.now().Truncate(time.Millisecond)
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE delayed_events SET running_since = $1 WHERE delay_id = $2", now.UnixMilli(), delayID)
		if err != nil {
			return fmt.Errorf("restart delayed event: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	if e := s.pending[delayID]; e != nil {
		e.RunningSince = now
	}
	s.mu.Unlock()
	s.wake()
	return nil
}

// Send sends the scheduled event now, and forgets it once the room has
// it. The send is keyed by a transaction ID derived from the delay ID, so
// that sending again after a send whose outcome was lost (an error after
// the commit, or a crash before the row was deleted) gives back the event
// already sent instead of a second one: delivery is at least once, and
// the room sees the event once. An event the room refuses (the auth rules
// no longer allow it, the room is gone) is forgotten with the refusal;
// one that failed otherwise (the database) stays scheduled for a retry.
func (s *Service) Send(ctx context.Context, delayID string) (*rooms.Event, error) {
	e := s.Get(delayID)
	if e == nil {
		return nil, ErrNotFound
	}
	ev, err := s.rooms.Send(ctx, e.RoomID, rooms.Proto{
		Type: e.Type, StateKey: e.StateKey, Sender: e.User, Content: e.Content, DeviceID: e.Device,
		TxnID: sendTxnID(delayID),
	})
	if err != nil && !refused(err) {
		return nil, err
	}
	if _, ferr := s.take(ctx, delayID); ferr != nil && !errors.Is(ferr, ErrNotFound) {
		// The room has the event (or refused it): the next try finds
		// the transaction and only deletes the row.
		return ev, ferr
	}
	return ev, err
}

// sendTxnID is the transaction ID a delayed event is sent with: derived
// from the delay ID, which stays secret, through a hash.
func sendTxnID(delayID string) string {
	sum := sha256.Sum256([]byte(delayID))
	return "org.matrix.msc4140." + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// refused reports whether a send failed because the room will not take
// the event (a client error), as opposed to a failure worth a retry.
func refused(err error) bool {
	var me *mxhttp.Error
	return errors.As(err, &me) && me.Status < http.StatusInternalServerError
}

// take removes the scheduled event from the database and memory and
// returns it; ErrNotFound if it is not (or no longer) scheduled, so that
// of two concurrent takes only one gets it.
func (s *Service) take(ctx context.Context, delayID string) (*Event, error) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, "DELETE FROM delayed_events WHERE delay_id = $1", delayID)
		if err != nil {
			return fmt.Errorf("remove delayed event: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	e := s.pending[delayID]
	if e != nil {
		delete(s.pending, delayID)
		s.forgetOneLocked(e.User)
	}
	s.mu.Unlock()
	if e == nil {
		return nil, ErrNotFound
	}
	return e, nil
}

// OnEvent is a rooms.Engine OnEvent hook: a state event cancels the delayed
// state events other users scheduled for the same state.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Rejected || ev.StateKey == nil {
		return
	}
	var stale []string
	s.mu.Lock()
	for _, e := range s.pending {
		if e.StateKey != nil && e.RoomID == ev.RoomID && e.Type == ev.Type && *e.StateKey == *ev.StateKey && e.User != ev.Sender {
			stale = append(stale, e.DelayID)
		}
	}
	s.mu.Unlock()
	for _, delayID := range stale {
		if err := s.Cancel(context.Background(), delayID); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error("cancel overwritten delayed state event", "delay_id", delayID, "err", err)
		}
	}
}

// Start sends scheduled events as they fall due, in the background, until
// Stop.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stop = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		s.run(ctx)
	}()
}

// Stop ends what Start began and waits for a send in progress.
func (s *Service) Stop() {
	if s.stop != nil {
		s.stop()
	}
}

// run sends scheduled events as they fall due, until ctx ends.
func (s *Service) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := s.sendDue(ctx)
		wait := time.Hour
		if ok {
			wait = max(next.Sub(s.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
	}
}

// sendDue sends every event that is due and returns when the next one is.
func (s *Service) sendDue(ctx context.Context) (next time.Time, ok bool) {
	now := s.now()
	var due []string
	s.mu.Lock()
	for _, e := range s.pending {
		switch d := e.due(); {
		case !d.After(now):
			due = append(due, e.DelayID)
		case !ok || d.Before(next):
			next, ok = d, true
		}
	}
	s.mu.Unlock()
	for _, delayID := range due {
		_, err := s.Send(ctx, delayID)
		if err == nil || errors.Is(err, ErrNotFound) {
			continue
		}
		s.log.Warn("send delayed event", "delay_id", delayID, "err", err)
		if s.Get(delayID) != nil {
			// Still scheduled: try again after a pause.
			if retry := now.Add(sendRetryDelay); !ok || retry.Before(next) {
				next, ok = retry, true
			}
		}
	}
	return next, ok
}

// sendRetryDelay is how long the scheduler waits before it sends again an
// event whose send failed.
const sendRetryDelay = time.Second

// wake makes the scheduler look at the events again.
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// newDelayID returns a random delay ID, unguessable since it is all that
// the unauthenticated actions ask for.
func newDelayID() string { return accounts.RandomToken("syd_", 18) }
