// Package search owns server-side search (/search): a full-text index of
// message bodies, room names and topics, on SQLite FTS5 or PostgreSQL
// text search behind one interface. The index follows the committed
// events (internal/follower), off the send path: a send's commit writes
// no index page, and the follower adds many events' text in one
// transaction with its durable mark, every 30 seconds or after 256
// messages, not after each send. A search first brings the index up
// to the position visible when it arrived, so it finds every message
// sent before it, as if the index were written with the events.
package search

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// Migrations are the search tables: one portable table of indexed events,
// and the engine's own full-text index.
var Migrations = []storage.Migration{{
	Component: "search",
	Version:   1,
	SQLite: `
CREATE TABLE search_events (pos BIGINT PRIMARY KEY, room_id TEXT NOT NULL, sender TEXT NOT NULL, key TEXT NOT NULL, origin_ts BIGINT NOT NULL);
CREATE INDEX search_events_room ON search_events (room_id, pos);
CREATE VIRTUAL TABLE search_fts USING fts5(text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
`,
	Postgres: `
CREATE TABLE search_events (pos BIGINT PRIMARY KEY, room_id TEXT NOT NULL, sender TEXT NOT NULL, key TEXT NOT NULL, origin_ts BIGINT NOT NULL, vec tsvector NOT NULL);
CREATE INDEX search_events_room ON search_events (room_id, pos);
CREATE INDEX search_events_vec ON search_events USING GIN (vec);
`,
}, {
	// On SQLite an indexed event's position is its row's key (INTEGER
	// PRIMARY KEY), as it is the full-text index's rowid, not a column
	// with a unique index of its own: one B-tree and one page less in
	// every send's commit. PostgreSQL keeps its BIGINT key.
	Component: "search",
	Version:   2,
	SQLite: `
CREATE TABLE search_events_by_pos (pos INTEGER PRIMARY KEY, room_id TEXT NOT NULL, sender TEXT NOT NULL, key TEXT NOT NULL, origin_ts BIGINT NOT NULL);
INSERT INTO search_events_by_pos (pos, room_id, sender, key, origin_ts)
	SELECT pos, room_id, sender, key, origin_ts FROM search_events ORDER BY pos;
DROP TABLE search_events;
ALTER TABLE search_events_by_pos RENAME TO search_events;
CREATE INDEX search_events_room ON search_events (room_id, pos);
`,
}, {
	// The index follows the committed events from a durable mark instead
	// of being written in each event's transaction. Every event up to the
	// newest indexed one was indexed by the old hook; the follower reads
	// again those after it, which only costs a scan (indexing is
	// idempotent).
	Component: "search",
	Version:   3,
	SQL: `
CREATE TABLE search_marks (follower TEXT PRIMARY KEY, pos BIGINT NOT NULL);
INSERT INTO search_marks (follower, pos) SELECT 'search', COALESCE(MAX(pos), 0) FROM search_events;
`,
}}

const (
	// stepSize is the most events one step of the follower indexes: the
	// step's write shares the writer's batch with sends, which wait for
	// it, so it stays a few milliseconds (500 made the sends of a burst
	// wait about 20 ms each time the follower ran).
	stepSize = 32
	// followInterval is how often the follower indexes what was sent
	// since its last round, and wakeEvery how many sends wake it sooner:
	// a search catches the index up itself, at most about wakeEvery
	// events, so the follower's commits, whose fdatasync delays the send
	// that comes during one, are few when the sends are.
	followInterval = 30 * time.Second
	wakeEvery      = 256
)

// Service indexes events and answers /search.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	accounts *accounts.Service
	rooms    *rooms.Engine

	mark     *follower.Mark
	follower *follower.Follower
}

// New returns the service and registers its hooks on the engine; Start
// starts the follower that keeps the index.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine) *Service {
	s := &Service{db: db, log: log, accounts: acc, rooms: eng, mark: follower.NewMark(db, "search_marks", "search")}
	s.follower = follower.New("search", followInterval, log, s.step)
	s.follower.WakeEvery(wakeEvery)
	eng.OnEvent = append(eng.OnEvent, s.onEvent)
	eng.OnPurge = append(eng.OnPurge, s.purge)
	eng.OnReject = append(eng.OnReject, s.reject)
	return s
}

// Start starts the follower that indexes the committed events.
func (s *Service) Start() { s.follower.Start() }

