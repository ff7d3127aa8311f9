package appservice

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// This file queues what the encryption and presence extensions add to
// transactions: MSC2409 ephemeral events (typing, receipts, presence) for
// appservices with receive_ephemeral, MSC4203 to-device events for their
// users' devices, and MSC3202 device list changes and key counts for those
// with org.matrix.msc3202.

// roomInterest reports whether reg is interested in what happens in the
// room as a whole (typing, receipts): the room, one of its aliases or one
// of its joined members is in its namespaces.
func (q *Queue) roomInterest(reg *Registration, roomID id.RoomID, members map[id.UserID]string, aliases []id.RoomAlias) bool {
	return reg.InterestedInRoom(roomID) || slices.ContainsFunc(aliases, reg.InterestedInAlias) || q.members.interested(reg, roomID, members)
}

// currentAliases are the room's canonical and alt aliases now.
func (q *Queue) currentAliases(ctx context.Context, roomID id.RoomID) []id.RoomAlias {
	ev, err := q.rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return nil
	}
	return aliasesOf(ev)
}

// sharesRoom reports whether user is joined to a room (other than except)
// with a joined member in reg's user namespaces.
func (q *Queue) sharesRoom(ctx context.Context, reg *Registration, user id.UserID, except id.RoomID) bool {
	for _, roomID := range q.rooms.JoinedRooms(user) {
		if roomID == except {
			continue
		}
		if q.members.interested(reg, roomID, q.rooms.Members(ctx, roomID)) {
			return true
		}
	}
	return false
}

// ephemeralEvent is an MSC2409 ephemeral event as /sync would show it.
type ephemeralEvent struct {
	Type    string    `json:"type"`
	RoomID  id.RoomID `json:"room_id,omitempty"`
	Sender  id.UserID `json:"sender,omitempty"`
	Content any       `json:"content"`
}

// queueFor queues body for each appservice that wants passes and is
// interested (interested may be nil: then wanting is enough), in tx, and
// calls took, when set, with each appservice whose queue took it (a full
// queue drops it).
func (q *Queue) queueFor(ctx context.Context, tx *storage.Tx, kind string, body any, wants, interested func(*Registration) bool, took func(*Registration)) error {
	var raw []byte
	for _, reg := range q.registry.All() {
		if reg.URL == "" || !wants(reg) || (interested != nil && !interested(reg)) {
			continue
		}
		if raw == nil {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				return fmt.Errorf("encode %s for appservices: %w", kind, err)
			}
		}
		ok, err := q.enqueue(ctx, tx, reg.ID, kind, raw)
		if err != nil {
			return err
		}
		if ok && took != nil {
			took(reg)
		}
	}
	return nil
}

// anyWants reports whether an appservice with a url wants the extension.
func (q *Queue) anyWants(wants func(*Registration) bool) bool {
	for _, reg := range q.registry.All() {
		if reg.URL != "" && wants(reg) {
			return true
		}
	}
	return false
}

func wantsEphemeral(reg *Registration) bool   { return reg.ReceiveEphemeral }
func wantsToDevice(reg *Registration) bool    { return reg.ToDevice }
func wantsDeviceLists(reg *Registration) bool { return reg.DeviceLists }

// QueueTyping queues the room's typing users (m.typing), as current reads
// them now, for the appservices with receive_ephemeral interested in the
// room. Reading them and queueing the write happen under one lock, and
// writes commit in the order they were queued, so the appservice gets a
// room's typing users in the order they changed and the last it gets is
// the latest (two changes at once could otherwise pass each other).
func (q *Queue) QueueTyping(ctx context.Context, roomID id.RoomID, current func(id.RoomID) []id.UserID) error {
	if !q.anyWants(wantsEphemeral) {
		return nil
	}
	members, aliases := q.rooms.Members(ctx, roomID), q.currentAliases(ctx, roomID)
	q.typingMu.Lock()
	ev := ephemeralEvent{Type: "m.typing", RoomID: roomID, Content: map[string]any{"user_ids": current(roomID)}}
	wait := q.db.Enqueue(ctx, func(tx *storage.Tx) error {
		return q.queueFor(ctx, tx, kindEphemeral, ev, wantsEphemeral, func(reg *Registration) bool {
			return q.roomInterest(reg, roomID, members, aliases)
		}, nil)
	})
	q.typingMu.Unlock()
	return wait()
}

