package appservice

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// Registration is one application service's registration file, as the spec
// and Synapse accept it (plus the keys mautrix bridges write for MSC2409,
// MSC3202, MSC4190).
type Registration struct {
	ID              string   // "id"
	URL             string   // "url"; "" when null or absent: a client-API-only appservice
	ASToken         string   // "as_token"
	HSToken         string   // "hs_token"
	SenderLocalpart string   // "sender_localpart"
	RateLimited     bool     // "rate_limited" (true when absent)
	Protocols       []string // "protocols"
	Namespaces      Namespaces

	// ReceiveEphemeral is "receive_ephemeral" (spec) or
	// "de.sorunome.msc2409.push_ephemeral" (MSC2409, mautrix writes both).
	ReceiveEphemeral bool
	// DeviceLists is MSC3202's "org.matrix.msc3202": device list changes
	// and one-time key counts in transactions.
	DeviceLists bool
	// DeviceManagement is MSC4190's "io.element.msc4190": the appservice
	// manages its users' devices through identity assertion.
	DeviceManagement bool
	// ToDevice is MSC4203: to-device events in transactions. mautrix-go's
	// bridgev2 writes no key of its own for it and expects to-device events
	// once it asked for ephemeral events (as Synapse's MSC2409 to-device
	// support sends them), so it is on with ReceiveEphemeral, or with one of
	// the keys "receive_to_device", "org.matrix.msc4203" or
	// "io.element.msc4203".
	ToDevice bool

	// File is the file the registration was loaded from ("" when built in
	// code); errors and logs name it.
	File string

	serverName string // the node's, set by Registry.Set
}

// Namespace is one regular expression of a namespace list.
type Namespace struct {
	Exclusive bool
	Regex     string // as written in the file

	re *regexp.Regexp // Regex anchored to match whole values
}

// Namespaces are the user IDs, room aliases and room IDs an appservice is
// interested in.
type Namespaces struct {
	Users, Aliases, Rooms []Namespace
}

// NewNamespace compiles regex as a namespace matching whole values (the
// regex is anchored at both ends, so "@irc_.*:example.org" cannot match a
// user ID that merely contains it).
func NewNamespace(regex string, exclusive bool) (Namespace, error) {
	re, err := regexp.Compile(`^(?:` + regex + `)$`)
	if err != nil {
		return Namespace{}, fmt.Errorf("invalid regex %q: %w", regex, err)
	}
	return Namespace{Exclusive: exclusive, Regex: regex, re: re}, nil
}

// Matches reports whether the whole of value matches the namespace.
func (n Namespace) Matches(value string) bool {
	return n.re != nil && n.re.MatchString(value)
}

// matchAny reports whether any of the namespaces (only exclusive ones when
// exclusiveOnly) matches value.
func matchAny(list []Namespace, value string, exclusiveOnly bool) bool {
	for _, n := range list {
		if (n.Exclusive || !exclusiveOnly) && n.Matches(value) {
			return true
		}
	}
	return false
}

// Sender is the appservice's own user, @sender_localpart:serverName.
func (r *Registration) Sender(serverName string) id.UserID {
	return id.NewUserID(r.SenderLocalpart, serverName)
}

// InterestedInUser reports whether user is in the appservice's user
// namespaces or is its sender.
func (r *Registration) InterestedInUser(user id.UserID) bool {
	return r.isSender(user) || matchAny(r.Namespaces.Users, string(user), false)
}

// isSender reports whether user is the appservice's sender. It knows the
// server name once the registration is in a Registry.
func (r *Registration) isSender(user id.UserID) bool {
	return r.serverName != "" && user == r.Sender(r.serverName)
}

// InterestedInAlias reports whether alias is in the alias namespaces.
func (r *Registration) InterestedInAlias(alias id.RoomAlias) bool {
	return matchAny(r.Namespaces.Aliases, string(alias), false)
}

