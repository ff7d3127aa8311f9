package storage

import (
	"slices"
	"testing"
)

// TestPosLogWindowsAfterDrops: a log that dropped its oldest changes
// answers only the windows it still covers (complete), the others not.
func TestPosLogWindowsAfterDrops(t *testing.T) {
	l := NewPosLog[int64](4)
	l.Start(10)
	for pos := int64(11); pos <= 16; pos++ {
		l.Add(pos, pos)
	}
	if _, ok := l.Window(11, 16); ok {
		t.Error("a window from a dropped position is covered")
	}
	got, ok := l.Window(12, 15)
	if !ok || !slices.Equal(got, []int64{13, 14, 15}) {
		t.Errorf("Window(12, 15) = %v, %v; want [13 14 15], true", got, ok)
	}
}

// TestPosLogWindow: a window is answered from the changes in (since, to],
// oldest first, whatever order they were added in; one from before the
// start is not covered.
func TestPosLogWindow(t *testing.T) {
	l := NewPosLog[string](100)
	l.Start(5)
	l.Add(3, "before the start") // committed before: the database has it
	l.Add(6, "a")
	l.Add(8, "c")
	l.Add(7, "b") // out of order
	l.Add(8, "d")
	for _, c := range []struct {
		since, to int64
		want      []string
		ok        bool
	}{
		{4, 8, nil, false},
		{5, 8, []string{"a", "b", "c", "d"}, true},
		{6, 7, []string{"b"}, true},
		{7, 8, []string{"c", "d"}, true},
		{8, 20, nil, true},
		{5, 5, nil, true},
	} {
		got, ok := l.Window(c.since, c.to)
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("Window(%d, %d) = %v, %v; want %v, %v", c.since, c.to, got, ok, c.want, c.ok)
		}
	}
}
