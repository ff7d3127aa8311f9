package stateres

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestUserPowerLevel reads levels as the room version's rules say: before
// room version 10 a numeric string counts, from then on only integers do.
func TestUserPowerLevel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version id.RoomVersion
		content string
		want    int64
	}{
		{"listed", id.RoomV10, `{"users":{"@bob:example.org":75},"users_default":10}`, 75},
		{"default", id.RoomV10, `{"users":{"@carol:example.org":75},"users_default":10}`, 10},
		{"nothing", id.RoomV10, `{}`, 0},
		{"string before v10", id.RoomV6, `{"users":{"@bob:example.org":" 42 "}}`, 42},
		{"string from v10 falls back", id.RoomV10, `{"users":{"@bob:example.org":"42"},"users_default":5}`, 5},
		{"dots in the user ID are not a path", id.RoomV10, `{"users":{"@bob:example":{"org":99}},"users_default":3}`, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := userPowerLevel(tc.version, []byte(tc.content), bob); got != tc.want {
				t.Errorf("userPowerLevel = %d, want %d", got, tc.want)
			}
		})
	}
}