// InterestedInRoom reports whether roomID is in the room namespaces.
func (r *Registration) InterestedInRoom(roomID id.RoomID) bool {
	return matchAny(r.Namespaces.Rooms, string(roomID), false)
}

// ExclusiveUser reports whether user is in one of the exclusive user
// namespaces (or is the sender, which only this appservice may be).
func (r *Registration) ExclusiveUser(user id.UserID) bool {
	return r.isSender(user) || matchAny(r.Namespaces.Users, string(user), true)
}

// ExclusiveAlias reports whether alias is in one of the exclusive alias
// namespaces.
func (r *Registration) ExclusiveAlias(alias id.RoomAlias) bool {
	return matchAny(r.Namespaces.Aliases, string(alias), true)
}

// InterestedInEvent reports whether the appservice gets ev in its
// transactions: its sender or state key is in the user namespaces, its room
// in the room namespaces, one of the room's aliases (canonical and alt
// aliases) in the alias namespaces, or one of the room's joined members
// (members maps user to membership, as rooms.Engine.Members answers) in the
// user namespaces.
func (r *Registration) InterestedInEvent(ev *rooms.Event, members map[id.UserID]string, aliases []id.RoomAlias) bool {
	if r.InterestedInUser(ev.Sender) || r.InterestedInRoom(ev.RoomID) {
		return true
	}
	if ev.StateKey != nil && strings.HasPrefix(*ev.StateKey, "@") && r.InterestedInUser(id.UserID(*ev.StateKey)) {
		return true
	}
	if slices.ContainsFunc(aliases, r.InterestedInAlias) {
		return true
	}
	for user, membership := range members {
		if membership == "join" && r.InterestedInUser(user) {
			return true
		}
	}
	return false
}

// fileRegistration is the YAML form of a registration file.
type fileRegistration struct {
	ID              *string  `yaml:"id"`
	URL             *string  `yaml:"url"`
	ASToken         *string  `yaml:"as_token"`
	HSToken         *string  `yaml:"hs_token"`
	SenderLocalpart *string  `yaml:"sender_localpart"`
	RateLimited     *bool    `yaml:"rate_limited"`
	Protocols       []string `yaml:"protocols"`
	Namespaces      *struct {
		Users   []fileNamespace `yaml:"users"`
		Aliases []fileNamespace `yaml:"aliases"`
		Rooms   []fileNamespace `yaml:"rooms"`
	} `yaml:"namespaces"`

	ReceiveEphemeral bool `yaml:"receive_ephemeral"`
	PushEphemeral    bool `yaml:"de.sorunome.msc2409.push_ephemeral"`
	MSC3202          bool `yaml:"org.matrix.msc3202"`
	MSC4190          bool `yaml:"io.element.msc4190"`
	ReceiveToDevice  bool `yaml:"receive_to_device"`
	MSC4203          bool `yaml:"org.matrix.msc4203"`
	MSC4203Element   bool `yaml:"io.element.msc4203"`
}

type fileNamespace struct {
	Exclusive bool    `yaml:"exclusive"`
	Regex     *string `yaml:"regex"`
}

