package rooms

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	jsonv2 "encoding/json/v2"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// A room's state streamed in (a /state answer of a partial-state resync:
// hundreds of thousands of events in a big room) is checked with memory
// bounded by Engine.StateBatch, not by the room, in two passes:
//
//  1. As the answer is read, each batch of events is parsed and its
//     signatures and hashes checked on every core; the events that pass
//     go to a spool file (unlinked at once, so nothing stays behind a
//     crash), and only their depth and place in the file are kept here.
//  2. The spool is read back in depth order, a batch at a time: each
//     event is checked against its own auth events (those of earlier
//     batches are stored already, those of its batch checked before it),
//     and the batch's outliers and rejected events are written at once.
//
// What stays is the state's keys and event IDs (the idState the room's
// new state is made of) and about 24 bytes per event of the spool index.

// DefaultStateBatch is Engine.StateBatch when it is not set.
const DefaultStateBatch = 1000

// stateBatch is how many events of a streamed state are held at once.
func (e *Engine) stateBatch() int {
	if e.StateBatch > 0 {
		return e.StateBatch
	}
	return DefaultStateBatch
}

// spooled is where an event of a streamed state lies in the spool file:
// its ID (idLen bytes) then its JSON (size bytes) from off.
type spooled struct {
	depth   int64
	off     int64
	size    int32
	idLen   uint8
	inState bool
}

// stateSpool is pass 1's file and index.
type stateSpool struct {
	file  *os.File
	w     *bufio.Writer
	off   int64
	index []spooled
}

