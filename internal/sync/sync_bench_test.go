package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// Benchmarks for building /sync responses, through the node's HTTP handler
// in-process (authentication, building, JSON encoding; no network). Run
// with
//
//	go test -run '^$' -bench . -benchmem ./internal/sync/

// syncFixture is a user joined to rooms rooms with events messages each.
type syncFixture struct {
	node  *testnode.Node
	user  *mautrix.Client
	rooms []id.RoomID
}

func newSyncFixture(b *testing.B, nRooms, events int) *syncFixture {
	b.Helper()
	ctx := context.Background()
	n := testnode.Start(b, testnode.SQLite)
	f := &syncFixture{node: n, user: n.Register("bench")}
	for i := range nRooms {
		resp, err := f.user.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: fmt.Sprintf("room %d", i)})
		if err != nil {
			b.Fatal(err)
		}
		f.rooms = append(f.rooms, resp.RoomID)
		for j := range events {
			f.send(b, resp.RoomID, j)
		}
	}
	return f
}

func (f *syncFixture) send(b *testing.B, roomID id.RoomID, i int) {
	b.Helper()
	content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": "message " + strconv.Itoa(i)})
	_, err := f.node.Rooms.Send(context.Background(), roomID, rooms.Proto{
		Type: "m.room.message", Sender: f.user.UserID, Content: content,
	})
	if err != nil {
		b.Fatal(err)
	}
}

// sync runs one /sync through the handler and returns next_batch.
func (f *syncFixture) sync(b *testing.B, since string) string {
	q := url.Values{"timeout": {"0"}}
	if since != "" {
		q.Set("since", since)
	}
	req := httptest.NewRequest("GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+f.user.AccessToken)
	rec := httptest.NewRecorder()
	f.node.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("sync: HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var out struct {
		NextBatch string `json:"next_batch"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(rec.Body.Len()))
	return out.NextBatch
}

// BenchmarkSyncInitial is an initial sync (no since token, no filter) of a
// user in 20 rooms with 50 messages each: the initial sync target.
func BenchmarkSyncInitial(b *testing.B) {
	f := newSyncFixture(b, 20, 50)
	f.sync(b, "")
	b.ReportAllocs()
	for b.Loop() {
		f.sync(b, "")
	}
}

// BenchmarkSyncIncremental is an incremental sync that finds one new
// message in one of the user's rooms: what each woken long-poll pays.
func BenchmarkSyncIncremental(b *testing.B) {
	for _, nRooms := range []int{20, 100} {
		b.Run(fmt.Sprintf("rooms=%d", nRooms), func(b *testing.B) {
			f := newSyncFixture(b, nRooms, 1)
			since := f.sync(b, "")
			f.send(b, f.rooms[0], 1)
			b.ReportAllocs()
			for b.Loop() {
				f.sync(b, since)
			}
		})
	}
}

// BenchmarkSyncIncrementalEmpty is an incremental sync with nothing new
// (timeout=0): the floor under every /sync.
func BenchmarkSyncIncrementalEmpty(b *testing.B) {
	for _, nRooms := range []int{20, 100} {
		b.Run(fmt.Sprintf("rooms=%d", nRooms), func(b *testing.B) {
			f := newSyncFixture(b, nRooms, 1)
			since := f.sync(b, "")
			b.ReportAllocs()
			for b.Loop() {
				f.sync(b, since)
			}
		})
	}
}
