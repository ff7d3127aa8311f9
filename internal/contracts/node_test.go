package contracts_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/contracts"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

var (
	ledgerType   = event.Type{Type: ledger.StateType, Class: event.StateEventType}
	contractType = event.Type{Type: contracts.StateType, Class: event.StateEventType}
)

const uploadPath = "/_matrixos/admin/v1/contracts"

func upload(t *testing.T, n *testnode.Node, admin *mautrix.Client, src string) string {
	t.Helper()
	body := n.Do(t, "PUT", uploadPath, admin.AccessToken, buildContract(t, src), testnode.NoSpecCheck()).OK(t)
	hash, _ := body["module"].(string)
	if hash != contracts.ModuleHash(buildContract(t, src)) {
		t.Fatalf("upload %s answered %v", src, body)
	}
	return hash
}

func send(t *testing.T, c *mautrix.Client, room id.RoomID, evType string, content map[string]any) id.EventID {
	t.Helper()
	resp, err := c.SendMessageEvent(t.Context(), room, event.Type{Type: evType, Class: event.MessageEventType}, content)
	if err != nil {
		t.Fatalf("send %s: %v", evType, err)
	}
	return resp.EventID
}

// catchUp runs the contracts and the ledger on everything committed.
func catchUp(t *testing.T, n *testnode.Node) {
	t.Helper()
	for _, step := range []func(context.Context) (bool, error){n.Contracts.Step, n.Ledger.Step} {
		for {
			more, err := step(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !more {
				break
			}
		}
	}
}

// results reads the room's result events by input event.
func results(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID) map[id.EventID]contracts.ResultContent {
	t.Helper()
	resp, err := c.Messages(t.Context(), room, "", "", mautrix.DirectionBackward, nil, 500)
	if err != nil {
		t.Fatal(err)
	}
	out := map[id.EventID]contracts.ResultContent{}
	for _, ev := range resp.Chunk {
		if ev.Type.Type != contracts.ResultType {
			continue
		}
		if ev.Sender != n.Contracts.Bot() {
			t.Fatalf("result %s sent by %s", ev.ID, ev.Sender)
		}
		var rc contracts.ResultContent
		if err := json.Unmarshal(ev.Content.VeryRaw, &rc); err != nil {
			t.Fatal(err)
		}
		out[id.EventID(rc.Input)] = rc
	}
	return out
}

func wantResult(t *testing.T, got map[id.EventID]contracts.ResultContent, input id.EventID, want string) {
	t.Helper()
	rc, ok := got[input]
	if !ok {
		t.Fatalf("no result for %s", input)
	}
	if s := contracts.CanonicalResult(rc.Result); s != want || rc.Error != "" {
		t.Errorf("result for %s: %s (error %q), want %s", input, s, rc.Error, want)
	}
}

// TestExamplesInARoom runs the three examples in a room with the ledger
// on: each input gets its result event, and a replay from the log
// reproduces every result and the contracts' state.
func TestExamplesInARoom(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		room := testnode.CreateRoom(t, admin, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		for _, c := range []*mautrix.Client{alice, bob, carol} {
			testnode.Join(t, c, room)
		}
		testnode.SendState(t, admin, room, ledgerType, "", map[string]any{"enabled": true})

		n.Do(t, "PUT", uploadPath, alice.AccessToken, buildContract(t, "examples/poll.c"), testnode.NoSpecCheck()).Want(t, 403, "M_FORBIDDEN")
		n.Do(t, "PUT", uploadPath, admin.AccessToken, buildContract(t, "testdata/clock.c"), testnode.NoSpecCheck()).Want(t, 400, "M_INVALID_PARAM")
		n.Do(t, "PUT", uploadPath, admin.AccessToken, "not wasm", testnode.NoSpecCheck()).Want(t, 400, "M_INVALID_PARAM")
		poll := upload(t, n, admin, "examples/poll.c")
		approval := upload(t, n, admin, "examples/approval.c")
		notary := upload(t, n, admin, "examples/notary.c")
		testnode.SendState(t, admin, room, contractType, "poll", map[string]any{"module": poll, "events": []string{"org.matrixos.poll.vote"}})
		testnode.SendState(t, admin, room, contractType, "approval", map[string]any{"module": approval,
			"events": []string{"org.matrixos.approval.request", "org.matrixos.approval.approve"},
			"config": map[string]any{"approvers": []id.UserID{alice.UserID, bob.UserID, carol.UserID}, "required": 2}})
		testnode.SendState(t, admin, room, contractType, "notary", map[string]any{"module": notary,
			"events": []string{"org.matrixos.notary.register", "org.matrixos.notary.check"}})

		v1 := send(t, alice, room, "org.matrixos.poll.vote", map[string]any{"option": "yes"})
		v2 := send(t, bob, room, "org.matrixos.poll.vote", map[string]any{"option": "no"})
		v3 := send(t, carol, room, "org.matrixos.poll.vote", map[string]any{"option": "yes"})
		v4 := send(t, alice, room, "org.matrixos.poll.vote", map[string]any{"option": "no"})

		req := send(t, admin, room, "org.matrixos.approval.request", map[string]any{"id": "deploy-42", "action": "deploy v2"})
		a1 := send(t, alice, room, "org.matrixos.approval.approve", map[string]any{"id": "deploy-42"})
		a2 := send(t, admin, room, "org.matrixos.approval.approve", map[string]any{"id": "deploy-42"})
		a3 := send(t, alice, room, "org.matrixos.approval.approve", map[string]any{"id": "deploy-42"})
		a4 := send(t, bob, room, "org.matrixos.approval.approve", map[string]any{"id": "deploy-42"})

		sum := sha256.Sum256([]byte("the contract, signed"))
		doc := hex.EncodeToString(sum[:])
		other := hex.EncodeToString(make([]byte, 32))
		r1 := send(t, alice, room, "org.matrixos.notary.register", map[string]any{"sha256": doc})
		r2 := send(t, bob, room, "org.matrixos.notary.register", map[string]any{"sha256": doc})
		c1 := send(t, carol, room, "org.matrixos.notary.check", map[string]any{"sha256": doc})
		c2 := send(t, carol, room, "org.matrixos.notary.check", map[string]any{"sha256": other})
		catchUp(t, n)

		got := results(t, n, admin, room)
		wantResult(t, got, v1, `{"option":"yes","voter":"`+string(alice.UserID)+`","voters":1,"votes":1}`)
		wantResult(t, got, v2, `{"option":"no","voter":"`+string(bob.UserID)+`","voters":2,"votes":1}`)
		wantResult(t, got, v3, `{"option":"yes","voter":"`+string(carol.UserID)+`","voters":3,"votes":2}`)
		wantResult(t, got, v4, `{"changed_from":"yes","option":"no","voter":"`+string(alice.UserID)+`","voters":3,"votes":2}`)
		wantResult(t, got, req, `{"action":"deploy v2","approvals":0,"id":"deploy-42","requested_by":"`+string(admin.UserID)+`","required":2,"status":"pending"}`)
		wantResult(t, got, a1, `{"approvals":1,"approver":"`+string(alice.UserID)+`","id":"deploy-42","required":2,"status":"pending"}`)
		wantResult(t, got, a2, `{"error":"not an approver","id":"deploy-42","required":2}`)
		wantResult(t, got, a3, `{"error":"already approved","id":"deploy-42","required":2}`)
		wantResult(t, got, a4, `{"approvals":2,"approver":"`+string(bob.UserID)+`","id":"deploy-42","required":2,"status":"approved"}`)
		regTS := got[r1].Result["registered_at"]
		if regTS == nil || got[r1].Result["event_id"] != string(r1) {
			t.Fatalf("registration result %v", got[r1].Result)
		}
		wantResult(t, got, r2, `{"event_id":"`+string(r1)+`","registered_at":"`+regTS.(string)+`","registered_by":"`+string(alice.UserID)+`","sha256":"`+doc+`","status":"already_registered"}`)
		wantResult(t, got, c1, `{"event_id":"`+string(r1)+`","registered_at":"`+regTS.(string)+`","registered_by":"`+string(alice.UserID)+`","sha256":"`+doc+`","status":"registered"}`)
		wantResult(t, got, c2, `{"sha256":"`+other+`","status":"unknown"}`)
		if len(got) != 13 {
			t.Errorf("%d results, want 13", len(got))
		}
		if got[r1].Module != notary || got[r1].Attachment != "notary" {
			t.Errorf("result names %s/%s, want notary/%s", got[r1].Attachment, got[r1].Module, notary)
		}

		size, err := n.Ledger.Size(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		entries, err := n.Ledger.Entries(t.Context(), size)
		if err != nil {
			t.Fatal(err)
		}
		report, err := n.Contracts.Replay(t.Context(), room, entries)
		if err != nil {
			t.Fatal(err)
		}
		if report.Calls != 13 || report.Results != 13 || len(report.Mismatches) != 0 {
			t.Fatalf("replay: %d calls, %d results, mismatches %+v", report.Calls, report.Results, report.Mismatches)
		}
		for name, module := range map[string]string{"poll": poll, "approval": approval, "notary": notary} {
			stored, err := n.Contracts.State(t.Context(), room, name, module)
			if err != nil {
				t.Fatal(err)
			}
			replayed := report.State[name+"/"+module]
			if len(stored) == 0 || !maps.EqualFunc(stored, replayed, slices.Equal) {
				t.Errorf("%s: node state %q, replayed %q", name, stored, replayed)
			}
		}

		// A log without one of the inputs does not reproduce its results.
		var dropped []ledger.Entry
		for _, e := range entries {
			if e.EventID != string(v2) {
				dropped = append(dropped, e)
			}
		}
		report, err = n.Contracts.Replay(t.Context(), room, dropped)
		if err != nil {
			t.Fatal(err)
		}
		if len(report.Mismatches) == 0 {
			t.Fatal("a replay without an input matched every result")
		}
	})
}

// TestFailedResultSendIsRetried checks that a result the node cannot send
// (the contracts user is banned from the room) fails the step: the mark
// stays before the input and the call's state writes do not commit;
// after maxSendFailures tries the attachment is halted.
func TestFailedResultSendIsRetried(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		room := testnode.CreateRoom(t, admin, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		poll := upload(t, n, admin, "examples/poll.c")
		testnode.SendState(t, admin, room, contractType, "poll", map[string]any{"module": poll, "events": []string{"org.matrixos.poll.vote"}})
		catchUp(t, n)
		if _, err := admin.BanUser(t.Context(), room, &mautrix.ReqBanUser{UserID: n.Contracts.Bot(), Reason: "test"}); err != nil {
			t.Fatalf("ban the contracts user: %v", err)
		}
		send(t, admin, room, "org.matrixos.poll.vote", map[string]any{"option": "yes"})
		if _, err := n.Contracts.Step(t.Context()); err == nil {
			t.Fatal("step succeeded though the result could not be sent")
		}
		state, err := n.Contracts.State(t.Context(), room, "poll", poll)
		if err != nil {
			t.Fatal(err)
		}
		if len(state) != 0 {
			t.Fatalf("state %q committed without its result", state)
		}
		// A failure that lasts halts the attachment rather than holding
		// up the node's other contracts for ever. (The node's own follower
		// steps too, so the failures are counted by both.)
		halted := false
		for try := 2; try <= contracts.MaxSendFailures && !halted; try++ {
			_, err := n.Contracts.Step(t.Context())
			halted = err == nil
		}
		if !halted {
			t.Fatalf("still failing after %d steps, want the attachment halted", contracts.MaxSendFailures)
		}
		if state, err := n.Contracts.State(t.Context(), room, "poll", poll); err != nil || len(state) != 0 {
			t.Fatalf("state %q (%v) after the halt, want none", state, err)
		}
	})
}
