package contracts

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	// BotLocalpart is the contracts user's localpart: it joins the rooms
	// contracts are attached to and sends their results.
	BotLocalpart = "contracts"
	// maxModuleBytes bounds an uploaded module.
	maxModuleBytes = 1 << 20
	// followerName names the follower's row in contract_marks.
	followerName = "events"
	// stepSize is the most events one step of the follower reads (the
	// LIMIT of followQuery).
	stepSize = 100
	// followInterval is how often the follower looks for events without
	// a wake-up.
	followInterval = time.Second
)

// Options configure a Service.
type Options struct {
	DB       *storage.DB
	Rooms    *rooms.Engine
	Accounts *accounts.Service
	Log      *slog.Logger
	Limits   Limits
	// OnHalt, when set, is told of each attachment the follower halts
	// (the node sends its admins a server notice).
	OnHalt func(ctx context.Context, h Halt)
}

// Halt is an attachment halted because the same input kept failing for
// a reason outside the contract: the wall clock, not the gas, stopped
// its call maxTimeouts times, or its result could not be sent
// maxSendFailures times (the contracts user banned from the room, say).
type Halt struct {
	RoomID     id.RoomID
	Attachment string
	Module     string
	EventID    string
	Err        error
}

// Service runs the contracts attached to the node's rooms.
type Service struct {
	opts Options
	rt   *Runtime

	mu       sync.Mutex
	programs map[string]*Program

	// timeouts counts the failures (wall-clock stops, result sends) of
	// an attachment on an input; halted holds the attachments that
	// failed too often (room, name and module), skipped until the
	// attachment changes. Guarded by stepMu.
	timeouts map[string]int
	halted   map[string]bool

	// attached holds the rooms with an attachment. Guarded by stepMu.
	attached *follower.RoomSet

	stepMu   sync.Mutex
	mark     *follower.Mark
	follower *follower.Follower
}

// New returns the service; Start starts its follower.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits
	}
	rt, err := NewRuntime(ctx, opts.Limits)
	if err != nil {
		return nil, err
	}
	s := &Service{opts: opts, rt: rt, programs: map[string]*Program{},
		timeouts: map[string]int{}, halted: map[string]bool{}, mark: follower.NewMark(opts.DB, "contract_marks", followerName),
		attached: follower.NewRoomSet(opts.DB, "SELECT DISTINCT room_id FROM contract_attachments")}
	s.follower = follower.New("contracts", followInterval, opts.Log, s.Step)
	return s, nil
}

// Runtime returns the runtime the service runs contracts with.
func (s *Service) Runtime() *Runtime { return s.rt }

// Bot is the contracts user.
func (s *Service) Bot() id.UserID { return s.opts.Accounts.UserID(BotLocalpart) }

// Routes registers PUT /_matrixos/admin/v1/contracts, which a server admin
// uses to upload a module (the raw bytes as the body); it answers
// {"module": "<sha256>"}, the hash an attachment names.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /_matrixos/admin/v1/contracts", s.opts.Accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if !sess.IsAdmin {
			return nil, mxhttp.Forbidden("you are not a server admin")
		}
		wasm, err := mxhttp.ReadBody(r, maxModuleBytes)
		if err != nil {
			return nil, err
		}
		hash, err := s.Upload(r.Context(), wasm, sess.UserID)
		if err != nil {
			return nil, err
		}
		s.opts.Log.Info("contract module uploaded", "admin", sess.UserID, "module", hash)
		return map[string]string{"module": hash}, nil
	}))
}

