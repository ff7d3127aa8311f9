package rooms

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Benchmarks for the history reads every /messages, /context and /search
// request makes, in rooms with short and long histories: the cost per
// request must stay flat as the history grows. Run with
//
//	go test -run '^$' -bench HistoryVisibility -benchmem ./internal/rooms/

// historyRoom is a room with messages messages and a reader whose view
// changes halfway: history visibility goes from shared to joined and the
// reader leaves, then rejoins at the end. mid is a position in the middle
// of the history, below the events kept in memory.
type historyRoom struct {
	e      *Engine
	room   id.RoomID
	reader id.UserID
	mid    int64
}

func newHistoryRoom(b *testing.B, messages int) *historyRoom {
	b.Helper()
	ctx := context.Background()
	e, roomID, creator := benchRoom(b, 0)
	reader := id.UserID("@reader:" + benchServer)
	send := func(p Proto) {
		b.Helper()
		if _, err := e.Send(ctx, roomID, p); err != nil {
			b.Fatal(err)
		}
	}
	send(Proto{Type: "m.room.history_visibility", StateKey: new(""), Sender: creator, Content: []byte(`{"history_visibility":"shared"}`)})
	send(memberProto(reader, "join"))
	bulkMessages(b, e, roomID, creator, messages/2)
	mid := e.LastPos(ctx, roomID) - 1
	send(Proto{Type: "m.room.history_visibility", StateKey: new(""), Sender: creator, Content: []byte(`{"history_visibility":"joined"}`)})
	send(memberProto(reader, "leave"))
	bulkMessages(b, e, roomID, creator, messages-messages/2)
	send(memberProto(reader, "join"))
	return &historyRoom{e: e, room: roomID, reader: reader, mid: mid}
}

// bulkMessages appends n copies of one signed message to the room's
// history in a single transaction (about a second for 100,000), skipping
// the per-event build and commit that a real send pays: only the stored
// history matters here. The room is then read again from the database, as
// after a restart, since its in-memory view did not see these writes.
func bulkMessages(b *testing.B, e *Engine, roomID id.RoomID, sender id.UserID, n int) {
	b.Helper()
	ctx := context.Background()
	r, err := e.room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	r.mu.Lock()
	tmpl, err := e.build(r, r.head, messageProto(sender, 0))
	depth, snap := r.head.depth, r.dbSnapshot
	r.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	err = e.db.Write(ctx, func(tx *storage.Tx) error {
		var pos int64
		for i := range n {
			pos = tx.NextPos()
			if _, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				pos, fmt.Sprintf("$bulk%d", pos), roomID, tmpl.Type, sender, depth+int64(i)+1, tmpl.TS, string(tmpl.JSON), snap); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "UPDATE rooms SET last_pos = $1 WHERE room_id = $2", pos, roomID)
		return err
	})
	if err != nil {
		b.Fatalf("insert %d messages: %v", n, err)
	}
	e.mu.Lock()
	delete(e.rooms, roomID)
	e.mu.Unlock()
}

var historySizes = []int{1000, 10000, 100000}

// BenchmarkHistoryVisibility measures, per history length, what a read
// request does before it can answer: load the reader's history visibility
// (Visibility) and filter a page with it, find the state snapshot at a
// position in the middle of the history (SnapshotAtPos), and both together
// with reading that page from the database, as /messages does.
func BenchmarkHistoryVisibility(b *testing.B) {
	ctx := context.Background()
	for _, n := range historySizes {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			h := newHistoryRoom(b, n)
			page, err := h.e.RoomEvents(ctx, h.room, 0, h.mid, 20, true)
			if err != nil || len(page) != 20 {
				b.Fatalf("page: %d events, %v", len(page), err)
			}
			b.Run("visibility", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					vis, err := h.e.Visibility(ctx, h.room, h.reader)
					if err != nil {
						b.Fatal(err)
					}
					if len(vis.FilterVisible(page)) != len(page) {
						b.Fatal("the reader must see the shared history it was joined for")
					}
				}
			})
			b.Run("snapshot_at_pos", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if snap, err := h.e.SnapshotAtPos(ctx, h.room, h.mid); err != nil || snap == 0 {
						b.Fatalf("snapshot %d, %v", snap, err)
					}
				}
			})
			b.Run("messages_page", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					evs, err := h.e.RoomEvents(ctx, h.room, 0, h.mid, 20, true)
					if err != nil {
						b.Fatal(err)
					}
					vis, err := h.e.Visibility(ctx, h.room, h.reader)
					if err != nil {
						b.Fatal(err)
					}
					if len(vis.FilterVisible(evs)) != len(evs) {
						b.Fatal("page not visible")
					}
					if _, err := h.e.SnapshotAtPos(ctx, h.room, evs[0].Pos); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
