package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestAggregateSeesNewRelations checks that an event asked about with no
// relations yet, which the engine then remembers as such, gets its
// aggregations as soon as an edit and a thread reply of it are stored.
func TestAggregateSeesNewRelations(t *testing.T) {
	ctx := context.Background()
	e, roomID, msg := engineWithMessage(t)
	aggregate := func() Aggregations {
		t.Helper()
		agg, err := e.Aggregate(ctx, []*Event{msg}, ClientOptions{User: bob}, e.LastPos(ctx, roomID))
		if err != nil {
			t.Fatal(err)
		}
		return agg
	}
	for range 2 {
		if agg := aggregate(); len(agg) != 0 {
			t.Fatalf("aggregations before any relation: %v", agg)
		}
	}
	edit := Proto{Type: "m.room.message", Sender: alice, Content: json.RawMessage(`{"msgtype":"m.text","body":"* second",` +
		`"m.new_content":{"msgtype":"m.text","body":"second"},"m.relates_to":{"rel_type":"m.replace","event_id":"` + string(msg.ID) + `"}}`)}
	if _, err := e.Send(ctx, roomID, edit); err != nil {
		t.Fatal(err)
	}
	if agg := aggregate(); agg[msg.ID][RelReplace] == nil {
		t.Fatalf("aggregations after an edit: %v, want the edit", agg)
	}
	reply := Proto{Type: "m.room.message", Sender: bob, Content: json.RawMessage(`{"msgtype":"m.text","body":"reply",` +
		`"m.relates_to":{"rel_type":"m.thread","event_id":"` + string(msg.ID) + `"}}`)}
	if _, err := e.Send(ctx, roomID, reply); err != nil {
		t.Fatal(err)
	}
	if agg := aggregate(); agg[msg.ID][RelThread] == nil {
		t.Fatalf("aggregations after a thread reply: %v, want the thread", agg)
	}
}

// engineWithMessage is an engine with a room and alice's message "first"
// in it.
func engineWithMessage(t *testing.T) (*Engine, id.RoomID, *Event) {
	t.Helper()
	e := newTestEnv(t).e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	msg, err := e.Send(context.Background(), roomID, textProto(alice, "first"))
	if err != nil {
		t.Fatal(err)
	}
	return e, roomID, msg
}

// TestBuiltEventsAreNonTargets checks that an event sent here is known to
// have no relations without a query (the first /sync serving it reads
// nothing for its aggregations), and that a relation to it still shows.
func TestBuiltEventsAreNonTargets(t *testing.T) {
	ctx := context.Background()
	e, roomID, msg := engineWithMessage(t)
	if _, unknown := e.nonTargets.unknown([]id.EventID{msg.ID}); len(unknown) != 0 {
		t.Fatalf("a message just sent needs a relations query: %v", unknown)
	}
	reaction := Proto{Type: "m.reaction", Sender: bob, Content: json.RawMessage(
		`{"m.relates_to":{"rel_type":"m.annotation","event_id":"` + string(msg.ID) + `","key":"👍"}}`)}
	if _, err := e.Send(ctx, roomID, reaction); err != nil {
		t.Fatal(err)
	}
	targets, err := e.relationTargets(ctx, []id.EventID{msg.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0] != msg.ID {
		t.Fatalf("relation targets after a reaction: %v, want %s", targets, msg.ID)
	}
}

// TestNonTargetsAgreeWithDatabase sends messages and relations to earlier
// messages from several goroutines while others ask which events are
// relation targets (filling the cache at every moment), then checks that
// the cached answer for every event is the database's.
func TestNonTargetsAgreeWithDatabase(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	var mu sync.Mutex
	var sent []id.EventID
	pick := func(i int) (id.EventID, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(sent) == 0 {
			return "", false
		}
		return sent[i%len(sent)], true
	}
	const writers, perWriter = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter+writers)
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				p := textProto(alice, fmt.Sprintf("w%d m%d", w, i))
				if target, ok := pick(w*perWriter + i*7); ok && i%3 == 1 {
					p = Proto{Type: "m.reaction", Sender: bob, Content: json.RawMessage(
						`{"m.relates_to":{"rel_type":"m.annotation","event_id":"` + string(target) + `","key":"` + strconv.Itoa(i) + `"}}`)}
				}
				ev, err := e.Send(ctx, roomID, p)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				sent = append(sent, ev.ID)
				mu.Unlock()
			}
		})
	}
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if target, ok := pick(i*13 + r); ok {
					if _, err := e.relationTargets(ctx, []id.EventID{target}); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(sent) != writers*perWriter {
		t.Fatalf("%d events sent, want %d", len(sent), writers*perWriter)
	}
	targets := 0
	for _, evID := range sent {
		cached, err := e.relationTargets(ctx, []id.EventID{evID})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := e.db.QueryRow(ctx, "SELECT COUNT(*) FROM events WHERE relates_to = $1", evID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (len(cached) == 1) != (n > 0) {
			t.Fatalf("event %s: cached as a relation target: %v, relations in the database: %d", evID, len(cached) == 1, n)
		}
		if n > 0 {
			targets++
		}
	}
	if targets == 0 {
		t.Fatal("no event became a relation target: the test checked nothing")
	}
}
