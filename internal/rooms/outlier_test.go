package rooms

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestInsertRows: rows go in parts of at most maxRowsPerInsert, then of
// falling powers of two, each with a VALUES list of its size, every row
// once and in order.
func TestInsertRows(t *testing.T) {
	for _, tc := range []struct {
		rows  int
		parts []int
	}{
		{0, nil},
		{1, []int{1}},
		{3, []int{2, 1}},
		{128, []int{128}},
		{300, []int{128, 128, 32, 8, 4}},
	} {
		rows := make([]int, tc.rows)
		for i := range rows {
			rows[i] = i
		}
		var parts, seen []int
		err := insertRows(rows, 3, func(part []int, values string) error {
			parts = append(parts, len(part))
			seen = append(seen, part...)
			if got := strings.Count(values, "("); got != len(part) {
				t.Errorf("%d rows: VALUES has %d rows for a part of %d", tc.rows, got, len(part))
			}
			if !strings.HasSuffix(values, "$"+itoa(3*len(part))+")") {
				t.Errorf("%d rows: VALUES %q does not end at the part's last placeholder", tc.rows, values)
			}
			return nil
		})
		if err != nil || !slices.Equal(parts, tc.parts) || !slices.Equal(seen, rows) {
			t.Errorf("%d rows: parts %v (want %v), rows in order %v, err %v", tc.rows, parts, tc.parts, slices.Equal(seen, rows), err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
