//go:build goolm

package assistant_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/assistant/openaifake"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAssistantHidesModelErrors: an answer names the model, not the model
// server's address; when the model server fails, the room is told that
// it failed, not what it answered (which may name internal addresses or
// secrets): that goes to the log.
func TestAssistantHidesModelErrors(t *testing.T) {
	fake := openaifake.Start(t, func(r openaifake.Request) string { return "The team picked March 3rd." }, nil)
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant, func(c *config.Config) {
		c.AssistantModelURL, c.AssistantModel, c.AssistantModelPrivate = fake.URL, "fake-model", true
	})
	host := strings.TrimPrefix(strings.TrimSuffix(fake.URL, "/v1"), "http://")
	alice := n.Register("alice")
	room := plainRoom(t, alice, event.HistoryVisibilityShared)
	said := testnode.SendText(t, alice, room, "We agreed on March 3rd for the release.")
	if got := ask(t, alice, room, "!assistant summary last 1h"); !strings.Contains(got, "answered by the model fake-model") || strings.Contains(got, host) {
		t.Errorf("the answer should name the model and not its server %s:\n%s", host, got)
	}

	const internal = "upstream http://10.20.30.40:11434 refused the key sk-secret"
	fake.Fail(http.StatusBadGateway, internal)
	leaks := func(got string) bool {
		return strings.Contains(got, "10.20.30.40") || strings.Contains(got, "sk-secret") || strings.Contains(got, host)
	}
	for _, q := range []string{"!assistant summary last 1h", "!assistant ask when is the release?"} {
		if got := ask(t, alice, room, q); !strings.Contains(got, "The model server failed") || !strings.Contains(got, "answered by the offline engine") || leaks(got) {
			t.Errorf("%q with the model server failing:\n%s", q, got)
		}
	}
	translate := &event.MessageEventContent{MsgType: event.MsgText, Body: "!assistant translate de"}
	translate.SetReply(&event.Event{ID: said, RoomID: room})
	resp, err := alice.SendMessageEvent(context.Background(), room, event.EventMessage, translate)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := plainReplyTo(t, alice, room, resp.EventID); !strings.HasPrefix(got, "translate: ") || leaks(got) {
		t.Errorf("translate with the model server failing: %s", got)
	}
}
