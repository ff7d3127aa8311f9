package rooms

import (
	"context"
	"net/http"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// TestLocalEventBadRequests mirrors Complement's
// TestMSC4289PrivilegedRoomCreators (creator cannot set self in PL event,
// power_level_content_override cannot set the room creator),
// TestMSC4289PrivilegedRoomCreators_Additional,
// TestMSC4289PrivilegedRoomCreators_AdditionalValidation and
// TestMSC4291RoomIDAsHashOfCreateEvent_CannotSendCreateEvent: what the
// request says is wrong, so the answer is 400, not 403.
func TestLocalEventBadRequests(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e

	sends := []struct {
		name    string
		version id.RoomVersion
		p       Proto
		status  int
	}{
		{"v12 power levels naming the creator", id.RoomV12, stateProto(alice, "m.room.power_levels", "", `{"users":{"@alice:test":100}}`), http.StatusBadRequest},
		{"v12 power levels naming another user", id.RoomV12, stateProto(alice, "m.room.power_levels", "", `{"users":{"@bob:test":100}}`), 0},
		{"v11 power levels naming the creator", id.RoomV11, stateProto(alice, "m.room.power_levels", "", `{"users":{"@alice:test":100}}`), 0},
		{"v12 second create event", id.RoomV12, stateProto(alice, "m.room.create", "", `{"room_version":"12","entropy":100}`), http.StatusBadRequest},
		{"v11 second create event", id.RoomV11, stateProto(alice, "m.room.create", "", `{"room_version":"11","entropy":100}`), http.StatusBadRequest},
		{"a member's power levels stay forbidden", id.RoomV12, stateProto(bob, "m.room.power_levels", "", `{"users":{"@bob:test":100}}`), http.StatusForbidden},
	}
	for _, tt := range sends {
		t.Run(tt.name, func(t *testing.T) {
			roomID, _ := createTestRoom(t, e, tt.version)
			_, err := e.Send(ctx, roomID, tt.p)
			assertStatus(t, err, tt.status)
		})
	}

	creates := []struct {
		name       string
		additional any
		status     int
	}{
		{"not an array", "not-an-array", http.StatusBadRequest},
		{"elements not strings", []any{"@foo:example.com", 42}, http.StatusBadRequest},
		{"elements not user IDs", []any{"@foo:example.com", "not-a-user-id"}, http.StatusBadRequest},
		{"invalid server name", []any{"@invalid:dom$ain$.com"}, http.StatusBadRequest},
		{"valid", []any{"@foo:example.com", "@bar:baz.code"}, 0},
	}
	for _, tt := range creates {
		t.Run("additional_creators "+tt.name, func(t *testing.T) {
			_, _, err := e.CreateRoom(ctx, id.RoomV12, alice, map[string]any{"additional_creators": tt.additional},
				[]Proto{memberProto(alice, "join")})
			assertStatus(t, err, tt.status)
		})
	}

	t.Run("power levels naming an additional creator", func(t *testing.T) {
		_, _, err := e.CreateRoom(ctx, id.RoomV12, alice, map[string]any{"additional_creators": []string{"@bob:test"}}, []Proto{
			memberProto(alice, "join"),
			stateProto(alice, "m.room.power_levels", "", `{"users":{"@bob:test":100}}`),
		})
		assertStatus(t, err, http.StatusBadRequest)
	})
}

// assertStatus checks err is nil when status is 0, else a Matrix error
// with that HTTP status.
func assertStatus(t *testing.T, err error, status int) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	me, ok := mxhttp.AsError(err)
	if err == nil || !ok || me.Status != status {
		t.Fatalf("got %v, want status %d", err, status)
	}
}