// Close stops the follower.
func (s *Service) Close() { s.follower.Close() }

// CatchUp indexes every committed event at once (tests).
func (s *Service) CatchUp(ctx context.Context) error { return s.follower.CatchUp(ctx) }

// followed are the event types the index follows: the indexed ones and
// redactions, which take their target out.
var followed = []string{"m.room.message", "m.room.name", "m.room.topic", "m.room.redaction"}

// onEvent is the room engine's hook: it wakes the follower for the events
// it indexes. It never blocks.
func (s *Service) onEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Type == "m.room.redaction" || indexed[ev.Type] != "" {
		s.follower.Wake()
	}
}

// step indexes the next committed events (at most stepSize), the index
// rows and the mark in one transaction, and reports whether more may be
// waiting. The follower runs one at a time (Follower.Step).
func (s *Service) step(ctx context.Context) (more bool, err error) {
	mark, err := s.mark.Pos(ctx)
	if err != nil {
		return false, err
	}
	visible := s.db.Visible()
	if visible <= mark {
		return false, nil
	}
	evs, through, err := s.rooms.CommittedEvents(ctx, mark, visible, rooms.EventFilter{Types: followed}, stepSize)
	if err != nil {
		return false, fmt.Errorf("read events to index: %w", err)
	}
	more = through < visible
	if len(evs) == 0 {
		return more, s.mark.Skip(ctx, through)
	}
	if err := s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, ev := range evs {
			if err := s.index(ctx, tx, ev); err != nil {
				return err
			}
		}
		return s.mark.SetTx(ctx, tx, through)
	}); err != nil {
		return false, fmt.Errorf("index events: %w", err)
	}
	return more, nil
}

// caughtUp brings the index up to pos, the position visible when a search
// arrived: the follower may not have reached it yet.
func (s *Service) caughtUp(ctx context.Context, pos int64) error {
	for {
		mark, err := s.mark.Pos(ctx)
		if err != nil || mark >= pos {
			return err
		}
		if _, err := s.follower.Step(ctx); err != nil {
			return err
		}
	}
}

// reject drops an event taken out of the timeline from the index (a
// rooms.Engine OnReject hook). A redaction taken out gives its target
// back, restored by the engine in the same write: it is indexed again.
func (s *Service) reject(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		target, err := s.rooms.TimelineEventTx(ctx, tx, *ev.PDU.Redacts)
		if err != nil {
			return fmt.Errorf("the refused redaction's target: %w", err)
		}
		if target != nil && target.RedactedBy == "" && !target.Rejected {
			if err := s.index(ctx, tx, target); err != nil {
				return err
			}
		}
	}
	return s.unindexPos(ctx, tx, ev.Pos)
}

// purge drops a purged room's messages from the index.
func (s *Service) purge(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if tx.Dialect() == storage.SQLite {
		if _, err := tx.Exec(ctx, "DELETE FROM search_fts WHERE rowid IN (SELECT pos FROM search_events WHERE room_id = $1)", roomID); err != nil {
			return fmt.Errorf("purge search index: %w", err)
		}
	}
	_, err := tx.Exec(ctx, "DELETE FROM search_events WHERE room_id = $1", roomID)
	return err
}

// Routes registers /search.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /_matrix/client/v3/search", s.accounts.Auth(s.handleSearch))
}

// indexed maps event types to the content key that is indexed.
var indexed = map[string]string{
	"m.room.message": "content.body",
	"m.room.name":    "content.name",
	"m.room.topic":   "content.topic",
}

