package rooms

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"
)

// maxDeviceTxns bounds how many transaction keys of one device the index
// holds. A device past it is looked up in the database on every send, as
// before the index.
const maxDeviceTxns = 1 << 17

// Bounds of the whole index: past maxIndexedDevices devices a new one is
// not indexed, and past maxIndexedTxns keys in all a device that would
// add one stops being indexed; such devices are looked up in the
// database on every send. No key of an indexed device is ever dropped,
// so the index stays a superset of the table.
const (
	maxIndexedDevices = 1 << 16
	maxIndexedTxns    = 1 << 21
)

// txnIndex tells, without reading the transactions table, that a
// device's transaction ID is new: a send whose key it lacks skips the
// database lookup for a retry. It holds a hash of every key the device
// ever used, loaded from the table on the device's first send after
// start-up and added to as the engine accepts transactions, so it is a
// superset of the table (a key whose write failed, or whose room was
// purged, stays and only costs a lookup). A hash it holds may be another
// key's: the caller then reads the table, which decides.
type txnIndex struct {
	seed    maphash.Seed
	mu      sync.Mutex
	devices map[deviceKey]*deviceTxns
	keys    atomic.Int64 // the keys held by all devices

	// maxDevices and maxKeys are maxIndexedDevices and maxIndexedTxns
	// when zero; tests lower them.
	maxDevices, maxKeys int
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

// deviceTxns is one device's entry. mu is held while it loads, so a
// second room's send of the same device waits for the load instead of
// reading the table again.
type deviceTxns struct {
	mu      sync.Mutex
	loaded  bool
	tooMany bool
	keys    map[uint64]struct{}
}

func (x *txnIndex) device(user id.UserID, device id.DeviceID) *deviceTxns {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.devices == nil {
		x.seed = maphash.MakeSeed()
		x.devices = map[deviceKey]*deviceTxns{}
	}
	k := deviceKey{user, device}
	d := x.devices[k]
	if d == nil && len(x.devices) >= cmp.Or(x.maxDevices, maxIndexedDevices) {
		return &deviceTxns{loaded: true, tooMany: true}
	}
	if d == nil {
		d = &deviceTxns{keys: map[uint64]struct{}{}}
		x.devices[k] = d
	}
	return d
}

func (x *txnIndex) hash(scope, txnID string) uint64 {
	var h maphash.Hash
	h.SetSeed(x.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	h.WriteString(txnID)
	return h.Sum64()
}

// mayHave reports whether the device may have used the transaction ID in
// scope before; false is certain. load reads the device's keys from the
// transactions table the first time.
func (x *txnIndex) mayHave(ctx context.Context, user id.UserID, device id.DeviceID, scope, txnID string,
	load func(ctx context.Context, add func(scope, txnID string)) error) (bool, error) {
	d := x.device(user, device)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		err := load(ctx, func(scope, txnID string) { x.addLocked(d, x.hash(scope, txnID)) })
		if err != nil {
			return true, fmt.Errorf("load transaction IDs: %w", err)
		}
		d.loaded = true
	}
	if d.tooMany {
		return true, nil
	}
	_, ok := d.keys[x.hash(scope, txnID)]
	return ok, nil
}

// add records a transaction the engine accepted; it is called before the
// pipeline's memory of it can be dropped.
func (x *txnIndex) add(user id.UserID, device id.DeviceID, scope, txnID string) {
	d := x.device(user, device)
	h := x.hash(scope, txnID)
	d.mu.Lock()
	x.addLocked(d, h)
	d.mu.Unlock()
}

// addLocked adds h to d, whose mu is held, or stops indexing d when it
// or the index is full.
func (x *txnIndex) addLocked(d *deviceTxns, h uint64) {
	if d.tooMany {
		return
	}
	if _, ok := d.keys[h]; ok {
		return
	}
	if len(d.keys) >= maxDeviceTxns || x.keys.Load() >= int64(cmp.Or(x.maxKeys, maxIndexedTxns)) {
		x.keys.Add(-int64(len(d.keys)))
		d.tooMany, d.keys = true, nil
		return
	}
	d.keys[h] = struct{}{}
	x.keys.Add(1)
}