// QueueReceipt queues a public read receipt (m.receipt), in tx, for the
// appservices with receive_ephemeral interested in the room.
func (q *Queue) QueueReceipt(ctx context.Context, tx *storage.Tx, roomID id.RoomID, user id.UserID, threadID string, eventID id.EventID, ts int64) error {
	if !q.anyWants(wantsEphemeral) {
		return nil
	}
	members, aliases := q.rooms.Members(ctx, roomID), q.currentAliases(ctx, roomID)
	receipt := map[string]any{"ts": ts}
	if threadID != "" {
		receipt["thread_id"] = threadID
	}
	ev := ephemeralEvent{Type: "m.receipt", RoomID: roomID, Content: map[id.EventID]any{
		eventID: map[string]any{"m.read": map[id.UserID]any{user: receipt}},
	}}
	return q.queueFor(ctx, tx, kindEphemeral, ev, wantsEphemeral, func(reg *Registration) bool {
		return q.roomInterest(reg, roomID, members, aliases)
	}, nil)
}

// QueuePresence queues a user's new presence (m.presence), in tx, for the
// appservices with receive_ephemeral that have the user in their
// namespaces or share a room with them.
func (q *Queue) QueuePresence(ctx context.Context, tx *storage.Tx, user id.UserID, content map[string]any) error {
	if !q.anyWants(wantsEphemeral) {
		return nil
	}
	ev := ephemeralEvent{Type: "m.presence", Sender: user, Content: content}
	return q.queueFor(ctx, tx, kindEphemeral, ev, wantsEphemeral, func(reg *Registration) bool {
		return reg.InterestedInUser(user) || q.sharesRoom(ctx, reg, user, "")
	}, nil)
}

// toDeviceEvent is an MSC4203 to-device event: the one /sync would give
// the device, with the device it is for.
type toDeviceEvent struct {
	Type     string          `json:"type"`
	Sender   id.UserID       `json:"sender"`
	Content  json.RawMessage `json:"content"`
	ToUser   id.UserID       `json:"to_user_id"`
	ToDevice id.DeviceID     `json:"to_device_id"`
}

// QueueToDevice queues a to-device message for a device of a user in the
// namespaces of appservices that receive to-device events, in the write
// that would store it in the device's inbox. It reports whether an
// appservice holds the user exclusively: the appservice is then the
// device's only way to get it, and the inbox (which its devices never
// sync) is skipped.
func (q *Queue) QueueToDevice(ctx context.Context, tx *storage.Tx, sender id.UserID, evType string, user id.UserID, device id.DeviceID, content json.RawMessage) (exclusive bool, err error) {
	ev := toDeviceEvent{Type: evType, Sender: sender, Content: content, ToUser: user, ToDevice: device}
	err = q.queueFor(ctx, tx, kindToDevice, ev, wantsToDevice, func(reg *Registration) bool {
		return reg.InterestedInUser(user)
	}, func(reg *Registration) {
		// Only an appservice that took the message makes the inbox
		// needless: one whose queue is full leaves it to the inbox.
		exclusive = exclusive || reg.ExclusiveUser(user)
	})
	return exclusive, err
}

// QueueDeviceListChange queues, in tx, that user's devices or
// cross-signing keys changed for the appservices with MSC3202 that have
// the user in their namespaces or share a room with them (viewer, when
// set, is the only user the change is for).
func (q *Queue) QueueDeviceListChange(ctx context.Context, tx *storage.Tx, user, viewer id.UserID) error {
	if !q.anyWants(wantsDeviceLists) {
		return nil
	}
	return q.queueFor(ctx, tx, kindDeviceList, deviceListItem{User: user}, wantsDeviceLists, func(reg *Registration) bool {
		if viewer != "" {
			return reg.InterestedInUser(viewer)
		}
		return reg.InterestedInUser(user) || q.sharesRoom(ctx, reg, user, "")
	}, nil)
}

