package ledger

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"maunium.net/go/mautrix/federation/pdu"
)

// ExportFormat names the compliance export's format.
const ExportFormat = "org.matrixos.ledger.export.v1"

// Export is a room's logged events with their inclusion proofs against one
// checkpoint: what VerifyExport checks offline.
type Export struct {
	Format string `json:"format"`
	// LogKey is the log's note verifier key.
	LogKey string `json:"log_key"`
	// Checkpoint is the signed note every proof is for.
	Checkpoint string `json:"checkpoint"`
	RoomID     string `json:"room_id"`
	// Events are the room's entries in the checkpoint's tree, in log
	// order.
	Events []ExportedEvent `json:"events"`
}

// ExportedEvent is one entry of an Export.
type ExportedEvent struct {
	Index uint64 `json:"index"`
	// Entry is the entry's bytes as logged.
	Entry string `json:"entry"`
	// InclusionProof is the RFC 6962 inclusion proof of the entry in the
	// checkpoint's tree.
	InclusionProof [][]byte `json:"inclusion_proof"`
	// Event is the event's PDU as the server holds it, when the export
	// carries contents; Redacted says it was redacted since (its content
	// is gone, its hashes stay).
	Event    json.RawMessage `json:"event,omitempty"`
	Redacted bool            `json:"redacted,omitempty"`
}

// ExportOptions choose what an export carries.
type ExportOptions struct {
	// Contents adds each event's PDU, as stored (redacted events
	// redacted), so that a reader can check it against its entry.
	Contents bool
}

