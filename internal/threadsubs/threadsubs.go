// Package threadsubs stores thread subscriptions (MSC4306, under its
// unstable prefix io.element.msc4306): PUT, GET and DELETE
// /_matrix/client/unstable/io.element.msc4306/rooms/{roomId}/thread/{threadId}/subscription.
//
// A subscription is manual (PUT {}) or automatic (PUT {"automatic":
// event}), the cause event being one of the thread's replies, which the
// client saw mention the user. A manual subscription replaces an automatic
// one, not the other way round. Unsubscribing remembers the room's stream
// position at that moment: an automatic subscription caused by an event at
// or before it is refused with 409 IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION,
// so a client catching up on old mentions does not undo the user's choice.
// The server never subscribes on the user's behalf: the MSC leaves that to
// clients (subscribing when the user writes in a thread, or is mentioned
// in one, which the server cannot tell in an encrypted room).
//
// Every change of a subscription takes a stream position, its bump_stamp:
// Changes gives the newest changes between two positions to sliding
// sync's thread_subscriptions extension (MSC4308, as
// io.element.msc4308.thread_subscriptions), and GET
// /_matrix/client/unstable/io.element.msc4308/thread_subscriptions pages
// back through those a response left out. The push rules' condition asks
// Subscribed, which answers from memory.
package threadsubs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	gosync "sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Migrations are the subscriptions table.
var Migrations = []storage.Migration{{
	Component: "threadsubs",
	Version:   1,
	SQL: `
CREATE TABLE thread_subscriptions (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	thread_id TEXT NOT NULL,
	subscribed BOOLEAN NOT NULL,
	automatic BOOLEAN NOT NULL,
	unsubscribed_at BIGINT NOT NULL,
	PRIMARY KEY (user_id, room_id, thread_id)
);
`,
}, {
	Component: "threadsubs",
	Version:   2,
	// pos is the stream position of the subscription's last change. The
	// subscriptions made before it existed get position 1: an initial
	// sync sends them, an incremental one has seen them.
	SQL: `
ALTER TABLE thread_subscriptions ADD COLUMN pos BIGINT NOT NULL DEFAULT 0;
UPDATE thread_subscriptions SET pos = 1 WHERE subscribed;
CREATE INDEX thread_subscriptions_user_pos ON thread_subscriptions (user_id, pos);
`,
}}

// Rooms is what the service needs of the room engine.
type Rooms interface {
	Membership(user id.UserID, roomID id.RoomID) string
	Event(ctx context.Context, evID id.EventID) (*rooms.Event, error)
}

// Service answers the subscription endpoints.
type Service struct {
	db    *storage.DB
	acc   *accounts.Service
	rooms Rooms
	wake  func(users ...id.UserID)

	mu         gosync.RWMutex
	subscribed map[threadKey]bool // the subscriptions in force, from Load on
}

// threadKey names one user's subscription to one thread.
type threadKey struct {
	user   id.UserID
	room   id.RoomID
	thread id.EventID
}

// New returns the service; call Load before use. wake, when set, wakes
// the user's sync long-polls after a subscription changed.
func New(db *storage.DB, acc *accounts.Service, r Rooms, wake func(users ...id.UserID)) *Service {
	return &Service{db: db, acc: acc, rooms: r, wake: wake, subscribed: map[threadKey]bool{}}
}

// Load reads the subscriptions in force into memory.
func (s *Service) Load(ctx context.Context) error {
	rows, err := s.db.Query(ctx, "SELECT user_id, room_id, thread_id FROM thread_subscriptions WHERE subscribed")
	if err != nil {
		return fmt.Errorf("load thread subscriptions: %w", err)
	}
	defer rows.Close()
	subscribed := map[threadKey]bool{}
	for rows.Next() {
		var k threadKey
		if err := rows.Scan(&k.user, &k.room, &k.thread); err != nil {
			return fmt.Errorf("load thread subscriptions: %w", err)
		}
		subscribed[k] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load thread subscriptions: %w", err)
	}
	s.mu.Lock()
	s.subscribed = subscribed
	s.mu.Unlock()
	return nil
}

// Subscribed reports whether user is subscribed to the thread. It reads
// memory only, so the push rules may ask it on the database writer.
func (s *Service) Subscribed(user id.UserID, roomID id.RoomID, thread id.EventID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.subscribed[threadKey{user, roomID, thread}]
}

const path = "/_matrix/client/unstable/io.element.msc4306/rooms/{roomId}/thread/{threadId}/subscription"

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+path, s.acc.Auth(s.get))
	mux.HandleFunc("PUT "+path, s.acc.Auth(s.put))
	mux.HandleFunc("DELETE "+path, s.acc.Auth(s.delete))
	mux.HandleFunc("GET "+changesPath, s.acc.Auth(s.getChanges))
}

