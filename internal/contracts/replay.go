package contracts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/rooms"
)

// ReplaySource is what Replay reads: the events log's entries in order,
// and where the events and modules they name come from.
type ReplaySource struct {
	// Entries are the log's entries, in log order.
	Entries []ledger.Entry
	// Event loads an event by ID.
	Event func(ctx context.Context, eventID id.EventID) (*rooms.Event, error)
	// Module loads an uploaded module by hash.
	Module func(ctx context.Context, hash string) ([]byte, error)
}

// Mismatch is a logged result that the replay does not reproduce.
type Mismatch struct {
	Attachment string
	Input      string
	// Logged and Replayed are the result and error as canonical JSON ("" for none).
	Logged, Replayed string
}

// ReplayReport is what a replay found.
type ReplayReport struct {
	// Calls counts the contract calls replayed; Results the logged
	// results.
	Calls, Results int
	// Mismatches lists the results that differ, are missing, or have no
	// replayed call.
	Mismatches []Mismatch
	// State is each attachment's state after the replay, by attachment
	// name and module ("name/module").
	State map[string]MapState
}

type resultKey struct{ attachment, input string }

// Replay reruns, from empty state, the contracts attached to a room over
// the room's events in the log and compares each call's result with the
// result event the log holds for it. Every event is checked against its
// entry (the content hash). The ledger must have been on in the room
// before the contracts were attached, so that the log holds the
// attachments; an input redacted since cannot be replayed and is
// reported as a mismatch.
func Replay(ctx context.Context, rt *Runtime, roomID id.RoomID, bot id.UserID, src ReplaySource) (*ReplayReport, error) {
	var evs []*rooms.Event
	logged := map[resultKey]string{}
	for i, e := range src.Entries {
		if e.RoomID != string(roomID) {
			continue
		}
		ev, err := src.Event(ctx, id.EventID(e.EventID))
		if err != nil {
			return nil, fmt.Errorf("ledger entry %d: %w", i, err)
		}
		if h := gjson.GetBytes(ev.JSON, "hashes.sha256").String(); h != e.ContentHash {
			return nil, fmt.Errorf("ledger entry %d: event %s has content hash %q, the log %q", i, e.EventID, h, e.ContentHash)
		}
		if ev.Rejected {
			continue
		}
		if ev.Type == ResultType && ev.Sender == bot {
			var c ResultContent
			if err := json.Unmarshal([]byte(gjson.GetBytes(ev.JSON, "content").Raw), &c); err != nil {
				return nil, fmt.Errorf("result %s: %w", ev.ID, err)
			}
			logged[resultKey{c.Attachment, c.Input}] = canonicalOutcome(c.Result, c.Error)
			continue
		}
		evs = append(evs, ev)
	}
	r := &replay{rt: rt, src: src, bot: bot, atts: map[string]Attachment{}, programs: map[string]*Program{},
		report: &ReplayReport{Results: len(logged), State: map[string]MapState{}}}
	defer r.close(ctx)
	for _, ev := range evs {
		if err := r.step(ctx, ev, logged); err != nil {
			return nil, err
		}
	}
	for k, v := range logged {
		r.report.Mismatches = append(r.report.Mismatches, Mismatch{Attachment: k.attachment, Input: k.input, Logged: v})
	}
	return r.report, nil
}

type replay struct {
	rt       *Runtime
	src      ReplaySource
	bot      id.UserID
	atts     map[string]Attachment
	programs map[string]*Program
	report   *ReplayReport
}

func (r *replay) close(ctx context.Context) {
	for _, p := range r.programs {
		p.Close(ctx)
	}
}

// step replays one logged event: an attachment change, or an input to
// the attachments that run on its type.
func (r *replay) step(ctx context.Context, ev *rooms.Event, logged map[resultKey]string) error {
	if ev.Type == StateType && ev.StateKey != nil {
		a, ok, _ := ParseAttachment(*ev.StateKey, []byte(gjson.GetBytes(ev.JSON, "content").Raw))
		delete(r.atts, *ev.StateKey)
		if ok {
			r.atts[a.Name] = a
		}
		return nil
	}
	if ev.Sender == r.bot {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(r.atts)) {
		a := r.atts[name]
		if !a.runsOn(ev.Type) {
			continue
		}
		key := resultKey{a.Name, string(ev.ID)}
		want, ok := logged[key]
		delete(logged, key)
		if ev.RedactedBy != "" {
			r.report.Mismatches = append(r.report.Mismatches, Mismatch{Attachment: a.Name, Input: string(ev.ID), Logged: want, Replayed: "input redacted"})
			continue
		}
		got, err := r.call(ctx, ev, a)
		if err != nil {
			return err
		}
		r.report.Calls++
		if !ok {
			want = ""
		}
		if got != want {
			r.report.Mismatches = append(r.report.Mismatches, Mismatch{Attachment: a.Name, Input: string(ev.ID), Logged: want, Replayed: got})
		}
	}
	return nil
}

// call runs one input and returns its outcome as canonical JSON.
func (r *replay) call(ctx context.Context, ev *rooms.Event, a Attachment) (string, error) {
	p, ok := r.programs[a.Module]
	if !ok {
		wasm, err := r.src.Module(ctx, a.Module)
		if err != nil {
			return "", err
		}
		if ModuleHash(wasm) != a.Module {
			return "", fmt.Errorf("module %s: the bytes loaded have another hash", a.Module)
		}
		if p, err = r.rt.Compile(ctx, wasm); err != nil {
			return "", fmt.Errorf("module %s: %w", a.Module, err)
		}
		r.programs[a.Module] = p
	}
	stateKey := a.Name + "/" + a.Module
	state, ok := r.report.State[stateKey]
	if !ok {
		state = MapState{}
		r.report.State[stateKey] = state
	}
	in, err := Input(string(ev.ID), ev.JSON, a.Config)
	if err != nil {
		return "", err
	}
	out, err := p.Run(ctx, in, state)
	if err != nil {
		return "", err
	}
	state.Apply(out.Writes)
	if !out.hasResult() {
		return "", nil
	}
	errText := ""
	if out.Err != nil {
		errText = out.Err.Error()
	}
	return canonicalOutcome(out.Result, errText), nil
}

// canonicalOutcome is a result and error as JSON with sorted keys and
// numbers in one form, so a logged result and a replayed one compare.
func canonicalOutcome(result map[string]any, errText string) string {
	b, err := json.Marshal(struct {
		Result map[string]any `json:"result,omitempty"`
		Error  string         `json:"error,omitempty"`
	}{result, errText})
	if err != nil {
		return ""
	}
	// Numbers read back from an event are float64: decode both sides the
	// same way.
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return ""
	}
	b, _ = json.Marshal(v)
	return string(b)
}

// Replay replays the contracts of a room from the node's events log.
func (s *Service) Replay(ctx context.Context, roomID id.RoomID, entries []ledger.Entry) (*ReplayReport, error) {
	return Replay(ctx, s.rt, roomID, s.Bot(), ReplaySource{
		Entries: entries,
		Event:   s.opts.Rooms.Event,
		Module:  s.Module,
	})
}
