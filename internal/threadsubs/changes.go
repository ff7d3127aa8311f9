package threadsubs

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/sync"
)

const changesPath = "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions"

// Limits of the companion endpoint: the MSC's default, and the most this
// node sends in one response.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// span is a range of stream positions (after, upTo]: the changes a
// response left out. Its token is "t<upTo>_<after>".
type span struct{ after, upTo int64 }

func (s span) String() string { return fmt.Sprintf("t%d_%d", s.upTo, s.after) }

func parseSpan(tok string) (span, bool) {
	rest, ok := strings.CutPrefix(tok, "t")
	if !ok {
		return span{}, false
	}
	a, b, ok := strings.Cut(rest, "_")
	if !ok {
		return span{}, false
	}
	upTo, err1 := strconv.ParseInt(a, 10, 64)
	after, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || after < 0 || upTo < after {
		return span{}, false
	}
	return span{after: after, upTo: upTo}, true
}

// Changes returns the newest limit changes to the user's thread
// subscriptions with stream positions in (from, to], each thread's latest
// state. When older changes in the range were left out, PrevBatch is the
// token that pages back through them (the companion endpoint's from).
func (s *Service) Changes(ctx context.Context, user id.UserID, from, to int64, limit int) (sync.ThreadSubscriptionChanges, error) {
	var out sync.ThreadSubscriptionChanges
	rows, err := s.db.Query(ctx, `SELECT room_id, thread_id, subscribed, automatic, pos FROM thread_subscriptions
		WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos DESC LIMIT $4`, user, from, to, limit+1)
	if err != nil {
		return out, fmt.Errorf("load thread subscription changes: %w", err)
	}
	defer rows.Close()
	n, oldest := 0, to
	for rows.Next() {
		var (
			room                  id.RoomID
			thread                id.EventID
			subscribed, automatic bool
			pos                   int64
		)
		if err := rows.Scan(&room, &thread, &subscribed, &automatic, &pos); err != nil {
			return out, fmt.Errorf("load thread subscription changes: %w", err)
		}
		if n == limit {
			out.PrevBatch = span{after: from, upTo: oldest - 1}.String()
			break
		}
		n, oldest = n+1, pos
		if subscribed {
			out.Subscribed = addChange(out.Subscribed, room, thread, sync.ThreadSubscribed{Automatic: automatic, BumpStamp: pos})
		} else {
			out.Unsubscribed = addChange(out.Unsubscribed, room, thread, sync.ThreadUnsubscribed{BumpStamp: pos})
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("load thread subscription changes: %w", err)
	}
	return out, nil
}

func addChange[T any](m map[id.RoomID]map[id.EventID]T, room id.RoomID, thread id.EventID, v T) map[id.RoomID]map[id.EventID]T {
	if m == nil {
		m = map[id.RoomID]map[id.EventID]T{}
	}
	if m[room] == nil {
		m[room] = map[id.EventID]T{}
	}
	m[room][thread] = v
	return m
}

// changesPage is the companion endpoint's answer.
type changesPage struct {
	Subscribed   map[id.RoomID]map[id.EventID]sync.ThreadSubscribed   `json:"subscribed,omitempty"`
	Unsubscribed map[id.RoomID]map[id.EventID]sync.ThreadUnsubscribed `json:"unsubscribed,omitempty"`
	End          string                                               `json:"end,omitempty"`
}

// getChanges answers GET .../io.element.msc4308/thread_subscriptions: the
// user's thread subscription changes, newest first, backwards from the
// from token (a sliding sync prev_batch or an earlier answer's end; the
// newest change without it) down to the to token. from carries its own
// lower bound, so a to the node cannot read (a sliding sync pos, which the
// MSC suggests) changes nothing beside it; without from, to must be a
// sync token.
func (s *Service) getChanges(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	q := r.URL.Query()
	switch q.Get("dir") {
	case "b":
	case "":
		return nil, mxhttp.MissingParam("dir is required")
	default:
		return nil, mxhttp.InvalidParam("dir must be b")
	}
	limit := defaultPageLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return nil, mxhttp.InvalidParam("limit must be a positive integer")
		}
		limit = min(n, maxPageLimit)
	}
	rng := span{upTo: s.db.Visible()}
	from := q.Get("from")
	if from != "" {
		var ok bool
		if rng, ok = parseSpan(from); !ok {
			return nil, mxhttp.InvalidParam("invalid from token")
		}
	}
	if to := q.Get("to"); to != "" {
		tok, err := sync.ParseToken(to)
		switch {
		case err == nil:
			rng.after = max(rng.after, min(tok.Pos, rng.upTo))
		case from == "":
			return nil, mxhttp.InvalidParam("invalid to token")
		}
	}
	changes, err := s.Changes(r.Context(), sess.UserID, rng.after, rng.upTo, limit)
	if err != nil {
		return nil, err
	}
	return changesPage{Subscribed: changes.Subscribed, Unsubscribed: changes.Unsubscribed, End: changes.PrevBatch}, nil
}