// Upload checks a module (see Runtime.Compile), stores it and returns its
// hash. A module that is refused answers M_INVALID_PARAM with the reason.
func (s *Service) Upload(ctx context.Context, wasm []byte, by id.UserID) (string, error) {
	p, err := s.rt.Compile(ctx, wasm)
	if err != nil {
		return "", mxhttp.InvalidParam("contract module refused: %v", err)
	}
	s.mu.Lock()
	if _, ok := s.programs[p.Hash]; ok {
		p.Close(ctx)
	} else {
		s.programs[p.Hash] = p
	}
	s.mu.Unlock()
	err = s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO contract_modules (hash, wasm, uploaded_by, uploaded_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (hash) DO NOTHING`, p.Hash, base64.StdEncoding.EncodeToString(wasm), by, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store contract module: %w", err)
	}
	return p.Hash, nil
}

// Module returns an uploaded module's bytes.
func (s *Service) Module(ctx context.Context, hash string) ([]byte, error) {
	return LoadModule(ctx, s.opts.DB, hash)
}

// ErrNotUploaded is LoadModule's error for a module nobody uploaded.
var ErrNotUploaded = errors.New("not uploaded")

// errUnusable marks an attachment whose module cannot run (not uploaded
// or refused): running it again cannot help, so the follower logs it and
// goes on.
var errUnusable = errors.New("unusable contract module")

// LoadModule reads an uploaded module's bytes from the database.
func LoadModule(ctx context.Context, db *storage.DB, hash string) ([]byte, error) {
	var b64 string
	err := db.QueryRow(ctx, "SELECT wasm FROM contract_modules WHERE hash = $1", hash).Scan(&b64)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("contract module %s: %w", hash, ErrNotUploaded)
	}
	if err != nil {
		return nil, fmt.Errorf("read contract module %s: %w", hash, err)
	}
	return base64.StdEncoding.DecodeString(b64)
}

// program returns the compiled module, compiling it on first use.
func (s *Service) program(ctx context.Context, hash string) (*Program, error) {
	s.mu.Lock()
	p, ok := s.programs[hash]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	wasm, err := s.Module(ctx, hash)
	if errors.Is(err, ErrNotUploaded) {
		return nil, fmt.Errorf("%w: %w", errUnusable, err)
	}
	if err != nil {
		return nil, err
	}
	if p, err = s.rt.Compile(ctx, wasm); err != nil {
		return nil, fmt.Errorf("%w: compile contract module %s: %w", errUnusable, hash, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.programs[hash]; ok {
		p.Close(ctx)
		return q, nil
	}
	s.programs[hash] = p
	return p, nil
}

// OnEvent is the room engine's hook: it wakes the follower for an
// attachment and for the events of rooms with one (as the follower last
// read them); other events cost no round, and the next round still reads
// past them. It never blocks.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Pos > 0 && (ev.Type == StateType || s.attached.MayHave(ev.RoomID)) {
		s.follower.Wake()
	}
}

// Start runs the follower until Close.
func (s *Service) Start() { s.follower.Start() }

// Close stops the follower and the runtime.
func (s *Service) Close(ctx context.Context) error {
	s.follower.Close()
	return s.rt.Close(ctx)
}

// Step runs the contracts on the next committed events (at most
// stepSize, up to and including the next attachment change) and reports
// whether more may be waiting. An event a contract ran on moves the mark
// with the contract's state; the others need no write. The follower
// calls it; tests call it to catch up at once.
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
	evs, through, err := s.scan(ctx, mark, visible)
	if err != nil {
		return false, err
	}
	for _, ev := range evs {
		if err := s.handle(ctx, ev); err != nil {
			return false, err
		}
	}
	// After an attachment another step reads what came meanwhile: an
	// event of its room that came before the rooms were forgotten woke
	// no round.
	attached := len(evs) > 0 && evs[len(evs)-1].Type == StateType
	return through < visible || attached, s.mark.Skip(ctx, through)
}

// scan reads the committed events after mark that the follower must look
// at: those of rooms with an attachment, and the attachments themselves,
// up to and including the next one (which changes the rooms).
func (s *Service) scan(ctx context.Context, mark, visible int64) ([]*rooms.Event, int64, error) {
	attached, err := s.attached.Get(ctx)
	if err != nil {
		return nil, 0, err
	}
	filter := rooms.EventFilter{Types: []string{StateType}, Rooms: func(r id.RoomID) bool { return attached[r] }}
	evs, through, err := s.opts.Rooms.CommittedEvents(ctx, mark, visible, filter, stepSize)
	if err != nil {
		return nil, 0, fmt.Errorf("read events for contracts: %w", err)
	}
	for i, ev := range evs {
		if ev.Type == StateType {
			return evs[:i+1], ev.Pos, nil
		}
	}
	return evs, through, nil
}

// handle runs what one event calls for; when a contract ran, its state
// writes commit with the mark moved past the event. A failure of the node
// rather than the contract (a database read, the event's input, sending
// the result) is handle's error: nothing commits and the step runs the
// event again.
func (s *Service) handle(ctx context.Context, ev *rooms.Event) error {
	if ev.Type == StateType && ev.StateKey != nil {
		return s.attach(ctx, ev)
	}
	atts, err := s.attachments(ctx, ev.RoomID)
	if err != nil {
		return err
	}
	var writes []stateWrite
	for _, a := range atts {
		if !a.runsOn(ev.Type) || ev.Sender == s.Bot() || s.halted[haltKey(ev.RoomID, a)] {
			continue
		}
		out, err := s.run(ctx, ev, a)
		if ctx.Err() != nil {
			// Stopping: the call did not end by itself, so it sends and
			// keeps nothing; the next start runs it again.
			return ctx.Err()
		}
		if errors.Is(err, ErrTimedOut) && s.failedOn(ctx, ev, a, err, maxTimeouts) {
			continue
		}
		if errors.Is(err, errUnusable) {
			s.opts.Log.Error("contracts: run", "room_id", ev.RoomID, "attachment", a.Name, "event_id", string(ev.ID), "err", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("contract %s on %s: %w", a.Name, string(ev.ID), err)
		}
		if out.hasResult() {
			if err := s.sendResult(ctx, ev, a, out); err != nil {
				if s.failedOn(ctx, ev, a, err, maxSendFailures) {
					continue // halted: its state does not move without its result
				}
				return err
			}
		}
		writes = append(writes, stateWrite{att: a, writes: out.Writes})
	}
	if len(writes) == 0 {
		return nil // the step's mark covers it
	}
	return s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		for _, w := range writes {
			if err := w.apply(ctx, tx, ev.RoomID); err != nil {
				return err
			}
		}
		return s.mark.SetTx(ctx, tx, ev.Pos)
	})
}

// How many times a call the wall clock stopped, or a result that could
// not be sent, is tried before its attachment is halted: a failure that
// lasts must not hold up every other contract of the node, which the
// follower runs in order.
const (
	maxTimeouts     = 3
	maxSendFailures = 10
)

func haltKey(roomID id.RoomID, a Attachment) string {
	return string(roomID) + "\x00" + a.Name + "\x00" + a.Module
}

// failedOn counts a failure of a on ev that is not the contract's own
// (a wall-clock stop, a result not sent) and reports whether a is now
// halted: after limit failures on the same input it is skipped, with an
// error log line and OnHalt, until its attachment changes. Until then
// the call is not done: the step fails and runs it again.
func (s *Service) failedOn(ctx context.Context, ev *rooms.Event, a Attachment, err error, limit int) bool {
	key := haltKey(ev.RoomID, a) + "\x00" + string(ev.ID)
	s.timeouts[key]++
	if s.timeouts[key] < limit {
		return false
	}
	delete(s.timeouts, key)
	s.halted[haltKey(ev.RoomID, a)] = true
	s.opts.Log.Error("contracts: attachment halted: the same input failed again and again for a reason outside the contract; attach it again to restart it",
		"room_id", ev.RoomID, "attachment", a.Name, "module", a.Module, "event_id", string(ev.ID), "tries", limit, "err", err)
	if s.opts.OnHalt != nil {
		s.opts.OnHalt(ctx, Halt{RoomID: ev.RoomID, Attachment: a.Name, Module: a.Module, EventID: string(ev.ID), Err: err})
	}
	return true
}

func (s *Service) run(ctx context.Context, ev *rooms.Event, a Attachment) (*Outcome, error) {
	p, err := s.program(ctx, a.Module)
	if err != nil {
		return nil, err
	}
	in, err := Input(string(ev.ID), ev.JSON, a.Config)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return p.Run(ctx, in, &dbState{db: s.opts.DB, roomID: ev.RoomID, att: a})
}

// sendResult sends the result event. Its transaction ID is the input's,
// so a step run again (after a crash or a failed send) does not send it
// twice.
func (s *Service) sendResult(ctx context.Context, ev *rooms.Event, a Attachment, out *Outcome) error {
	content, err := json.Marshal(resultContent(a, string(ev.ID), out))
	if err == nil {
		_, err = s.opts.Rooms.Send(ctx, ev.RoomID, rooms.Proto{Type: ResultType, Sender: s.Bot(), Content: content,
			TxnID: "contract/" + a.Name + "/" + string(ev.ID)})
	}
	if err != nil {
		return fmt.Errorf("send the result of %s on %s: %w", a.Name, string(ev.ID), err)
	}
	return nil
}

// attach records an attachment change, and has the contracts user join
// the room when a contract is attached.
func (s *Service) attach(ctx context.Context, ev *rooms.Event) error {
	a, ok, err := ParseAttachment(*ev.StateKey, []byte(gjson.GetBytes(ev.JSON, "content").Raw))
	for key := range s.halted {
		if strings.HasPrefix(key, string(ev.RoomID)+"\x00"+*ev.StateKey+"\x00") {
			delete(s.halted, key)
		}
	}
	if err != nil {
		s.opts.Log.Warn("contracts: attachment ignored", "room_id", ev.RoomID, "event_id", string(ev.ID), "err", err)
	}
	if ok {
		if err := s.join(ctx, ev.RoomID); err != nil {
			s.opts.Log.Warn("contracts: the contracts user could not join", "room_id", ev.RoomID, "err", err)
		}
	}
	s.attached.Forget() // read again at the next step
	return s.opts.DB.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM contract_attachments WHERE room_id = $1 AND name = $2", ev.RoomID, *ev.StateKey); err != nil {
			return err
		}
		if ok {
			events, _ := json.Marshal(a.Events)
			if _, err := tx.Exec(ctx, `INSERT INTO contract_attachments (room_id, name, module, events, config) VALUES ($1, $2, $3, $4, $5)`,
				ev.RoomID, a.Name, a.Module, string(events), string(a.Config)); err != nil {
				return err
			}
		}
		return s.mark.SetTx(ctx, tx, ev.Pos)
	})
}

// join makes sure the contracts user exists and is in the room.
func (s *Service) join(ctx context.Context, roomID id.RoomID) error {
	bot := s.Bot()
	if s.opts.Rooms.Membership(bot, roomID) == "join" {
		return nil
	}
	u, exists, err := s.opts.Accounts.GetUser(ctx, bot)
	if err != nil {
		return err
	}
	if exists && u.PasswordHash != "" {
		return fmt.Errorf("%s is a user account with a password, not the contracts user", bot)
	}
	if !exists {
		if _, err := s.opts.Accounts.CreateUser(ctx, BotLocalpart, "", false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
			return fmt.Errorf("create the contracts user: %w", err)
		}
	}
	sk := string(bot)
	_, err = s.opts.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: bot,
		Content: json.RawMessage(`{"membership":"join","displayname":"Contracts"}`)})
	return err
}

// attachments returns a room's attachments.
func (s *Service) attachments(ctx context.Context, roomID id.RoomID) ([]Attachment, error) {
	rows, err := s.opts.DB.Query(ctx, "SELECT name, module, events, config FROM contract_attachments WHERE room_id = $1 ORDER BY name", roomID)
	if err != nil {
		return nil, fmt.Errorf("read contract attachments: %w", err)
	}
	defer rows.Close()
	var out []Attachment
	for rows.Next() {
		var a Attachment
		var events, config string
		if err := rows.Scan(&a.Name, &a.Module, &events, &config); err != nil {
			return nil, fmt.Errorf("read contract attachments: %w", err)
		}
		if err := json.Unmarshal([]byte(events), &a.Events); err != nil {
			return nil, fmt.Errorf("contract attachment %s: %w", a.Name, err)
		}
		a.Config = json.RawMessage(config)
		out = append(out, a)
	}
	return out, rows.Err()
}

// dbState is an attachment's state in contract_state.
type dbState struct {
	db     *storage.DB
	roomID id.RoomID
	att    Attachment
}

func (d *dbState) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var b64 string
	err := d.db.QueryRow(ctx, "SELECT entry_value FROM contract_state WHERE room_id = $1 AND name = $2 AND module = $3 AND entry_key = $4",
		d.roomID, d.att.Name, d.att.Module, key).Scan(&b64)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := base64.StdEncoding.DecodeString(b64)
	return v, err == nil, err
}

// stateWrite is one call's writes, applied with the mark.
type stateWrite struct {
	att    Attachment
	writes map[string][]byte
}

func (w stateWrite) apply(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	for k, v := range w.writes {
		var err error
		if v == nil {
			_, err = tx.Exec(ctx, "DELETE FROM contract_state WHERE room_id = $1 AND name = $2 AND module = $3 AND entry_key = $4",
				roomID, w.att.Name, w.att.Module, k)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO contract_state (room_id, name, module, entry_key, entry_value) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (room_id, name, module, entry_key) DO UPDATE SET entry_value = excluded.entry_value`,
				roomID, w.att.Name, w.att.Module, k, base64.StdEncoding.EncodeToString(v))
		}
		if err != nil {
			return fmt.Errorf("write contract state: %w", err)
		}
	}
	return nil
}

// State returns an attachment's state (tests and replays compare it).
func (s *Service) State(ctx context.Context, roomID id.RoomID, name, module string) (MapState, error) {
	rows, err := s.opts.DB.Query(ctx, "SELECT entry_key, entry_value FROM contract_state WHERE room_id = $1 AND name = $2 AND module = $3",
		roomID, name, module)
	if err != nil {
		return nil, fmt.Errorf("read contract state: %w", err)
	}
	defer rows.Close()
	out := MapState{}
	for rows.Next() {
		var k, b64 string
		if err := rows.Scan(&k, &b64); err != nil {
			return nil, fmt.Errorf("read contract state: %w", err)
		}
		v, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("contract state %s: %w", k, err)
		}
		out[k] = v
	}
	return out, rows.Err()
}
