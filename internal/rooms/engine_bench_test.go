package rooms

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/cputime"
	"github.com/matrixos/matrixos/internal/storage"
)

// Benchmarks for the event hot path: building and signing, authorising,
// the whole Send (with the SQLite commit), and state lookups. Each runs in
// a room with a creator and a number of joined members, since several
// steps cost more in bigger rooms. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/rooms/

const benchServer = "bench.test"

// benchRoom opens a fresh SQLite database and creates a public room with
// members joined users besides the creator.
func benchRoom(b *testing.B, members int) (*Engine, id.RoomID, id.UserID) {
	b.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, Migrations); err != nil {
		b.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	e := New(db, slog.New(slog.DiscardHandler), Signer{ServerName: benchServer, KeyID: "ed25519:bench", Key: key})
	if err := e.Load(ctx); err != nil {
		b.Fatal(err)
	}
	creator := id.UserID("@creator:" + benchServer)
	pl, _ := json.Marshal(map[string]any{"users": map[id.UserID]int{creator: 100}})
	roomID, _, err := e.CreateRoom(ctx, id.RoomV11, creator, nil, []Proto{
		memberProto(creator, "join"),
		{Type: "m.room.power_levels", StateKey: new(""), Sender: creator, Content: pl},
		{Type: "m.room.join_rules", StateKey: new(""), Sender: creator, Content: json.RawMessage(`{"join_rule":"public"}`)},
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := range members {
		u := id.UserID(fmt.Sprintf("@member%d:%s", i, benchServer))
		if _, err := e.Send(ctx, roomID, memberProto(u, "join")); err != nil {
			b.Fatal(err)
		}
	}
	return e, roomID, creator
}

func memberProto(u id.UserID, membership string) Proto {
	sk := string(u)
	return Proto{Type: "m.room.member", StateKey: &sk, Sender: u, Content: json.RawMessage(`{"membership":"` + membership + `"}`)}
}

func messageProto(sender id.UserID, i int64) Proto {
	return Proto{
		Type: "m.room.message", Sender: sender, TxnID: "t" + strconv.FormatInt(i, 10), DeviceID: "BENCH",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"hello ` + strconv.FormatInt(i, 10) + `"}`),
	}
}

var roomSizes = []int{10, 200}

// BenchmarkBuildSign builds, hashes and signs one message event (no
// authorisation, no storage).
func BenchmarkBuildSign(b *testing.B) {
	for _, n := range roomSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			e, roomID, creator := benchRoom(b, n)
			r, err := e.room(context.Background(), roomID)
			if err != nil {
				b.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := e.build(r, r.head, messageProto(creator, int64(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuthorize checks one message event against the room's auth
// rules with auth events from the current state.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range roomSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e, roomID, creator := benchRoom(b, n)
			r, err := e.room(ctx, roomID)
			if err != nil {
				b.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			ev, err := e.build(r, r.head, messageProto(creator, 0))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := e.authorize(ctx, r, r.head, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSend is the whole Send: build, sign, authorise, commit to
// SQLite (synchronous=FULL) and run the hooks. Serial sends pay one commit
// each; parallel ones share commits through the batched writer.
func BenchmarkSend(b *testing.B) {
	for _, n := range roomSizes {
		b.Run(fmt.Sprintf("members=%d/serial", n), func(b *testing.B) {
			ctx := context.Background()
			e, roomID, creator := benchRoom(b, n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := e.Send(ctx, roomID, messageProto(creator, int64(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("members=%d/parallel", n), func(b *testing.B) {
			ctx := context.Background()
			e, roomID, creator := benchRoom(b, n)
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4) // 4 x GOMAXPROCS concurrent senders
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Send(ctx, roomID, messageProto(creator, seq.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSendState is Send of a state event, the sender's display name
// changing each time: beside the event it writes a snapshot delta (a full
// copy every 64), the membership and the event's auth_edges row.
func BenchmarkSendState(b *testing.B) {
	ctx := context.Background()
	e, roomID, creator := benchRoom(b, 10)
	b.ReportAllocs()
	meter := cputime.Start()
	for i := 0; b.Loop(); i++ {
		p := stateProto(creator, "m.room.member", creator.String(), fmt.Sprintf(`{"membership":"join","displayname":"c%d"}`, i))
		if _, err := e.Send(ctx, roomID, p); err != nil {
			b.Fatal(err)
		}
	}
	meter.Report(b, b.N)
}

// BenchmarkCurrentState copies and sorts the room's current state.
func BenchmarkCurrentState(b *testing.B) {
	for _, n := range roomSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e, roomID, _ := benchRoom(b, n)
			b.ReportAllocs()
			for b.Loop() {
				st, err := e.CurrentState(ctx, roomID)
				if err != nil || len(st) < n {
					b.Fatalf("state: %d events, %v", len(st), err)
				}
			}
		})
	}
}

// BenchmarkStateEvent looks up one current state event.
func BenchmarkStateEvent(b *testing.B) {
	ctx := context.Background()
	e, roomID, _ := benchRoom(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		if ev, err := e.StateEvent(ctx, roomID, "m.room.power_levels", ""); err != nil || ev == nil {
			b.Fatal("no power levels", err)
		}
	}
}

// BenchmarkPowerLevels decodes the room's power levels, as permission
// checks outside the auth rules do.
func BenchmarkPowerLevels(b *testing.B) {
	ctx := context.Background()
	e, roomID, _ := benchRoom(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.PowerLevels(ctx, roomID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStateAt loads the state at the room's latest snapshot from the
// database (delta chain walk; events come from the event cache), as /sync
// does for a room's state section.
func BenchmarkStateAt(b *testing.B) {
	for _, n := range roomSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e, roomID, _ := benchRoom(b, n)
			r, err := e.room(ctx, roomID)
			if err != nil {
				b.Fatal(err)
			}
			snap := r.dbSnapshot
			b.ReportAllocs()
			for b.Loop() {
				st, err := e.StateAt(ctx, snap)
				if err != nil || len(st) < n {
					b.Fatalf("state: %d events, %v", len(st), err)
				}
			}
		})
	}
}
