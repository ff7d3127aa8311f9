package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// slidingPath is simplified sliding sync (MSC4186).
const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// slidingResponse is the part of a sliding sync answer the scenario reads.
type slidingResponse struct {
	Pos   string `json:"pos"`
	Rooms map[string]struct {
		Timeline []struct {
			Content struct {
				Tag string `json:"org.matrixos.bench.tag"`
			} `json:"content"`
		} `json:"timeline"`
	} `json:"rooms"`
	size int
}

// tags returns the bench tags of the timeline events in roomID.
func (s *slidingResponse) tags(roomID string) []string {
	var out []string
	for _, ev := range s.Rooms[roomID].Timeline {
		if ev.Content.Tag != "" {
			out = append(out, ev.Content.Tag)
		}
	}
	return out
}

// roomListBody is Element X's room-list request for rooms rooms.
func roomListBody(rooms int) map[string]any {
	return map[string]any{
		"conn_id": "room-list",
		"lists": map[string]any{"all_rooms": map[string]any{
			"ranges": [][]int{{0, rooms - 1}}, "timeline_limit": 1,
			"required_state": [][]string{
				{"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
				{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.canonical_alias", ""}, {"m.room.topic", ""},
				{"m.room.join_rules", ""}, {"m.room.power_levels", ""}, {"m.room.create", ""},
				{"m.room.tombstone", ""}, {"m.room.history_visibility", ""},
			},
		}},
	}
}

// slidingSync runs one sliding sync request from pos ("" starts the
// connection).
func (c *client) slidingSync(ctx context.Context, body map[string]any, pos string, timeout time.Duration) (*slidingResponse, error) {
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}}
	if pos != "" {
		q.Set("pos", pos)
	}
	var raw []byte
	if err := c.do(ctx, "POST", slidingPath+"?"+q.Encode(), body, &raw); err != nil {
		return nil, err
	}
	out := &slidingResponse{size: len(raw)}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode sliding sync: %w", err)
	}
	return out, nil
}

// wakePoll is one pending long-poll: it delivers the bench tags of a
// room's new timeline events and the token to poll from next.
type wakePoll func(ctx context.Context, from string) (tags []string, next string, err error)

// sliding measures, for a user in R rooms (--rooms), Element X's
// room-list sliding sync beside classic /sync: the first response of a
// new connection against an initial /sync with a timeline limit of 1, and
// how long after a send starts a pending long-poll of each kind returns
// with the event.
func (b *bench) sliding(ctx context.Context) ([]*result, error) {
	a, w, room, err := b.pair(ctx)
	if err != nil {
		return nil, err
	}
	b.logf("sliding: %s joins %d rooms", w.userID, b.o.Rooms)
	err = parallel(ctx, b.o.Rooms-1, b.o.Concurrency, func(int) error {
		_, err := w.createRoom(ctx, "private_chat")
		return err
	})
	if err != nil {
		return nil, err
	}
	body := roomListBody(b.o.Rooms)
	r := &result{Scenario: "sliding", Params: map[string]any{"rooms": b.o.Rooms, "iterations": b.o.Iterations}}

	t0 := time.Now()
	first, err := w.slidingSync(ctx, body, "", 0)
	if err != nil {
		return nil, err
	}
	r.add("initial_ms", ms(time.Since(t0)), "ms")
	r.add("initial_kib", float64(first.size/1024), "KiB")
	if len(first.Rooms) != b.o.Rooms {
		r.Errors++
		r.Note = fmt.Sprintf("the first response has %d rooms, want %d", len(first.Rooms), b.o.Rooms)
	}
	const filter = `{"room":{"timeline":{"limit":1}}}`
	t0 = time.Now()
	initial, err := w.sync(ctx, "", 0, filter)
	if err != nil {
		return nil, err
	}
	r.add("sync_initial_ms", ms(time.Since(t0)), "ms")

	slidingPoll := func(ctx context.Context, pos string) ([]string, string, error) {
		resp, err := w.slidingSync(ctx, body, pos, pollTimeout)
		if err != nil {
			return nil, "", err
		}
		return resp.tags(room), resp.Pos, nil
	}
	syncPoll := func(ctx context.Context, since string) ([]string, string, error) {
		resp, err := w.sync(ctx, since, pollTimeout, filter)
		if err != nil {
			return nil, "", err
		}
		return resp.tags(room), resp.NextBatch, nil
	}
	defer b.profile(ctx, "sliding")()
	for _, kind := range []struct {
		prefix string
		poll   wakePoll
		from   string
	}{{"", slidingPoll, first.Pos}, {"sync_", syncPoll, initial.NextBatch}} {
		// The measured phase (server CPU, and with --metrics the
		// commits, checkpoints and GCs) is the sliding connection's.
		var win *window
		if kind.prefix == "" {
			win = b.measure(ctx)
		}
		wake, errs, err := b.measureWake(ctx, a, room, kind.prefix+"wake", kind.poll, kind.from)
		if err != nil {
			return nil, err
		}
		r.Errors += errs
		s := wake.summary()
		if win != nil {
			win.finish(ctx, r, s.N, "wake-up")
		}
		r.add(kind.prefix+"wake_p50_ms", ms(s.P50), "ms")
		r.add(kind.prefix+"wake_p99_ms", ms(s.P99), "ms")
	}
	r.target("wake_p99_ms", "< 5 ms", below(5))
	r.Note = join(r.Note, "wake-up is measured from the start of the send request, so it includes the send's commit")
	return []*result{r}, nil
}

// measureWake sends --iterations messages as a into room, each while a
// long-poll (poll) is pending, and returns how long after the start of
// each send the poll returned with it. name makes the messages' tags
// unique to the measurement.
func (b *bench) measureWake(ctx context.Context, a *client, room, name string, poll wakePoll, from string) (*latencies, int, error) {
	type polled struct {
		tags []string
		next string
		at   time.Time
		err  error
	}
	start := func(from string) <-chan polled {
		ch := make(chan polled, 1)
		go func() {
			tags, next, err := poll(ctx, from)
			ch <- polled{tags, next, time.Now(), err}
		}()
		return ch
	}
	wake := &latencies{}
	errs := 0
	for i := range b.o.Iterations {
		if ctx.Err() != nil {
			break
		}
		ch := start(from)
		time.Sleep(parkDelay)
		tag := fmt.Sprintf("%s-%s%d", b.runID, name, i)
		t0 := time.Now()
		if _, err := a.send(ctx, room, tag); err != nil {
			return nil, errs, err
		}
		for {
			var res polled
			select {
			case res = <-ch:
			case <-time.After(pollTimeout + 10*time.Second):
				return nil, errs, fmt.Errorf("sliding: a long-poll did not return")
			}
			if res.err != nil {
				return nil, errs, res.err
			}
			from = res.next
			if slices.Contains(res.tags, tag) {
				wake.add(res.at.Sub(t0))
				break
			}
			if res.at.Sub(t0) > pollTimeout {
				errs++
				break
			}
			ch = start(from)
		}
	}
	return wake, errs, nil
}
