package sync_test

import (
	"testing"
	"time"
)

// BenchmarkSlidingWakeUp is one woken sliding sync response for a user in
// 1,000 rooms: Element X's room list (all_rooms, ranges [[0, 999]],
// timeline_limit 1, its required_state, the account_data, receipts and
// typing extensions) after one new message in one room, from the pos of
// the response before, as a long-poll woken by that message builds it.
// The send between two responses is not timed; cpu-ns/op is the
// process's CPU time per timed response.
func BenchmarkSlidingWakeUp(b *testing.B) {
	f := newEngineFixture(b, 1000, 1)
	body := roomListRequest(999)
	body["conn_id"] = "room-list"
	body["extensions"] = map[string]any{
		"account_data": map[string]any{"enabled": true},
		"receipts":     map[string]any{"enabled": true},
		"typing":       map[string]any{"enabled": true},
	}
	pos := f.slidingSync(b, body, "")
	b.ReportAllocs()
	var cpu time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		f.send(b, f.rooms[(i*37)%len(f.rooms)], i)
		i++
		b.StartTimer()
		cpu0 := cpuTime(b)
		pos = f.slidingSync(b, body, pos)
		cpu += cpuTime(b) - cpu0
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
