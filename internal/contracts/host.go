package contracts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// hostFunc is one function of the host module.
type hostFunc struct {
	fn      api.GoModuleFunc
	params  []api.ValueType
	results []api.ValueType
}

var i32, i64 = api.ValueTypeI32, api.ValueTypeI64

// hostFuncs is the whole host API (docs/contracts.md). Every call costs
// hostCallCost gas plus the bytes it moves. Sizes and pointers are i32; a
// buffer out of the memory's bounds, a key or value over its limit or too
// many writes stop the call with an error.
var hostFuncs = map[string]hostFunc{
	// input_get(path, path_len, out, out_cap) -> len: the value at a
	// dotted path of the input (strings raw, other values as JSON), or -1
	// when there is none. The value is copied only when it fits.
	"input_get": {fn: inputGet, params: []api.ValueType{i32, i32, i32, i32}, results: []api.ValueType{i32}},
	// state_get(key, key_len, out, out_cap) -> len, or -1: as input_get,
	// for the contract's state in this room.
	"state_get": {fn: stateGet, params: []api.ValueType{i32, i32, i32, i32}, results: []api.ValueType{i32}},
	// state_set(key, key_len, value, value_len)
	"state_set": {fn: stateSet, params: []api.ValueType{i32, i32, i32, i32}},
	// state_del(key, key_len)
	"state_del": {fn: stateDel, params: []api.ValueType{i32, i32}},
	// result_str(key, key_len, value, value_len): sets a string field of
	// the result.
	"result_str": {fn: resultStr, params: []api.ValueType{i32, i32, i32, i32}},
	// result_int(key, key_len, value i64): sets a number field.
	"result_int": {fn: resultInt, params: []api.ValueType{i32, i32, i64}},
}

// stop ends the call with err: the host function panics, which wazero
// turns into the call's error; Run reports err.
func (c *call) stop(err error) {
	c.err = err
	panic(err)
}

// fail ends the call because the node, not the contract, failed (a
// state read): Run returns err as its error and the call is made again.
func (c *call) fail(err error) {
	c.hostErr = err
	panic(err)
}

// charge takes a host call's cost from the gas counter.
func (c *call) charge(n int) {
	left := int64(c.gas.Get()) - hostCallCost - int64(n)
	c.gas.Set(uint64(left))
	if left < 0 {
		panic(ErrOutOfGas)
	}
}

func callOf(ctx context.Context) *call { return ctx.Value(callKey{}).(*call) }

// read copies n bytes at ptr out of the memory.
func (c *call) read(m api.Module, ptr, n uint64, limit int, what string) []byte {
	if int(uint32(n)) > limit {
		c.stop(fmt.Errorf("%s longer than %d bytes", what, limit))
	}
	b, ok := m.Memory().Read(uint32(ptr), uint32(n))
	if !ok {
		c.stop(fmt.Errorf("%s out of memory bounds", what))
	}
	c.charge(len(b))
	return append([]byte(nil), b...)
}

// answer writes v at out when it fits in cap and returns its length.
func (c *call) answer(m api.Module, v []byte, out, capacity uint64) uint64 {
	c.charge(len(v))
	if uint64(len(v)) <= uint64(uint32(capacity)) && !m.Memory().Write(uint32(out), v) {
		c.stop(errors.New("output buffer out of memory bounds"))
	}
	return uint64(uint32(int32(len(v))))
}

// maxSafeInt is the largest integer canonical JSON carries (2^53 - 1).
const maxSafeInt = 1<<53 - 1

const absent = uint64(0xFFFFFFFF) // -1 as an i32

func inputGet(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	path := string(c.read(m, stack[0], stack[1], maxKeyLen, "path"))
	v, ok := lookup(c.input, path)
	if !ok {
		c.charge(0)
		stack[0] = absent
		return
	}
	stack[0] = c.answer(m, v, stack[2], stack[3])
}

// lookup finds a dotted path (array elements by index) in a JSON value
// decoded into maps and slices.
func lookup(v any, path string) ([]byte, bool) {
	for part := range strings.SplitSeq(path, ".") {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[part]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	switch t := v.(type) {
	case nil:
		return nil, false
	case string:
		return []byte(t), true
	}
	b, err := json.Marshal(v)
	return b, err == nil
}

func stateGet(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	key := string(c.read(m, stack[0], stack[1], maxKeyLen, "key"))
	v, ok := c.writes[key]
	if !ok {
		var err error
		if v, ok, err = c.state.Get(ctx, key); err != nil {
			c.fail(fmt.Errorf("read state: %w", err))
		}
	}
	if !ok || v == nil {
		c.charge(0)
		stack[0] = absent
		return
	}
	stack[0] = c.answer(m, v, stack[2], stack[3])
}

func (c *call) write(key string, v []byte) {
	if _, seen := c.writes[key]; !seen && len(c.writes) >= maxWrites {
		c.stop(fmt.Errorf("more than %d state writes", maxWrites))
	}
	c.writes[key] = v
}

func stateSet(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	key := string(c.read(m, stack[0], stack[1], maxKeyLen, "key"))
	c.write(key, c.read(m, stack[2], stack[3], maxValueLen, "value"))
}

func stateDel(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	c.write(string(c.read(m, stack[0], stack[1], maxKeyLen, "key")), nil)
}

// setResult sets a result field. The result's canonical JSON must stay
// within maxResultJSON bytes, so that it fits in the result event.
func (c *call) setResult(key string, v any) {
	if _, seen := c.result[key]; !seen && len(c.result) >= resultEntryMax {
		c.stop(fmt.Errorf("more than %d result fields", resultEntryMax))
	}
	n := fieldJSONLen(key, v)
	// {} around the fields and a comma between two.
	total := 2 + c.resultLen - c.fieldLen[key] + n + len(c.result) - 1
	if _, seen := c.result[key]; !seen {
		total++
	}
	if total > maxResultJSON {
		c.stop(fmt.Errorf("result longer than %d bytes of JSON", maxResultJSON))
	}
	c.resultLen += n - c.fieldLen[key]
	c.fieldLen[key] = n
	c.result[key] = v
}

// fieldJSONLen is the length of "key":value in canonical JSON.
func fieldJSONLen(key string, v any) int {
	k, _ := json.Marshal(key)
	b, _ := json.Marshal(v)
	return len(k) + 1 + len(b)
}

func resultStr(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	key := string(c.read(m, stack[0], stack[1], maxKeyLen, "result key"))
	c.setResult(key, string(c.read(m, stack[2], stack[3], maxResultLen, "result value")))
}

func resultInt(ctx context.Context, m api.Module, stack []uint64) {
	c := callOf(ctx)
	key := string(c.read(m, stack[0], stack[1], maxKeyLen, "result key"))
	v := int64(stack[2])
	if v > maxSafeInt || v < -maxSafeInt {
		c.stop(fmt.Errorf("result %s: %d is outside JSON's safe integers", key, v))
	}
	c.setResult(key, v)
}