// queueMembershipDeviceLists queues the device list changes a member event
// makes for the appservices with MSC3202, in the write that stores it: a
// user who joins a room with the appservice's users has changed for it
// (and when one of its users joins, every member has), and one who leaves
// it and shares no other room with them has left. A member event that
// leaves the membership as it was (a new display name or avatar) changes
// no device list. Each appservice gets one item for the event, however
// many members it names.
func (q *Queue) queueMembershipDeviceLists(ctx context.Context, tx *storage.Tx, ev *rooms.Event, r *rooms.RoomInfo) error {
	if ev.Type != "m.room.member" || ev.StateKey == nil || !q.anyWants(wantsDeviceLists) {
		return nil
	}
	user := id.UserID(*ev.StateKey)
	joined := r.Members[user] == "join"
	if joined && prevMembership(ev) == "join" {
		return nil
	}
	for _, reg := range q.registry.All() {
		if reg.URL == "" || !reg.DeviceLists {
			continue
		}
		var item deviceListItem
		switch {
		case joined && reg.InterestedInUser(user):
			for member, membership := range r.Members {
				if membership == "join" && member != user && !reg.InterestedInUser(member) {
					item.Users = append(item.Users, member)
				}
			}
			slices.Sort(item.Users)
		case joined:
			if q.members.interested(reg, r.ID, r.Members) {
				item.User = user
			}
		case !reg.InterestedInUser(user) && q.members.interested(reg, r.ID, r.Members) && !q.sharesRoom(ctx, reg, user, r.ID):
			item.User, item.Left = user, true
		}
		if item.User == "" && len(item.Users) == 0 {
			continue
		}
		raw, err := json.Marshal(item)
		if err != nil {
			return fmt.Errorf("encode device list change: %w", err)
		}
		if _, err := q.enqueue(ctx, tx, reg.ID, kindDeviceList, raw); err != nil {
			return err
		}
	}
	return nil
}

// prevMembership is the membership a member event replaced, as its
// unsigned prev_content tells ("" when it replaced none).
func prevMembership(ev *rooms.Event) string {
	if ev.PDU == nil || len(ev.PDU.Unsigned) == 0 {
		return ""
	}
	var u struct {
		PrevContent struct {
			Membership string `json:"membership"`
		} `json:"prev_content"`
	}
	if json.Unmarshal(ev.PDU.Unsigned, &u) != nil {
		return ""
	}
	return u.PrevContent.Membership
}

// namespaceMemberIn reports whether one of the joined members is in reg's
// user namespaces.
func namespaceMemberIn(reg *Registration, members map[id.UserID]string) bool {
	for member, membership := range members {
		if membership == "join" && reg.InterestedInUser(member) {
			return true
		}
	}
	return false
}

// KeyCounter reads a device's one-time key counts and unused fallback key
// types; keys.Service.KeyCounts implements it.
type KeyCounter func(ctx context.Context, user id.UserID, device id.DeviceID) (otks map[string]int, fallback []string, err error)

// QueueKeyCounts queues a device's current one-time key counts and unused
// fallback key types for the appservices with MSC3202 whose namespaces
// hold the user, after its keys were uploaded or claimed. Reading the
// counts and queueing the write happen under one lock, and writes commit
// in the order they were queued, so the last counts an appservice gets
// are the latest (an upload and a claim at once could otherwise pass each
// other, leaving it with the older counts).
func (q *Queue) QueueKeyCounts(ctx context.Context, user id.UserID, device id.DeviceID, counts KeyCounter) error {
	interested := func(reg *Registration) bool { return reg.InterestedInUser(user) }
	if !q.anyWants(func(reg *Registration) bool { return reg.DeviceLists && interested(reg) }) {
		return nil
	}
	q.keyCountsMu.Lock()
	otks, fallback, err := counts(ctx, user, device)
	if err != nil {
		q.keyCountsMu.Unlock()
		return fmt.Errorf("key counts of %s %s: %w", user, device, err)
	}
	item := keyCountsItem{User: user, Device: device, OTKs: otks, Fallback: fallback}
	wait := q.db.Enqueue(ctx, func(tx *storage.Tx) error {
		return q.queueFor(ctx, tx, kindKeyCounts, item, wantsDeviceLists, interested, nil)
	})
	q.keyCountsMu.Unlock()
	return wait()
}
