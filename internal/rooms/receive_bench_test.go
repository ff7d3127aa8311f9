package rooms

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"
)

// BenchmarkReceivePDU is the inbound federation path of one PDU that
// follows the room's current state (the common case: a message of another
// server's user in a room both servers are in): parse, the sender's
// signature (key from memory), content hash, the three auth checks, the
// write (one commit each) and the hooks. b's messages are built first.
func BenchmarkReceivePDU(b *testing.B) {
	ctx := context.Background()
	n := newFedNet(b, "a", "b")
	roomID := createFedRoom(b, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	var pdus [][]byte
	for i := range b.N {
		pdus = append(pdus, n.send("b", roomID, textProto(bobB, fmt.Sprint(i))).JSON)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, raw := range pdus {
		if _, err := n.e("a").ReceivePDU(ctx, "b", raw); err != nil {
			b.Fatal(err)
		}
	}
}
