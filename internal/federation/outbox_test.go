package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// inbox records what a node's /send hands on: PDUs (by the event_id they
// carry) and EDUs of the test type, each with its origin, in arrival
// order.
type inbox struct {
	mu    sync.Mutex
	pdus  []string
	edus  []string
	calls int
	got   chan struct{}
}

const testEDU = "org.matrixos.test"

func newInbox(n *testnode.Node) *inbox {
	in := &inbox{got: make(chan struct{}, 1)}
	in.attach(n)
	return in
}

// attach makes n's /send hand its PDUs and test EDUs to the inbox.
func (in *inbox) attach(n *testnode.Node) {
	n.Federation.SetPDUReceiver(in)
	n.Federation.HandleEDU(testEDU, func(ctx context.Context, origin string, content json.RawMessage) error {
		var c struct{ N string }
		if err := json.Unmarshal(content, &c); err != nil {
			return err
		}
		in.add(&in.edus, origin+" "+c.N)
		return nil
	})
}

func (in *inbox) ReceivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error) {
	var p struct {
		EventID id.EventID `json:"event_id"`
		Refuse  bool       `json:"refuse"`
		Fail    string     `json:"fail"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", err
	}
	in.add(&in.pdus, origin+" "+string(p.EventID))
	switch {
	case p.Refuse:
		return p.EventID, mxhttp.Forbidden("refused by the test")
	case p.Fail != "":
		return p.EventID, errors.New(p.Fail) // this server's failure, not a refusal
	}
	return p.EventID, nil
}

func (in *inbox) add(list *[]string, s string) {
	in.mu.Lock()
	*list = append(*list, s)
	in.calls++
	in.mu.Unlock()
	select {
	case in.got <- struct{}{}:
	default:
	}
}

// wait waits until the inbox holds at least n PDUs and m EDUs and returns
// copies of them.
func (in *inbox) wait(t *testing.T, n, m int, within time.Duration) (pdus, edus []string) {
	t.Helper()
	deadline := time.After(within)
	for {
		in.mu.Lock()
		pdus, edus = append([]string(nil), in.pdus...), append([]string(nil), in.edus...)
		in.mu.Unlock()
		if len(pdus) >= n && len(edus) >= m {
			return pdus, edus
		}
		select {
		case <-in.got:
		case <-deadline:
			t.Fatalf("after %v: %d PDUs and %d EDUs arrived, want %d and %d", within, len(pdus), len(edus), n, m)
		}
	}
}

func testPDU(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"event_id": "$%d:test", "room_id": "!r%d:test", "type": "m.room.message"}`, i, i%3))
}

