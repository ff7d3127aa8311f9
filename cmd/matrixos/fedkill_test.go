package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAcknowledgedInboundPDUsSurviveKill9: node A (in this process) sends
// node B (a matrixos process) a burst of transactions, each with events
// of a room both are in (messages and topic changes: one, or five that B
// takes together), from several senders at once, and B is killed with
// SIGKILL in the middle. Restarted, B has every PDU it acknowledged with 200, its room state is whole (the
// room's create, power levels, join rules, both members, and a topic no
// older than the newest acknowledged one), and the room goes on: B takes
// A's next event and bob's message.
func TestAcknowledgedInboundPDUsSurviveKill9(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	a.Federation.Outbox.Stop() // the test's transactions are A's only ones
	alice := a.Register("alice")
	roomID := testnode.PublicRoom(t, alice)

	bName := freeAddr(t)
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "localhost")
	args := []string{"--data", t.TempDir(), "--server-name", bName, "--federation", "--federation-listen", bName,
		"--tls-cert", certFile, "--tls-key", keyFile, "--federation-ca", ca.File, "--allow-private-networks", "127.0.0.0/8"}
	b := startServer(t, args...)
	code, reg := call(t, "POST", b.url+"/_matrix/client/v3/register", "", map[string]any{
		"username": "bob", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
	if code != 200 {
		t.Fatalf("register bob on B: %d %v", code, reg)
	}
	bob, bobToken := id.UserID(reg["user_id"].(string)), reg["access_token"].(string)
	joinURL := b.url + "/_matrix/client/v3/join/" + url.PathEscape(string(roomID)) + "?server_name=" + url.QueryEscape(a.Config.ServerName)
	if code, resp := call(t, "POST", joinURL, bobToken, map[string]any{}); code != 200 {
		t.Fatalf("bob joins through A: %d %v", code, resp)
	}

	// The burst: each sender makes A's events and sends each to B in a
	// transaction of its own, until B stops answering.
	var mu sync.Mutex
	var acked []id.EventID
	lastAckedTopic := -1 // the depth of the newest acknowledged topic change
	sendToB := func(txnID string, evs ...*rooms.Event) error {
		req := &federation.ReqSendTransaction{
			Destination: bName, TxnID: txnID, Origin: a.Config.ServerName,
			OriginServerTS: jsontime.UM(time.Now()),
		}
		for _, ev := range evs {
			req.PDUs = append(req.PDUs, ev.JSON)
		}
		resp, err := a.Federation.Client.SendTransaction(ctx, req)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if e := resp.PDUs[ev.ID].Error; e != "" {
				return fmt.Errorf("B refused %s: %s", ev.ID, e)
			}
		}
		return nil
	}
	burst, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; burst.Err() == nil; i++ {
				n := w*100000 + i
				p := rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: json.RawMessage(`{"msgtype":"m.text","body":"burst"}`)}
				if i%5 == 0 {
					empty := ""
					p = rooms.Proto{Type: "m.room.topic", StateKey: &empty, Sender: alice.UserID, Content: json.RawMessage(`{"topic":"` + strconv.Itoa(n) + `"}`)}
				}
				ps := []rooms.Proto{p}
				if w == 0 {
					// This sender's transactions carry five PDUs of the
					// room, which B takes together.
					ps = append(ps, slices.Repeat([]rooms.Proto{p}, 4)...)
				}
				evs, err := a.Rooms.SendMany(ctx, roomID, ps)
				if err != nil {
					t.Errorf("A sends: %v", err)
					return
				}
				if err := sendToB(fmt.Sprintf("burst-%d", n), evs...); err != nil {
					return // B is gone
				}
				mu.Lock()
				for _, ev := range evs {
					acked = append(acked, ev.ID)
					if p.Type == "m.room.topic" {
						lastAckedTopic = max(lastAckedTopic, int(ev.Depth))
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("B acknowledged no PDU before the kill")
	}

	b = startServer(t, args...)
	for _, evID := range acked {
		code, ev := call(t, "GET", b.url+"/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+"/event/"+url.PathEscape(string(evID)), bobToken, nil)
		if code != 200 {
			t.Fatalf("PDU %s, acknowledged by B, is missing after kill -9: %d %v", evID, code, ev)
		}
	}
	t.Logf("%d acknowledged PDUs survived kill -9", len(acked))
	topicID := wantWholeState(t, b, bobToken, roomID, alice.UserID, bob)
	if lastAckedTopic >= 0 {
		topic, err := a.Rooms.Event(ctx, topicID)
		if err != nil {
			t.Fatalf("B's current topic %q is not an event of A: %v", topicID, err)
		}
		if topic.Depth < int64(lastAckedTopic) {
			t.Errorf("B's topic after the restart is at depth %d, older than the newest acknowledged one (%d)", topic.Depth, lastAckedTopic)
		}
	}

	// The room goes on, both ways.
	ev, err := a.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: json.RawMessage(`{"msgtype":"m.text","body":"after"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sendToB("after", ev); err != nil {
		t.Fatalf("B takes A's event after the restart: %v", err)
	}
	if code, resp := call(t, "PUT", b.url+"/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+"/send/m.room.message/after", bobToken,
		map[string]string{"msgtype": "m.text", "body": "after"}); code != 200 {
		t.Fatalf("bob sends after the restart: %d %v", code, resp)
	}
}

// wantWholeState checks B's current state of the room (the create event,
// power levels, join rules, alice and bob joined) and returns its topic
// event's ID.
func wantWholeState(t *testing.T, b *server, token string, roomID id.RoomID, alice, bob id.UserID) id.EventID {
	t.Helper()
	req, _ := http.NewRequest("GET", b.url+"/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+"/state", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var state []struct {
		Type     string         `json:"type"`
		StateKey string         `json:"state_key"`
		EventID  id.EventID     `json:"event_id"`
		Content  map[string]any `json:"content"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("B's room state after the restart: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&state); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	topicID := id.EventID("")
	for _, ev := range state {
		got[ev.Type+"|"+ev.StateKey] = ev.Content
		if ev.Type == "m.room.topic" {
			topicID = ev.EventID
		}
	}
	for _, key := range []string{"m.room.create|", "m.room.power_levels|", "m.room.join_rules|"} {
		if got[key] == nil {
			t.Errorf("B's room state lacks %s after the restart", key)
		}
	}
	for _, u := range []id.UserID{alice, bob} {
		if m := got["m.room.member|"+string(u)]; m == nil || m["membership"] != "join" {
			t.Errorf("B's room state shows %s as %v after the restart", u, m)
		}
	}
	return topicID
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