// index adds ev to the index, or takes out a redaction's target, in the
// follower's transaction. It is idempotent, and indexes nothing of an event
// purged or rejected since it was read: a rejection's OnReject hook,
// committed before this transaction, found no row to take out.
func (s *Service) index(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		return s.unindex(ctx, tx, *ev.PDU.Redacts, ev.Pos)
	}
	key, ok := indexed[ev.Type]
	if !ok {
		return nil
	}
	// One field of the content, read in place rather than decoding the
	// whole content on the writer.
	field := gjson.GetBytes(ev.Content(), strings.TrimPrefix(key, "content."))
	text := field.Str
	if field.Type != gjson.String || text == "" {
		return nil
	}
	if len(text) > 16384 {
		text = text[:16384]
	}
	if tx.Dialect() == storage.Postgres {
		_, err := tx.Exec(ctx, `INSERT INTO search_events (pos, room_id, sender, key, origin_ts, vec)
			SELECT CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS BIGINT), to_tsvector('simple', CAST($6 AS TEXT))
			WHERE EXISTS (SELECT 1 FROM events WHERE pos = $1 AND rejected = FALSE) ON CONFLICT DO NOTHING`, ev.Pos, ev.RoomID, ev.Sender, key, ev.TS, text)
		if err != nil {
			return fmt.Errorf("index event: %w", err)
		}
		return nil
	}
	res, err := tx.Exec(ctx, `INSERT INTO search_events (pos, room_id, sender, key, origin_ts)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM events WHERE pos = $1 AND rejected = FALSE) ON CONFLICT DO NOTHING`,
		ev.Pos, ev.RoomID, ev.Sender, key, ev.TS)
	if err != nil {
		return fmt.Errorf("index event: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // purged, or indexed before
	}
	if _, err := tx.Exec(ctx, `INSERT INTO search_fts (rowid, text) VALUES ($1, $2)`, ev.Pos, text); err != nil {
		return fmt.Errorf("index event text: %w", err)
	}
	return nil
}

// unindex takes out the target of the redaction at redPos, unless the
// redaction was rejected since it was read (its target is back).
func (s *Service) unindex(ctx context.Context, tx *storage.Tx, target id.EventID, redPos int64) error {
	var pos int64
	if err := tx.QueryRow(ctx, "SELECT pos FROM events WHERE event_id = $1 AND EXISTS (SELECT 1 FROM events WHERE pos = $2 AND rejected = FALSE)", target, redPos).Scan(&pos); err != nil {
		return nil // unknown event, or a rejected redaction: nothing to take out
	}
	return s.unindexPos(ctx, tx, pos)
}

// unindexPos drops the event at pos from the index.
func (s *Service) unindexPos(ctx context.Context, tx *storage.Tx, pos int64) error {
	if _, err := tx.Exec(ctx, "DELETE FROM search_events WHERE pos = $1", pos); err != nil {
		return err
	}
	if tx.Dialect() == storage.SQLite {
		if _, err := tx.Exec(ctx, "DELETE FROM search_fts WHERE rowid = $1", pos); err != nil {
			return err
		}
	}
	return nil
}

type searchRequest struct {
	SearchCategories struct {
		RoomEvents *roomEventsCriteria `json:"room_events"`
	} `json:"search_categories"`
}

