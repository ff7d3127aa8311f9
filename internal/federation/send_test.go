package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// txn is an empty transaction from origin to destination.
func txn(origin, destination, txnID string) *federation.ReqSendTransaction {
	return &federation.ReqSendTransaction{
		Destination: destination, TxnID: txnID, Origin: origin,
		OriginServerTS: jsontime.UM(time.Now()), PDUs: []federation.PDU{},
	}
}

// TestSendTransaction: B's /send hands the PDUs of a transaction to the
// room engine (each room's in order) and answers each PDU's result, hands
// the EDUs to their handlers (unknown types ignored), and answers a retry
// of the same transaction ID with the first answer without processing it
// again; another origin's transaction of the same ID is its own.
func TestSendTransaction(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	in := newInbox(b)
	aName, bName, cName := a.Config.ServerName, b.Config.ServerName, c.Config.ServerName

	req := txn(aName, bName, "t1")
	for i := range 10 {
		req.PDUs = append(req.PDUs, testPDU(i))
	}
	req.PDUs = append(req.PDUs, json.RawMessage(`{"event_id": "$bad:test", "room_id": "!r0:test", "refuse": true}`))
	for i := range 3 {
		req.EDUs = append(req.EDUs, json.RawMessage(fmt.Sprintf(`{"edu_type": %q, "content": {"n": "%d"}}`, testEDU, i)))
	}
	req.EDUs = append(req.EDUs,
		json.RawMessage(`{"edu_type": "org.matrixos.unknown", "content": {}}`),
		json.RawMessage(`{"edu_type": "`+testEDU+`", "content": "not an object"}`),
		json.RawMessage(`{"content": {}}`))
	first, err := a.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.PDUs) != 11 || first.PDUs["$bad:test"].Error == "" || first.PDUs["$4:test"].Error != "" {
		t.Fatalf("answer: %+v", first.PDUs)
	}
	pdus, edus := in.wait(t, 11, 3, time.Second)
	for room := range 3 {
		var want []string
		for i := room; i < 10; i += 3 {
			want = append(want, fmt.Sprintf("%s $%d:test", aName, i))
		}
		if room == 0 {
			want = append(want, aName+" $bad:test")
		}
		if got := inRoomOrBad(pdus, room); !equal(got, want) {
			t.Fatalf("room %d: %v, want %v", room, got, want)
		}
	}
	if !equal(edus, numbered(aName, "", 0, 3)) {
		t.Fatalf("EDUs: %v", edus)
	}

	// The retry is answered, not processed.
	again, err := a.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.PDUs) != fmt.Sprint(first.PDUs) {
		t.Fatalf("retry answered %v, first %v", again.PDUs, first.PDUs)
	}
	// C's transaction t1 is processed: its arrival is the positive signal
	// that A's retry, sent before it, was not.
	creq := txn(cName, bName, "t1")
	creq.PDUs = []federation.PDU{testPDU(99)}
	if _, err := c.Federation.Client.SendTransaction(ctx, creq); err != nil {
		t.Fatal(err)
	}
	pdus, _ = in.wait(t, 12, 3, time.Second)
	if len(pdus) != 12 || pdus[11] != cName+" $99:test" || in.calls != 15 {
		t.Fatalf("after A's retry and C's transaction: %d calls, PDUs %v", in.calls, pdus)
	}
}

func inRoomOrBad(pdus []string, room int) []string {
	var out []string
	for _, p := range pdus {
		if strings.HasSuffix(p, "$bad:test") {
			if room == 0 {
				out = append(out, p)
			}
			continue
		}
		out = append(out, inRoom([]string{p}, room)...)
	}
	return out
}

