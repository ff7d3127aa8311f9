package rooms

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// MaxEventBytes is the spec's limit on a PDU's size.
const MaxEventBytes = 65536

// Signer is the server's event signing identity.
type Signer struct {
	ServerName string
	KeyID      id.KeyID
	Key        ed25519.PrivateKey
}

// Engine appends events to rooms and answers questions about them.
type Engine struct {
	db     *storage.DB
	log    *slog.Logger
	signer Signer
	// resyncs runs the resyncs of partial-state rooms (partial.go).
	resyncs *resyncers

	// StateBatch is how many events of a room's state streamed in (the
	// /state answer of a partial-state resync) are decoded, checked and
	// written at a time, which bounds the memory the answer takes while
	// it is checked, and how many of the events received during the
	// resync are read at a time when they are checked again against the
	// full state (DefaultStateBatch when 0). Set it before serving.
	StateBatch int

	// OnEvent hooks run, in order, after each event has committed. They run
	// on the sender's goroutine and must be quick (wake-ups, counters).
	OnEvent []func(ev *Event, r *RoomInfo)
	// OnVisible hooks run for each event as soon as readers can see it:
	// on the database writer, right after the commit that stored it made
	// its position visible (DB.Visible) with the room's view moved on,
	// before the sender (or the OnEvent hooks) learns that the write
	// committed. They are for waking readers that wait for the event
	// (long-polling /syncs), which then do not wait for the sender's
	// goroutine to be scheduled; they must be very quick and must not
	// block, write, or wait for a room. (A local user's membership in a
	// room this node is not in runs them on the storing goroutine, after
	// its write.)
	OnVisible []func(ev *Event, r *RoomInfo)
	// OnStateComplete hooks run after a partial-state room's full state
	// has committed, with the room's local joined members; like OnEvent
	// hooks they must be quick.
	OnStateComplete []func(roomID id.RoomID, local []id.UserID)
	// OnPersist hooks run inside the write transaction that stores each
	// event, so data derived from it (search index, counts) commits
	// atomically with the event and no backlog is left behind. They run on
	// the database writer and must only write.
	OnPersist []func(ctx context.Context, tx *storage.Tx, ev *Event, r *RoomInfo) error
	// OnAccept hooks run for each event accepted into a room's pipeline,
	// local or remote, before its write is queued: on the goroutine that
	// accepted it (the sender's, for a local send), with the room's state
	// right after the event, so that work which needs no write (push rule
	// evaluation) is done off the database writer. What a hook returns,
	// when not nil, runs inside the event's write transaction after the
	// OnPersist hooks, once the event has its position; it is not run
	// when the write fails before it. The hooks run while the room's
	// pipeline is held: they must not wait for the room, nor for the
	// database writer.
	OnAccept []func(ctx context.Context, ev *Event, r *RoomInfo) PersistFunc
	// OnReject hooks run inside the write transaction that takes an event
	// out of the timeline after it was persisted: a remote event accepted
	// while a room's state was partial that the full state refuses
	// (partial.go). They remove what the event's OnPersist and OnAccept
	// hooks derived from it (counts, notifications, index rows); ev.Pos is
	// the position it was persisted at. Like OnPersist hooks they run on
	// the database writer and must only write.
	OnReject []func(ctx context.Context, tx *storage.Tx, ev *Event) error
	// OnBackfill hooks run inside the write transaction that stores each
	// event learnt late (backfilled history, see StoreHistory), for the
	// indexes that cover every timeline event. Such an event changes no
	// state, so they get no RoomInfo.
	OnBackfill []func(ctx context.Context, tx *storage.Tx, ev *Event) error
	// StateChecks check the content of a locally sent state event of the
	// type they are keyed by (a package's configuration event, say): an
	// error refuses the event, so a bad configuration answers its error
	// (M_BAD_JSON) instead of being stored and ignored. Set them before
	// serving.
	StateChecks map[string]func(content json.RawMessage) error
	// RoomPolicy, when set, keeps the node out of the rooms it refuses
	// (moderation's policy-list room rules): its error (M_FORBIDDEN with
	// the reason) answers every way into such a room through this node
	// (see CheckRoomPolicy). It must not wait for a room's pipeline. Set
	// it before serving.
	RoomPolicy func(ctx context.Context, roomID id.RoomID) error
	// Remote is how the engine reaches other servers (keys, missing
	// events); nil on a node that does not federate, which then refuses
	// remote events. Set before use.
	Remote Remote

	// OnPurge hooks remove what other packages keep about a room, inside
	// the transaction that purges it (search index, counts, receipts, ...),
	// before the room's own rows are deleted: a hook can find the room's
	// rows of a table not indexed by room through the room's events.
	OnPurge []func(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error

	mu      sync.Mutex
	rooms   map[id.RoomID]*room
	members map[id.UserID]map[id.RoomID]string // user -> room -> membership
	// memberPos is the position of each user's latest committed
	// membership change, in any room.
	memberPos map[id.UserID]int64
	// memberRows caches users' rows of the memberships table (see
	// UserMemberships). Guarded by mu.
	memberRows membershipRows
	// memberLog is the newest membership changes (see MemberChanges).
	memberLog *storage.PosLog[MemberChange]
	// nonTargets remembers events that no event relates to.
	nonTargets nonTargets
	// sentTxns spares a new transaction ID the transactions table's
	// lookup.
	sentTxns txnIndex

	cache eventCache
	// committed holds the newest timeline events for CommittedEvents.
	committed *committedEvents
	snaps     snapshotCache
	graphs    authGraphs
	backfill  backfills
	awaited   awaitedIDs
}

// New returns the engine; call Load before use.
func New(db *storage.DB, log *slog.Logger, signer Signer) *Engine {
	return &Engine{
		db: db, log: log, signer: signer,
		rooms:     map[id.RoomID]*room{},
		members:   map[id.UserID]map[id.RoomID]string{},
		memberPos: map[id.UserID]int64{},
		memberLog: storage.NewPosLog[MemberChange](maxMemberLog),
		cache:     newEventCache(20000),
		committed: newCommittedEvents(),
		resyncs:   newResyncers(),
	}
}

// dropRoom marks r broken and forgets it, so the room is read again from
// the database; it follows a write of the room that failed.
func (e *Engine) dropRoom(r *room) {
	r.broken.Store(true)
	e.mu.Lock()
	if e.rooms[r.id] == r {
		delete(e.rooms, r.id)
	}
	e.mu.Unlock()
}

// ServerName is the node's server name.
func (e *Engine) ServerName() string { return e.signer.ServerName }

// room is the in-memory view of one room.
//
// Its events pass through one pipeline, serialised by mu: an event is built
// and authorised on top of head, then queued to the database writer. head
// moves only for an event that passed the auth rules, and readers never see
// it: they read the committed view (cur and the positions, under viewMu),
// which the database writer moves once the event has committed and before
// its position becomes visible, so no reader sees a position that the view
// does not cover yet. The writer never takes mu, and nobody holds viewMu
// while queueing or awaiting a write.
type room struct {
	mu      sync.Mutex
	id      id.RoomID
	version id.RoomVersion
	// head is the state after the last event accepted into the pipeline
	// (queued, maybe not committed yet), on which the next one builds.
	// Guarded by mu.
	head *roomState
	// txns holds the transactions of the events accepted into the
	// pipeline, so a retry answers the original event. Guarded by mu.
	txns map[string]*pendingTxn
	// broken is set when a write of the room failed or was never queued:
	// the events queued after it build on it, so they must fail too.
	broken atomic.Bool
	// lastWrite waits for the room's latest queued write (nil before the
	// first): a remote event, whose state is read from the database, is
	// checked once the writes before it have committed. Guarded by mu.
	lastWrite func() error

	viewMu sync.Mutex
	// cur is the state after the room's latest committed event.
	cur     *roomState
	lastPos int64 // highest committed position in the room
	// lastMemberPos is the position of the room's latest committed
	// membership event.
	lastMemberPos int64
	// lastStatePos is at or after the position of the room's latest
	// committed change of current state (see StateChangedAfter).
	lastStatePos int64
	// purged is set once the room has been purged: late commits must not
	// bring it back.
	purged bool

	// partial is set while the room's state is partial (joined with
	// members omitted, the resync not finished; see partial.go).
	partial atomic.Pointer[partialJoin]
	// completedAt is the stream position at which the room's partial
	// state became complete here (0 when it never was partial).
	completedAt atomic.Int64

	// recent holds the room's newest events, maintained by the writer.
	recent recentEvents

	// Touched only by write functions, which the single writer runs in
	// queue order.
	dbSnapshot int64
	dbChainLen int
}

// view returns the room's committed state.
func (r *room) view() *roomState {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.cur
}

// RoomInfo is a read-only summary passed to hooks.
type RoomInfo struct {
	ID      id.RoomID
	Version id.RoomVersion
	// Members maps each user with a membership to it (join, invite, ...),
	// after the event.
	Members map[id.UserID]string

	state *roomState // after the event; nil when the info was made by hand
	// partialServers are the servers a partial-state room's mark names.
	partialServers []string
}

func newRoomInfo(r *room, after *roomState) *RoomInfo {
	return &RoomInfo{ID: r.id, Version: r.version, Members: after.members, state: after, partialServers: r.partialServers()}
}

// InfoWithState returns the info of a room whose state right after the
// event is made of the state events evs, as the engine gives its hooks
// (for tests of hooks that read the state).
func InfoWithState(roomID id.RoomID, version id.RoomVersion, evs []*Event) *RoomInfo {
	st := stateOf(evs, nil, 0)
	return &RoomInfo{ID: roomID, Version: version, Members: st.members, state: st}
}

// HasState reports whether the info carries the room's state after the
// event (it does when the engine made it).
func (ri *RoomInfo) HasState() bool { return ri.state != nil }

// StateEvent returns the room's state event of that type and state key
// right after the event, or nil. Hooks on the database writer use it
// instead of Engine.StateEvent, which reads the committed state.
func (ri *RoomInfo) StateEvent(evType, sk string) *Event {
	if ri.state == nil {
		return nil
	}
	return ri.state.get(evType, sk)
}

// MembersVersion identifies the room's members and their member events
// right after the event: two infos with the same non-zero MembersVersion have the
// same Members and the same member events, so what is derived from them
// (display names, who is local and joined) can be kept per room and made
// again only when it changes. It is 0 when the info carries no state or
// the state was made without one, and then says nothing.
func (ri *RoomInfo) MembersVersion() uint64 {
	if ri.state == nil {
		return 0
	}
	return ri.state.membership
}

// JoinedServers returns the servers with a member joined to the room
// right after the event, sorted; while the room's state is partial, with
// the servers its send_join answer named. The slice is shared and must
// not be modified.
func (ri *RoomInfo) JoinedServers() []string {
	if ri.state == nil {
		return unionServers(joinedServers(ri.Members), ri.partialServers)
	}
	return unionServers(ri.state.servers, ri.partialServers)
}

// PowerLevels returns the room's power levels right after the event, or
// nil when the info carries no state.
func (ri *RoomInfo) PowerLevels() *event.PowerLevelsEventContent {
	if ri.state == nil {
		return nil
	}
	return ri.state.powerLevels()
}

// Load reads every user's memberships into memory.
func (e *Engine) Load(ctx context.Context) error {
	rows, err := e.db.Query(ctx, "SELECT room_id, user_id, membership, pos FROM memberships")
	if err != nil {
		return fmt.Errorf("load memberships: %w", err)
	}
	defer rows.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	// Changes committed from now on reach the log (commitView); older
	// windows read the database.
	e.memberLog.Start(e.db.Visible())
	for rows.Next() {
		var roomID id.RoomID
		var userID id.UserID
		var m string
		var pos int64
		if err := rows.Scan(&roomID, &userID, &m, &pos); err != nil {
			return err
		}
		e.setMembershipLocked(userID, roomID, m)
		e.memberPos[userID] = max(e.memberPos[userID], pos)
	}
	return rows.Err()
}

func (e *Engine) setMembershipLocked(user id.UserID, roomID id.RoomID, m string) {
	if m == "" { // a state resolution dropped the user's member event
		delete(e.members[user], roomID)
		return
	}
	rs := e.members[user]
	if rs == nil {
		rs = map[id.RoomID]string{}
		e.members[user] = rs
	}
	rs[roomID] = m
}

// Memberships returns a copy of the user's room memberships.
func (e *Engine) Memberships(user id.UserID) map[id.RoomID]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[id.RoomID]string, len(e.members[user]))
	for r, m := range e.members[user] {
		out[r] = m
	}
	return out
}

