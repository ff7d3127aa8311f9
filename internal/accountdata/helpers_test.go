package accountdata_test

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// roomAccountData returns the account data events of a joined room in a
// sync response.
func roomAccountData(s *mautrix.RespSync, roomID id.RoomID) []*event.Event {
	if jr := s.Rooms.Join[roomID]; jr != nil {
		return jr.AccountData.Events
	}
	return nil
}