type roomEventsCriteria struct {
	SearchTerm   string                `json:"search_term"`
	Keys         []string              `json:"keys"`
	Filter       *sync.RoomEventFilter `json:"filter"`
	OrderBy      string                `json:"order_by"`
	EventContext *struct {
		BeforeLimit    *int `json:"before_limit"`
		AfterLimit     *int `json:"after_limit"`
		IncludeProfile bool `json:"include_profile"`
	} `json:"event_context"`
	IncludeState bool `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// terms splits a search term into words for both engines' query syntax.
func terms(q string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(q, func(r rune) bool {
		return !(r == '_' || r == '-' || r == '\'' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127)
	}) {
		if f = strings.Trim(f, "-'"); f != "" {
			out = append(out, strings.ToLower(f))
		}
		if len(out) == 16 {
			break
		}
	}
	return out
}

const maxLimit = 100

func (s *Service) handleSearch(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req searchRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	c := req.SearchCategories.RoomEvents
	if c == nil {
		return map[string]any{"search_categories": map[string]any{}}, nil
	}
	if c.SearchTerm == "" {
		return nil, mxhttp.MissingParam("missing search_term")
	}
	switch c.OrderBy {
	case "", "rank", "recent":
	default:
		return nil, mxhttp.InvalidParam("order_by must be rank or recent")
	}
	keys := c.Keys
	if len(keys) == 0 {
		keys = []string{"content.body", "content.name", "content.topic"}
	}
	for _, k := range keys {
		if k != "content.body" && k != "content.name" && k != "content.topic" {
			return nil, mxhttp.InvalidParam("unknown search key %q", k)
		}
	}
	offset := 0
	if nb := r.URL.Query().Get("next_batch"); nb != "" {
		n, err := strconv.Atoi(nb)
		if err != nil || n < 0 {
			return nil, mxhttp.InvalidParam("invalid next_batch")
		}
		offset = n
	}
	limit := 10
	if c.Filter != nil && c.Filter.Limit != nil {
		limit = min(max(*c.Filter.Limit, 1), maxLimit)
	}
	// Rooms the user may search: joined ones, narrowed by the filter.
	var roomIDs []id.RoomID
	for _, rid := range s.rooms.JoinedRooms(sess.UserID) {
		if c.Filter == nil || c.Filter.AllowsRoom(rid) {
			roomIDs = append(roomIDs, rid)
		}
	}
	if err := s.caughtUp(r.Context(), s.db.Visible()); err != nil {
		return nil, err
	}
	words := terms(c.SearchTerm)
	result := map[string]any{"count": 0, "results": []any{}, "highlights": words}
	if len(roomIDs) == 0 || len(words) == 0 {
		return map[string]any{"search_categories": map[string]any{"room_events": result}}, nil
	}
	hits, scanned, total, err := s.query(r.Context(), words, roomIDs, keys, c.OrderBy == "recent", offset, limit, c.Filter)
	if err != nil {
		return nil, err
	}
	ids := make([]id.EventID, len(hits))
	for i, h := range hits {
		ids[i] = h.eventID
	}
	evs, err := s.rooms.Events(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*rooms.Event, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	results := []any{}
	visCache := map[id.RoomID]*rooms.Visibility{}
	groups := map[string]map[string]map[string]any{}
	for _, h := range hits {
		ev := byID[h.eventID]
		if ev == nil || ev.Rejected {
			// A rejected one: the full state of a room joined with
			// partial state refused it after it was indexed.
			continue
		}
		vis, ok := visCache[ev.RoomID]
		if !ok {
			if vis, err = s.rooms.Visibility(r.Context(), ev.RoomID, sess.UserID); err != nil {
				return nil, err
			}
			visCache[ev.RoomID] = vis
		}
		if !vis.CanSee(ev) {
			continue
		}
		item := map[string]any{"rank": h.rank, "result": ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID})}
		if c.EventContext != nil {
			item["context"] = s.context(r.Context(), ev, sess, vis, c.EventContext.BeforeLimit, c.EventContext.AfterLimit, c.EventContext.IncludeProfile)
		}
		results = append(results, item)
		if c.Groupings != nil {
			for _, g := range c.Groupings.GroupBy {
				var k string
				switch g.Key {
				case "room_id":
					k = string(ev.RoomID)
				case "sender":
					k = string(ev.Sender)
				default:
					continue
				}
				if groups[g.Key] == nil {
					groups[g.Key] = map[string]map[string]any{}
				}
				grp := groups[g.Key][k]
				if grp == nil {
					grp = map[string]any{"results": []id.EventID{}, "order": len(groups[g.Key]) + 1}
					groups[g.Key][k] = grp
				}
				grp["results"] = append(grp["results"].([]id.EventID), ev.ID)
			}
		}
	}
	result["results"] = results
	result["count"] = total
	if len(groups) > 0 {
		result["groups"] = groups
	}
	// A full page gets a next_batch even when it ends with the last match:
	// the spec only promises that an absent next_batch means no more
	// results, and clients written against Synapse (and sytest) page on
	// until a page comes back short.
	if scanned == limit {
		result["next_batch"] = strconv.Itoa(offset + scanned)
	}
	if c.IncludeState {
		state := map[id.RoomID][]any{}
		for _, rid := range roomIDs {
			evs, err := s.rooms.CurrentState(r.Context(), rid)
			if err != nil {
				continue
			}
			for _, st := range evs {
				state[rid] = append(state[rid], st.Client(rooms.ClientOptions{User: sess.UserID}))
			}
		}
		result["state"] = state
	}
	return map[string]any{"search_categories": map[string]any{"room_events": result}}, nil
}

type hit struct {
	eventID id.EventID
	rank    float64
}

// query runs the engine's full-text search. Filters on senders and types
// are applied in SQL where they map to columns; scanned counts the page's
// rows before the rest of the filter, for the next page's offset.
func (s *Service) query(ctx context.Context, words []string, roomIDs []id.RoomID, keys []string, recent bool, offset, limit int, f *sync.RoomEventFilter) (hits []hit, scanned, total int, err error) {
	var args []any
	var match, rankExpr, from string
	if s.db.Dialect == storage.Postgres {
		args = append(args, strings.Join(words, " "))
		from = "search_events s CROSS JOIN plainto_tsquery('simple', $1) q"
		match = "s.vec @@ q"
		rankExpr = "ts_rank(s.vec, q)"
	} else {
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = `"` + strings.ReplaceAll(w, `"`, `""`) + `"`
		}
		args = append(args, strings.Join(quoted, " "))
		from = "search_fts JOIN search_events s ON s.pos = search_fts.rowid"
		match = "search_fts MATCH $1"
		rankExpr = "-bm25(search_fts)"
	}
	where := match
	where += " AND s.room_id IN (" + storage.Placeholders(len(args)+1, len(roomIDs)) + ")"
	for _, r := range roomIDs {
		args = append(args, r)
	}
	where += " AND s.key IN (" + storage.Placeholders(len(args)+1, len(keys)) + ")"
	for _, k := range keys {
		args = append(args, k)
	}
	if f != nil {
		if f.Senders != nil && len(*f.Senders) > 0 {
			where += " AND s.sender IN (" + storage.Placeholders(len(args)+1, len(*f.Senders)) + ")"
			for _, u := range *f.Senders {
				args = append(args, u)
			}
		}
		for _, u := range f.NotSenders {
			args = append(args, u)
			where += " AND s.sender <> $" + strconv.Itoa(len(args))
		}
	}
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM "+from+" WHERE "+where, args...).Scan(&total); err != nil {
		return nil, 0, 0, fmt.Errorf("count search results: %w", err)
	}
	order := "rank DESC, s.pos DESC"
	if recent {
		order = "s.pos DESC"
	}
	args = append(args, limit, offset)
	q := "SELECT e.event_id, e.type, e.sender, " + rankExpr + " AS rank FROM " + from + " JOIN events e ON e.pos = s.pos WHERE " + where +
		" ORDER BY " + order + " LIMIT $" + strconv.Itoa(len(args)-1) + " OFFSET $" + strconv.Itoa(len(args))
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		scanned++
		var h hit
		var typ string
		var sender id.UserID
		if err := rows.Scan(&h.eventID, &typ, &sender, &h.rank); err != nil {
			return nil, 0, 0, err
		}
		if f != nil && !f.Allows(typ, sender) {
			continue
		}
		hits = append(hits, h)
	}
	return hits, scanned, total, rows.Err()
}

