package analytics

import (
	"math/bits"
	"time"

	"maunium.net/go/mautrix/id"
)

// MessageTypes are the event types counted as messages. The type is in
// the clear for encrypted events (m.room.encrypted), so an encrypted
// room counts the same way without anything being decrypted.
var MessageTypes = []string{"m.room.message", "m.room.encrypted", "m.sticker"}

// maxReplyDelay is the longest gap between two messages of different
// senders still counted as a reply; a longer one starts a new
// conversation.
const maxReplyDelay = 24 * time.Hour

// Message is the metadata of one message the aggregates count.
type Message struct {
	RoomID id.RoomID
	Sender id.UserID
	TS     int64 // origin_server_ts, milliseconds
}

// last is a room's previous message, which the next one by another
// sender replies to.
type last struct {
	sender id.UserID
	ts     int64
}

type hourKey struct {
	room id.RoomID
	hour int64
}

type senderKey struct {
	room   id.RoomID
	day    int64
	sender id.UserID
}

type replyKey struct {
	room id.RoomID
	day  int64
	bin  int
}

// batch is what a run of messages adds to the bucket tables.
type batch struct {
	hours   map[hourKey]int64
	senders map[senderKey]int64
	replies map[replyKey]int64
	last    map[id.RoomID]last
}

func newBatch() *batch {
	return &batch{hours: map[hourKey]int64{}, senders: map[senderKey]int64{},
		replies: map[replyKey]int64{}, last: map[id.RoomID]last{}}
}

// add counts m. prev is the room's message before m when the batch has
// none (from analytics_last); the batch then remembers m as the room's
// last.
func (b *batch) add(m Message, prev last, hasPrev bool) {
	if l, ok := b.last[m.RoomID]; ok {
		prev, hasPrev = l, true
	}
	hour := hourOf(m.TS)
	b.hours[hourKey{m.RoomID, hour}]++
	b.senders[senderKey{m.RoomID, hour / 24, m.Sender}]++
	if hasPrev && prev.sender != m.Sender {
		if delay := m.TS - prev.ts; delay >= 0 && delay <= maxReplyDelay.Milliseconds() {
			b.replies[replyKey{m.RoomID, hour / 24, replyBin(delay / 1000)}]++
		}
	}
	b.last[m.RoomID] = last{sender: m.Sender, ts: m.TS}
}

// hourOf is the hour bucket (Unix hours) of a timestamp in milliseconds.
func hourOf(ms int64) int64 {
	if ms < 0 {
		return 0
	}
	return ms / int64(time.Hour/time.Millisecond)
}

// replyBin is the log2 bin of a delay in seconds: 0 for under a second,
// k for 2^(k-1) <= seconds < 2^k.
func replyBin(seconds int64) int {
	if seconds <= 0 {
		return 0
	}
	return bits.Len64(uint64(seconds))
}

// binBounds are the seconds a reply bin covers, [lo, hi).
func binBounds(bin int) (lo, hi float64) {
	if bin <= 0 {
		return 0, 1
	}
	return float64(uint64(1) << (bin - 1)), float64(uint64(1) << bin)
}

// medianOf estimates the median delay in seconds from bin counts,
// interpolating inside the bin that holds it; ok is false without
// replies.
func medianOf(bins map[int]int64) (seconds float64, n int64, ok bool) {
	maxBin := 0
	for b, c := range bins {
		n += c
		maxBin = max(maxBin, b)
	}
	if n == 0 {
		return 0, 0, false
	}
	half := float64(n) / 2
	var below float64
	for b := 0; b <= maxBin; b++ {
		c := float64(bins[b])
		if c > 0 && below+c >= half {
			lo, hi := binBounds(b)
			return lo + (hi-lo)*(half-below)/c, n, true
		}
		below += c
	}
	return 0, n, false
}