// JoinedRooms lists the rooms the user is joined to.
func (e *Engine) JoinedRooms(user id.UserID) []id.RoomID {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []id.RoomID
	for r, m := range e.members[user] {
		if m == "join" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// Membership returns the user's current membership in the room ("" if none).
func (e *Engine) Membership(user id.UserID, roomID id.RoomID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.members[user][roomID]
}

// MembershipEventID returns the ID of the event that set the user's
// current membership in the room, in the timeline or, for a room this node
// is not in (a remote invite, a rejected one), beside it; "" if the user
// has none.
func (e *Engine) MembershipEventID(ctx context.Context, user id.UserID, roomID id.RoomID) (id.EventID, error) {
	var evID id.EventID
	err := e.db.QueryRow(ctx, "SELECT event_id FROM memberships WHERE room_id = $1 AND user_id = $2", roomID, user).Scan(&evID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("membership event of %s in %s: %w", user, roomID, err)
	}
	return evID, nil
}

// ErrNoRoom is returned for an unknown room.
var ErrNoRoom = mxhttp.NotFound("room not found")

// room returns the loaded room, reading it from the database on first use.
func (e *Engine) room(ctx context.Context, roomID id.RoomID) (*room, error) {
	e.mu.Lock()
	r, ok := e.rooms[roomID]
	e.mu.Unlock()
	if ok {
		return r, nil
	}
	r = newRoom(roomID, "")
	var ext string
	var depth int64
	var extremities []id.EventID
	err := e.db.QueryRow(ctx, "SELECT version, snapshot, depth, extremities, last_pos FROM rooms WHERE room_id = $1", roomID).
		Scan(&r.version, &r.dbSnapshot, &depth, &ext, &r.lastPos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoRoom
	}
	if err != nil {
		return nil, fmt.Errorf("load room %s: %w", roomID, err)
	}
	if err := json.Unmarshal([]byte(ext), &extremities); err != nil {
		return nil, fmt.Errorf("room %s extremities: %w", roomID, err)
	}
	ids, chainLen, err := e.snapshotState(ctx, r.dbSnapshot)
	if err != nil {
		return nil, err
	}
	r.dbChainLen = chainLen
	r.lastStatePos = r.dbSnapshot // the current state's snapshot: its last change
	r.recent.floor = r.lastPos    // nothing older is in memory
	var lmp sql.NullInt64
	if err := e.db.QueryRow(ctx, "SELECT MAX(pos) FROM events WHERE room_id = $1 AND type = 'm.room.member'", roomID).Scan(&lmp); err != nil {
		return nil, fmt.Errorf("load room %s: %w", roomID, err)
	}
	r.lastMemberPos = lmp.Int64
	evs, err := e.Events(ctx, mapValues(ids))
	if err != nil {
		return nil, err
	}
	r.cur = stateOf(evs, extremities, depth)
	r.head = r.cur
	if err := e.loadPartial(ctx, r); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if existing, ok := e.rooms[roomID]; ok {
		return existing, nil
	}
	e.rooms[roomID] = r
	return r, nil
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Version returns a room's version.
func (e *Engine) Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return "", err
	}
	return r.version, nil
}

// CurrentState returns the room's current state events.
func (e *Engine) CurrentState(ctx context.Context, roomID id.RoomID) ([]*Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := mapValues(r.view().state)
	slices.SortFunc(out, func(a, b *Event) int { return int(a.Pos - b.Pos) })
	return out, nil
}

// StateEvent returns one current state event, or nil.
func (e *Engine) StateEvent(ctx context.Context, roomID id.RoomID, evType, sk string) (*Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return r.view().get(evType, sk), nil
}

// Members returns the room's users and their memberships (join, invite,
// leave, ...). The map is shared and must not be modified; nil if the room
// is unknown.
func (e *Engine) Members(ctx context.Context, roomID id.RoomID) map[id.UserID]string {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil
	}
	return r.view().members
}

