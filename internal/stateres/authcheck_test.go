package stateres

import (
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestAuthorizeRefusesWhatPanics: a power levels event that drops a user
// whose level equals the sender's makes mautrix's Authorize (v0.33.0)
// dereference a nil level; the spec refuses the event, and so does
// authorize instead of crashing the resolution.
func TestAuthorizeRefusesWhatPanics(t *testing.T) {
	_, base := publicRoom(t, id.RoomV11, 50)
	base.mustSend(alice, event.StatePowerLevels.Type, "", levels(id.RoomV11, map[id.UserID]int{bob: 50, charlie: 50}))
	if eventID, err := base.send(bob, event.StatePowerLevels.Type, "", levels(id.RoomV11, map[id.UserID]int{bob: 50})); err == nil {
		t.Fatalf("bob dropped charlie's level, equal to his own, in %s", eventID)
	}
}
