package main

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	mauas "maunium.net/go/mautrix/appservice"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAppserviceTransactionsSurviveKill9: while a burst of messages is sent
// to a room in an appservice's namespaces, the matrixos process is killed
// with SIGKILL; after the restart the appservice (deduplicating by
// transaction ID, as the spec says it does) has every acknowledged event
// exactly once, in the room's order, and a transaction sent again carries
// the same body (the fake appservice fails the test otherwise).
func TestAppserviceTransactionsSurviveKill9(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			reg := mauas.CreateRegistration()
			as := testnode.NewFakeAppservice(t, reg.ServerToken)
			as.SetDelay(20 * time.Millisecond) // transactions are in flight when the kill comes
			reg.ID, reg.URL, reg.SenderLocalpart = "burst", as.URL(), "burstbot"
			reg.Namespaces.UserIDs = mauas.NamespaceList{{Regex: "@burst.*:localhost"}}
			yaml, err := reg.YAML()
			if err != nil {
				t.Fatal(err)
			}
			data := t.TempDir()
			if err := testnode.WriteAppservices(data, map[string]string{"burst.yaml": yaml}); err != nil {
				t.Fatal(err)
			}
			args := []string{"--data", data}
			if engine == "postgres" {
				args = append(args, "--database", pgtest.Start(t))
			}
			s := startServer(t, args...)
			code, resp := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
				"username": "burst", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
			if code != 200 {
				t.Fatalf("register: %d %v", code, resp)
			}
			token := resp["access_token"].(string)
			code, resp = call(t, "POST", s.url+"/_matrix/client/v3/createRoom", token, map[string]any{})
			if code != 200 {
				t.Fatalf("createRoom: %d %v", code, resp)
			}
			roomID := resp["room_id"].(string)

			var mu sync.Mutex
			acked := map[string]bool{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil && i < 2000; i++ {
						u := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/w%d-%d", s.url, roomID, w, i)
						code, resp := call(t, "PUT", u, token, map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("w%d-%d", w, i)})
						if code != 200 {
							return // the server is gone
						}
						mu.Lock()
						acked[resp["event_id"].(string)] = true
						mu.Unlock()
					}
				}()
			}
			time.Sleep(700 * time.Millisecond)
			s.cmd.Process.Signal(syscall.SIGKILL)
			s.cmd.Wait()
			wg.Wait()
			if len(acked) == 0 {
				t.Fatal("no event was acknowledged before the kill")
			}
			delivered := len(as.Events())

			s2 := startServer(t, args...)
			code, resp = call(t, "PUT", s2.url+"/_matrix/client/v3/rooms/"+roomID+"/send/m.room.message/after", token, map[string]string{"msgtype": "m.text", "body": "after"})
			if code != 200 {
				t.Fatalf("send after restart: %d %v", code, resp)
			}
			evs := as.WaitBody("after")
			timeline := roomTimeline(t, s2.url, token, roomID)
			pos := map[string]int{}
			for i, evID := range timeline {
				pos[evID] = i
			}
			seen := map[string]bool{}
			last := -1
			for _, ev := range evs {
				if seen[ev.EventID] {
					t.Fatalf("event %s delivered twice", ev.EventID)
				}
				seen[ev.EventID] = true
				p, ok := pos[ev.EventID]
				if !ok {
					t.Fatalf("delivered event %s is not in the room", ev.EventID)
				}
				if p < last {
					t.Fatalf("event %s delivered out of the room's order", ev.EventID)
				}
				last = p
			}
			for evID := range acked {
				if !seen[evID] {
					t.Fatalf("acknowledged event %s never reached the appservice", evID)
				}
			}
			t.Logf("%d acknowledged events, %d delivered before the kill, %d after the restart", len(acked), delivered, len(evs)-delivered)
		})
	}
}

// roomTimeline pages through the room's /messages from the start and
// returns its event IDs in order.
func roomTimeline(t *testing.T, base, token, roomID string) []string {
	t.Helper()
	var out []string
	from := ""
	for {
		u := base + "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/messages?dir=f&limit=500"
		if from != "" {
			u += "&from=" + url.QueryEscape(from)
		}
		code, resp := call(t, "GET", u, token, nil)
		if code != 200 {
			t.Fatalf("messages: %d %v", code, resp)
		}
		chunk, _ := resp["chunk"].([]any)
		for _, ev := range chunk {
			out = append(out, ev.(map[string]any)["event_id"].(string))
		}
		end, _ := resp["end"].(string)
		if len(chunk) == 0 || end == "" {
			return out
		}
		from = end
	}
}