var (
	errNotInThread = func(format string, args ...any) *mxhttp.Error {
		return &mxhttp.Error{Status: http.StatusBadRequest, Code: "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD", Message: fmt.Sprintf(format, args...)}
	}
	errConflict = &mxhttp.Error{Status: http.StatusConflict, Code: "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION",
		Message: "the user unsubscribed from the thread after the cause event"}
)

// subscription is a stored row.
type subscription struct {
	subscribed, automatic bool
	unsubscribedAt        int64
	pos                   int64 // of the last change a client can see
}

// thread checks the path: the user is in the room and the thread root is
// an event of it the user has been able to see.
func (s *Service) thread(r *http.Request, sess *accounts.Session) (id.RoomID, id.EventID, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", "", err
	}
	threadID := id.EventID(r.PathValue("threadId"))
	if s.rooms.Membership(sess.UserID, roomID) != "join" {
		return "", "", mxhttp.NotFound("thread %s not found", threadID)
	}
	root, err := s.rooms.Event(r.Context(), threadID)
	if err != nil || root == nil || root.RoomID != roomID || root.Pos == 0 {
		return "", "", mxhttp.NotFound("thread %s not found", threadID)
	}
	return roomID, threadID, nil
}

func (s *Service) load(ctx context.Context, user id.UserID, roomID id.RoomID, threadID id.EventID) (subscription, bool, error) {
	var sub subscription
	err := s.db.QueryRow(ctx, `SELECT subscribed, automatic, unsubscribed_at, pos FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND thread_id = $3`, user, roomID, threadID).Scan(&sub.subscribed, &sub.automatic, &sub.unsubscribedAt, &sub.pos)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, false, nil
	}
	if err != nil {
		return sub, false, fmt.Errorf("load thread subscription: %w", err)
	}
	return sub, true, nil
}

// store writes a subscription. A change the client can see (subscribed,
// unsubscribed, automatic made manual) takes a new stream position and
// wakes the user's syncs; an unsubscription from a thread the user was not
// subscribed to only records its moment.
func (s *Service) store(ctx context.Context, user id.UserID, roomID id.RoomID, threadID id.EventID, old, sub subscription) error {
	visible := sub.subscribed != old.subscribed || sub.automatic != old.automatic
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		pos := old.pos
		if visible {
			pos = tx.NextPos()
		}
		_, err := tx.Exec(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, thread_id, subscribed, automatic, unsubscribed_at, pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET
			subscribed = excluded.subscribed, automatic = excluded.automatic, unsubscribed_at = excluded.unsubscribed_at, pos = excluded.pos`,
			user, roomID, threadID, sub.subscribed, sub.automatic, sub.unsubscribedAt, pos)
		if err != nil {
			return fmt.Errorf("store thread subscription: %w", err)
		}
		key := threadKey{user, roomID, threadID}
		tx.AfterCommit(func() {
			s.mu.Lock()
			if sub.subscribed {
				s.subscribed[key] = true
			} else {
				delete(s.subscribed, key)
			}
			s.mu.Unlock()
		})
		return nil
	})
	if err == nil && visible && s.wake != nil {
		s.wake(user)
	}
	return err
}

func (s *Service) get(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, threadID, err := s.thread(r, sess)
	if err != nil {
		return nil, err
	}
	sub, ok, err := s.load(r.Context(), sess.UserID, roomID, threadID)
	if err != nil {
		return nil, err
	}
	if !ok || !sub.subscribed {
		return nil, mxhttp.NotFound("not subscribed to thread %s", threadID)
	}
	return map[string]any{"automatic": sub.automatic}, nil
}

func (s *Service) put(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, threadID, err := s.thread(r, sess)
	if err != nil {
		return nil, err
	}
	var body struct {
		Automatic *id.EventID `json:"automatic"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	ctx := r.Context()
	old, _, err := s.load(ctx, sess.UserID, roomID, threadID)
	if err != nil {
		return nil, err
	}
	sub := old
	if body.Automatic == nil {
		sub.subscribed, sub.automatic = true, false
		return map[string]any{}, s.store(ctx, sess.UserID, roomID, threadID, old, sub)
	}
	cause, err := s.rooms.Event(ctx, *body.Automatic)
	if err != nil || cause == nil || cause.RoomID != roomID || cause.ThreadID != threadID {
		return nil, errNotInThread("%s is no event of thread %s", *body.Automatic, threadID)
	}
	if sub.subscribed {
		return map[string]any{}, nil // a manual subscription stays manual
	}
	if cause.Pos <= sub.unsubscribedAt {
		return nil, errConflict
	}
	sub.subscribed, sub.automatic = true, true
	return map[string]any{}, s.store(ctx, sess.UserID, roomID, threadID, old, sub)
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, threadID, err := s.thread(r, sess)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	old, _, err := s.load(ctx, sess.UserID, roomID, threadID)
	if err != nil {
		return nil, err
	}
	sub := old
	sub.subscribed, sub.automatic, sub.unsubscribedAt = false, false, s.db.Visible()
	return map[string]any{}, s.store(ctx, sess.UserID, roomID, threadID, old, sub)
}