// JoinedServers returns the servers with a member joined to the room,
// sorted (nil for an unknown room); while the room's state is partial,
// with the servers its send_join answer named. The slice is shared and
// must not be modified.
func (e *Engine) JoinedServers(ctx context.Context, roomID id.RoomID) []string {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil
	}
	return unionServers(r.view().servers, r.partialServers())
}

// LastMemberPos returns the position of the room's latest committed
// membership event.
func (e *Engine) LastMemberPos(ctx context.Context, roomID id.RoomID) int64 {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return 0
	}
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.lastMemberPos
}

// StateChangedAfter reports whether the room's current state may have
// changed after stream position pos (a state event, or a state resolution,
// committed after it); false means the room's state snapshot at pos is
// its current one, so the state at any later position is the same. It
// errs on the side of true (a room it cannot load).
func (e *Engine) StateChangedAfter(ctx context.Context, roomID id.RoomID, pos int64) bool {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return true
	}
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.lastStatePos > pos
}

// MembershipPos returns the position of the user's latest committed
// membership change in any room.
func (e *Engine) MembershipPos(user id.UserID) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.memberPos[user]
}

// LastPos returns the position of the room's latest committed event.
func (e *Engine) LastPos(ctx context.Context, roomID id.RoomID) int64 {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return 0
	}
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.lastPos
}

// Proto is an event a local user asks to send.
type Proto struct {
	Type     string
	StateKey *string
	Sender   id.UserID
	Content  json.RawMessage
	Redacts  id.EventID
	TxnID    string
	DeviceID id.DeviceID
	// TS overrides the origin_server_ts (appservices' ts parameter).
	TS int64
}

