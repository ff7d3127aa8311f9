package node

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
)

// wireAppserviceQueue makes the delivery queue of the appservices and
// feeds it: every event, in the write that stores it;
// typing, public receipts and presence (MSC2409); to-device messages for
// their users' devices (MSC4203); device list changes and key counts
// (MSC3202).
// A reload that adds an appservice starts its worker, and a ping the
// appservice answers ends its backoff.
func (n *Node) wireAppserviceQueue(as *appservice.Service) {
	q := appservice.NewQueue(n.DB, n.log, as.Registry, n.Rooms)
	n.AppserviceQueue = q
	as.OnReload = append(as.OnReload, q.Reloaded)
	as.OnPinged = append(as.OnPinged, q.Wake)
	n.Rooms.OnPersist = append(n.Rooms.OnPersist, q.QueueEvent)

	// The typing users are read again by the queue, in order with its
	// writes: those the hook is given may already be stale.
	n.Ephemeral.OnTyping = func(ctx context.Context, roomID id.RoomID, _ []id.UserID) {
		if err := q.QueueTyping(ctx, roomID, n.Ephemeral.Typing); err != nil {
			n.log.Warn("queue typing for appservices", "room_id", roomID, "err", err)
		}
	}
	n.Ephemeral.OnReceipt = q.QueueReceipt
	n.Ephemeral.OnPresence = q.QueuePresence

	n.Keys.RouteToDevice = q.QueueToDevice
	n.Keys.OnDeviceListChange = q.QueueDeviceListChange
	n.Keys.OnKeyCounts = func(ctx context.Context, user id.UserID, device id.DeviceID) {
		if err := q.QueueKeyCounts(ctx, user, device, n.Keys.KeyCounts); err != nil {
			n.log.Warn("queue key counts for appservices", "user_id", user, "device_id", device, "err", err)
		}
	}
}

// startAppserviceQueue starts delivering what is queued for appservices.
func (n *Node) startAppserviceQueue() error {
	return n.AppserviceQueue.Start(context.Background())
}
