package push

import (
	"context"
	"encoding/json/jsontext"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// fakeRooms is a RoomState for tests.
type fakeRooms struct {
	names  map[id.UserID]string // display names in the room
	levels map[id.UserID]int
	events map[id.EventID]*rooms.Event
}

func (f *fakeRooms) ServerName() string { return "hs" }

func (f *fakeRooms) StateEvent(ctx context.Context, roomID id.RoomID, evType, sk string) (*rooms.Event, error) {
	name, ok := f.names[id.UserID(sk)]
	if evType != "m.room.member" || !ok {
		return nil, nil
	}
	c, _ := jsontext.AppendQuote(nil, name)
	return mkEvent("m.room.member", id.UserID(sk), &sk, `{"membership":"join","displayname":`+string(c)+`}`), nil
}

func (f *fakeRooms) PowerLevels(ctx context.Context, roomID id.RoomID) (*event.PowerLevelsEventContent, error) {
	return &event.PowerLevelsEventContent{Users: f.levels}, nil
}

func (f *fakeRooms) Event(ctx context.Context, evID id.EventID) (*rooms.Event, error) {
	return f.events[evID], nil
}

func (f *fakeRooms) StateAt(ctx context.Context, snap int64) ([]*rooms.Event, error) {
	return nil, nil
}

const testRoom = id.RoomID("!room:hs")

func mkEvent(typ string, sender id.UserID, stateKey *string, content string) *rooms.Event {
	return &rooms.Event{
		ID: id.EventID("$" + typ), RoomID: testRoom, Type: typ, Sender: sender, StateKey: stateKey,
		PDU: &pdu.PDU{Type: typ, Sender: sender, StateKey: stateKey, Content: jsontext.Value(content)},
	}
}

func ptr[T any](v T) *T { return &v }

// sendEvent has s record an event of typ from sender at the next
// position, with the room's members after it as given.
func sendEvent(db *storage.DB, fr *fakeRooms, s *Service, evID id.EventID, typ string, sender id.UserID, stateKey *string, content string, members map[id.UserID]string) *rooms.Event {
	ev := mkEvent(typ, sender, stateKey, content)
	ev.ID, ev.Pos = evID, db.Visible()+1
	fr.events[evID] = ev
	s.OnEvent(ev, &rooms.RoomInfo{ID: testRoom, Members: members})
	return ev
}

// sendText is sendEvent for a text message.
func sendText(db *storage.DB, fr *fakeRooms, s *Service, evID id.EventID, sender id.UserID, members map[id.UserID]string) *rooms.Event {
	return sendEvent(db, fr, s, evID, "m.room.message", sender, nil, `{"msgtype":"m.text","body":"hi"}`, members)
}

// unread is user's notification count in the test room's main timeline.
func unread(s *Service, user id.UserID) int {
	main, _ := s.Counts(user, testRoom)
	return main.NotificationCount
}
