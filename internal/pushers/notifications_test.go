package pushers_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

type notificationsPage struct {
	NextToken     string `json:"next_token"`
	Notifications []struct {
		Actions []any          `json:"actions"`
		Event   map[string]any `json:"event"`
		Read    bool           `json:"read"`
		RoomID  id.RoomID      `json:"room_id"`
		TS      int64          `json:"ts"`
	} `json:"notifications"`
}

func getNotifications(t *testing.T, n *testnode.Node, token string, q url.Values) notificationsPage {
	t.Helper()
	body := n.Do(t, "GET", "/_matrix/client/v3/notifications?"+q.Encode(), token, nil).Want(t, 200, "").Body
	return testnode.Decode[notificationsPage](t, body)
}

// waitNotifications polls until the user has want notifications (they are
// recorded asynchronously).
func waitNotifications(t *testing.T, n *testnode.Node, token string, want int) notificationsPage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := getNotifications(t, n, token, url.Values{"limit": {"100"}})
		if len(p.Notifications) >= want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications, want %d", len(p.Notifications), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNotifications(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := dm(t, alice, bob)
		var sent []id.EventID
		for _, body := range []string{"one", "two", "three"} {
			content := map[string]any{"msgtype": "m.text", "body": body}
			if body == "two" {
				content["m.mentions"] = map[string]any{"user_ids": []id.UserID{alice.UserID}}
			}
			r, err := bob.SendMessageEvent(ctx, room, event.EventMessage, content)
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, r.EventID)
		}
		all := waitNotifications(t, n, alice.AccessToken, 3)
		if len(all.Notifications) != 3 || all.NextToken != "" {
			t.Fatalf("notifications: %+v", all)
		}
		for i, nt := range all.Notifications { // newest first
			if nt.Event["event_id"] != string(sent[2-i]) || nt.RoomID != room || nt.Read || nt.TS == 0 || len(nt.Actions) == 0 || nt.Event["room_id"] != nil {
				t.Fatalf("notification %d: %+v", i, nt)
			}
		}
		hl := getNotifications(t, n, alice.AccessToken, url.Values{"only": {"highlight"}})
		if len(hl.Notifications) != 1 || hl.Notifications[0].Event["event_id"] != string(sent[1]) {
			t.Fatalf("only=highlight: %+v", hl)
		}
		// Pages.
		p1 := getNotifications(t, n, alice.AccessToken, url.Values{"limit": {"2"}})
		if len(p1.Notifications) != 2 || p1.NextToken == "" {
			t.Fatalf("page 1: %+v", p1)
		}
		p2 := getNotifications(t, n, alice.AccessToken, url.Values{"limit": {"2"}, "from": {p1.NextToken}})
		if len(p2.Notifications) != 1 || p2.Notifications[0].Event["event_id"] != string(sent[0]) {
			t.Fatalf("page 2: %+v", p2)
		}
		n.Do(t, "GET", "/_matrix/client/v3/notifications?from=nope", alice.AccessToken, nil).Want(t, 400, "M_INVALID_PARAM")
		// A read receipt marks them read.
		if err := alice.SendReceipt(ctx, room, sent[2], event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		for _, nt := range getNotifications(t, n, alice.AccessToken, nil).Notifications {
			if !nt.Read {
				t.Fatalf("unread after receipt: %+v", nt)
			}
		}
		// Bob was notified only of his invite.
		if p := getNotifications(t, n, bob.AccessToken, nil); len(p.Notifications) != 1 || p.Notifications[0].Event["type"] != "m.room.member" {
			t.Fatalf("bob's notifications: %+v", p)
		}
	})
}
