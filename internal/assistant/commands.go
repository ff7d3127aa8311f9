package assistant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Command is one "!assistant <name> ..." command.
type Command interface {
	// Name is the command's word: lower-case letters, digits and dashes.
	Name() string
	// Help is one line that "!assistant help" shows beside the name.
	Help() string
	// Run runs the command asked by sender in room with the rest of the
	// message (trimmed) as args, and says what to answer.
	Run(ctx context.Context, room id.RoomID, sender id.UserID, args string) (Reply, error)
}

// Reply is what the assistant sends back for a command.
type Reply struct {
	// Text is the plain-text answer; HTML, when set, its formatted form.
	Text string
	HTML string
	// File, when set, is sent after the text (or alone when Text is
	// empty).
	File *File
}

// File is an attachment of a Reply.
type File struct {
	Name     string // file name shown to users ("activity.png")
	MimeType string // "image/png"; an image/* type is sent as m.image
	Data     []byte
	// Width and Height, for images, in pixels (0: unknown).
	Width, Height int
}

// ErrCommandTaken is what Register answers for a name already registered
// or built in.
var ErrCommandTaken = errors.New("assistant: command name already taken")

// commandName is the form of a command's name.
var commandName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// registry holds the registered commands by name.
type registry struct {
	mu       sync.RWMutex
	commands map[string]Command
	reserved []string // the built-in commands' names
}

func newRegistry(reserved ...string) *registry {
	return &registry{commands: map[string]Command{}, reserved: reserved}
}

// register adds cmd, refusing a malformed or taken name.
func (r *registry) register(cmd Command) error {
	name := cmd.Name()
	if !commandName.MatchString(name) {
		return fmt.Errorf("assistant: command name %q is not a lower-case word", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.commands[name]; taken || slices.Contains(r.reserved, name) {
		return fmt.Errorf("%w: %q", ErrCommandTaken, name)
	}
	r.commands[name] = cmd
	return nil
}

// lookup returns the command registered under name.
func (r *registry) lookup(name string) (Command, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cmd, ok := r.commands[name]
	return cmd, ok
}

// help lists the registered commands, one line each, sorted by name.
func (r *registry) help() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	lines := make([]string, 0, len(r.commands))
	for name, cmd := range r.commands {
		lines = append(lines, fmt.Sprintf("!assistant %s: %s", name, strings.TrimSpace(cmd.Help())))
	}
	slices.Sort(lines)
	return lines
}

// splitCommand splits "name rest of line" into the lower-cased name and
// the trimmed rest.
func splitCommand(text string) (name, args string) {
	text = strings.TrimSpace(text)
	name, args, _ = strings.Cut(text, " ")
	if i := strings.IndexAny(name, "\n\t"); i >= 0 {
		name, args = name[:i], text[i+1:]
	}
	return strings.ToLower(name), strings.TrimSpace(args)
}
