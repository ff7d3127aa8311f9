package ephemeral_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// pollUntil long-polls /sync from since in the background until cond
// holds for a response (sent on the channel) or five seconds pass (nil).
// Each long-poll waits up to ten seconds, so a missing wake-up fails.
func pollUntil(c *mautrix.Client, since string, cond func(*mautrix.RespSync) bool) <-chan *mautrix.RespSync {
	ch := make(chan *mautrix.RespSync, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			s, err := c.SyncRequest(ctx, 10000, since, "", false, "")
			if err != nil {
				ch <- nil
				return
			}
			if cond(s) {
				ch <- s
				return
			}
			since = s.NextBatch
		}
	}()
	return ch
}

func await(t *testing.T, what string, ch <-chan *mautrix.RespSync) *mautrix.RespSync {
	t.Helper()
	s := <-ch
	if s == nil {
		t.Fatalf("%s: not seen by a long-polling sync in time", what)
	}
	return s
}

// ephemeral returns the room's ephemeral events of the type.
func ephemeral(s *mautrix.RespSync, roomID id.RoomID, typ string) []map[string]any {
	jr := s.Rooms.Join[roomID]
	if jr == nil {
		return nil
	}
	var out []map[string]any
	for _, ev := range jr.Ephemeral.Events {
		if ev.Type.Type == typ {
			var c map[string]any
			json.Unmarshal(ev.Content.VeryRaw, &c)
			out = append(out, c)
		}
	}
	return out
}

// typingUsers returns the room's last m.typing list, and whether there was one.
func typingUsers(s *mautrix.RespSync, roomID id.RoomID) ([]string, bool) {
	evs := ephemeral(s, roomID, "m.typing")
	if len(evs) == 0 {
		return nil, false
	}
	list, _ := evs[len(evs)-1]["user_ids"].([]any)
	out := []string{}
	for _, u := range list {
		out = append(out, u.(string))
	}
	return out, true
}

// receipt returns the receipt info of user for eventID and type in the
// room's m.receipt events, or nil.
func receipt(s *mautrix.RespSync, roomID id.RoomID, eventID id.EventID, rtype string, user id.UserID) map[string]any {
	for _, c := range ephemeral(s, roomID, "m.receipt") {
		byType, _ := c[string(eventID)].(map[string]any)
		users, _ := byType[rtype].(map[string]any)
		if info, ok := users[string(user)].(map[string]any); ok {
			return info
		}
	}
	return nil
}

// hasReceiptType reports whether any m.receipt in the response has the type.
func hasReceiptType(s *mautrix.RespSync, rtype string) bool {
	for roomID := range s.Rooms.Join {
		for _, c := range ephemeral(s, roomID, "m.receipt") {
			for _, v := range c {
				if byType, ok := v.(map[string]any); ok && byType[rtype] != nil {
					return true
				}
			}
		}
	}
	return false
}

// presenceOf returns the content of the last m.presence event from user.
func presenceOf(s *mautrix.RespSync, user id.UserID) map[string]any {
	var out map[string]any
	for _, ev := range s.Presence.Events {
		if ev.Type.Type == "m.presence" && ev.Sender == user {
			out = nil
			json.Unmarshal(ev.Content.VeryRaw, &out)
		}
	}
	return out
}

// validateSyncEvents fetches a raw initial sync and checks its typing,
// receipt and presence events against the spec's event schemas.
func validateSyncEvents(t *testing.T, c *mautrix.Client) {
	t.Helper()
	body := testnode.Decode[struct {
		Presence struct {
			Events []json.RawMessage `json:"events"`
		} `json:"presence"`
		Rooms struct {
			Join map[string]struct {
				Ephemeral struct {
					Events []json.RawMessage `json:"events"`
				} `json:"ephemeral"`
			} `json:"join"`
		} `json:"rooms"`
	}](t, testnode.Call(t, c, "GET", testnode.V3+"/sync", nil).Body)
	spec := spectest.LoadDefault(t)
	evs := body.Presence.Events
	for _, jr := range body.Rooms.Join {
		evs = append(evs, jr.Ephemeral.Events...)
	}
	for _, raw := range evs {
		var ev struct {
			Type string `json:"type"`
		}
		json.Unmarshal(raw, &ev)
		if err := spec.ValidateEvent(ev.Type, raw); err != nil {
			t.Errorf("%s not per spec: %v\n%s", ev.Type, err, raw)
		}
	}
}

// setup makes alice's public room with bob in it, and carol outside it.
func setup(t *testing.T, n *testnode.Node) (alice, bob, carol *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	alice, bob, carol = n.Register("alice"), n.Register("bob"), n.Register("carol")
	return alice, bob, carol, testnode.PublicRoom(t, alice, bob)
}
