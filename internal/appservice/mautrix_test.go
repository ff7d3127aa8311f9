package appservice_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mauas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// mautrixAppservice runs mautrix-go's appservice HTTP side (the one
// bridges use) for reg on a loopback port.
func mautrixAppservice(t *testing.T, reg *mauas.Registration) *mauas.AppService {
	as := mauas.Create()
	as.Registration = reg
	srv := httptest.NewServer(as.Router)
	t.Cleanup(srv.Close)
	reg.URL = srv.URL
	return as
}

// nextEvent returns the next event mautrix dispatched on ch.
func nextEvent(t *testing.T, ch chan *event.Event, what string) *event.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// TestMautrixAppserviceReceivesEvents: mautrix-go's appservice package
// parses the transactions: the room's events arrive on its Events channel
// in order, with their content, as state or timeline events.
func TestMautrixAppserviceReceivesEvents(t *testing.T) {
	reg := registration("bridge", "", "@watched.*:localhost")
	as := mautrixAppservice(t, reg)
	n := testnode.Start(t, testnode.SQLite, testnode.WithAppservices(t, map[string]string{"bridge.yaml": yamlOf(t, reg)}))
	watched := n.Register("watched")
	room := testnode.CreateRoom(t, watched, &mautrix.ReqCreateRoom{Name: "Bridged"})
	sent := sendTexts(t, watched, room, "one", "two", "three")

	var names []string
	var messages []id.EventID
	for len(messages) < len(sent) {
		ev := nextEvent(t, as.Events, "the room's events")
		if ev.RoomID != room {
			t.Fatalf("event %s of room %s", ev.ID, ev.RoomID)
		}
		switch ev.Type {
		case event.StateRoomName:
			if ev.Type.Class != event.StateEventType {
				t.Errorf("m.room.name parsed as %v", ev.Type.Class)
			}
			names = append(names, ev.Content.AsRoomName().Name)
		case event.EventMessage:
			if got, want := ev.Content.AsMessage().Body, []string{"one", "two", "three"}[len(messages)]; got != want {
				t.Errorf("message %d: %q, want %q", len(messages), got, want)
			}
			messages = append(messages, ev.ID)
		}
	}
	if len(names) != 1 || names[0] != "Bridged" {
		t.Errorf("room names delivered: %v", names)
	}
	for i := range sent {
		if messages[i] != sent[i] {
			t.Errorf("message %d is %s, sent %s", i, messages[i], sent[i])
		}
	}
}
