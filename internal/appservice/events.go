package appservice

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// QueueEvent is a rooms.Engine OnPersist hook: it queues ev, in the write
// that stores it, for every appservice with a url that is interested in it
// (Registration.InterestedInEvent, with the room's members and aliases
// after the event; whether a member is in its namespaces is remembered per
// room, see memberCache). The appservice gets the event in the client format;
// an event sent by a user it holds exclusively (whose requests only it
// makes) carries its transaction_id.
func (q *Queue) QueueEvent(ctx context.Context, tx *storage.Tx, ev *rooms.Event, r *rooms.RoomInfo) error {
	regs := q.registry.All()
	if len(regs) == 0 {
		return nil
	}
	var aliases []id.RoomAlias
	if ev := r.StateEvent("m.room.canonical_alias", ""); ev != nil {
		aliases = aliasesOf(ev)
	}
	for _, reg := range regs {
		if reg.URL == "" || !(reg.InterestedInEvent(ev, nil, aliases) || q.members.interested(reg, r.ID, r.Members)) {
			continue
		}
		body, err := json.Marshal(clientEvent(ev, reg))
		if err != nil {
			return fmt.Errorf("encode event %s for appservice %s: %w", ev.ID, reg.ID, err)
		}
		if _, err := q.enqueue(ctx, tx, reg.ID, kindEvent, body); err != nil {
			return err
		}
	}
	return q.queueMembershipDeviceLists(ctx, tx, ev, r)
}

// clientEvent renders ev for the appservice: the client format, without
// an age (it would be stale by the time a retried transaction arrives),
// and with transaction_id when a user it holds exclusively sent it; another
// user's transaction IDs are their client's, not the appservice's.
func clientEvent(ev *rooms.Event, reg *Registration) *rooms.ClientEvent {
	ce := ev.Client(rooms.ClientOptions{})
	delete(ce.Unsigned, "age")
	if ev.TxnID != "" && reg.ExclusiveUser(ev.Sender) {
		if ce.Unsigned == nil {
			ce.Unsigned = map[string]any{}
		}
		ce.Unsigned["transaction_id"] = ev.TxnID
	}
	if len(ce.Unsigned) == 0 {
		ce.Unsigned = nil
	}
	return ce
}

// aliasesOf are the canonical alias and alt aliases of an
// m.room.canonical_alias event.
func aliasesOf(ev *rooms.Event) []id.RoomAlias {
	var c struct {
		Alias      id.RoomAlias   `json:"alias"`
		AltAliases []id.RoomAlias `json:"alt_aliases"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil {
		return nil
	}
	if c.Alias != "" {
		return append(c.AltAliases, c.Alias)
	}
	return c.AltAliases
}
