package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

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
