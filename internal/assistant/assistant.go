package assistant

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/ratelimit"
)

// Localpart is the assistant's localpart: it is @assistant:<server>.
const Localpart = "assistant"

// DeviceID is the assistant's one device, kept across restarts so that
// its end-to-end keys stay valid.
const DeviceID id.DeviceID = "ASSISTANT"

// StoreFile is the assistant's database in its directory: its crypto
// store, sync position and what it read.
const StoreFile = "assistant.db"

// Options configure an Assistant.
type Options struct {
	// Dir is the assistant's directory (<data>/assistant), made 0700.
	Dir string
	// Log receives the assistant's log lines.
	Log *slog.Logger
	// Model, when set, is the engine that answers in rooms that allow it
	// (the room setting model); the offline engine answers elsewhere and
	// when the model fails.
	Model Engine
	// RemoteInvites lets users of other servers invite the assistant;
	// without it, it declines their invites and joins only at the
	// invitation of its own server's users.
	RemoteInvites bool
	// UserRate and RoomRate bound the requests the assistant takes from
	// one user and in one room; a zero Rule is DefaultUserRate or
	// DefaultRoomRate.
	UserRate, RoomRate ratelimit.Rule
}

// The default rates of the requests the assistant takes.
var (
	DefaultUserRate = ratelimit.Rule{PerMinute: 20, Burst: 20}
	DefaultRoomRate = ratelimit.Rule{PerMinute: 60, Burst: 30}
)

// maxWorking bounds the answers the assistant works on at once (each may
// read thousands of messages and wait for the model server); maxQueued
// bounds those taken and not yet answered, beyond which it refuses.
const (
	maxWorking = 2
	maxQueued  = 32
)

// The kinds of the assistant's rate limiter's buckets.
const (
	rateUser = "assistant_user"
	rateRoom = "assistant_room"
)

// Login is how the assistant reaches the node: the client API's URL and
// an access token of the assistant's device.
type Login struct {
	HomeserverURL string
	UserID        id.UserID
	DeviceID      id.DeviceID
	AccessToken   string
}

// Assistant is the node's assistant user. New builds it; Register adds
// commands; Run runs it until its context ends.
type Assistant struct {
	opts     Options
	commands *registry

	// running counts the goroutines that answer commands, so Run returns
	// only once they are done.
	running sync.WaitGroup
	// roomLocks serialises the answers in each room.
	roomLocksMu sync.Mutex
	roomLocks   map[id.RoomID]*sync.Mutex

	// limiter holds the users' and rooms' rates; queued holds a token
	// for each request taken and not yet answered, working one for each
	// being worked on.
	limiter         *ratelimit.Limiter
	queued, working chan struct{}
	// refusedMu guards refused: when each user was last told that a
	// request was refused, so that they are told once a minute.
	refusedMu sync.Mutex
	refused   map[id.UserID]time.Time
}

// builtins are the names of the assistant's own commands, which Register
// refuses.
var builtins = []string{"help", "leave", "summary", "ask", "translate", "draft", "forget", "log", "settings", "language"}

// New makes an assistant; it does nothing until Run.
func New(opts Options) *Assistant {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rules := map[string]ratelimit.Rule{rateUser: opts.UserRate, rateRoom: opts.RoomRate}
	if rules[rateUser] == (ratelimit.Rule{}) {
		rules[rateUser] = DefaultUserRate
	}
	if rules[rateRoom] == (ratelimit.Rule{}) {
		rules[rateRoom] = DefaultRoomRate
	}
	return &Assistant{opts: opts, commands: newRegistry(builtins...), roomLocks: map[id.RoomID]*sync.Mutex{},
		limiter: ratelimit.New(ratelimit.Options{Rules: rules}),
		queued:  make(chan struct{}, maxQueued), working: make(chan struct{}, maxWorking),
		refused: map[id.UserID]time.Time{}}
}

// take takes a place for a request of user in room: a token of the
// user's and of the room's rate and a place in the queue. It says why
// when there is none.
func (a *Assistant) take(user id.UserID, room id.RoomID) (ok bool, why string) {
	if ok, wait := a.limiter.Allow(rateUser, user.String()); !ok {
		return false, fmt.Sprintf("you asked me a lot lately: ask again in %s", wait.Round(time.Second)+time.Second)
	}
	if ok, wait := a.limiter.Allow(rateRoom, room.String()); !ok {
		return false, fmt.Sprintf("this room asked me a lot lately: ask again in %s", wait.Round(time.Second)+time.Second)
	}
	select {
	case a.queued <- struct{}{}:
		return true, ""
	default:
		return false, "I am busy with other requests: ask again in a minute"
	}
}

// tellRefused reports whether user should be told that a request was
// refused: once a minute at most.
func (a *Assistant) tellRefused(user id.UserID) bool {
	a.refusedMu.Lock()
	defer a.refusedMu.Unlock()
	now := time.Now()
	if last, ok := a.refused[user]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(a.refused) >= 10000 {
		for u, last := range a.refused {
			if now.Sub(last) >= time.Minute {
				delete(a.refused, u)
			}
		}
	}
	a.refused[user] = now
	return true
}

// Register adds a command that "!assistant <name>" runs. It refuses a
// name that is not a lower-case word or is already taken
// (ErrCommandTaken). It may be called before or while the assistant runs.
func (a *Assistant) Register(cmd Command) error {
	if cmd == nil {
		return errors.New("assistant: nil command")
	}
	return a.commands.register(cmd)
}

// roomLock returns the mutex that serialises the answers in room.
func (a *Assistant) roomLock(room id.RoomID) *sync.Mutex {
	a.roomLocksMu.Lock()
	defer a.roomLocksMu.Unlock()
	mu, ok := a.roomLocks[room]
	if !ok {
		mu = &sync.Mutex{}
		a.roomLocks[room] = mu
	}
	return mu
}
