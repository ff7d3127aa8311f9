package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/cputime"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// BenchmarkInboundTransactionToSync measures issue 9's first federation
// figure: how long after an inbound transaction of 50 PDUs is sent a local
// user's long-polling /sync delivers the last of them. Node B is the
// origin: bob, its user, has joined alice's room on node A; B's outbox is
// stopped, and each iteration builds 50 messages of bob's on B (not timed)
// and sends them to A's /send as one transaction signed by B, while
// alice's /sync long-polls A. Reported: the latency from the send to the
// /sync answer holding the last PDU (p50, p99), how long after the PUT
// returned that answer came (p99; 0 when it came first), and the process's
// CPU time per transaction (both nodes and the client: they share it).
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench InboundTransactionToSync -benchtime 30x -count 3 ./internal/federation/
func BenchmarkInboundTransactionToSync(b *testing.B) {
	ctx := context.Background()
	ca := testnode.NewCA(b)
	a := testnode.StartFederating(b, testnode.SQLite, ca)
	origin := testnode.StartFederating(b, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), origin.Register("bob")
	roomID := testnode.CreateRoom(b, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		b.Fatalf("bob joins: %v", err)
	}
	origin.Federation.Outbox.Stop()
	seen := followSync(b, alice, roomID)

	var fromSend, afterPut []time.Duration
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		pdus := make([]rooms.Proto, 50)
		for j := range pdus {
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("message %d.%d", i, j)})
			pdus[j] = rooms.Proto{Type: "m.room.message", Sender: bob.UserID, Content: content}
		}
		evs, err := origin.Rooms.SendMany(ctx, roomID, pdus)
		if err != nil {
			b.Fatalf("bob's messages on B: %v", err)
		}
		req := txn(origin.Config.ServerName, a.Config.ServerName, fmt.Sprint("bench", i))
		for _, ev := range evs {
			req.PDUs = append(req.PDUs, ev.JSON)
		}
		last := evs[len(evs)-1].ID
		b.StartTimer()

		meter := cputime.Start()
		sent := time.Now()
		resp, err := origin.Federation.Client.SendTransaction(ctx, req)
		put := time.Now()
		if err != nil {
			b.Fatalf("send: %v", err)
		}
		for eventID, result := range resp.PDUs {
			if result.Error != "" {
				b.Fatalf("A refused %s: %s", eventID, result.Error)
			}
		}
		delivered := seen.wait(b, last)
		cpu += meter.Elapsed()
		fromSend = append(fromSend, delivered.Sub(sent))
		afterPut = append(afterPut, max(0, delivered.Sub(put)))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(fromSend, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(fromSend, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(afterPut, 99)), "p99-after-put-ms")
	b.ReportMetric(ms(cpu)/float64(b.N), "cpu-ms/op")
}

// syncFollower long-polls one user's /sync and records when each timeline
// event of a room arrived.
type syncFollower struct {
	arrived chan arrival
	times   map[id.EventID]time.Time
}

type arrival struct {
	eventID id.EventID
	at      time.Time
	err     error
}

// followSync starts long-polling c's /sync (30 s timeout) until the
// benchmark ends.
func followSync(b *testing.B, c *mautrix.Client, roomID id.RoomID) *syncFollower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &syncFollower{arrived: make(chan arrival, 4096), times: map[id.EventID]time.Time{}}
	first, err := c.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		b.Fatalf("first sync: %v", err)
	}
	done := make(chan struct{})
	b.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		since := first.NextBatch
		for ctx.Err() == nil {
			resp, err := c.FullSyncRequest(ctx, mautrix.ReqSync{Since: since, Timeout: 30_000})
			at := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					f.arrived <- arrival{err: err}
				}
				return
			}
			since = resp.NextBatch
			if room := resp.Rooms.Join[roomID]; room != nil {
				for _, ev := range room.Timeline.Events {
					f.arrived <- arrival{eventID: ev.ID, at: at}
				}
			}
		}
	}()
	return f
}

// wait returns when the /sync answer holding the event arrived; the
// benchmark fails after 30 s.
func (f *syncFollower) wait(b *testing.B, eventID id.EventID) time.Time {
	timeout := time.After(30 * time.Second)
	for {
		if at, ok := f.times[eventID]; ok {
			return at
		}
		select {
		case a := <-f.arrived:
			if a.err != nil {
				b.Fatalf("sync: %v", a.err)
			}
			f.times[a.eventID] = a.at
		case <-timeout:
			b.Fatalf("/sync never delivered %s", eventID)
		}
	}
}

func percentile(values []time.Duration, p int) time.Duration {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(values))
	return sorted[(len(sorted)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
