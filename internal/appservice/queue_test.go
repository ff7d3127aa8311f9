package appservice_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mauas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/testnode"
)

// fastTiming shortens the node's delivery timing so retries are quick.
func fastTiming(n *testnode.Node) {
	appservice.SetTiming(n.AppserviceQueue, 20*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond)
}

// sendTexts sends the messages, in order, and returns their event IDs.
func sendTexts(t *testing.T, c *mautrix.Client, room id.RoomID, bodies ...string) []id.EventID {
	t.Helper()
	var out []id.EventID
	for _, b := range bodies {
		out = append(out, testnode.SendText(t, c, room, b))
	}
	return out
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// checkDelivered checks that the appservice got the events of room, and
// only those, each once, with the messages in the order sent.
func checkDelivered(t *testing.T, evs []testnode.ASEvent, room id.RoomID, sent []id.EventID) {
	t.Helper()
	seen := map[string]bool{}
	var messages []id.EventID
	for _, ev := range evs {
		if seen[ev.EventID] {
			t.Fatalf("event %s delivered twice", ev.EventID)
		}
		seen[ev.EventID] = true
		if ev.RoomID != string(room) {
			t.Fatalf("event %s of room %s is not in the appservice's namespaces", ev.EventID, ev.RoomID)
		}
		if ev.Type == "m.room.message" {
			messages = append(messages, id.EventID(ev.EventID))
		}
	}
	if len(messages) != len(sent) {
		t.Fatalf("delivered %d messages, sent %d", len(messages), len(sent))
	}
	for i := range sent {
		if messages[i] != sent[i] {
			t.Fatalf("message %d delivered is %s, sent %s", i, messages[i], sent[i])
		}
	}
}

// TestTransactionsInOrderExactlyOnce: an appservice registered from a file
// gets every event of a room its user is in, and no other, in order and
// once each, batched in transactions of at most 100 events; while it
// answers 500 the same transaction (ID and body) is sent again, across a
// node restart too, until it is accepted; an appservice with url null gets
// nothing queued.
func TestTransactionsInOrderExactlyOnce(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testTransactions(t, engine) })
	}
}

func testTransactions(t *testing.T, engine testnode.Engine) {
	reg := registration("watcher", "", "@watched.*:localhost")
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	clientOnly := registration("clientonly", "", "@watched.*:localhost")
	n := testnode.Start(t, engine, testnode.WithAppservices(t, map[string]string{
		"watcher.yaml":    yamlOf(t, reg),
		"clientonly.yaml": strings.Replace(yamlOf(t, clientOnly), `url: ""`, "url: null", 1),
	}))
	fastTiming(n)
	other := n.Register("other")
	watched := n.Register("watched")

	elsewhere := testnode.CreateRoom(t, other, &mautrix.ReqCreateRoom{})
	testnode.SendText(t, other, elsewhere, "not for the appservice")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{})
	sent := sendTexts(t, watched, room, numbered("a", 150)...)
	evs := as.WaitBody("a149")
	checkDelivered(t, evs, room, sent)
	txns := as.Transactions()
	if len(txns) < 2 {
		t.Errorf("150 messages came in %d transaction(s), want batches of at most 100", len(txns))
	}
	for i, txn := range txns {
		if got := len(txn.Events); got > appservice.MaxTxnEvents {
			t.Errorf("transaction %d has %d events", i, got)
		}
	}
	if got := evs[0].Type; got != "m.room.create" {
		t.Errorf("first event delivered is %s, want the room's m.room.create", got)
	}

	// The appservice fails: the same transaction is sent again, before
	// and after a restart, until it answers 200.
	as.SetFailing(true)
	more := sendTexts(t, watched, room, numbered("b", 30)...)
	failedTxn := as.WaitRetried(2)
	n = n.Restart()
	fastTiming(n)
	tries := as.Tries(failedTxn)
	testnode.WaitFor(t, 30*time.Second, "the failed transaction sent again after the restart", func() bool { return as.Tries(failedTxn) > tries })
	as.SetFailing(false)
	evs = as.WaitBody("b029")
	checkDelivered(t, evs, room, append(sent, more...))

	testnode.WaitFor(t, 10*time.Second, "an empty queue", func() bool { return n.AppserviceQueue.Status("watcher").QueueDepth == 0 })
	if s := n.AppserviceQueue.Status("watcher"); s.LastSuccess.IsZero() || s.Failures != 0 {
		t.Errorf("status after delivery: %+v", s)
	}
	var queued int
	if err := n.DB.QueryRow(context.Background(), `SELECT COUNT(*) FROM appservice_queue WHERE appservice_id = 'clientonly'`).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if queued != 0 || n.AppserviceQueue.Status("clientonly").QueueDepth != 0 {
		t.Errorf("an appservice with url null has %d events queued", queued)
	}
}

