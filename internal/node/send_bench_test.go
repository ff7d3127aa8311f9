package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// BenchmarkSendWithHooks is the send path of a whole node without HTTP:
// rooms.Engine.Send with every OnPersist hook the node wires (unread
// counts and push rules for each member, /notifications rows, the search
// index), K local senders sending concurrently into one room, or each
// into R rooms in turn, as the load tool's send scenario does. Besides
// ns/op (wall time per event) it reports cpu-ns/op: the process's CPU time
// (user and system, all goroutines) per event, the figure the issue's
// "CPU per event" goal is about.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench SendWithHooks -benchtime 2000x -benchmem ./internal/node/
func BenchmarkSendWithHooks(b *testing.B) {
	for _, c := range []struct{ senders, rooms int }{{8, 1}, {32, 1}, {32, 50}} {
		b.Run(fmt.Sprintf("senders=%d/rooms=%d", c.senders, c.rooms), func(b *testing.B) {
			benchSend(b, c.senders, c.rooms)
		})
	}
}

func benchSend(b *testing.B, senders, roomCount int) {
	ctx := context.Background()
	n := benchNode(b)
	users := make([]id.UserID, 1+senders)
	for i := range users {
		uid, err := n.Accounts.CreateUser(ctx, "bench"+strconv.Itoa(i), "", false)
		if err != nil {
			b.Fatal(err)
		}
		users[i] = uid
	}
	owner := users[0]
	roomIDs := make([]id.RoomID, roomCount)
	for i := range roomIDs {
		roomID, _, err := n.Rooms.CreateRoom(ctx, id.RoomV11, owner, nil, []rooms.Proto{
			member(owner),
			{Type: "m.room.join_rules", StateKey: new(""), Sender: owner, Content: json.RawMessage(`{"join_rule":"public"}`)},
		})
		if err != nil {
			b.Fatal(err)
		}
		roomIDs[i] = roomID
	}
	// Every sender is in every room and sends into them in turn, as the
	// load tool's send scenario spreads them.
	for _, u := range users[1:] {
		for _, roomID := range roomIDs {
			if _, err := n.Rooms.Send(ctx, roomID, member(u)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var seq atomic.Int64
	var failed atomic.Value
	cpu0, commits0, syscw0 := cpuTime(b), writeBatches(b), writeSyscalls(b)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for s, u := range users[1:] {
		wg.Go(func() {
			for j := s; seq.Add(1) <= int64(b.N); j++ {
				i := seq.Load()
				roomID := roomIDs[j%roomCount]
				p := rooms.Proto{Type: "m.room.message", Sender: u, TxnID: "t" + strconv.FormatInt(i, 10), DeviceID: "BENCH",
					Content: json.RawMessage(`{"msgtype":"m.text","body":"hello ` + strconv.FormatInt(i, 10) + `"}`)}
				if _, err := n.Rooms.Send(ctx, roomID, p); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(writeSyscalls(b)-syscw0)/float64(b.N), "write-syscalls/op")
	commits := writeBatches(b)
	if c := commits.count - commits0.count; c > 0 {
		b.ReportMetric((commits.writes-commits0.writes)/float64(c), "writes/commit")
	}
}

// batchStats are the storage writer's totals: transactions committed and
// writes in them.
type batchStats struct {
	count  uint64
	writes float64
}

// writeBatches reads the storage writer's batch-size histogram.
func writeBatches(b *testing.B) batchStats {
	reg := prometheus.NewRegistry()
	reg.MustRegister(storage.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "matrixos_db_write_batch_size" {
			h := mf.GetMetric()[0].GetHistogram()
			return batchStats{h.GetSampleCount(), h.GetSampleSum()}
		}
	}
	b.Fatal("no matrixos_db_write_batch_size metric")
	return batchStats{}
}

// benchNode is a node on a fresh SQLite database, not listening.
func benchNode(b *testing.B) *node.Node {
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.ServerName = "bench.test"
	cfg.LogLevel = "warn"
	n, err := node.New(context.Background(), cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n
}

func member(u id.UserID) rooms.Proto {
	sk := string(u)
	return rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: u, Content: json.RawMessage(`{"membership":"join"}`)}
}

// writeSyscalls is the number of write system calls this process has
// made (syscw in /proc/self/io): SQLite writes each page of a commit to
// the write-ahead log with its own.
func writeSyscalls(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no syscw in /proc/self/io")
	return 0
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
