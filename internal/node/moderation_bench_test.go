package node_test

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/moderation"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/rooms"
)

// benchProtections turns on every protection that reads plaintext, with
// limits ordinary messages stay under, so each event is checked and none
// acted on.
const benchProtections = `{"flood":{"messages":1000000,"seconds":1},"mentions":{"max":20},"words":["badword","another phrase"],
	"blocked_links":["evil.example"],"first_message":{"no_mentions":true},"classifier":true}`

// BenchmarkSendWithProtections is BenchmarkSendWithLedger's send path (32
// local senders into one room) with the room's moderation protections
// off and on. The timer runs until the moderation follower has handled
// the last event sent, so cpu-ns/op (the process's CPU time per event)
// includes the protections' work, done off the send path; ns/op is the
// send path's wall time per event.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench SendWithProtections -benchtime 4000x ./internal/node/
func BenchmarkSendWithProtections(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run("protections="+strconv.FormatBool(on), func(b *testing.B) {
			benchSendProtected(b, on, 32)
		})
	}
}

func benchSendProtected(b *testing.B, on bool, senders int) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.ServerName = "bench.test"
	cfg.LogLevel = "warn"
	n, err := node.New(ctx, cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	// The room's creator, who configures the protections, is an admin:
	// the classifier learns only in rooms an admin configured.
	users := make([]id.UserID, 1+senders)
	for i := range users {
		if users[i], err = n.Accounts.CreateUser(ctx, "bench"+strconv.Itoa(i), "", i == 0); err != nil {
			b.Fatal(err)
		}
	}
	roomID, _, err := n.Rooms.CreateRoom(ctx, id.RoomV11, users[0], nil, []rooms.Proto{
		member(users[0]),
		{Type: "m.room.join_rules", StateKey: new(""), Sender: users[0], Content: json.RawMessage(`{"join_rule":"public"}`)},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range users[1:] {
		if _, err := n.Rooms.Send(ctx, roomID, member(u)); err != nil {
			b.Fatal(err)
		}
	}
	if on {
		p := rooms.Proto{Type: moderation.ConfigType, StateKey: new(""), Sender: users[0], Content: json.RawMessage(benchProtections)}
		if _, err := n.Rooms.Send(ctx, roomID, p); err != nil {
			b.Fatal(err)
		}
		catchUpModeration(b, n)
		if n.Rooms.Membership(n.Moderation.Bot(), roomID) != "join" {
			b.Fatal("the moderation user did not join the protected room")
		}
	}
	var seq atomic.Int64
	var failed atomic.Value
	cpu0 := cpuTime(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, u := range users[1:] {
		wg.Go(func() {
			for seq.Add(1) <= int64(b.N) {
				i := strconv.FormatInt(seq.Load(), 10)
				p := rooms.Proto{Type: "m.room.message", Sender: u, TxnID: "t" + i, DeviceID: "BENCH",
					Content: json.RawMessage(`{"msgtype":"m.text","body":"hello number ` + i + `, see https://example.org/` + i + `"}`)}
				if _, err := n.Rooms.Send(ctx, roomID, p); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	catchUpModeration(b, n)
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if on {
		if ham, _ := n.Moderation.ClassifierDocs(); ham < int64(b.N) {
			b.Fatalf("the classifier saw %d messages of %d: the protections did not run", ham, b.N)
		}
	}
}

// catchUpModeration runs the moderation follower until it has handled
// every committed event.
func catchUpModeration(b *testing.B, n *node.Node) {
	for {
		more, err := n.Moderation.Step(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if !more {
			return
		}
	}
}
