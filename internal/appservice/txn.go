package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Limits of one transaction: at most this many timeline events, ephemeral
// events and to-device events each (device list changes and key counts
// are folded per user and device and need none).
const (
	MaxTxnEvents    = 100
	MaxTxnEphemeral = 100
	MaxTxnToDevice  = 100
)

// The kinds of queued items.
const (
	kindEvent      = "event"       // a timeline event in the client format
	kindEphemeral  = "ephemeral"   // MSC2409: m.typing, m.receipt, m.presence
	kindToDevice   = "to_device"   // MSC4203: a to-device event with to_user_id and to_device_id
	kindDeviceList = "device_list" // MSC3202: a deviceListItem
	kindKeyCounts  = "key_counts"  // MSC3202: a keyCountsItem
)

// deviceListItem is a queued device list change: the devices of User and
// of Users changed, or (Left) the appservice's users no longer share a
// room with them. One item carries every user one change concerns (a
// join to a big room names each member), so a change is one row however
// many users it names.
type deviceListItem struct {
	User  id.UserID   `json:"user_id,omitempty"`
	Users []id.UserID `json:"user_ids,omitempty"`
	Left  bool        `json:"left,omitempty"`
}

// users are the users the item names.
func (d deviceListItem) users() []id.UserID {
	if d.User == "" {
		return d.Users
	}
	return append([]id.UserID{d.User}, d.Users...)
}

// keyCountsItem is a queued change of a device's one-time key counts and
// unused fallback key types.
type keyCountsItem struct {
	User     id.UserID      `json:"user_id"`
	Device   id.DeviceID    `json:"device_id"`
	OTKs     map[string]int `json:"otk"`
	Fallback []string       `json:"fallback"`
}

// deviceLists is a transaction's device_lists.
type deviceLists struct {
	Changed []id.UserID `json:"changed,omitempty"`
	Left    []id.UserID `json:"left,omitempty"`
}

type (
	otkCounts    = map[id.UserID]map[id.DeviceID]map[string]int
	fallbackKeys = map[id.UserID]map[id.DeviceID][]string
)

// transaction is the body of PUT /_matrix/app/v1/transactions/{txnId}.
// The extensions are sent under their stable keys and the unstable keys of
// their MSCs, which is what bridges parse (mautrix-go reads either).
type transaction struct {
	Events []json.RawMessage `json:"events"`

	Ephemeral        []json.RawMessage `json:"ephemeral,omitempty"`
	MSC2409Ephemeral []json.RawMessage `json:"de.sorunome.msc2409.ephemeral,omitempty"`
	ToDevice         []json.RawMessage `json:"to_device,omitempty"`
	MSC2409ToDevice  []json.RawMessage `json:"de.sorunome.msc2409.to_device,omitempty"`

	DeviceLists         *deviceLists `json:"device_lists,omitempty"`
	MSC3202DeviceLists  *deviceLists `json:"org.matrix.msc3202.device_lists,omitempty"`
	OTKCounts           otkCounts    `json:"device_one_time_keys_count,omitempty"`
	MSC3202OTKCounts    otkCounts    `json:"org.matrix.msc3202.device_one_time_keys_count,omitempty"`
	FallbackKeys        fallbackKeys `json:"device_unused_fallback_key_types,omitempty"`
	MSC3202FallbackKeys fallbackKeys `json:"org.matrix.msc3202.device_unused_fallback_key_types,omitempty"`
}

// queuedItem is one row of appservice_queue.
type queuedItem struct {
	rowID int64
	kind  string
	body  string
}

// txnBuilder gathers queued items, in queue order, into one transaction.
type txnBuilder struct {
	txn   transaction
	items int // rows taken
	// Device list changes and key counts fold per user (device): the last
	// queued one wins.
	lists map[id.UserID]bool // user -> left
	order []id.UserID
	keys  map[id.UserID]map[id.DeviceID]keyCountsItem
}

func newTxnBuilder() *txnBuilder {
	return &txnBuilder{txn: transaction{Events: []json.RawMessage{}}}
}

// errBadItem marks a queued item that cannot be read: it is left out of
// the transaction (and taken off the queue with it) rather than stall the
// appservice's queue.
var errBadItem = errors.New("unreadable queued item")

