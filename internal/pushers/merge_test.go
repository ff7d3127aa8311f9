package pushers

import (
	"slices"
	"testing"

	"github.com/matrixos/matrixos/internal/push"
)

// TestMergeNewestFirst checks how /notifications merges the rows of
// push_events with the per-user rows recorded before them: newest first,
// at most limit, an event in both once, with the old row's exact actions.
func TestMergeNewestFirst(t *testing.T) {
	n := func(pos int64, legacy bool) push.Notification {
		nt := push.Notification{Pos: pos}
		if legacy {
			nt.TS = 1
		}
		return nt
	}
	tests := []struct {
		name           string
		recorded, old  []push.Notification
		limit          int
		wantPos        []int64
		wantLegacyAt10 bool
	}{
		{"recorded only", []push.Notification{n(12, false), n(10, false)}, nil, 5, []int64{12, 10}, false},
		{"old only", nil, []push.Notification{n(9, true), n(3, true)}, 5, []int64{9, 3}, false},
		{"interleaved", []push.Notification{n(12, false), n(7, false)}, []push.Notification{n(9, true), n(3, true)}, 3, []int64{12, 9, 7}, false},
		{"in both", []push.Notification{n(11, false), n(10, false)}, []push.Notification{n(10, true), n(2, true)}, 5, []int64{11, 10, 2}, true},
		{"limit", []push.Notification{n(11, false)}, []push.Notification{n(10, true)}, 1, []int64{11}, false},
	}
	for _, tt := range tests {
		got := mergeNewestFirst(tt.recorded, tt.old, tt.limit)
		var pos []int64
		for _, g := range got {
			pos = append(pos, g.Pos)
			if g.Pos == 10 && tt.wantLegacyAt10 && g.TS != 1 {
				t.Errorf("%s: position 10 taken from push_events, want the old row", tt.name)
			}
		}
		if !slices.Equal(pos, tt.wantPos) {
			t.Errorf("%s: positions %v, want %v", tt.name, pos, tt.wantPos)
		}
	}
}