func numbered(origin, prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %s%d", origin, prefix, i))
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// queued counts the rows a node has queued for a destination.
func queued(t *testing.T, n *testnode.Node, dest string) int {
	t.Helper()
	var c int
	if err := n.DB.QueryRow(context.Background(), `SELECT COUNT(*) FROM federation_outbound WHERE destination = $1`, dest).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOutboxDeliversInOrder: 120 PDUs and 150 EDUs queued at once reach the
// destination in queue order, in transactions within the spec's limits,
// within a second or so; the queue is empty after, and the metrics and the
// admin API show the destination's success.
func TestOutboxDeliversInOrder(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			ctx := context.Background()
			ca := testnode.NewCA(t)
			a := testnode.StartFederating(t, engine, ca)
			b := testnode.StartFederating(t, engine, ca)
			in := newInbox(b)
			aName, bName := a.Config.ServerName, b.Config.ServerName
			start := time.Now()
			for i := range 120 {
				if err := a.Federation.Outbox.SendPDU(ctx, []string{bName, aName}, testPDU(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 150 {
				if err := a.Federation.Outbox.SendEDU(ctx, bName, testEDU, map[string]string{"n": fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
			}
			pdus, edus := in.wait(t, 120, 150, 10*time.Second)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("delivery took %v", took)
			}
			var want []string
			for i := range 120 {
				want = append(want, fmt.Sprintf("%s $%d:test", aName, i))
			}
			// PDUs of one room are handed on in order; rooms of one
			// transaction run in parallel, so compare per room.
			for room := range 3 {
				if got, w := inRoom(pdus, room), inRoom(want, room); !equal(got, w) {
					t.Fatalf("room %d: PDUs arrived as %v, want %v", room, got, w)
				}
			}
			if !equal(edus, numbered(aName, "", 0, 150)) {
				t.Fatalf("EDUs arrived as %v", edus)
			}
			waitFor(t, func() bool { return queued(t, a, bName) == 0 && !destination(t, a, bName).LastSuccess.IsZero() }, "the queue to empty")
			if queued(t, a, aName) != 0 {
				t.Fatal("A queued for itself")
			}
			var pduRows int
			if err := a.DB.QueryRow(ctx, `SELECT COUNT(*) FROM federation_outbound_pdus`).Scan(&pduRows); err != nil || pduRows != 0 {
				t.Fatalf("%d delivered PDUs left stored (%v)", pduRows, err)
			}
			st := destination(t, a, bName)
			if st.LastSuccess.IsZero() || st.Failures != 0 || st.QueueDepth != 0 {
				t.Fatalf("A's view of B after delivery: %+v", st)
			}
		})
	}
}

func inRoom(pdus []string, room int) []string {
	var out []string
	for _, p := range pdus {
		var n int
		var origin string
		fmt.Sscanf(p, "%s $%d:test", &origin, &n)
		if n%3 == room {
			out = append(out, p)
		}
	}
	return out
}

func destination(t *testing.T, n *testnode.Node, name string) fed.DestinationStatus {
	t.Helper()
	for _, d := range n.Federation.Outbox.Destinations() {
		if d.Destination == name {
			return d
		}
	}
	t.Fatalf("%s is not a destination of %s", name, n.Config.ServerName)
	return fed.DestinationStatus{}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutboxBackoffAndRestart: while B is down, A's transactions fail and
// back off, what A queues stays in its database (coalesced EDUs replaced,
// not added), and another destination C is served meanwhile. A restarts
// with the queue pending; once B is back and contacts A (Wake), A
// delivers everything, in order.
func TestOutboxBackoffAndRestart(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			ctx := context.Background()
			ca := testnode.NewCA(t)
			a := testnode.StartFederating(t, engine, ca)
			b := testnode.StartFederating(t, engine, ca)
			c := testnode.StartFederating(t, engine, ca)
			cIn := newInbox(c)
			aName, bName, cName := a.Config.ServerName, b.Config.ServerName, c.Config.ServerName
			b.Stop()

			for i := range 5 {
				if err := a.Federation.Outbox.SendPDU(ctx, []string{bName, cName}, testPDU(3*i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				if err := a.Federation.Outbox.SendEDUCoalesced(ctx, bName, testEDU, "typing", map[string]string{"n": fmt.Sprint("typing", i)}); err != nil {
					t.Fatal(err)
				}
			}
			// C gets its share although B is down.
			cIn.wait(t, 5, 0, 10*time.Second)
			waitFor(t, func() bool { return destination(t, a, bName).Failures > 0 }, "A to fail on B")
			st := destination(t, a, bName)
			if st.RetryAt.Before(st.FailedAt.Add(fed.MinBackoff)) || st.QueueDepth != 6 {
				t.Fatalf("A's view of B while B is down: %+v", st)
			}
			if n := queued(t, a, bName); n != 6 {
				t.Fatalf("%d rows queued for B, want 5 PDUs and 1 coalesced EDU", n)
			}

			a = a.Restart()
			b = b.Restart()
			bIn := newInbox(b)
			// B contacts A: A wakes its worker for B at once.
			if _, err := b.Federation.Client.SendTransaction(ctx, txn(bName, aName, "wake")); err != nil {
				t.Fatal(err)
			}
			pdus, edus := bIn.wait(t, 5, 1, 10*time.Second)
			var want []string
			for i := range 5 {
				want = append(want, fmt.Sprintf("%s $%d:test", aName, 3*i))
			}
			if !equal(pdus, want) || !equal(edus, []string{aName + " typing2"}) {
				t.Fatalf("B got PDUs %v and EDUs %v after A restarted", pdus, edus)
			}
			waitFor(t, func() bool { return queued(t, a, bName) == 0 }, "A's queue for B to empty")
		})
	}
}

// TestOutboxMetricsAndAdmin: the per-destination gauges and the admin API
// list the destinations A queued for, and reset_connection clears a
// backoff.
func TestOutboxMetricsAndAdmin(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	newInbox(b)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	const dead = "127.0.0.1:1"
	for _, dest := range []string{bName, dead} {
		if err := a.Federation.Outbox.SendEDU(ctx, dest, testEDU, map[string]string{"n": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return destination(t, a, dead).Failures > 0 && queued(t, a, bName) == 0 }, "delivery to B and a failure on the dead server")

	admin := a.RegisterAdmin("admin")
	list := testnode.Call(t, admin, "GET", "/_synapse/admin/v1/federation/destinations", nil).OK(t)
	if list["total"] != float64(2) {
		t.Fatalf("destinations: %v", list)
	}
	got := testnode.Call(t, admin, "GET", "/_synapse/admin/v1/federation/destinations/"+dead, nil).OK(t)
	if got["failure_ts"] == nil || got["retry_interval"].(float64) < float64(fed.MinBackoff.Milliseconds()) || got["queue_depth"] != float64(1) {
		t.Fatalf("the dead destination: %v", got)
	}
	waitFor(t, func() bool { return !destination(t, a, bName).LastSuccess.IsZero() }, "A to record its success with B")
	ok := testnode.Call(t, admin, "GET", "/_synapse/admin/v1/federation/destinations/"+bName, nil).OK(t)
	if ok["failure_ts"] != nil || ok["last_success_ts"].(float64) == 0 {
		t.Fatalf("B: %v", ok)
	}
	testnode.Call(t, admin, "POST", "/_synapse/admin/v1/federation/destinations/"+dead+"/reset_connection", map[string]any{}).OK(t)
	if st := destination(t, a, dead); st.Failures != 0 && st.RetryAt.After(time.Now().Add(fed.MinBackoff)) {
		t.Fatalf("after reset_connection: %+v", st)
	}
	testnode.Call(t, admin, "GET", "/_synapse/admin/v1/federation/destinations/unknown.example", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	testnode.Call(t, admin, "POST", "/_synapse/admin/v1/federation/destinations/unknown.example/reset_connection", map[string]any{}).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	user := a.Register("user")
	testnode.Call(t, user, "GET", "/_synapse/admin/v1/federation/destinations", nil).Want(t, http.StatusForbidden, "M_FORBIDDEN")

	metrics := a.Do(t, "GET", "/metrics", "", nil, testnode.NoSpecCheck())
	for _, want := range []string{
		`matrixos_federation_queue_depth{destination="` + dead + `"} 1`,
		`matrixos_federation_queue_depth{destination="` + bName + `"} 0`,
		`matrixos_federation_last_success_timestamp_seconds{destination="` + bName + `"}`,
		`matrixos_federation_backoff_seconds{destination="` + dead + `"}`,
	} {
		if !contains(string(metrics.Body), want) {
			t.Fatalf("metrics lack %s:\n%s", want, metrics.Body)
		}
	}
	if contains(string(metrics.Body), `destination="`+aName+`"`) {
		t.Fatal("metrics name this server as a destination")
	}
}

// TestOutboxTrimsWhileDown: while B is down, A keeps at most the bound of
// PDUs queued for it, dropping the oldest; when B is back it gets the
// newest ones, in order (it would fetch the others with
// get_missing_events), and the queue's EDUs all.
func TestOutboxTrimsWhileDown(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	fed.SetMaxQueuedPDUs(a.Federation.Outbox, 5)
	b.Stop()
	for i := range 12 {
		if err := a.Federation.Outbox.SendPDU(ctx, []string{bName}, testPDU(3*i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Federation.Outbox.SendEDU(ctx, bName, testEDU, map[string]string{"n": "kept"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return queued(t, a, bName) == 6 }, "A to trim its queue for B to 5 PDUs and the EDU")
	if st := destination(t, a, bName); st.QueueDepth != 6 || st.Failures == 0 {
		t.Fatalf("A's view of B after trimming: %+v", st)
	}

	b = b.Restart()
	in := newInbox(b)
	if _, err := b.Federation.Client.SendTransaction(ctx, txn(bName, aName, "wake")); err != nil {
		t.Fatal(err)
	}
	pdus, edus := in.wait(t, 5, 1, 10*time.Second)
	var want []string
	for i := 7; i < 12; i++ {
		want = append(want, fmt.Sprintf("%s $%d:test", aName, 3*i))
	}
	if !equal(pdus, want) || !equal(edus, []string{aName + " kept"}) {
		t.Fatalf("B got PDUs %v and EDUs %v, want %v and the EDU", pdus, edus, want)
	}
}

// TestOutboxBoundsEDUsWhileDown: while B is down, A keeps at most the
// bound of ephemeral EDUs (typing here) and of durable ones (the test
// type, as to-device messages would be) queued for it, dropping the
// oldest of each and counting them in /metrics; the queue depth follows
// without a recount, and when B is back it gets the newest durable EDUs.
func TestOutboxBoundsEDUsWhileDown(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testOutboxBoundsEDUsWhileDown(t, engine) })
	}
}

func testOutboxBoundsEDUsWhileDown(t *testing.T, engine testnode.Engine) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, engine, ca)
	b := testnode.StartFederating(t, engine, ca)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	fed.SetMaxQueuedEDUs(a.Federation.Outbox, 3, 4)
	b.Stop()
	for i := range 6 {
		if err := a.Federation.Outbox.SendEDUCoalesced(ctx, bName, "m.typing", fmt.Sprintf("room%d", i), map[string]any{"typing": true}); err != nil {
			t.Fatal(err)
		}
		if err := a.Federation.Outbox.SendEDU(ctx, bName, testEDU, map[string]string{"n": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A coalesced typing EDU replaces its key's, adding nothing.
	if err := a.Federation.Outbox.SendEDUCoalesced(ctx, bName, "m.typing", "room5", map[string]any{"typing": false}); err != nil {
		t.Fatal(err)
	}
	if got := queuedColumn(t, a, bName, "m.typing", "edu_key"); !equal(got, []string{"room3", "room4", "room5"}) {
		t.Errorf("typing EDUs queued for B: %v, want the newest 3", got)
	}
	want := []string{`{"n":"2"}`, `{"n":"3"}`, `{"n":"4"}`, `{"n":"5"}`}
	if got := queuedColumn(t, a, bName, testEDU, "edu_content"); !equal(got, want) {
		t.Errorf("durable EDUs queued for B: %v, want the newest 4", got)
	}
	if st := destination(t, a, bName); st.QueueDepth != 7 || queued(t, a, bName) != 7 {
		t.Errorf("queue depth %d, %d rows; want 7", st.QueueDepth, queued(t, a, bName))
	}
	metrics := a.Do(t, "GET", "/metrics", "", nil, testnode.NoSpecCheck())
	for _, m := range []string{`matrixos_federation_dropped_edus_total{class="ephemeral"} 3`, `matrixos_federation_dropped_edus_total{class="durable"} 2`} {
		if !contains(string(metrics.Body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	b = b.Restart()
	in := newInbox(b)
	if _, err := b.Federation.Client.SendTransaction(ctx, txn(bName, aName, "wake")); err != nil {
		t.Fatal(err)
	}
	if _, edus := in.wait(t, 0, 4, 10*time.Second); !equal(edus, numbered(aName, "", 2, 6)) {
		t.Fatalf("B got EDUs %v, want the newest 4", edus)
	}
	waitFor(t, func() bool { return destination(t, a, bName).QueueDepth == 0 }, "A's queue for B to empty")
}

// queuedColumn lists a column of the EDUs of a type queued on n for dest,
// oldest first.
func queuedColumn(t *testing.T, n *testnode.Node, dest, eduType, column string) []string {
	t.Helper()
	rows, err := n.DB.Query(context.Background(), `SELECT `+column+` FROM federation_outbound WHERE destination = $1 AND edu_type = $2 ORDER BY id`, dest, eduType)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOutboxKeepsEDUsOfRefusedTransaction: B refuses for good (400) a
// transaction whose PDU is malformed; A drops that PDU but sends the
// transaction's EDU on its own, and B gets it.
func TestOutboxKeepsEDUsOfRefusedTransaction(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	in := newInbox(b)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	// Queued together, they go out in one transaction, which B answers
	// 400 M_BAD_JSON: a PDU must be an object.
	if err := a.Federation.Outbox.SendPDU(ctx, []string{bName}, json.RawMessage(`["not an object"]`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Federation.Outbox.SendEDU(ctx, bName, testEDU, map[string]string{"n": "kept"}); err != nil {
		t.Fatal(err)
	}
	if _, edus := in.wait(t, 0, 1, 10*time.Second); !equal(edus, []string{aName + " kept"}) {
		t.Fatalf("B got EDUs %v", edus)
	}
	waitFor(t, func() bool { return queued(t, a, bName) == 0 && destination(t, a, bName).QueueDepth == 0 }, "A's queue for B to empty")
}