// add takes item unless the transaction has no room left for its kind; it
// reports whether it took it. An item that cannot be read is an error
// wrapping errBadItem.
func (b *txnBuilder) add(item queuedItem) (bool, error) {
	raw := json.RawMessage(item.body)
	bad := func(err error) (bool, error) {
		return false, fmt.Errorf("%w %d (%s): %v", errBadItem, item.rowID, item.kind, err)
	}
	switch item.kind {
	case kindEvent, kindEphemeral, kindToDevice:
		if !json.Valid(raw) {
			return bad(errors.New("not JSON"))
		}
	}
	switch item.kind {
	case kindEvent:
		if len(b.txn.Events) == MaxTxnEvents {
			return false, nil
		}
		b.txn.Events = append(b.txn.Events, raw)
	case kindEphemeral:
		if len(b.txn.Ephemeral) == MaxTxnEphemeral {
			return false, nil
		}
		b.txn.Ephemeral = append(b.txn.Ephemeral, raw)
	case kindToDevice:
		if len(b.txn.ToDevice) == MaxTxnToDevice {
			return false, nil
		}
		b.txn.ToDevice = append(b.txn.ToDevice, raw)
	case kindDeviceList:
		var d deviceListItem
		if err := json.Unmarshal(raw, &d); err != nil {
			return bad(err)
		}
		if b.lists == nil {
			b.lists = map[id.UserID]bool{}
		}
		for _, user := range d.users() {
			if _, seen := b.lists[user]; !seen {
				b.order = append(b.order, user)
			}
			b.lists[user] = d.Left
		}
	case kindKeyCounts:
		var k keyCountsItem
		if err := json.Unmarshal(raw, &k); err != nil {
			return bad(err)
		}
		if b.keys == nil {
			b.keys = map[id.UserID]map[id.DeviceID]keyCountsItem{}
		}
		if b.keys[k.User] == nil {
			b.keys[k.User] = map[id.DeviceID]keyCountsItem{}
		}
		b.keys[k.User][k.Device] = k
	default:
		return bad(errors.New("unknown kind"))
	}
	b.items++
	return true, nil
}

// skip takes a bad item off the queue with the transaction without
// putting it in.
func (b *txnBuilder) skip() { b.items++ }

// full reports whether a kind with a limit reached it.
func (b *txnBuilder) full() bool {
	return len(b.txn.Events) == MaxTxnEvents || len(b.txn.Ephemeral) == MaxTxnEphemeral || len(b.txn.ToDevice) == MaxTxnToDevice
}

// body finishes the transaction: the folded extensions, each under both
// keys, and the JSON.
func (b *txnBuilder) body() ([]byte, error) {
	t := b.txn
	t.MSC2409Ephemeral, t.MSC2409ToDevice = t.Ephemeral, t.ToDevice
	if len(b.order) > 0 {
		dl := &deviceLists{}
		for _, user := range b.order {
			if b.lists[user] {
				dl.Left = append(dl.Left, user)
			} else {
				dl.Changed = append(dl.Changed, user)
			}
		}
		t.DeviceLists, t.MSC3202DeviceLists = dl, dl
	}
	if len(b.keys) > 0 {
		t.OTKCounts, t.FallbackKeys = otkCounts{}, fallbackKeys{}
		for user, devices := range b.keys {
			t.OTKCounts[user] = map[id.DeviceID]map[string]int{}
			t.FallbackKeys[user] = map[id.DeviceID][]string{}
			for device, k := range devices {
				t.OTKCounts[user][device] = k.OTKs
				t.FallbackKeys[user][device] = k.Fallback
			}
		}
		t.MSC3202OTKCounts, t.MSC3202FallbackKeys = t.OTKCounts, t.FallbackKeys
	}
	body, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode transaction: %w", err)
	}
	return body, nil
}

// pendingTxn is a transaction formed and stored, not yet acknowledged.
type pendingTxn struct {
	id    string
	body  []byte
	items int  // queued items it carries
	full  bool // it stopped at a limit: more may be queued
}

// maxResponseBytes bounds what is read of an appservice's answer.
const maxResponseBytes = 64 << 10

// putTransaction sends txn to the appservice at baseURL with its hs_token;
// any answer but 2xx is an error.
func putTransaction(ctx context.Context, client *http.Client, baseURL, hsToken string, txn *pendingTxn) error {
	u := strings.TrimRight(baseURL, "/") + "/_matrix/app/v1/transactions/" + url.PathEscape(txn.id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(txn.body))
	if err != nil {
		return fmt.Errorf("transaction %s: %w", txn.id, err)
	}
	req.Header.Set("Authorization", "Bearer "+hsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("transaction %s: %w", txn.id, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("transaction %s: appservice answered %s: %.200s", txn.id, resp.Status, answer)
	}
	return nil
}
