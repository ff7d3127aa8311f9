package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/rooms"
)

// BenchmarkSendWithLedger is BenchmarkSendWithHooks' send path (32 local
// senders into one room) with the ledger off for the room (ledger: room,
// the default, and no room has it on) and on (ledger: all). The timer runs
// until the log has caught up with the last event sent, so ns/op and
// cpu-ns/op (the process's CPU time per event) include the follower's
// appends, checkpoints and records: the cost of the ledger per event.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench SendWithLedger -benchtime 4000x ./internal/node/
func BenchmarkSendWithLedger(b *testing.B) {
	for _, mode := range []string{"room", "all"} {
		b.Run("ledger="+mode, func(b *testing.B) {
			benchSendLedger(b, mode, 32)
		})
	}
}

func benchSendLedger(b *testing.B, mode string, senders int) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.ServerName = "bench.test"
	cfg.LogLevel = "warn"
	cfg.Ledger = mode
	n, err := node.New(ctx, cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	users := make([]id.UserID, 1+senders)
	for i := range users {
		if users[i], err = n.Accounts.CreateUser(ctx, "bench"+strconv.Itoa(i), "", false); err != nil {
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
	var seq atomic.Int64
	var failed atomic.Value
	var lastMu sync.Mutex
	var last *rooms.Event
	cpu0 := cpuTime(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, u := range users[1:] {
		wg.Go(func() {
			for seq.Add(1) <= int64(b.N) {
				i := seq.Load()
				p := rooms.Proto{Type: "m.room.message", Sender: u, TxnID: "t" + strconv.FormatInt(i, 10), DeviceID: "BENCH",
					Content: json.RawMessage(`{"msgtype":"m.text","body":"hello ` + strconv.FormatInt(i, 10) + `"}`)}
				ev, err := n.Rooms.Send(ctx, roomID, p)
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				lastMu.Lock()
				if last == nil || ev.Pos > last.Pos {
					last = ev
				}
				lastMu.Unlock()
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if mode == "all" {
		waitLogged(b, n, last.ID)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// waitLogged waits until the ledger holds the event.
func waitLogged(b *testing.B, n *node.Node, evID id.EventID) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := n.Ledger.Prover().Index(context.Background(), string(evID))
		if err == nil {
			return
		}
		if !errors.Is(err, ledger.ErrNotLogged) || time.Now().After(deadline) {
			b.Fatalf("%s not logged: %v", evID, err)
		}
		time.Sleep(time.Millisecond)
	}
}
