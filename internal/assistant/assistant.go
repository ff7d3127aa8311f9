package assistant

import (
	"errors"
	"log/slog"
	"sync"

	"maunium.net/go/mautrix/id"
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
}

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
}

// builtins are the names of the assistant's own commands, which Register
// refuses.
var builtins = []string{"help", "leave", "summary", "ask", "translate", "draft", "forget", "log", "settings", "language"}

// New makes an assistant; it does nothing until Run.
func New(opts Options) *Assistant {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Assistant{opts: opts, commands: newRegistry(builtins...), roomLocks: map[id.RoomID]*sync.Mutex{}}
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
