package stateres

import (
	"encoding/json/v2"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// TestAgreesWithGomatrixserverlib resolves randomly forked rooms (200 seeds
// for each of room versions 2, 6, 10 and 11) with this package and with
// gomatrixserverlib's state resolution v2 (a test-only dependency:
// Dendrite's implementation), which must agree.
//
// gomatrixserverlib departs from the spec in ways this package does not
// copy, so the rooms are drawn from the histories where those departures
// cannot change the answer (see agreeableAction).
func TestAgreesWithGomatrixserverlib(t *testing.T) {
	const seeds = 200
	for _, version := range []id.RoomVersion{id.RoomV2, id.RoomV6, id.RoomV10, id.RoomV11} {
		t.Run(string(version), func(t *testing.T) {
			disagreements := 0
			for seed := range uint64(seeds) {
				rng := rand.New(rand.NewPCG(seed, 42))
				b, forks := growRandomRoom(t, version, rng, 3, 30, agreeableAction)
				states := forkStates(forks)
				ours := checkResolution(t, b, states)
				theirs := resolveWithGomatrixserverlib(t, b, states)
				if !maps.Equal(ours, theirs) {
					disagreements++
					if disagreements <= 3 {
						t.Errorf("seed %d: this package and gomatrixserverlib disagree:\n%s", seed, stateDiff(b, ours, theirs))
					}
				}
			}
			if disagreements > 0 {
				t.Errorf("%d of %d seeds disagree", disagreements, seeds)
			}
		})
	}
}

func resolveWithGomatrixserverlib(tb testing.TB, b *roomBuilder, states []StateMap) StateMap {
	tb.Helper()
	verImpl, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(b.version))
	if err != nil {
		tb.Fatalf("gomatrixserverlib room version: %v", err)
	}
	converted := make(map[id.EventID]gomatrixserverlib.PDU, len(b.events))
	all := make([]gomatrixserverlib.PDU, 0, len(b.events))
	for _, eventID := range b.order {
		raw, err := json.Marshal(b.events[eventID])
		if usesV1Format(b.version) {
			raw, err = json.Marshal(toV1Format(eventID, b.events[eventID]))
		}
		if err != nil {
			tb.Fatalf("marshal %s: %v", eventID, err)
		}
		evt, err := verImpl.NewEventFromTrustedJSONWithEventID(eventID.String(), raw, false)
		if err != nil {
			tb.Fatalf("gomatrixserverlib parse %s: %v", eventID, err)
		}
		converted[eventID] = evt
		all = append(all, evt)
	}
	stateSets := make([][]gomatrixserverlib.PDU, len(states))
	for i, state := range states {
		for _, eventID := range state {
			stateSets[i] = append(stateSets[i], converted[eventID])
		}
	}
	userIDForSender := func(_ spec.RoomID, sender spec.SenderID) (*spec.UserID, error) {
		return spec.NewUserID(string(sender), true)
	}
	notRejected := func(string) bool { return false }
	resolved, err := gomatrixserverlib.ResolveConflictsNew(verImpl.Version(), stateSets, all, userIDForSender, notRejected)
	if err != nil {
		tb.Fatalf("gomatrixserverlib resolve: %v", err)
	}
	out := StateMap{}
	for _, evt := range resolved {
		out[StateKey{Type: evt.Type(), StateKey: *evt.StateKey()}] = id.EventID(evt.EventID())
	}
	return out
}

// stateDiff describes the entries where ours and theirs differ.
func stateDiff(b *roomBuilder, ours, theirs StateMap) string {
	describe := func(eventID id.EventID) string {
		evt := b.events[eventID]
		if evt == nil {
			return "absent"
		}
		return fmt.Sprintf("%s (%s by %s at %d)", eventID, evt.Content, evt.Sender, evt.OriginServerTS)
	}
	var diff string
	keys := map[StateKey]struct{}{}
	for key := range ours {
		keys[key] = struct{}{}
	}
	for key := range theirs {
		keys[key] = struct{}{}
	}
	for key := range keys {
		if ours[key] != theirs[key] {
			diff += fmt.Sprintf("  %s/%s: ours %s, theirs %s\n", key.Type, key.StateKey, describe(ours[key]), describe(theirs[key]))
		}
	}
	return diff
}

// agreeableAction is randomAction without the histories on which
// gomatrixserverlib (at the pinned version) departs from the spec:
//
//   - When the partial state lacks a key the auth rules need, it adds the
//     event being checked instead of the auth event the spec names
//     (addFromAuthEventsIfNotRejected in authAndApplyEvents), so a
//     conflicted power levels event, or a conflicted membership of a
//     sender, is judged wrongly. Here power levels change only before the
//     forks, and the senders (alice, bob, charlie) are never the target of
//     a membership change.
//   - Its Kahn's algorithm builds the order from the latest events
//     backwards, which is not the lexicographically smallest order when a
//     power event by a lower-powered sender precedes, in the auth DAG, one
//     by a higher-powered sender. Here only alice sends power events.
//   - It puts the events of the auth difference that are in the auth chain
//     of a power event but are not power events themselves (an invite
//     before a kick) with the other events, after the power events, instead
//     of with the power events. Here a member's membership changes at most
//     once on each line of history.
//   - It breaks mainline ties by the number of steps to the mainline, which
//     the spec does not; fixed power levels make that number always 0.
func agreeableAction(f *fork, rng *rand.Rand) {
	senders := []id.UserID{alice, bob, charlie}
	targets := []id.UserID{dave, "@eve:example.org"}
	sender := senders[rng.IntN(len(senders))]
	var evtType, stateKey string
	var content map[string]any
	switch rng.IntN(6) {
	case 0:
		sender = alice
		evtType = event.StateJoinRules.Type
		content = map[string]any{"join_rule": []string{"public", "invite"}[rng.IntN(2)]}
	case 1:
		target := targets[rng.IntN(len(targets))]
		if b := f.room.events[f.state[memberKey(target)]]; b == nil || b.Sender != target {
			return // changed once already
		}
		evtType, stateKey = event.StateMember.Type, target.String()
		membership := []string{"leave", "ban", "invite"}[rng.IntN(3)]
		if membership != "invite" {
			sender = alice
		}
		content = member(membership)
	case 2:
		evtType = event.StateTopic.Type
		content = map[string]any{"topic": fmt.Sprintf("topic %d", rng.IntN(1000))}
	case 3:
		evtType = event.StateRoomName.Type
		content = map[string]any{"name": fmt.Sprintf("name %d", rng.IntN(1000))}
	default:
		evtType, stateKey = "org.example.state", fmt.Sprintf("k%d", rng.IntN(3))
		content = map[string]any{"n": rng.IntN(1000)}
	}
	_, _ = f.send(sender, evtType, stateKey, content)
}

// toV1Format is evt in the event format of room versions 1 and 2.
func toV1Format(eventID id.EventID, evt *pdu.PDU) *pdu.RoomV1PDU {
	refs := func(ids []id.EventID) []pdu.V1EventReference {
		out := make([]pdu.V1EventReference, len(ids))
		for i, eventID := range ids {
			out[i] = pdu.V1EventReference{ID: eventID, Hashes: pdu.Hashes{SHA256: []byte{0}}}
		}
		return out
	}
	return &pdu.RoomV1PDU{
		EventID: eventID, AuthEvents: refs(evt.AuthEvents), PrevEvents: refs(evt.PrevEvents),
		Content: evt.Content, Depth: evt.Depth, OriginServerTS: evt.OriginServerTS,
		RoomID: evt.RoomID, Sender: evt.Sender, StateKey: evt.StateKey, Type: evt.Type,
	}
}
