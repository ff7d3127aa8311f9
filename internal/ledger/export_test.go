package ledger_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestExportVerifies: a room's export holds each of its logged events, and
// no other room's, with inclusion proofs against one checkpoint and their
// contents; VerifyExport accepts it (a redacted event's content is not
// checked, its hash is) and refuses it, saying why, after any change: an
// entry's hash, an event's content, the redacted mark taken off, events out
// of order, another room's entry, or a key other than the log's.
func TestExportVerifies(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all" })
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	other := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	testnode.SendText(t, alice, other, "another room")
	var sent []string
	for _, body := range []string{"one", "two", "three"} {
		sent = append(sent, string(testnode.SendText(t, alice, room, body)))
	}
	if _, err := alice.RedactEvent(ctx, room, id.EventID(sent[1])); err != nil {
		t.Fatalf("redact: %v", err)
	}
	catchUp(t, n)
	last := testnode.SendText(t, alice, room, "last")
	wantLogged(t, n, alice, room, last) // waits until a checkpoint covers it

	x, err := n.Ledger.Prover().Export(ctx, string(room), ledger.ExportOptions{Contents: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ev := range x.Events {
		e, err := ledger.ParseEntry([]byte(ev.Entry))
		if err != nil || e.RoomID != string(room) {
			t.Fatalf("exported entry %q: %v", ev.Entry, err)
		}
		seen[e.EventID] = true
		if (e.EventID == sent[1]) != ev.Redacted {
			t.Fatalf("%s redacted: %v", e.EventID, ev.Redacted)
		}
	}
	for _, eid := range append(sent, string(last)) {
		if !seen[eid] {
			t.Fatalf("%s is not in the export", eid)
		}
	}
	data, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ledger.VerifyExport(data, n.Ledger.PublicKey)
	if err != nil {
		t.Fatalf("the export does not verify: %v", err)
	}
	if v.Events != len(x.Events) || v.Contents != len(x.Events)-1 || v.RoomID != string(room) {
		t.Fatalf("verified %+v, want %d events, all but the redacted one's content checked", v, len(x.Events))
	}

	otherX, err := n.Ledger.Prover().Export(ctx, string(other), ledger.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	redactedAt := -1
	for i, ev := range x.Events {
		if ev.Redacted {
			redactedAt = i
		}
	}
	plainAt := len(x.Events) - 1 // "last"
	tampered := map[string]func(x *ledger.Export){
		"content hash": func(x *ledger.Export) {
			x.Events[0].Entry = strings.Replace(x.Events[0].Entry, `"content_hash":"`, `"content_hash":"A`, 1)
		},
		"content": func(x *ledger.Export) {
			x.Events[plainAt].Event = json.RawMessage(strings.Replace(string(x.Events[plainAt].Event), `"last"`, `"edited"`, 1))
		},
		"redacted mark": func(x *ledger.Export) { x.Events[redactedAt].Redacted = false },
		"order":         func(x *ledger.Export) { x.Events[0], x.Events[1] = x.Events[1], x.Events[0] },
		"other room":    func(x *ledger.Export) { x.Events = otherX.Events[len(otherX.Events)-1:] },
	}
	for name, change := range tampered {
		var c ledger.Export
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		change(&c)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.VerifyExport(b, n.Ledger.PublicKey); err == nil {
			t.Errorf("an export with a changed %s verifies", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := ledger.VerifyExport(data, strings.Replace(n.Ledger.PublicKey, "ledger", "ledgex", 1)); err == nil {
		t.Error("the export verifies with another key")
	}
}
