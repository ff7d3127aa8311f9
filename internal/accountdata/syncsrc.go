package accountdata

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/sync"
)

// Event is account data as sync delivers it.
type Event struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

type row struct {
	room    id.RoomID
	typ     string
	content string
}

// Fill adds the requester's account data to a sync response: everything on
// an initial or full-state sync, otherwise what changed after the token,
// plus all room account data of rooms joined since the token. Room account
// data is only given for rooms the user is joined to.
func (s *Service) Fill(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	from := req.Since.Pos
	if req.FullState {
		from = 0
	}
	if from > 0 && len(req.NewlyJoined) == 0 && s.latest(req.User) <= from {
		return nil // nothing written since the token
	}
	// Deleted data (content {}, MSC3391) is news only to an incremental
	// sync: a client that has the data must drop it, one that starts
	// afresh never had it.
	where := "WHERE user_id = $1 AND pos > $2 AND pos <= $3"
	if from == 0 {
		where += " AND content <> '" + deletedContent + "'"
	}
	rows, err := s.load(ctx, where+" ORDER BY pos", req.User, from, req.To.Pos)
	if err != nil {
		return err
	}
	if from > 0 {
		for roomID := range req.NewlyJoined {
			more, err := s.load(ctx, "WHERE user_id = $1 AND room_id = $2 AND pos <= $3 AND content <> '"+deletedContent+"' ORDER BY pos",
				req.User, roomID, from)
			if err != nil {
				return err
			}
			rows = append(more, rows...)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	var global *sync.EventFilter
	var roomF *sync.RoomFilter
	var roomData *sync.RoomEventFilter
	if req.Filter != nil {
		global = typesOnly(req.Filter.AccountData)
		if roomF = req.Filter.Room; roomF != nil {
			roomData = roomF.AccountData
		}
	}
	joined := make(map[id.RoomID]bool, len(req.Joined))
	for _, r := range req.Joined {
		joined[r] = true
	}
	for _, r := range rows {
		ev := Event{Type: r.typ, Content: json.RawMessage(r.content)}
		if r.room == "" {
			if !global.Allows(r.typ, "") {
				continue
			}
			if resp.AccountData == nil {
				resp.AccountData = &sync.Events{Events: []any{}}
			}
			resp.AccountData.Add(ev)
			resp.MarkNews()
			continue
		}
		if !joined[r.room] || !roomF.AllowsRoom(r.room) || !roomData.AllowsRoom(r.room) {
			continue
		}
		if roomData != nil && !typesOnly(&roomData.EventFilter).Allows(r.typ, "") {
			continue
		}
		jr := resp.JoinedRoom(r.room)
		if jr.AccountData == nil {
			jr.AccountData = &sync.Events{Events: []any{}}
		}
		jr.AccountData.Add(ev)
		resp.MarkNews()
	}
	return nil
}

// typesOnly drops a filter's sender lists: account data has no sender.
func typesOnly(f *sync.EventFilter) *sync.EventFilter {
	if f == nil {
		return nil
	}
	c := *f
	c.Senders, c.NotSenders = nil, nil
	return &c
}

func (s *Service) load(ctx context.Context, where string, args ...any) ([]row, error) {
	rs, err := s.db.Query(ctx, "SELECT room_id, type, content FROM account_data "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load account data: %w", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.room, &r.typ, &r.content); err != nil {
			return nil, fmt.Errorf("load account data: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}