// TestSendTransactionBadInput: transactions over the limits or malformed
// get 400 with the spec's error code, one claiming another origin 403, and
// an unsigned one 401; a node without a room engine refuses every PDU in
// its answer, not the transaction.
func TestSendTransactionBadInput(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	many := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	for _, tc := range []struct {
		name, body string
		status     int
		errcode    string
	}{
		{"51 PDUs", `{"origin": "` + aName + `", "origin_server_ts": 1, "pdus": ` + many(51, `{}`) + `}`, 400, "M_TOO_LARGE"},
		{"101 EDUs", `{"origin": "` + aName + `", "origin_server_ts": 1, "pdus": [], "edus": ` + many(101, `{}`) + `}`, 400, "M_TOO_LARGE"},
		{"pdus not a list", `{"origin": "` + aName + `", "pdus": {}}`, 400, "M_BAD_JSON"},
		{"a PDU not an object", `{"origin": "` + aName + `", "pdus": [1]}`, 400, "M_BAD_JSON"},
		{"an EDU not an object", `{"origin": "` + aName + `", "pdus": [], "edus": ["x"]}`, 400, "M_BAD_JSON"},
		{"a list", `[]`, 400, "M_BAD_JSON"},
		{"another origin", `{"origin": "elsewhere.example", "pdus": []}`, 403, "M_FORBIDDEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any = json.RawMessage(tc.body)
			_, _, err := a.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
				ServerName: bName, Method: http.MethodPut, Path: federation.URLPath{"v1", "send", "bad-" + tc.name},
				Authenticate: true, RequestJSON: body,
			})
			if code, status := testnode.ErrCode(err); code != tc.errcode || status != tc.status {
				t.Fatalf("%s: %d %s (%v), want %d %s", tc.name, status, code, err, tc.status, tc.errcode)
			}
		})
	}
	b.FederationDo(t, "PUT", "/_matrix/federation/v1/send/unsigned", map[string]any{"pdus": []any{}}, testnode.NoSpecCheck()).
		Want(t, http.StatusUnauthorized, "M_UNAUTHORIZED")

	req := txn(aName, bName, "no-engine")
	req.PDUs = []federation.PDU{testPDU(1)}
	resp, err := a.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.PDUs[id.EventID("$1:test")].Error == "" {
		t.Fatalf("a node without a PDU receiver accepted a PDU: %+v", resp)
	}
}

// TestSendTransactionFailureIsRetried: an EDU this server fails to take
// (a failing database write) answers the transaction 500 without the
// cause and without remembering it, so the origin's retry is processed
// again (the PDUs too, as known ones) and then remembered; an EDU the
// handler refuses does not fail the transaction. A PDU this server fails
// to process is answered with a generic error, not its cause.
func TestSendTransactionFailureIsRetried(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	in := newInbox(b)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	const secret = "disk I/O error in /var/lib/matrixos/secret.db"
	var mu sync.Mutex
	flakyCalls, refusedCalls := 0, 0
	b.Federation.HandleEDU("org.matrixos.test.flaky", func(context.Context, string, json.RawMessage) error {
		mu.Lock()
		defer mu.Unlock()
		if flakyCalls++; flakyCalls == 1 {
			return errors.New(secret)
		}
		return nil
	})
	b.Federation.HandleEDU("org.matrixos.test.refused", func(context.Context, string, json.RawMessage) error {
		mu.Lock()
		defer mu.Unlock()
		refusedCalls++
		return mxhttp.Forbidden("not yours")
	})
	calls := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return flakyCalls, refusedCalls
	}

	req := txn(aName, bName, "flaky")
	req.PDUs = []federation.PDU{testPDU(1), json.RawMessage(`{"event_id": "$failing:test", "room_id": "!r0:test", "fail": "` + secret + `"}`)}
	req.EDUs = []federation.EDU{
		json.RawMessage(`{"edu_type": "org.matrixos.test.refused", "content": {}}`),
		json.RawMessage(`{"edu_type": "org.matrixos.test.flaky", "content": {}}`),
	}
	_, err := a.Federation.Client.SendTransaction(ctx, req)
	if code, status := testnode.ErrCode(err); status != http.StatusInternalServerError || code != "M_UNKNOWN" {
		t.Fatalf("a transaction whose EDU failed: %d %s (%v), want 500 M_UNKNOWN", status, code, err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the failure's cause reached the origin: %v", err)
	}

	resp, err := a.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if flaky, refused := calls(); flaky != 2 || refused != 2 {
		t.Fatalf("after the retry: flaky handler called %d times, refusing one %d, want 2 and 2", flaky, refused)
	}
	if pdus, _ := in.wait(t, 4, 0, time.Second); len(pdus) != 4 {
		t.Fatalf("PDUs handed on: %v, want both PDUs twice", pdus)
	}
	if got := resp.PDUs["$1:test"].Error; got != "" {
		t.Errorf("the accepted PDU's answer: %q", got)
	}
	failed := resp.PDUs["$failing:test"].Error
	if failed == "" || strings.Contains(failed, "secret") {
		t.Errorf("the failing PDU is answered %q, want a generic error", failed)
	}

	// Now it is remembered: the next retry is answered, not processed.
	if _, err := a.Federation.Client.SendTransaction(ctx, req); err != nil {
		t.Fatalf("the second retry: %v", err)
	}
	if flaky, refused := calls(); flaky != 2 || refused != 2 {
		t.Fatalf("the remembered transaction was processed again (%d, %d calls)", flaky, refused)
	}
}