// TestQueueBound: an appservice whose queue is full misses what happens
// until its queue drains (the events themselves are stored as ever), which
// the dropped metric counts; what was queued before is delivered in order.
func TestQueueBound(t *testing.T) {
	reg := registration("watcher", "", "@watched.*:localhost")
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"watcher.yaml": yamlOf(t, reg)}))
	fastTiming(n)
	watched := n.Register("watched")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{})
	first := sendTexts(t, watched, room, "first")
	as.WaitBody("first")
	testnode.WaitFor(t, 10*time.Second, "an empty queue", func() bool { return n.AppserviceQueue.Status("watcher").QueueDepth == 0 })

	appservice.SetMaxQueued(n.AppserviceQueue, 10)
	as.SetFailing(true)
	sent := sendTexts(t, watched, room, numbered("m", 15)...)
	if depth := n.AppserviceQueue.Status("watcher").QueueDepth; depth != 10 {
		t.Fatalf("queue depth %d, want the bound 10", depth)
	}
	metrics := string(n.Do(t, "GET", "/metrics", "", nil, testnode.NoSpecCheck()).Body)
	if !strings.Contains(metrics, `matrixos_appservice_dropped_total{appservice="watcher",kind="event"} 5`) {
		t.Errorf("metrics do not count 5 dropped events:\n%s", grepLines(metrics, "matrixos_appservice"))
	}
	as.SetFailing(false)
	as.WaitBody("m009")
	testnode.WaitFor(t, 10*time.Second, "an empty queue", func() bool { return n.AppserviceQueue.Status("watcher").QueueDepth == 0 })
	after := sendTexts(t, watched, room, "after")
	evs := as.WaitBody("after")
	checkDelivered(t, evs, room, slices.Concat(first, sent[:10], after))
	// The node stored every message, the dropped ones too.
	for _, evID := range sent[10:] {
		if _, err := watched.GetEvent(context.Background(), room, evID); err != nil {
			t.Errorf("event %s not stored: %v", evID, err)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// backedOff is an appservice whose delivery of a message failed once, so
// that it waits out a backoff of an hour.
type backedOff struct {
	n       *testnode.Node
	reg     *mauas.Registration
	as      *testnode.FakeAppservice
	watched *mautrix.Client
	room    id.RoomID
	failed  string // the failed transaction's ID
}

func startBackedOff(t *testing.T, text string) *backedOff {
	b := &backedOff{reg: registration("watcher", "", "@watched.*:localhost")}
	b.as = testnode.NewFakeAppservice(t, b.reg.ServerToken)
	b.reg.URL = b.as.URL()
	b.n = testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"watcher.yaml": yamlOf(t, b.reg)}))
	appservice.SetTiming(b.n.AppserviceQueue, 20*time.Millisecond, time.Hour, time.Hour)
	b.watched = b.n.Register("watched")
	b.room = testnode.CreateRoom(t, b.watched, &mautrix.ReqCreateRoom{})
	b.as.WaitBody("") // the room's events, which have no body
	b.as.SetFailing(true)
	testnode.SendText(t, b.watched, b.room, text)
	b.failed = b.as.WaitRetried(1)
	return b
}

// checkBackoff checks that the appservice waits out an hour's backoff.
func (b *backedOff) checkBackoff(t *testing.T) {
	if s := b.n.AppserviceQueue.Status("watcher"); s.Failures != 1 || time.Until(s.RetryAt) < 30*time.Minute {
		t.Fatalf("after a failure: %+v, want a backoff of an hour", s)
	}
}

// TestPingEndsBackoff: an appservice that failed waits out its backoff,
// unless it asks for a ping (POST /_matrix/client/v1/appservice/{id}/ping)
// and answers it: then what is queued is sent at once.
func TestPingEndsBackoff(t *testing.T) {
	b := startBackedOff(t, "while failing")
	b.as.SetFailing(false)
	b.checkBackoff(t)
	b.n.Do(t, "POST", "/_matrix/client/v1/appservice/watcher/ping", b.reg.AppToken, map[string]any{}).OK(t)
	b.as.WaitBody("while failing")
	if tries := b.as.Tries(b.failed); tries != 2 {
		t.Errorf("the failed transaction was sent %d times, want 2", tries)
	}
}

// TestResumeEndsBackoff: an appservice paused while it waited out a
// backoff (a bridge stopped after a failed delivery) gets what was queued
// as soon as it is resumed, not after the backoff.
func TestResumeEndsBackoff(t *testing.T) {
	b := startBackedOff(t, "before the pause")
	b.n.AppserviceQueue.SetPaused("watcher", true)
	b.as.SetFailing(false)
	testnode.SendText(t, b.watched, b.room, "while paused")
	b.checkBackoff(t)
	b.n.AppserviceQueue.SetPaused("watcher", false)
	b.as.WaitBody("while paused")
}