// ParseRegistration parses and validates one registration file's contents.
func ParseRegistration(data []byte) (*Registration, error) {
	var f fileRegistration
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a YAML registration: %w", err)
	}
	required := []struct {
		key   string
		value *string
	}{{"id", f.ID}, {"as_token", f.ASToken}, {"hs_token", f.HSToken}, {"sender_localpart", f.SenderLocalpart}}
	for _, req := range required {
		if req.value == nil || *req.value == "" {
			return nil, fmt.Errorf("%s is missing or empty", req.key)
		}
	}
	if f.Namespaces == nil {
		return nil, errors.New("namespaces is missing")
	}
	r := &Registration{
		ID:               *f.ID,
		ASToken:          *f.ASToken,
		HSToken:          *f.HSToken,
		SenderLocalpart:  *f.SenderLocalpart,
		RateLimited:      f.RateLimited == nil || *f.RateLimited,
		Protocols:        f.Protocols,
		ReceiveEphemeral: f.ReceiveEphemeral || f.PushEphemeral,
		DeviceLists:      f.MSC3202,
		DeviceManagement: f.MSC4190,
	}
	r.ToDevice = r.ReceiveEphemeral || f.ReceiveToDevice || f.MSC4203 || f.MSC4203Element
	if r.ASToken == r.HSToken {
		return nil, errors.New("as_token and hs_token are the same")
	}
	if err := checkLocalpart(r.SenderLocalpart); err != nil {
		return nil, err
	}
	if f.URL != nil && *f.URL != "" {
		u, err := url.Parse(*f.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("url %q is not an http or https URL", *f.URL)
		}
		r.URL = strings.TrimSuffix(*f.URL, "/")
	}
	var err error
	lists := []struct {
		key  string
		from []fileNamespace
		to   *[]Namespace
	}{
		{"users", f.Namespaces.Users, &r.Namespaces.Users},
		{"aliases", f.Namespaces.Aliases, &r.Namespaces.Aliases},
		{"rooms", f.Namespaces.Rooms, &r.Namespaces.Rooms},
	}
	for _, l := range lists {
		if *l.to, err = compileNamespaces(l.key, l.from); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// checkLocalpart refuses a sender_localpart that cannot be a user ID's
// localpart.
func checkLocalpart(localpart string) error {
	if strings.ContainsAny(localpart, ":@ ") || len(localpart) > 255 {
		return fmt.Errorf("sender_localpart %q is not a valid localpart", localpart)
	}
	return nil
}

func compileNamespaces(key string, list []fileNamespace) ([]Namespace, error) {
	out := make([]Namespace, 0, len(list))
	for i, n := range list {
		if n.Regex == nil {
			return nil, fmt.Errorf("namespaces.%s[%d]: regex is missing", key, i)
		}
		ns, err := NewNamespace(*n.Regex, n.Exclusive)
		if err != nil {
			return nil, fmt.Errorf("namespaces.%s[%d]: %w", key, i, err)
		}
		out = append(out, ns)
	}
	return out, nil
}

// LoadDir loads the registration files (*.yaml and *.yml) of dir in name
// order. A file that cannot be read or is not a valid registration, or whose
// id or as_token an earlier file already has, is left out; the error joins
// one error per refused file, each naming the file and the reason, while
// the registrations returned are the ones that loaded. A missing dir holds
// no registrations.
func LoadDir(dir string) ([]*Registration, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("appservices: %w", err)
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var regs []*Registration
	var errs []error
	for _, name := range names {
		path := filepath.Join(dir, name)
		reg, err := loadFile(path)
		if err == nil {
			err = conflict(regs, reg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("appservice registration %s refused: %w", path, err))
			continue
		}
		regs = append(regs, reg)
	}
	return regs, errors.Join(errs...)
}

func loadFile(path string) (*Registration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	reg, err := ParseRegistration(data)
	if err != nil {
		return nil, err
	}
	reg.File = path
	return reg, nil
}

// conflict refuses reg when one of regs has its id, its as_token or its
// sender_localpart.
func conflict(regs []*Registration, reg *Registration) error {
	for _, other := range regs {
		switch {
		case other.ID == reg.ID:
			return fmt.Errorf("id %q is already registered by %s", reg.ID, other.File)
		case subtle.ConstantTimeCompare([]byte(other.ASToken), []byte(reg.ASToken)) == 1:
			return fmt.Errorf("as_token is already used by %s", other.File)
		case other.SenderLocalpart == reg.SenderLocalpart:
			return fmt.Errorf("sender_localpart %q is already used by %s", reg.SenderLocalpart, other.File)
		}
	}
	return nil
}

// Registry holds the loaded registrations. It is safe for concurrent use;
// Set and Reload replace the whole set at once, so a reader sees either the
// old registrations or the new ones.
type Registry struct {
	serverName string
	current    atomic.Pointer[registrySet]

	pausedMu sync.Mutex
	paused   map[string]bool // by appservice ID, across reloads
}

// Pause holds what the node sends the appservice appserviceID, loaded or
// not yet: transactions stay queued and it is asked about no user or
// alias until Resume. The bridge manager pauses a bridge's appservice
// while the bridge is not running, so that nothing goes to its loopback
// port while another program may hold it.
func (g *Registry) Pause(appserviceID string) {
	g.pausedMu.Lock()
	defer g.pausedMu.Unlock()
	if g.paused == nil {
		g.paused = map[string]bool{}
	}
	g.paused[appserviceID] = true
}

// Resume ends Pause.
func (g *Registry) Resume(appserviceID string) {
	g.pausedMu.Lock()
	defer g.pausedMu.Unlock()
	delete(g.paused, appserviceID)
}

// Paused reports whether the appservice is paused.
func (g *Registry) Paused(appserviceID string) bool {
	g.pausedMu.Lock()
	defer g.pausedMu.Unlock()
	return g.paused[appserviceID]
}

type registrySet struct {
	all       []*Registration
	byID      map[string]*Registration
	byASToken map[[sha256.Size]byte]*Registration
}

// NewRegistry returns an empty registry for the node serverName.
func NewRegistry(serverName string) *Registry {
	g := &Registry{serverName: serverName}
	g.current.Store(&registrySet{})
	return g
}

// Set replaces the registrations with regs. It refuses (and changes
// nothing) when two of them share an id, an as_token or a sender.
func (g *Registry) Set(regs []*Registration) error {
	set := &registrySet{
		byID:      make(map[string]*Registration, len(regs)),
		byASToken: make(map[[sha256.Size]byte]*Registration, len(regs)),
	}
	for _, reg := range regs {
		if err := conflict(set.all, reg); err != nil {
			return fmt.Errorf("appservice %q: %w", reg.ID, err)
		}
		reg.serverName = g.serverName
		set.all = append(set.all, reg)
		set.byID[reg.ID] = reg
		set.byASToken[sha256.Sum256([]byte(reg.ASToken))] = reg
	}
	g.current.Store(set)
	return nil
}

// Reload loads dir (LoadDir) and replaces the registrations with the ones
// that loaded. The error names the refused files; the others are in use
// either way.
func (g *Registry) Reload(dir string) error {
	regs, loadErr := LoadDir(dir)
	if err := g.Set(regs); err != nil {
		return errors.Join(loadErr, err)
	}
	return loadErr
}

// All returns the registrations, in file name order. The slice must not be
// changed.
func (g *Registry) All() []*Registration { return g.current.Load().all }

// ByID returns the registration with the id, or nil.
func (g *Registry) ByID(appserviceID string) *Registration {
	return g.current.Load().byID[appserviceID]
}

// ByASToken returns the registration whose as_token is token, or nil. The
// token is looked up by its SHA-256 and then compared in constant time.
func (g *Registry) ByASToken(token string) *Registration {
	if token == "" {
		return nil
	}
	reg := g.current.Load().byASToken[sha256.Sum256([]byte(token))]
	if reg == nil || subtle.ConstantTimeCompare([]byte(reg.ASToken), []byte(token)) != 1 {
		return nil
	}
	return reg
}

// ExclusiveUserOwner returns the registration that holds user exclusively
// (as its sender or in an exclusive user namespace), or nil.
func (g *Registry) ExclusiveUserOwner(user id.UserID) *Registration {
	for _, reg := range g.All() {
		if reg.ExclusiveUser(user) {
			return reg
		}
	}
	return nil
}

// ExclusiveAliasOwner returns the registration that holds alias in an
// exclusive alias namespace, or nil.
func (g *Registry) ExclusiveAliasOwner(alias id.RoomAlias) *Registration {
	for _, reg := range g.All() {
		if reg.ExclusiveAlias(alias) {
			return reg
		}
	}
	return nil
}