// Send builds, authorises and appends an event to a room, returning once it
// has committed. A repeated (sender, device, txn_id) returns the earlier
// event.
func (e *Engine) Send(ctx context.Context, roomID id.RoomID, p Proto) (*Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	evs, err := e.appendEvents(ctx, r, []Proto{p}, nil)
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// SendMany appends several events to one room in order, atomically with
// respect to other senders.
func (e *Engine) SendMany(ctx context.Context, roomID id.RoomID, ps []Proto) ([]*Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return e.appendEvents(ctx, r, ps, nil)
}

// txnScope names what a transaction ID is scoped to besides the device:
// the request path it came with (the room and the event type, or the
// redacted event), so the same ID in two rooms or for two event types
// names two transactions.
func txnScope(roomID id.RoomID, evType string, redacts id.EventID) string {
	if evType == "m.room.redaction" && redacts != "" {
		return string(roomID) + "/redact/" + string(redacts)
	}
	return string(roomID) + "/send/" + evType
}

func txnKey(sender id.UserID, device id.DeviceID, scope, txnID string) string {
	return string(sender) + "\x00" + string(device) + "\x00" + scope + "\x00" + txnID
}

// pendingTxn is a transaction accepted into a room's pipeline: done is
// closed once its event has committed (err nil) or failed.
type pendingTxn struct {
	ev   *Event
	done chan struct{}
	err  error
}

// accepted is an event that passed the auth rules, with the room's state
// right after it.
type accepted struct {
	ev    *Event
	after *roomState
	// dag is set for an event not built on the pipeline's head (a remote
	// event, a joined room's first event): its state before, and what the
	// room's current state became.
	dag *dagFacts
}

// appendEvents builds, authorises and persists ps in order. pre holds
// events the caller already built and authorised, on an empty room whose
// r.mu it holds; they are persisted first.
//
// The events are built on a proposal (the pipeline's head and the states
// each accepted event leads to); the room changes only once every event
// has passed the auth rules, and readers see the change only once it has
// committed.
func (e *Engine) appendEvents(ctx context.Context, r *room, ps []Proto, pre []accepted) ([]*Event, error) {
	if pre == nil {
		if err := e.checkEntries(ctx, r.id, ps); err != nil {
			return nil, err
		}
		r.mu.Lock()
	}
	q, err := e.enqueue(ctx, r, ps, pre)
	if err != nil {
		return nil, err
	}
	if q.retried != nil {
		return e.answerRetry(ctx, q.retried)
	}
	if q.retriedID != "" {
		return e.eventsOrErr(ctx, q.retriedID)
	}
	return e.awaitWrite(r, q)
}

// awaitWrite waits for the write enqueue queued, then caches the events
// and runs the OnEvent hooks.
func (e *Engine) awaitWrite(r *room, q queuedWrite) ([]*Event, error) {
	err := q.wait()
	if q.txn != nil {
		q.txn.err = err
		close(q.txn.done)
	}
	if err != nil {
		// The head ran ahead of a write that failed: drop the room so it is
		// read again from the database.
		e.dropRoom(r)
		e.log.Error("persist events failed", "room_id", r.id, "err", err)
		return nil, fmt.Errorf("persist events: %w", err)
	}
	out := make([]*Event, len(q.built))
	for i, a := range q.built {
		out[i] = a.ev
		e.cache.put(a.ev)
		e.runHooks(r, a)
	}
	return out, nil
}

// queuedWrite is what enqueue did: queue the events of built (wait for the
// outcome; txn is their transaction, if any), or find the request to be a
// retried transaction, still in the pipeline (retried) or committed
// (retriedID).
type queuedWrite struct {
	built     []accepted
	wait      func() error
	txn       *pendingTxn
	retried   *pendingTxn
	retriedID id.EventID
}

// enqueue is the part of appendEvents that runs under r.mu, which it
// releases however it returns (a panic included: a room whose lock stayed
// held would stop for good).
func (e *Engine) enqueue(ctx context.Context, r *room, ps []Proto, pre []accepted) (q queuedWrite, err error) {
	defer r.mu.Unlock()
	if len(ps) == 1 && ps[0].TxnID != "" {
		if q, found, err := e.retried(ctx, r, ps[0]); found || err != nil {
			return q, err
		}
	}
	built := pre
	head := r.head
	if len(pre) > 0 {
		head = pre[len(pre)-1].after
	}
	for _, p := range ps {
		ev, err := e.build(r, head, p)
		if err == nil {
			err = e.authorize(ctx, r, head, ev)
		}
		if err != nil {
			return q, err
		}
		head = head.with(r.version, ev)
		built = append(built, accepted{ev: ev, after: head})
		e.nonTargets.addBuilt(ev.ID)
	}
	if len(ps) == 1 && ps[0].TxnID != "" {
		q.txn = &pendingTxn{ev: built[len(built)-1].ev, done: make(chan struct{})}
		if len(r.txns) > maxRoomTxns {
			r.forgetFinishedTxns()
		}
		r.txns[txnKeyOf(r.id, q.txn.ev)] = q.txn
		e.sentTxns.add(q.txn.ev.Sender, q.txn.ev.DeviceID, eventTxnScope(r.id, q.txn.ev), q.txn.ev.TxnID)
	}
	// The write is queued and made whatever the caller's context does:
	// once the head has moved, the next events build on these, so a
	// client that goes away must not fail them.
	q.wait = e.queueWrite(ctx, r, built)
	r.head = head
	q.built = built
	return q, nil
}

// PersistFunc is what an OnAccept hook leaves for the event's write
// transaction.
type PersistFunc func(ctx context.Context, tx *storage.Tx) error

// queueWrite queues the write of built, events accepted into r's pipeline
// in order, and returns what waits for its outcome (callable more than
// once). r.mu is held.
func (e *Engine) queueWrite(ctx context.Context, r *room, built []accepted) func() error {
	wctx := context.WithoutCancel(ctx)
	prepared := e.runAcceptHooks(wctx, r, built)
	wait := sync.OnceValue(e.db.Enqueue(wctx, func(tx *storage.Tx) error {
		if r.broken.Load() {
			return errPipelineBroken
		}
		for i, a := range built {
			var err error
			if a.dag != nil {
				err = e.persistRemote(wctx, tx, r, a)
			} else {
				err = e.persist(wctx, tx, r, a.ev, a.after)
			}
			if err == nil {
				err = e.runPersistHooks(wctx, tx, r, a, prepared[i])
			}
			if err != nil {
				r.broken.Store(true)
				return err
			}
		}
		// /sync skips a room whose LastPos is not past its token: were the
		// positions visible before the view moved, a response's next_batch
		// could pass these events without them.
		tx.AfterCommit(func() { e.commitView(r, built) })
		if len(e.OnVisible) > 0 {
			tx.AfterVisible(func() { e.runVisibleHooks(r, built) })
		}
		return nil
	}))
	r.lastWrite = wait
	return wait
}

// runAcceptHooks runs the OnAccept hooks for each event of built and
// returns, per event, what they left for its write transaction.
func (e *Engine) runAcceptHooks(ctx context.Context, r *room, built []accepted) [][]PersistFunc {
	out := make([][]PersistFunc, len(built))
	if len(e.OnAccept) == 0 {
		return out
	}
	for i, a := range built {
		info := newRoomInfo(r, a.after)
		for _, h := range e.OnAccept {
			if f := h(ctx, a.ev, info); f != nil {
				out[i] = append(out[i], f)
			}
		}
	}
	return out
}

// drain waits, with r.mu held, until the room's queued writes have
// committed, so that what the pipeline accepted can be read from the
// database.
func (r *room) drain() error {
	if r.lastWrite == nil {
		return nil
	}
	if err := r.lastWrite(); err != nil {
		return fmt.Errorf("an earlier write to the room failed: %w", err)
	}
	return nil
}

// maxRoomTxns is how many transactions a room remembers in memory before
// it forgets those whose outcome is known (committed ones are answered
// from the transactions table).
const maxRoomTxns = 10000

// forgetFinishedTxns drops the transactions whose write has finished; one
// still in the pipeline stays, since only it can answer a retry before the
// commit. Called with r.mu held.
func (r *room) forgetFinishedTxns() {
	for k, txn := range r.txns {
		select {
		case <-txn.done:
			delete(r.txns, k)
		default:
		}
	}
}

// errPipelineBroken fails the writes queued behind a room's failed write.
var errPipelineBroken = errors.New("an earlier write to the room failed")

func txnKeyOf(roomID id.RoomID, ev *Event) string {
	return txnKey(ev.Sender, ev.DeviceID, eventTxnScope(roomID, ev), ev.TxnID)
}

// eventTxnScope is txnScope for a built event.
func eventTxnScope(roomID id.RoomID, ev *Event) string {
	var redacts id.EventID
	if ev.PDU.Redacts != nil {
		redacts = *ev.PDU.Redacts
	}
	return txnScope(roomID, ev.Type, redacts)
}

// retried finds a transaction seen before (found), in the pipeline or the
// database, which it reads only when the index of the device's used
// transaction IDs holds the key. r.mu is held.
func (e *Engine) retried(ctx context.Context, r *room, p Proto) (q queuedWrite, found bool, err error) {
	scope := txnScope(r.id, p.Type, p.Redacts)
	if txn, ok := r.txns[txnKey(p.Sender, p.DeviceID, scope, p.TxnID)]; ok {
		return queuedWrite{retried: txn}, true, nil
	}
	used, err := e.sentTxns.mayHave(ctx, p.Sender, p.DeviceID, scope, p.TxnID, e.deviceTxnLoader(p.Sender, p.DeviceID))
	if !used || err != nil {
		return q, false, err
	}
	err = e.db.QueryRow(ctx, "SELECT event_id FROM transactions WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4",
		p.Sender, p.DeviceID, scope, p.TxnID).Scan(&q.retriedID)
	if errors.Is(err, sql.ErrNoRows) {
		return q, false, nil
	}
	if err != nil {
		return q, false, fmt.Errorf("look up transaction: %w", err)
	}
	return q, true, nil
}

// deviceTxnLoader reads the transaction keys of a device from the
// transactions table, for the index of transaction IDs used: at most
// one more than the index holds for a device, which is enough to know it
// is past that.
func (e *Engine) deviceTxnLoader(user id.UserID, device id.DeviceID) func(context.Context, func(scope, txnID string)) error {
	return func(ctx context.Context, add func(scope, txnID string)) error {
		rows, err := e.db.Query(ctx, "SELECT scope, txn_id FROM transactions WHERE user_id = $1 AND device_id = $2 LIMIT $3",
			user, device, maxDeviceTxns+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var scope, txnID string
			if err := rows.Scan(&scope, &txnID); err != nil {
				return err
			}
			add(scope, txnID)
		}
		return rows.Err()
	}
}

// answerRetry answers a retried transaction with the original's outcome,
// once it is known.
func (e *Engine) answerRetry(ctx context.Context, txn *pendingTxn) ([]*Event, error) {
	select {
	case <-txn.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if txn.err != nil {
		return nil, fmt.Errorf("persist events: %w", txn.err)
	}
	return []*Event{txn.ev}, nil
}

// commitView shows committed events to readers: the room's state and
// positions and the node's membership index move forward (never back).
// The database writer runs it after the commit, before the events'
// positions become visible.
func (e *Engine) commitView(r *room, built []accepted) {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	if r.purged {
		return
	}
	members := false
	for _, a := range built {
		if a.ev.Pos > r.lastPos {
			r.cur, r.lastPos = a.after, a.ev.Pos
		}
		if a.ev.StateKey != nil || a.dag != nil {
			r.lastStatePos = max(r.lastStatePos, a.ev.Pos)
		}
		if len(a.changedMembers()) > 0 {
			r.lastMemberPos = max(r.lastMemberPos, a.ev.Pos)
			members = true
		}
	}
	if !members {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range built {
		for _, u := range a.changedMembers() {
			e.setMembershipLocked(u, r.id, r.cur.members[u])
			e.memberPos[u] = max(e.memberPos[u], a.ev.Pos)
			e.memberLog.Add(a.ev.Pos, MemberChange{Pos: a.ev.Pos, RoomID: r.id, UserID: u})
		}
	}
}

// changedMembers lists the users whose membership the event changed in
// the room's current state: the member event's user for an event built on
// the head, every user whose member event a state resolution changed
// otherwise.
func (a accepted) changedMembers() []id.UserID {
	if a.dag != nil {
		return a.dag.changedMembers
	}
	if a.ev.Type != "m.room.member" || a.ev.StateKey == nil {
		return nil
	}
	return []id.UserID{id.UserID(*a.ev.StateKey)}
}

func (e *Engine) eventsOrErr(ctx context.Context, evID id.EventID) ([]*Event, error) {
	ev, err := e.Event(ctx, evID)
	if err != nil {
		return nil, err
	}
	return []*Event{ev}, nil
}

// runVisibleHooks runs the OnVisible hooks for the events of one write,
// on the database writer once they are visible.
func (e *Engine) runVisibleHooks(r *room, built []accepted) {
	for _, a := range built {
		info := newRoomInfo(r, a.after)
		for _, h := range e.OnVisible {
			h(a.ev, info)
		}
	}
}

func (e *Engine) runHooks(r *room, a accepted) {
	info := newRoomInfo(r, a.after)
	for _, h := range e.OnEvent {
		h(a.ev, info)
	}
}

// build turns a proto into a signed PDU on top of the room state st. It
// changes nothing: the event still has to pass the auth rules.
func (e *Engine) build(r *room, st *roomState, p Proto) (*Event, error) {
	content := p.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	ts := p.TS
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	depth := st.depth + 1
	if depth > maxDepth {
		depth = maxDepth
	}
	pd := &pdu.PDU{
		AuthEvents:     []id.EventID{},
		Content:        []byte(content),
		Depth:          depth,
		OriginServerTS: ts,
		PrevEvents:     prevEventsOf(st.extremities),
		RoomID:         r.id,
		Sender:         p.Sender,
		StateKey:       p.StateKey,
		Type:           p.Type,
	}
	if p.Type == "m.room.redaction" && p.Redacts != "" {
		if r.version.RedactsInContent() {
			var c map[string]any
			json.Unmarshal(content, &c)
			if c == nil {
				c = map[string]any{}
			}
			c["redacts"] = p.Redacts
			b, _ := json.Marshal(c)
			pd.Content = b
		}
		red := p.Redacts
		pd.Redacts = &red
	}
	if r.version.RoomIDIsCreateEventID() && p.Type == "m.room.create" {
		pd.RoomID = ""
	}
	for _, k := range pd.AuthEventSelection(r.version) {
		if ae := st.get(k.Type, k.StateKey); ae != nil {
			pd.AuthEvents = append(pd.AuthEvents, ae.ID)
		}
	}
	// Unsigned data clients expect on state events.
	if p.StateKey != nil {
		if prev := st.get(p.Type, *p.StateKey); prev != nil {
			u, _ := json.Marshal(map[string]any{
				"prev_content":   json.RawMessage(prev.PDU.Content),
				"replaces_state": prev.ID,
				"prev_sender":    prev.Sender,
			})
			pd.Unsigned = u
		}
	}
	var evID id.EventID
	var raw []byte
	if usesV1Format(r.version) {
		var err error
		if evID, raw, err = e.buildV1(r, st, pd); err != nil {
			return nil, mxhttp.BadJSON("event cannot be encoded as canonical JSON: %v", err)
		}
	} else {
		var err error
		if evID, err = e.sign(r.version, pd); err != nil {
			// Only the content can make signing fail: floats, integers
			// beyond 2^53, invalid UTF-8.
			return nil, mxhttp.BadJSON("event cannot be encoded as canonical JSON: %v", err)
		}
		if raw, err = json.Marshal(pd); err != nil {
			return nil, fmt.Errorf("encode event: %w", err)
		}
	}
	// The size limit applies to the PDU as sent over federation.
	if len(raw) > MaxEventBytes {
		return nil, mxhttp.TooLarge("event too large (%d bytes, limit %d)", len(raw), MaxEventBytes)
	}
	roomID := r.id
	if r.version.RoomIDIsCreateEventID() && p.Type == "m.room.create" {
		// The room ID is the create event's reference hash.
		roomID = id.RoomID("!" + strings.TrimPrefix(string(evID), "$"))
	}
	ev := &Event{
		ID: evID, RoomID: roomID, Type: p.Type, StateKey: p.StateKey, Sender: p.Sender,
		Depth: depth, TS: ts, PDU: pd, JSON: raw, TxnID: p.TxnID, DeviceID: p.DeviceID,
	}
	ev.RelType, ev.RelatesTo, ev.ThreadID = relationOf(content)
	return ev, nil
}

// sign signs pd, an event of room version v (3 and later) built here,
// and returns its event ID. The signature and the event ID (the reference
// hash) cover the same bytes, the event's signing form in canonical JSON,
// made once for both: pdu.PDU.Sign and pdu.PDU.GetEventID would each make
// it again.
func (e *Engine) sign(v id.RoomVersion, pd *pdu.PDU) (id.EventID, error) {
	if err := pd.FillContentHash(); err != nil {
		return "", err
	}
	signed, err := canonicaljson.Marshal(pd.Clone().RedactForSignature(v))
	if err != nil {
		return "", err
	}
	evID, err := referenceID(v, signed)
	if err != nil {
		return "", err
	}
	sig := ed25519.Sign(e.signer.Key, signed)
	pd.AddSignature(e.signer.ServerName, e.signer.KeyID, base64.RawStdEncoding.EncodeToString(sig))
	nameCreate(pd, evID)
	return evID, nil
}

// nameCreate has a create event of a room version whose event IDs are
// reference hashes carry its ID: the auth rules ask for the create
// event's ID on every join they check, and in room versions whose
// creators are privileged (12) for every event (the power levels name the
// create event), which with pdu.UseInternalMetaForGetEventID (stateres
// turns it on) reads it here instead of hashing the create event again.
func nameCreate(pd *pdu.PDU, evID id.EventID) {
	if pd.Type == "m.room.create" && pd.StateKey != nil && *pd.StateKey == "" {
		pd.InternalMeta.EventID = evID
	}
}

// relationOf extracts m.relates_to from content.
func relationOf(content []byte) (relType string, relatesTo, threadID id.EventID) {
	var c struct {
		RelatesTo *struct {
			RelType string     `json:"rel_type"`
			EventID id.EventID `json:"event_id"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || c.RelatesTo == nil {
		return "", "", ""
	}
	relType, relatesTo = c.RelatesTo.RelType, c.RelatesTo.EventID
	if relType == "m.thread" {
		threadID = relatesTo
	}
	return relType, relatesTo, threadID
}

// authorize checks ev against the room's auth rules, with its auth events
// taken from the state st it was built on.
func (e *Engine) authorize(ctx context.Context, r *room, st *roomState, ev *Event) error {
	if err := checkLocalEvent(r.version, st, ev); err != nil {
		return err
	}
	if check := e.StateChecks[ev.Type]; check != nil && ev.StateKey != nil {
		if err := check(json.RawMessage(ev.PDU.Content)); err != nil {
			return err
		}
	}
	authEvents := make([]*pdu.PDU, 0, len(ev.PDU.AuthEvents))
	for _, aid := range ev.PDU.AuthEvents {
		if ae, ok := st.byID[aid]; ok {
			authEvents = append(authEvents, ae.PDU)
		}
	}
	getEvents := func(ids []id.EventID) ([]*pdu.PDU, error) {
		out := make([]*pdu.PDU, 0, len(ids))
		for _, eid := range ids {
			if ae, ok := st.byID[eid]; ok {
				out = append(out, ae.PDU)
				continue
			}
			stored, err := e.Event(ctx, eid)
			if err != nil {
				return nil, err
			}
			out = append(out, stored.PDU)
		}
		return out, nil
	}
	version, checked := r.version, ev.PDU
	if usesV1Format(r.version) {
		// Rooms v1 and v2 share v3's auth rules; only their event format
		// differs. The rules compare prev_events with the create event's
		// ID, which mautrix computes in the v3 format, so translate it.
		version = id.RoomV3
		if create := st.get("m.room.create", ""); create != nil && len(checked.PrevEvents) == 1 && checked.PrevEvents[0] == create.ID {
			if v3ID, err := create.PDU.GetEventID(id.RoomV3); err == nil {
				c := *checked
				c.PrevEvents = []id.EventID{v3ID}
				checked = &c
			}
		}
	}
	if err := authorizeRules(version, checked, authEvents, getEvents, e.localKey); err != nil {
		return mxhttp.Forbidden("%s", authMessage(err))
	}
	if err := e.authorizeJoinVia(st, ev); err != nil {
		return err
	}
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		if err := e.authorizeRedaction(ctx, r, st, ev); err != nil {
			return err
		}
	}
	return nil
}

// authorizeRules runs the room version's auth rules. A panic in them (the
// library's, on content it did not expect) refuses the event.
func authorizeRules(version id.RoomVersion, ev *pdu.PDU, authEvents []*pdu.PDU,
	getEvents func([]id.EventID) ([]*pdu.PDU, error),
	getKey func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the auth rules could not check the event: %v", p)
		}
	}()
	if ev.Type == "m.room.member" && gjson.GetBytes(ev.Content, "third_party_invite").Exists() {
		return authorizeThirdPartyInvite(version, ev, authEvents, getEvents, getKey)
	}
	return eventauth.Authorize(version, ev, authEvents, getEvents, getKey)
}

// authorizeThirdPartyInvite runs the auth rules on ev, an invite from a
// third-party invite (content.third_party_invite). mautrix's rules
// (v0.33.0) cannot pass one: they look for the public keys in the invite's
// own content instead of the m.room.third_party_invite event, and verify
// an empty block. The spec's rule for it (5.4.1 of the invite rules) is
// applied here: the signed block names the invitee (mxid) and a token; the
// m.room.third_party_invite event of that token is among the auth events
// and has the invite's sender; one of its public keys signed the block.
// The other rules run on the invite without third_party_invite, which also
// asks, as for any invite, that the inviter is joined with the invite
// level (who sent the third-party invite needed that level) and the
// invitee neither joined nor banned.
func authorizeThirdPartyInvite(version id.RoomVersion, ev *pdu.PDU, authEvents []*pdu.PDU,
	getEvents func([]id.EventID) ([]*pdu.PDU, error),
	getKey func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error)) error {
	if authEvents == nil {
		var err error
		if authEvents, err = getEvents(ev.AuthEvents); err != nil {
			return fmt.Errorf("load auth events: %w", err)
		}
	}
	if err := checkThirdPartySigned(ev, authEvents); err != nil {
		return err
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(ev.Content, &content); err != nil {
		return mxhttp.BadJSON("invalid member event content")
	}
	delete(content, "third_party_invite")
	checked := *ev
	checked.Content, _ = json.Marshal(content)
	return eventauth.Authorize(version, &checked, authEvents, getEvents, getKey)
}

// checkThirdPartySigned is rule 5.4.1 (2 to 8) of the invite auth rules:
// ev's signed block against the m.room.third_party_invite event its token
// names among authEvents.
func checkThirdPartySigned(ev *pdu.PDU, authEvents []*pdu.PDU) error {
	signed := gjson.GetBytes(ev.Content, "third_party_invite.signed")
	mxid, token := signed.Get("mxid").Str, signed.Get("token").Str
	switch {
	case !signed.IsObject() || mxid == "" || token == "":
		return eventauth.ErrThirdPartyInviteMissingFields
	case ev.StateKey == nil || mxid != *ev.StateKey:
		return eventauth.ErrThirdPartyInviteMXIDMismatch
	}
	var tpi *pdu.PDU
	for _, ae := range authEvents {
		if ae != nil && ae.Type == "m.room.third_party_invite" && ae.StateKey != nil && *ae.StateKey == token {
			tpi = ae
		}
	}
	if tpi == nil {
		return eventauth.ErrThirdPartyInviteNotFound
	}
	if tpi.Sender != ev.Sender {
		return eventauth.ErrThirdPartyInviteSenderMismatch
	}
	keys := []gjson.Result{gjson.GetBytes(tpi.Content, "public_key")}
	keys = append(keys, gjson.GetBytes(tpi.Content, "public_keys.#.public_key").Array()...)
	for _, k := range keys {
		b, err := decodeBase64Key(k.Str)
		if err != nil {
			continue
		}
		key := id.SigningKey(base64.RawStdEncoding.EncodeToString(b))
		if signutil.VerifyJSONAny(key, json.RawMessage(signed.Raw)) == nil {
			return nil
		}
	}
	return eventauth.ErrThirdPartyInviteNotSigned
}

// decodeBase64Key reads an ed25519 public key in any of the base64 forms
// identity servers use (padded or not, standard or URL-safe).
func decodeBase64Key(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
			return b, nil
		}
	}
	return nil, errors.New("not an ed25519 public key")
}

func authMessage(err error) string {
	var afe eventauth.AuthFailError
	if errors.As(err, &afe) {
		return "event not allowed: " + afe.Message
	}
	return "event not allowed: " + err.Error()
}

// authorizeRedaction applies the redaction rule that the auth rules leave
// to the server: the redacter needs the redact power level unless it
// redacts its own event.
func (e *Engine) authorizeRedaction(ctx context.Context, r *room, st *roomState, ev *Event) error {
	pl := st.powerLevels()
	if pl.GetUserLevel(ev.Sender) >= pl.Redact() {
		return nil
	}
	target, err := e.Event(ctx, *ev.PDU.Redacts)
	if err != nil {
		return mxhttp.Forbidden("cannot redact an unknown event")
	}
	if target.Sender != ev.Sender || target.RoomID != r.id {
		return mxhttp.Forbidden("insufficient power level to redact another user's event")
	}
	return nil
}

// PowerLevels returns the room's current power levels.
func (e *Engine) PowerLevels(ctx context.Context, roomID id.RoomID) (*event.PowerLevelsEventContent, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return r.view().powerLevels(), nil
}

func newRoom(roomID id.RoomID, version id.RoomVersion) *room {
	return &room{
		id: roomID, version: version,
		head: emptyState, cur: emptyState, txns: map[string]*pendingTxn{},
	}
}

// snapshotFullEvery bounds delta chains: every this many state changes a
// snapshot stores the full state.
const snapshotFullEvery = 64

// persist writes one event, after which the room's state is after, inside
// the writer's transaction.
func (e *Engine) persist(ctx context.Context, tx *storage.Tx, r *room, ev *Event, after *roomState) error {
	pos := tx.NextPos()
	ev.Pos = pos
	ev.SnapshotBefore = r.dbSnapshot
	if ev.Type == "m.room.create" && ev.StateKey != nil && *ev.StateKey == "" {
		var c struct {
			RoomVersion string `json:"room_version"`
		}
		json.Unmarshal(ev.PDU.Content, &c)
		if _, err := tx.Exec(ctx, "INSERT INTO rooms (room_id, version, creator, created_ts) VALUES ($1, $2, $3, $4)",
			r.id, string(r.version), ev.Sender, ev.TS); err != nil {
			return fmt.Errorf("insert room: %w", err)
		}
	}
	if err := e.insertEvent(ctx, tx, r, ev); err != nil {
		return err
	}
	if ev.TxnID != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO transactions (user_id, device_id, scope, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT DO NOTHING`, ev.Sender, ev.DeviceID, eventTxnScope(r.id, ev), ev.TxnID, ev.ID, ev.TS); err != nil {
			return fmt.Errorf("insert transaction: %w", err)
		}
	}
	if ev.StateKey != nil {
		if err := e.persistState(ctx, tx, r, ev); err != nil {
			return err
		}
	}
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		if err := e.applyRedaction(ctx, tx, r, ev); err != nil {
			return err
		}
	}
	return e.finishPersist(ctx, tx, r, ev, after)
}

// runPersistHooks runs, in the write transaction of a.ev (inserted, with
// its position), the OnPersist hooks and then what its OnAccept hooks
// left (prepared). Every event that joins the timeline passes here: a
// sent or received one, and one a partial-state room's full state allows
// (writeAllowed).
func (e *Engine) runPersistHooks(ctx context.Context, tx *storage.Tx, r *room, a accepted, prepared []PersistFunc) error {
	if len(e.OnPersist) > 0 {
		info := newRoomInfo(r, a.after)
		for _, h := range e.OnPersist {
			if err := h(ctx, tx, a.ev, info); err != nil {
				return err
			}
		}
	}
	for _, f := range prepared {
		if err := f(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// finishPersist moves the room's row on for ev, an event just inserted,
// after which the room's state is after.
func (e *Engine) finishPersist(ctx context.Context, tx *storage.Tx, r *room, ev *Event, after *roomState) error {
	// Readers ignore positions above the visible one, but a failed write's
	// position can become visible with its batch: only committed events
	// join the recent events.
	tx.AfterCommit(func() { r.recent.add(ev) })
	ext, _ := json.Marshal(after.extremities)
	if _, err := tx.Exec(ctx, "UPDATE rooms SET snapshot = $1, depth = $2, extremities = $3, last_pos = $4 WHERE room_id = $5",
		r.dbSnapshot, after.depth, string(ext), ev.Pos, r.id); err != nil {
		return fmt.Errorf("update room: %w", err)
	}
	return nil
}

// insertEvent adds ev, whose Pos and SnapshotBefore are set, to the
// timeline.
func (e *Engine) insertEvent(ctx context.Context, tx *storage.Tx, r *room, ev *Event) error {
	if ev.RelatesTo != "" {
		// Once committed, before anyone learns of it: a reader that
		// queried before the commit (and found no relation) either
		// remembers its answer before this and is forgotten, or after
		// this and is refused (its generation has passed). Forgetting
		// before the commit would let a reader that began between the two
		// remember the old answer for good.
		tx.AfterCommit(e.nonTargets.invalidate)
	}
	if ev.Pos > 0 {
		tx.AfterCommit(func() { e.committed.add(ev) })
	}
	if _, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json,
		snapshot_before, txn_id, device_id, rel_type, relates_to, thread_id, gap)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		ev.Pos, ev.ID, r.id, ev.Type, ev.StateKey, ev.Sender, ev.Depth, ev.TS, string(ev.JSON), ev.SnapshotBefore,
		nullString(ev.TxnID), nullString(string(ev.DeviceID)), nullString(ev.RelType), nullString(string(ev.RelatesTo)), nullString(string(ev.ThreadID)),
		ev.Gap); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if err := insertEventAuthEdges(ctx, tx, r.id, ev); err != nil {
		return err
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// setSnapshot moves the room's latest written state snapshot to snap, a
// chain of that length, in tx's write; if the write does not commit, the
// room's snapshot goes back to the one before, so that the next write
// builds on a snapshot that is in the database.
func setSnapshot(tx *storage.Tx, r *room, snap int64, chain int) {
	prev, prevChain := r.dbSnapshot, r.dbChainLen
	tx.AfterAbort(func() { r.dbSnapshot, r.dbChainLen = prev, prevChain })
	r.dbSnapshot, r.dbChainLen = snap, chain
}

// persistState records a new state snapshot: a delta on the previous one,
// or the full state every snapshotFullEvery changes.
func (e *Engine) persistState(ctx context.Context, tx *storage.Tx, r *room, ev *Event) error {
	parent := r.dbSnapshot
	chain := r.dbChainLen + 1
	entries := map[stateKey]id.EventID{{ev.Type, *ev.StateKey}: ev.ID}
	if parent == 0 || chain >= snapshotFullEvery {
		full, _, err := e.snapshotStateTx(ctx, tx, parent)
		if err != nil {
			return err
		}
		for k, v := range full {
			if _, ok := entries[k]; !ok {
				entries[k] = v
			}
		}
		parent, chain = 0, 0
	}
	snap := ev.Pos
	if _, err := tx.Exec(ctx, "INSERT INTO state_snapshots (snapshot_id, room_id, parent_id, chain_len) VALUES ($1, $2, $3, $4)",
		snap, r.id, parent, chain); err != nil {
		return fmt.Errorf("insert snapshot: %w", err)
	}
	for k, v := range entries {
		if _, err := tx.Exec(ctx, "INSERT INTO state_snapshot_entries (snapshot_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)",
			snap, k.Type, k.StateKey, v); err != nil {
			return fmt.Errorf("insert snapshot entry: %w", err)
		}
	}
	setSnapshot(tx, r, snap, chain)
	if ev.Type == "m.room.member" {
		return upsertMembership(ctx, tx, r.id, ev, ev.Pos)
	}
	return nil
}

// upsertMembership records member, a member event of the room's current
// state, as its user's membership as of position pos.
func upsertMembership(ctx context.Context, tx *storage.Tx, roomID id.RoomID, member *Event, pos int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos, forgotten) VALUES ($1, $2, $3, $4, $5, FALSE)
		ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = FALSE`,
		roomID, *member.StateKey, member.Membership(), member.ID, pos); err != nil {
		return fmt.Errorf("update membership: %w", err)
	}
	return nil
}

// snapshotState returns the state (type/state_key -> event ID) of a snapshot.
// snapshotState returns the state of a committed snapshot. The map is
// shared with the snapshot cache and must not be modified.
func (e *Engine) snapshotState(ctx context.Context, snap int64) (map[stateKey]id.EventID, int, error) {
	if st, ok := e.snaps.get(snap); ok {
		return st.state, st.chainLen, nil
	}
	gen := e.snaps.generation()
	state, chainLen, err := e.snapshotStateQ(ctx, e.db.QueryRow, e.db.Query, snap)
	if err == nil {
		e.snaps.putAt(gen, snap, &resolvedSnapshot{state: state, chainLen: chainLen})
	}
	return state, chainLen, err
}

// snapshotStateTx reads a snapshot inside the writer's transaction, where
// snapshots of the same batch are not committed yet: the result is never
// cached, and the map must not be modified either.
func (e *Engine) snapshotStateTx(ctx context.Context, tx *storage.Tx, snap int64) (map[stateKey]id.EventID, int, error) {
	return e.snapshotStateQ(ctx, tx.QueryRow, tx.Query, snap)
}

func (e *Engine) snapshotStateQ(ctx context.Context,
	queryRow func(context.Context, string, ...any) *sql.Row,
	query func(context.Context, string, ...any) (*sql.Rows, error),
	snap int64) (map[stateKey]id.EventID, int, error) {
	out := map[stateKey]id.EventID{}
	if snap == 0 {
		return out, 0, nil
	}
	// Walk up the delta chain, stopping at a cached (committed) ancestor;
	// nearer snapshots win.
	var chain []int64
	chainLen := -1
	for cur := snap; cur != 0; {
		if base, ok := e.snaps.get(cur); ok {
			for k, v := range base.state {
				out[k] = v
			}
			if chainLen < 0 {
				chainLen = base.chainLen
			}
			break
		}
		chain = append(chain, cur)
		var parent int64
		var cl int
		if err := queryRow(ctx, "SELECT parent_id, chain_len FROM state_snapshots WHERE snapshot_id = $1", cur).Scan(&parent, &cl); err != nil {
			return nil, 0, fmt.Errorf("load snapshot %d: %w", cur, err)
		}
		if cur == snap {
			chainLen = cl
		}
		cur = parent
	}
	chainLen = max(chainLen, 0)
	for i := len(chain) - 1; i >= 0; i-- {
		rows, err := query(ctx, "SELECT type, state_key, event_id FROM state_snapshot_entries WHERE snapshot_id = $1", chain[i])
		if err != nil {
			return nil, 0, fmt.Errorf("load snapshot entries: %w", err)
		}
		for rows.Next() {
			var k stateKey
			var v id.EventID
			if err := rows.Scan(&k.Type, &k.StateKey, &v); err != nil {
				rows.Close()
				return nil, 0, err
			}
			out[k] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
	}
	return out, chainLen, nil
}

// applyRedaction redacts the target event as stored: in the timeline, or
// beside it (the state of a room joined over federation is held as
// outliers, and served by /event and /state as stored).
func (e *Engine) applyRedaction(ctx context.Context, tx *storage.Tx, r *room, red *Event) error {
	targetID := *red.PDU.Redacts
	var raw, redactedBy string
	var roomID id.RoomID
	outlier := false
	err := tx.QueryRow(ctx, "SELECT json, room_id, COALESCE(redacted_by, '') FROM events WHERE event_id = $1", targetID).Scan(&raw, &roomID, &redactedBy)
	if errors.Is(err, sql.ErrNoRows) {
		outlier = true
		err = tx.QueryRow(ctx, "SELECT json, room_id FROM outlier_events WHERE event_id = $1", targetID).Scan(&raw, &roomID)
		redactedBy = string(redactedByOf([]byte(raw)))
	}
	if errors.Is(err, sql.ErrNoRows) {
		// Redacting an unknown event is allowed; it is applied if the
		// event arrives later (over federation).
		if _, err := tx.Exec(ctx, "INSERT INTO pending_redactions (target_id, redaction_id, room_id, received_ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			targetID, red.ID, r.id, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("remember redaction: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("load redaction target: %w", err)
	}
	if roomID != r.id {
		return nil
	}
	if r.partial.Load() != nil && redactedBy == "" {
		// The full state may yet refuse the redaction (partial.go,
		// unredact): the target as it was is kept until then.
		if _, err := tx.Exec(ctx, "INSERT INTO partial_redacted (event_id, room_id, original_json) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			targetID, r.id, raw); err != nil {
			return fmt.Errorf("keep the redaction's target: %w", err)
		}
	}
	because, _ := json.Marshal(red.Client(ClientOptions{}))
	unsigned, _ := json.Marshal(map[string]json.RawMessage{"redacted_because": because})
	b, err := redactStored([]byte(raw), r.version, unsigned)
	if err != nil {
		return fmt.Errorf("redact event: %w", err)
	}
	if outlier {
		_, err = tx.Exec(ctx, "UPDATE outlier_events SET json = $1 WHERE event_id = $2", string(b), targetID)
	} else {
		_, err = tx.Exec(ctx, "UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3", string(b), red.ID, targetID)
	}
	if err != nil {
		return fmt.Errorf("store redacted event: %w", err)
	}
	p, err := parsePDU(b)
	if err != nil {
		return fmt.Errorf("parse redacted event: %w", err)
	}
	tx.AfterCommit(func() { e.rewritten(r, targetID, p, b, red.ID) })
	return nil
}

// rewritten makes the caches follow an event whose stored JSON and
// redaction changed (redacted, or restored by unredact in partial.go):
// the newest events in memory get the new copy, the event cache forgets
// it. It runs after the commit.
func (e *Engine) rewritten(r *room, evID id.EventID, p *pdu.PDU, raw []byte, redactedBy id.EventID) {
	if old := r.recent.find(evID); old != nil {
		cp := *old
		cp.PDU, cp.JSON, cp.RedactedBy = p, raw, redactedBy
		r.recent.replace(&cp)
		e.committed.replace(&cp)
	}
	e.cache.drop(evID)
}

// Event loads one event by ID: of the timeline, or an outlier (a soft-
// failed or rejected one answers not found).
func (e *Engine) Event(ctx context.Context, evID id.EventID) (*Event, error) {
	if ev := e.cache.get(evID); ev != nil {
		if ev.SoftFailed || ev.Rejected {
			return nil, errSoftFailed
		}
		return ev, nil
	}
	evs, err := e.queryEvents(ctx, "WHERE event_id = $1", evID)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		if evs, err = e.outliers(ctx, []id.EventID{evID}, false); err != nil {
			return nil, err
		}
	}
	if len(evs) == 0 {
		return nil, mxhttp.NotFound("event not found")
	}
	e.cache.put(evs[0])
	if evs[0].SoftFailed || evs[0].Rejected {
		return nil, errSoftFailed
	}
	return evs[0], nil
}

// TimelineEventTx loads a timeline event by ID as tx sees it, for a hook
// that runs inside a write: an OnReject hook reads there the target of a
// refused redaction that the same write restored. It answers nil when
// the timeline lacks the event.
func (e *Engine) TimelineEventTx(ctx context.Context, tx *storage.Tx, evID id.EventID) (*Event, error) {
	rows, err := tx.Query(ctx, "SELECT "+eventColumns+" FROM events WHERE event_id = $1", evID)
	if err != nil {
		return nil, fmt.Errorf("query event: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	return scanEvent(rows)
}

// errSoftFailed answers a request for a soft-failed event by ID: such
// events are never shown (they load only as state a resolution picked);
// so does a timeline event the full state of a room joined with partial
// state refused (partial.go).
var errSoftFailed = mxhttp.NotFound("event not found")

// Events loads events by ID, from the cache or in batched queries. Unknown
// IDs are skipped, duplicates are loaded once, and the order is not kept.
func (e *Engine) Events(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	out := make([]*Event, 0, len(ids))
	var missing []id.EventID
	seen := map[id.EventID]bool{}
	for _, eid := range ids {
		if seen[eid] {
			continue
		}
		seen[eid] = true
		if ev := e.cache.get(eid); ev != nil {
			out = append(out, ev)
		} else {
			missing = append(missing, eid)
		}
	}
	err := inChunks(missing, func(part []id.EventID) error {
		evs, err := e.queryEvents(ctx, "WHERE event_id IN ("+placeholders(1, len(part))+")", anySlice(part)...)
		if err != nil {
			return err
		}
		if len(evs) < len(part) {
			// The state of a room joined over federation is made of
			// outliers.
			found := make(map[id.EventID]bool, len(evs))
			for _, ev := range evs {
				found[ev.ID] = true
			}
			var rest []id.EventID
			for _, eid := range part {
				if !found[eid] {
					rest = append(rest, eid)
				}
			}
			more, err := e.outliers(ctx, rest, false)
			if err != nil {
				return err
			}
			evs = append(evs, more...)
		}
		for _, ev := range evs {
			e.cache.put(ev)
		}
		out = append(out, evs...)
		return nil
	})
	return out, err
}

const eventColumns = `pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json, snapshot_before, rejected,
	COALESCE(redacted_by, ''), COALESCE(txn_id, ''), COALESCE(device_id, ''), COALESCE(rel_type, ''), COALESCE(relates_to, ''), COALESCE(thread_id, ''), gap`

// queryEvents runs "SELECT <event columns> FROM events <where>".
func (e *Engine) queryEvents(ctx context.Context, where string, args ...any) ([]*Event, error) {
	rows, err := e.db.Query(ctx, "SELECT "+eventColumns+" FROM events "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

func scanEvent(rows *sql.Rows) (*Event, error) {
	ev := &Event{}
	var sk sql.NullString
	var raw string
	if err := rows.Scan(&ev.Pos, &ev.ID, &ev.RoomID, &ev.Type, &sk, &ev.Sender, &ev.Depth, &ev.TS, &raw, &ev.SnapshotBefore,
		&ev.Rejected, &ev.RedactedBy, &ev.TxnID, &ev.DeviceID, &ev.RelType, &ev.RelatesTo, &ev.ThreadID, &ev.Gap); err != nil {
		return nil, fmt.Errorf("scan event: %w", err)
	}
	if sk.Valid {
		ev.StateKey = &sk.String
	}
	ev.JSON = []byte(raw)
	var err error
	if ev.PDU, err = parsePDU(ev.JSON); err != nil {
		return nil, fmt.Errorf("decode event %s: %w", ev.ID, err)
	}
	if ev.Type == "m.room.create" && !isV1Format(ev.JSON) {
		nameCreate(ev.PDU, ev.ID)
	}
	ev.PDU.InternalMeta.Rejected = ev.Rejected
	return ev, nil
}

// StateAt returns the state before the event at snapshot snap, plus the
// event itself if it is a state event and after is set.
func (e *Engine) StateAt(ctx context.Context, snap int64) ([]*Event, error) {
	ids, _, err := e.snapshotState(ctx, snap)
	if err != nil {
		return nil, err
	}
	evs, err := e.Events(ctx, mapValues(ids))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(evs, func(a, b *Event) int { return int(a.Pos - b.Pos) })
	return evs, nil
}

// StateAfter returns the room state just after ev. The state at
// backfilled history is not known here: for it, the state before the
// first event this node stored itself is the nearest answer.
func (e *Engine) StateAfter(ctx context.Context, ev *Event) ([]*Event, error) {
	if ev.Backfilled() {
		snap, err := e.firstStoredSnapshot(ctx, ev.RoomID)
		if err != nil {
			return nil, err
		}
		return e.StateAt(ctx, snap)
	}
	if ev.IsState() {
		return e.StateAt(ctx, ev.Pos)
	}
	return e.StateAt(ctx, ev.SnapshotBefore)
}

// RoomEvents returns up to limit events of a room with from < pos <= to,
// newest first when backwards, oldest first otherwise.
func (e *Engine) RoomEvents(ctx context.Context, roomID id.RoomID, from, to int64, limit int, backwards bool) ([]*Event, error) {
	if r, err := e.room(ctx, roomID); err == nil {
		if evs, ok := e.recentEvents(ctx, r, from, to, limit, backwards); ok {
			return evs, nil
		}
	}
	order := "ASC"
	if backwards {
		order = "DESC"
	}
	return e.queryEvents(ctx, "WHERE room_id = $1 AND pos > $2 AND pos <= $3 AND rejected = FALSE ORDER BY pos "+order+" LIMIT $4", roomID, from, to, limit)
}

// AllRooms lists every room the node knows.
func (e *Engine) AllRooms(ctx context.Context) ([]id.RoomID, error) {
	rows, err := e.db.Query(ctx, "SELECT room_id FROM rooms ORDER BY room_id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []id.RoomID
	for rows.Next() {
		var r id.RoomID
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
