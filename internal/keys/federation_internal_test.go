package keys

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestContinues(t *testing.T) {
	for _, c := range []struct {
		prev []int64
		held int64
		want bool
	}{
		{[]int64{5}, 5, true},
		{[]int64{5, 5}, 5, true},
		{[]int64{4}, 5, false},    // an update in between was missed
		{[]int64{5, 6}, 5, false}, // one of two earlier updates was missed
		{nil, 5, false},           // no link to what is held
		{[]int64{}, 0, false},
	} {
		if got := continues(c.prev, c.held); got != c.want {
			t.Errorf("continues(%v, %d) = %v, want %v", c.prev, c.held, got, c.want)
		}
	}
}

func TestSplitMessages(t *testing.T) {
	body := json.RawMessage(`{"body":"` + strings.Repeat("x", 20<<10) + `"}`)
	users := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	for i := range 5 {
		users[id.UserID(fmt.Sprintf("@u%d:example.org", i))] = map[id.DeviceID]json.RawMessage{"A": body, "B": body}
	}
	parts := splitMessages(users)
	n := 0
	for _, p := range parts {
		size := 0
		for _, devs := range p {
			for _, c := range devs {
				size += len(c)
				n++
			}
		}
		if size > toDeviceEDUBytes+len(body) {
			t.Errorf("a part holds %d bytes of messages", size)
		}
	}
	if n != 10 || len(parts) < 4 {
		t.Errorf("%d messages in %d parts, want all 10 in parts of about %d bytes", n, len(parts), toDeviceEDUBytes)
	}
	if parts := splitMessages(nil); len(parts) != 0 {
		t.Errorf("no messages split into %d parts", len(parts))
	}
}

func TestMessageIDStable(t *testing.T) {
	a := messageID("@a:x", "D", "m.t", "txn", "y", 0)
	if a != messageID("@a:x", "D", "m.t", "txn", "y", 0) {
		t.Error("the message ID of a retried transaction differs")
	}
	for _, other := range []string{
		messageID("@a:x", "D", "m.t", "txn2", "y", 0),
		messageID("@a:x", "E", "m.t", "txn", "y", 0),
		messageID("@a:x", "D", "m.t", "txn", "y", 1),
		messageID("@a:x", "D", "m.u", "txn", "y", 0),
	} {
		if other == a {
			t.Error("two transactions share a message ID")
		}
	}
}