func newStateSpool() (*stateSpool, error) {
	f, err := os.CreateTemp("", "matrixos-state-*")
	if err != nil {
		return nil, fmt.Errorf("spool the state: %w", err)
	}
	// Unlinked at once: the file lives while it is open, and no crash
	// leaves it behind (where the system allows removing an open file).
	_ = os.Remove(f.Name())
	return &stateSpool{file: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *stateSpool) close() {
	s.file.Close()
	_ = os.Remove(s.file.Name())
}

// add appends a checked event to the spool.
func (s *stateSpool) add(ev *Event, inState bool) error {
	if len(ev.ID) > 255 {
		return nil // not an ID this engine makes (a reference hash is 44 characters)
	}
	if _, err := s.w.WriteString(string(ev.ID)); err != nil {
		return fmt.Errorf("spool the state: %w", err)
	}
	if _, err := s.w.Write(ev.JSON); err != nil {
		return fmt.Errorf("spool the state: %w", err)
	}
	s.index = append(s.index, spooled{depth: ev.Depth, off: s.off, size: int32(len(ev.JSON)), idLen: uint8(len(ev.ID)), inState: inState})
	s.off += int64(len(ev.ID) + len(ev.JSON))
	return nil
}

// read returns the ID and JSON of a spooled event.
func (s *stateSpool) read(at spooled) (id.EventID, []byte, error) {
	buf := make([]byte, int(at.idLen)+int(at.size))
	if _, err := s.file.ReadAt(buf, at.off); err != nil && !errors.Is(err, io.EOF) {
		return "", nil, fmt.Errorf("read the spooled state: %w", err)
	}
	return id.EventID(buf[:at.idLen]), buf[at.idLen:], nil
}

// streamedEvent is one event of a streamed state as the stream gives it.
type streamedEvent struct {
	raw     json.RawMessage
	inState bool
}

// checkStreamedState checks a room's state and auth chain that feed
// hands to add one event at a time (inState false for the auth chain),
// as checkOutliers checks them, storing the events that pass as outliers
// and those the auth rules refuse as rejected, and returns the state made
// of those that pass. at, when not empty, is a state event whose key it
// holds whatever else the state holds for that key (the event the state
// was asked before).
func (e *Engine) checkStreamedState(ctx context.Context, v id.RoomVersion, roomID id.RoomID, at id.EventID, feed func(add func(inState bool, raw json.RawMessage) error) error) (idState, error) {
	spool, err := newStateSpool()
	if err != nil {
		return nil, err
	}
	defer spool.close()
	batch := make([]streamedEvent, 0, e.stateBatch())
	flush := func() error {
		err := e.spoolBatch(ctx, v, roomID, spool, batch)
		batch = batch[:0]
		return err
	}
	err = feed(func(inState bool, raw json.RawMessage) error {
		batch = append(batch, streamedEvent{raw: raw, inState: inState})
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := spool.w.Flush(); err != nil {
		return nil, fmt.Errorf("spool the state: %w", err)
	}
	slices.SortFunc(spool.index, func(a, b spooled) int {
		return cmp.Or(cmp.Compare(a.depth, b.depth), cmp.Compare(a.off, b.off))
	})
	full := idState{}
	var atKey *stateKey
	for part := range slices.Chunk(spool.index, e.stateBatch()) {
		k, err := e.checkSpooledBatch(ctx, v, roomID, spool, part, full, at)
		if err != nil {
			return nil, err
		}
		if k != nil {
			atKey = k
		}
	}
	if atKey != nil {
		full[*atKey] = at
	}
	if full[stateKey{"m.room.create", ""}] == "" {
		return nil, errors.New("the answer's state has no m.room.create event that checks out")
	}
	return full, nil
}

// spoolBatch is pass 1 for a batch: parsed and signature-checked on
// every core, the room's events that pass spooled.
func (e *Engine) spoolBatch(ctx context.Context, v id.RoomVersion, roomID id.RoomID, spool *stateSpool, batch []streamedEvent) error {
	evs, errs := make([]*Event, len(batch)), make([]error, len(batch))
	onEveryCore(len(batch), func(i int) { evs[i], errs[i] = e.parseRemote(ctx, v, batch[i].raw) })
	for i, ev := range evs {
		if errs[i] != nil {
			e.log.Info("refused an event of a joined room's state", "room_id", roomID, "err", errs[i])
			continue
		}
		if ev.RoomID != roomID {
			continue
		}
		if err := spool.add(ev, batch[i].inState); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// checkSpooledBatch is pass 2 for a batch of the spool index (in depth
// order): each event not stored already is checked against its own auth
// events, the batch's outcome written, and the state keys of the events
// of the state that pass set in full. It returns the key of the event at
// when that passes.
func (e *Engine) checkSpooledBatch(ctx context.Context, v id.RoomVersion, roomID id.RoomID, spool *stateSpool, part []spooled, full idState, at id.EventID) (*stateKey, error) {
	evs := make([]*Event, len(part))
	var ids []id.EventID
	for i, s := range part {
		evID, raw, err := spool.read(s)
		if err != nil {
			return nil, err
		}
		pd := &pdu.PDU{}
		if err := jsonv2.Unmarshal(raw, pd); err != nil {
			return nil, fmt.Errorf("decode spooled event %s: %w", evID, err)
		}
		if pd.Type == "m.room.create" {
			pd.InternalMeta.EventID = evID
		}
		evs[i] = remoteEvent(v, evID, pd, raw)
		evs[i].Outlier = true
		ids = append(ids, evID)
		ids = append(ids, pd.AuthEvents...)
	}
	known, err := e.anyEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	getEvents := e.authEventLoader(ctx, known)
	keys := e.keyFunc(ctx)
	var outliers []*Event
	var rejected []*Event
	reasons := map[id.EventID]string{}
	var atKey *stateKey
	for i, ev := range evs {
		passed := known[ev.ID]
		if passed == nil {
			if err := authorizeRules(v, ev.PDU, nil, getEvents, keys); err != nil {
				e.log.Info("an event of a joined room's state fails the auth rules", "room_id", roomID, "event_id", ev.ID, "err", err)
				if !undecided(err) {
					ev.Outlier, ev.Rejected = false, true
					ev.PDU.InternalMeta.Rejected = true
					known[ev.ID] = ev
					rejected = append(rejected, ev)
					reasons[ev.ID] = authMessage(err)
				}
				continue
			}
			known[ev.ID] = ev
			outliers = append(outliers, ev)
			passed = ev
		}
		if passed.Rejected || passed.StateKey == nil || !part[i].inState {
			continue
		}
		k := stateKey{passed.Type, *passed.StateKey}
		full[k] = passed.ID
		if passed.ID == at {
			atKey = &k
		}
	}
	if len(outliers) == 0 && len(rejected) == 0 {
		return atKey, nil
	}
	err = e.db.Write(ctx, func(tx *storage.Tx) error {
		if err := storeOutliers(ctx, tx, outliers, kindOutlier); err != nil {
			return err
		}
		for _, ev := range rejected {
			if err := storeOutlier(ctx, tx, ev, kindRejected, reasons[ev.ID]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store the state's events: %w", err)
	}
	return atKey, nil
}