// context builds a result's event context.
func (s *Service) context(ctx context.Context, ev *rooms.Event, sess *accounts.Session, vis *rooms.Visibility, before, after *int, profile bool) map[string]any {
	nb, na := 5, 5
	if before != nil {
		nb = min(max(*before, 0), 50)
	}
	if after != nil {
		na = min(max(*after, 0), 50)
	}
	opts := rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID}
	render := func(evs []*rooms.Event) []any {
		out := []any{}
		for _, e := range vis.FilterVisible(evs) {
			out = append(out, e.Client(opts))
		}
		return out
	}
	out := map[string]any{"start": sync.Token{Pos: ev.Pos - 1}.String(), "end": sync.Token{Pos: ev.Pos}.String()}
	if bs, err := s.rooms.RoomEvents(ctx, ev.RoomID, 0, ev.Pos-1, nb, true); err == nil {
		out["events_before"] = render(bs)
		if len(bs) > 0 {
			out["start"] = sync.Token{Pos: bs[len(bs)-1].Pos - 1}.String()
		}
	}
	if as, err := s.rooms.RoomEvents(ctx, ev.RoomID, ev.Pos, s.db.Visible(), na, false); err == nil {
		out["events_after"] = render(as)
		if len(as) > 0 {
			out["end"] = sync.Token{Pos: as[len(as)-1].Pos}.String()
		}
	}
	if profile {
		info := map[id.UserID]map[string]any{}
		if m, err := s.rooms.StateEvent(ctx, ev.RoomID, "m.room.member", string(ev.Sender)); err == nil && m != nil {
			var c map[string]any
			json.Unmarshal(m.Content(), &c)
			p := map[string]any{}
			for _, k := range []string{"displayname", "avatar_url"} {
				if v, ok := c[k]; ok {
					p[k] = v
				}
			}
			info[ev.Sender] = p
		}
		out["profile_info"] = info
	}
	return out
}