// TestSendTransactionCacheTrims: the answers kept for retries are trimmed
// per origin even while an older transaction of that origin hangs, and
// another origin's transactions do not push them out.
func TestSendTransactionCacheTrims(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	in := newInbox(b)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	hanging, release := make(chan struct{}), make(chan struct{})
	b.Federation.HandleEDU("org.matrixos.test.hang", func(context.Context, string, json.RawMessage) error {
		close(hanging)
		<-release
		return nil
	})
	hung := make(chan error, 1)
	go func() {
		req := txn(aName, bName, "hang")
		req.EDUs = []federation.EDU{json.RawMessage(`{"edu_type": "org.matrixos.test.hang", "content": {}}`)}
		_, err := a.Federation.Client.SendTransaction(ctx, req)
		hung <- err
	}()
	select {
	case <-hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("the hanging transaction never reached its handler")
	}
	defer close(release)

	send := func(from *testnode.Node, txnID, n string) {
		t.Helper()
		req := txn(from.Config.ServerName, bName, txnID)
		req.EDUs = []federation.EDU{json.RawMessage(fmt.Sprintf(`{"edu_type": %q, "content": {"n": %q}}`, testEDU, n))}
		if _, err := from.Federation.Client.SendTransaction(ctx, req); err != nil {
			t.Fatalf("%s's transaction %s: %v", from.Config.ServerName, txnID, err)
		}
	}
	const many = 80 // more than the answers kept per origin
	for i := range many {
		send(a, fmt.Sprintf("t%d", i), fmt.Sprint(i))
	}
	for i := range many {
		send(c, fmt.Sprintf("t%d", i), fmt.Sprint(i))
	}
	_, edus := in.wait(t, 0, 2*many, 5*time.Second)

	// A's latest is still remembered (C's did not push it out), its
	// oldest, behind the hanging one, was trimmed: the retry is processed.
	send(a, fmt.Sprintf("t%d", many-1), "latest again")
	send(a, "t0", "oldest again")
	_, edus = in.wait(t, 0, 2*many+1, 5*time.Second)
	if last := edus[len(edus)-1]; len(edus) != 2*many+1 || last != aName+" oldest again" {
		t.Fatalf("after the retries: %d EDUs, the last %q; want %d, the last the oldest's retry", len(edus), last, 2*many+1)
	}
	if slices.Contains(edus, aName+" latest again") {
		t.Error("the latest transaction was processed again instead of answered")
	}
	select {
	case err := <-hung:
		t.Fatalf("the hanging transaction was answered before its handler returned: %v", err)
	default:
	}
}