// TestQueueBoundCountsOpenWrites: items queued inside a write that has not
// committed yet count against the bound, so one write (a big room's
// event, a batch of writes) cannot queue past it; a write that fails gives
// its items' places back.
func TestQueueBoundCountsOpenWrites(t *testing.T) {
	reg := registration("watcher", "", "@watched.*:localhost")
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"watcher.yaml": yamlOf(t, reg)}))
	// Nothing is taken off the queue while the test looks at it.
	appservice.SetTiming(n.AppserviceQueue, time.Hour, time.Hour, time.Hour)
	appservice.SetMaxQueued(n.AppserviceQueue, 10)

	took, err := appservice.EnqueueInOneWrite(n.AppserviceQueue, "watcher", 4, true)
	if err != nil {
		t.Fatal(err)
	}
	if took != 4 {
		t.Fatalf("a failing write took %d items, want 4 (the queue was empty)", took)
	}
	if depth := n.AppserviceQueue.Status("watcher").QueueDepth; depth != 0 {
		t.Fatalf("queue depth %d after a failed write, want 0", depth)
	}
	took, err = appservice.EnqueueInOneWrite(n.AppserviceQueue, "watcher", 15, false)
	if err != nil {
		t.Fatal(err)
	}
	if took != 10 {
		t.Errorf("one write queued %d items past a bound of 10 (a failed write's places must come back too)", took)
	}
	rows, err := appservice.QueuedRows(n.AppserviceQueue, "watcher", "device_list")
	if err != nil {
		t.Fatal(err)
	}
	if depth := n.AppserviceQueue.Status("watcher").QueueDepth; depth != 10 || rows != 10 {
		t.Errorf("queue depth %d with %d rows, want the bound 10", depth, rows)
	}
}

// TestDepthOfItemsQueuedBeforeStart: items committed before the queue
// starts are counted once in its depth, not once as they commit and again
// when Start counts what is queued.
func TestDepthOfItemsQueuedBeforeStart(t *testing.T) {
	reg := registration("watcher", "", "@watched.*:localhost")
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"watcher.yaml": yamlOf(t, reg)}))
	// The node's own queue takes nothing off the queue meanwhile.
	appservice.SetTiming(n.AppserviceQueue, time.Hour, time.Hour, time.Hour)
	if _, err := appservice.EnqueueInOneWrite(n.AppserviceQueue, "watcher", 2, false); err != nil {
		t.Fatal(err)
	}

	q := appservice.NewQueue(n.DB, slog.New(slog.DiscardHandler), n.Appservices.Registry, n.Rooms)
	appservice.SetTiming(q, time.Hour, time.Hour, time.Hour)
	if _, err := appservice.EnqueueInOneWrite(q, "watcher", 3, false); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	if depth := q.Status("watcher").QueueDepth; depth != 5 {
		t.Errorf("queue depth %d after start, want the 5 items queued", depth)
	}
	if _, err := appservice.EnqueueInOneWrite(q, "watcher", 1, false); err != nil {
		t.Fatal(err)
	}
	if depth := q.Status("watcher").QueueDepth; depth != 6 {
		t.Errorf("queue depth %d after one more item, want 6", depth)
	}
}

// TestUnreadableItemSkipped: a queued item that cannot be read (a
// corrupted row, an unknown kind) is left out of the transaction, counted
// and logged, and what is queued after it is delivered: it does not stall
// the appservice's queue.
func TestUnreadableItemSkipped(t *testing.T) {
	reg := registration("watcher", "", "@watched.*:localhost")
	reg.MSC3202 = true
	as := testnode.NewFakeAppservice(t, reg.ServerToken)
	reg.URL = as.URL()
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"watcher.yaml": yamlOf(t, reg)}))
	fastTiming(n)
	watched := n.Register("watched")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{})
	before := sendTexts(t, watched, room, "before")
	as.WaitBody("before")
	for _, bad := range [][2]string{{"event", `{"type":`}, {"device_list", `["not an object"]`}, {"key_counts", `nope`}, {"bogus", `{}`}} {
		if err := appservice.EnqueueRaw(n.AppserviceQueue, "watcher", bad[0], bad[1]); err != nil {
			t.Fatal(err)
		}
	}
	after := sendTexts(t, watched, room, numbered("after", 3)...)
	checkDelivered(t, as.WaitBody("after002"), room, append(before, after...))
	testnode.WaitFor(t, 10*time.Second, "an empty queue", func() bool { return n.AppserviceQueue.Status("watcher").QueueDepth == 0 })
	metrics := string(n.Do(t, "GET", "/metrics", "", nil, testnode.NoSpecCheck()).Body)
	for _, kind := range []string{"event", "device_list", "key_counts", "bogus"} {
		if !strings.Contains(metrics, `matrixos_appservice_skipped_total{appservice="watcher",kind="`+kind+`"} 1`) {
			t.Errorf("metrics do not count the skipped %s item:\n%s", kind, grepLines(metrics, "matrixos_appservice_skipped"))
		}
	}
}