// Export returns the room's logged events with their inclusion proofs
// against the latest checkpoint; events logged after it are left out (a
// checkpoint is signed within a second). A room with no logged event is
// ErrNotLogged.
func (p *Prover) Export(ctx context.Context, roomID string, opts ExportOptions) (*Export, error) {
	raw, cp, err := p.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	logged, err := p.roomEntries(ctx, roomID, cp.Size)
	if err != nil {
		return nil, err
	}
	if len(logged) == 0 {
		return nil, fmt.Errorf("room %s: %w", roomID, ErrNotLogged)
	}
	fetch := client.FileFetcher{Root: p.dir}
	pb, err := client.NewProofBuilder(ctx, cp.Size, fetch.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("ledger proof: %w", err)
	}
	out := &Export{Format: ExportFormat, LogKey: p.key, Checkpoint: string(raw), RoomID: roomID}
	bundles := map[uint64]*[][]byte{}
	for _, l := range logged {
		entry, err := cachedEntry(ctx, fetch, bundles, l.index, cp.Size)
		if err != nil {
			return nil, err
		}
		if e, err := ParseEntry(entry); err != nil || e.EventID != l.eventID || e.RoomID != roomID {
			return nil, fmt.Errorf("ledger entry %d is not the one recorded for %s (%q)", l.index, l.eventID, entry)
		}
		hashes, err := pb.InclusionProof(ctx, l.index)
		if err != nil {
			return nil, fmt.Errorf("ledger inclusion proof of %d in %d: %w", l.index, cp.Size, err)
		}
		ev := ExportedEvent{Index: l.index, Entry: string(entry), InclusionProof: hashes}
		if opts.Contents {
			if ev.Event, ev.Redacted, err = p.storedEvent(ctx, l.eventID); err != nil {
				return nil, err
			}
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// loggedEvent is where one event of a room is in the log.
type loggedEvent struct {
	eventID string
	index   uint64
}

// roomEntries lists the room's logged events with indexes below size, in
// log order.
func (p *Prover) roomEntries(ctx context.Context, roomID string, size uint64) ([]loggedEvent, error) {
	rows, err := p.db.Query(ctx, "SELECT event_id, log_index FROM ledger_entries WHERE room_id = $1 AND log_index < $2 ORDER BY log_index",
		roomID, int64(size))
	if err != nil {
		return nil, fmt.Errorf("read the ledger entries of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []loggedEvent
	for rows.Next() {
		var l loggedEvent
		var idx int64
		if err := rows.Scan(&l.eventID, &idx); err != nil {
			return nil, fmt.Errorf("read the ledger entries of %s: %w", roomID, err)
		}
		l.index = uint64(idx)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the ledger entries of %s: %w", roomID, err)
	}
	return out, nil
}

// cachedEntry reads the entry at idx, keeping each entry bundle read.
func cachedEntry(ctx context.Context, fetch client.FileFetcher, bundles map[uint64]*[][]byte, idx, logSize uint64) ([]byte, error) {
	n := idx / layout.EntryBundleWidth
	b, ok := bundles[n]
	if !ok {
		got, err := client.GetEntryBundle(ctx, fetch.ReadEntryBundle, n, logSize)
		if err != nil {
			return nil, fmt.Errorf("read ledger entry bundle %d: %w", n, err)
		}
		b = &got.Entries
		bundles[n] = b
	}
	off := idx % layout.EntryBundleWidth
	if off >= uint64(len(*b)) {
		return nil, fmt.Errorf("ledger entry bundle %d has no entry %d", n, idx)
	}
	return (*b)[off], nil
}

// storedEvent reads an event's PDU from the events table and whether it
// was redacted.
func (p *Prover) storedEvent(ctx context.Context, eventID string) (json.RawMessage, bool, error) {
	var raw string
	var redactedBy *string
	err := p.db.QueryRow(ctx, "SELECT json, redacted_by FROM events WHERE event_id = $1", eventID).Scan(&raw, &redactedBy)
	if err != nil {
		return nil, false, fmt.Errorf("read event %s: %w", eventID, err)
	}
	return json.RawMessage(raw), redactedBy != nil && *redactedBy != "", nil
}

// VerifiedExport is what a valid export proves.
type VerifiedExport struct {
	RoomID     string
	Events     int
	Contents   int // events whose content was checked against their entry (not redacted ones)
	Checkpoint Checkpoint
	Key        string
}

// VerifyExport checks an export offline, as Verify checks a bundle: that
// it names trustedKey, the checkpoint's signature, and for each event its
// entry (of the export's room, in log order, each once), its inclusion
// proof against the checkpoint's root and, where the export carries the
// event, that the event is the entry's: its room, its content hash, and,
// unless it was redacted, that its content still has that hash. An export
// proves that each event it holds is in the log; it cannot prove that it
// holds every event of the room.
func VerifyExport(data []byte, trustedKey string) (*VerifiedExport, error) {
	if trustedKey == "" {
		return nil, ErrNoTrustedKey
	}
	var x Export
	cp, err := openSigned(data, &x, "ledger export", ExportFormat, trustedKey)
	if err != nil {
		return nil, err
	}
	if len(x.Events) == 0 {
		return nil, errors.New("the export holds no event")
	}
	out := &VerifiedExport{RoomID: x.RoomID, Events: len(x.Events), Checkpoint: *cp, Key: x.LogKey}
	for i, ev := range x.Events {
		if i > 0 && ev.Index <= x.Events[i-1].Index {
			return nil, fmt.Errorf("event %d: index %d does not follow %d", i, ev.Index, x.Events[i-1].Index)
		}
		checked, err := verifyExported(ev, x.RoomID, cp)
		if err != nil {
			return nil, fmt.Errorf("event %d (index %d): %w", i, ev.Index, err)
		}
		if checked {
			out.Contents++
		}
	}
	return out, nil
}

// verifyExported checks one event of an export; checked reports that its
// content was checked too.
func verifyExported(ev ExportedEvent, roomID string, cp *Checkpoint) (checked bool, err error) {
	entry, err := ParseEntry([]byte(ev.Entry))
	if err != nil {
		return false, err
	}
	if entry.RoomID != roomID {
		return false, fmt.Errorf("entry of room %s in the export of %s", entry.RoomID, roomID)
	}
	if err := verifyIncluded(ev.Index, ev.Entry, ev.InclusionProof, cp); err != nil {
		return false, fmt.Errorf("%s: %w", entry.EventID, err)
	}
	if ev.Event == nil {
		return false, nil
	}
	var p pdu.PDU
	if err := json.Unmarshal(ev.Event, &p); err != nil {
		return false, fmt.Errorf("event %s: not a PDU: %w", entry.EventID, err)
	}
	// A create event of room version 12 has no room_id: its hash is the
	// room's ID.
	if p.RoomID != "" && string(p.RoomID) != roomID {
		return false, fmt.Errorf("event %s is of room %s", entry.EventID, p.RoomID)
	}
	if p.Hashes == nil || base64.RawStdEncoding.EncodeToString(p.Hashes.SHA256) != entry.ContentHash {
		return false, fmt.Errorf("event %s: its content hash is not the logged %s", entry.EventID, entry.ContentHash)
	}
	if ev.Redacted {
		return false, nil // its content is gone: the hash is all there is to check
	}
	if !p.VerifyContentHash() {
		return false, fmt.Errorf("event %s: its content does not match its content hash (changed since it was logged)", entry.EventID)
	}
	return true, nil
}
