package contracts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// HostModule is the module name of the functions the node offers to
// contracts; a module may import nothing else.
const HostModule = "matrixos"

// Entry is the function every contract exports and the node calls once
// per input event: () -> i32, 0 for success.
const Entry = "handle"

// Limits bound one contract call.
type Limits struct {
	// Gas is the instructions (and host call costs) one call may use.
	Gas int64
	// MemoryPages caps the linear memory (64 KiB pages).
	MemoryPages uint32
	// Timeout is the wall-clock backstop of one call.
	Timeout time.Duration
}

// DefaultLimits are the limits the node runs contracts with.
var DefaultLimits = Limits{Gas: 50_000_000, MemoryPages: 32, Timeout: 5 * time.Second}

// Limits of what one call may read, keep and emit.
const (
	maxKeyLen      = 256
	maxValueLen    = 8 << 10
	maxWrites      = 256
	maxResultLen   = 16 << 10
	maxResultJSON  = 32 << 10 // a result event stays well under 64 KiB
	hostCallCost   = 5000     // a state read: 50 M gas pays for at most 10,000
	resultEntryMax = 64
)

// ErrOutOfGas is the outcome of a call that used all its gas.
var ErrOutOfGas = errors.New("out of gas")

// ErrTimedOut is Run's error for a call the wall clock stopped: how far
// it got depends on the machine, so it has no outcome (the node runs it
// again, then halts the attachment).
var ErrTimedOut = errors.New("stopped by the wall clock")

// State is what a call reads its contract's state from.
type State interface {
	// Get returns the value of key; ok is false when it has none.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
}

// MapState is a State in memory (replays and tests).
type MapState map[string][]byte

// Get returns the value of key.
func (m MapState) Get(_ context.Context, key string) ([]byte, bool, error) {
	v, ok := m[key]
	return v, ok, nil
}

// Apply stores an outcome's writes.
func (m MapState) Apply(writes map[string][]byte) {
	for k, v := range writes {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
}

// Outcome is what one call did. When Err is set the call failed: its
// writes and result fields are dropped.
type Outcome struct {
	// Result holds the fields the contract set (result_str, result_int);
	// nil when it set none.
	Result map[string]any
	// Writes are the state changes: a nil value deletes the key.
	Writes map[string][]byte
	// GasUsed is the gas the call used.
	GasUsed int64
	// MemoryPages is the linear memory's size when the call ended.
	MemoryPages uint32
	// Err is why the call failed: ErrOutOfGas, a trap, a refused host
	// call or a non-zero return.
	Err error
}

// Runtime runs contracts with wazero: the only functions a module can
// import are the host functions below, so a contract has no clock, no
// randomness and no file or network access.
type Runtime struct {
	rt     wazero.Runtime
	limits Limits
}

// NewRuntime returns a runtime enforcing limits.
func NewRuntime(ctx context.Context, limits Limits) (*Runtime, error) {
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(limits.MemoryPages).
		WithCoreFeatures(api.CoreFeaturesV2)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	b := rt.NewHostModuleBuilder(HostModule)
	for name, f := range hostFuncs {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("contracts: host module: %w", err)
	}
	return &Runtime{rt: rt, limits: limits}, nil
}

// Close releases the runtime and every program compiled with it.
func (r *Runtime) Close(ctx context.Context) error { return r.rt.Close(ctx) }

// Program is a compiled contract.
type Program struct {
	// Hash is the hex SHA-256 of the module as uploaded: the contract's
	// name in attachments and results.
	Hash     string
	rt       *Runtime
	compiled wazero.CompiledModule
}

// ModuleHash returns the hash that names a module.
func ModuleHash(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// Compile checks and instruments a module and compiles it. A module is
// refused when it is malformed, imports anything but the host functions
// (with their exact types), has a start function, or does not export
// memory and handle: () -> i32.
func (r *Runtime) Compile(ctx context.Context, wasm []byte) (*Program, error) {
	metered, imports, err := Instrument(wasm)
	if err != nil {
		return nil, err
	}
	for _, imp := range imports {
		if imp.Module != HostModule {
			return nil, fmt.Errorf("import %s.%s: contracts may import only %s functions", imp.Module, imp.Name, HostModule)
		}
		if _, ok := hostFuncs[imp.Name]; !ok {
			return nil, fmt.Errorf("import %s.%s: no such host function (there are %s)", imp.Module, imp.Name, strings.Join(slices.Sorted(maps.Keys(hostFuncs)), ", "))
		}
	}
	compiled, err := r.rt.CompileModule(ctx, metered)
	if err != nil {
		return nil, fmt.Errorf("invalid module: %w", err)
	}
	if err := checkInterface(compiled); err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	return &Program{Hash: ModuleHash(wasm), rt: r, compiled: compiled}, nil
}

func checkInterface(c wazero.CompiledModule) error {
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		h := hostFuncs[name]
		if !slices.Equal(f.ParamTypes(), h.params) || !slices.Equal(f.ResultTypes(), h.results) {
			return fmt.Errorf("import %s.%s: wrong type", mod, name)
		}
	}
	entry, ok := c.ExportedFunctions()[Entry]
	if !ok || len(entry.ParamTypes()) != 0 || !slices.Equal(entry.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
		return fmt.Errorf("the module must export %s: () -> i32", Entry)
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		return errors.New("the module must export its memory as memory")
	}
	return nil
}

// Close releases the compiled module.
func (p *Program) Close(ctx context.Context) error { return p.compiled.Close(ctx) }

// call is one call's view of its input, state and outputs; host functions
// find it in their context.
type call struct {
	input  map[string]any
	state  State
	writes map[string][]byte
	result map[string]any
	// fieldLen is each result field's canonical JSON length, resultLen
	// their sum.
	fieldLen  map[string]int
	resultLen int
	gas       api.MutableGlobal
	err       error // a host function's refusal
	// hostErr is the node's failure that stopped the call: not the
	// contract's outcome.
	hostErr error
}

type callKey struct{}

// Run calls the contract's handle once, in a fresh instance, with input
// (the JSON object the contract reads with input_get) and state. Run
// returns an error when the call could not be made or the node failed
// during it (a state read): such a call has no outcome and is made
// again; so has a call the wall clock stopped (ErrTimedOut). What the
// contract did, failures included, is in the outcome.
func (p *Program) Run(ctx context.Context, input map[string]any, state State) (*Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, p.rt.limits.Timeout)
	defer cancel()
	c := &call{input: input, state: state, writes: map[string][]byte{}, result: map[string]any{}, fieldLen: map[string]int{}}
	ctx = context.WithValue(ctx, callKey{}, c)
	mod, err := p.rt.rt.InstantiateModule(ctx, p.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, fmt.Errorf("instantiate contract %s: %w", p.Hash, err)
	}
	defer mod.Close(context.WithoutCancel(ctx))
	gas, ok := mod.ExportedGlobal(GasExport).(api.MutableGlobal)
	if !ok {
		return nil, fmt.Errorf("contract %s: no gas counter", p.Hash)
	}
	c.gas = gas
	gas.Set(uint64(p.rt.limits.Gas))
	res, callErr := mod.ExportedFunction(Entry).Call(ctx)
	if c.hostErr != nil {
		return nil, fmt.Errorf("contract %s: %w", p.Hash, c.hostErr)
	}
	left := int64(gas.Get())
	out := &Outcome{GasUsed: min(p.rt.limits.Gas, p.rt.limits.Gas-left), MemoryPages: mod.Memory().Size() / 65536}
	switch {
	case left < 0:
		out.Err = ErrOutOfGas
	case c.err != nil:
		out.Err = c.err
	case ctx.Err() != nil:
		return nil, fmt.Errorf("contract %s: %w after %s (%w)", p.Hash, ErrTimedOut, p.rt.limits.Timeout, ctx.Err())
	case callErr != nil:
		out.Err = trapError(callErr)
	case int32(res[0]) != 0:
		out.Err = fmt.Errorf("%s returned %d", Entry, int32(res[0]))
	}
	if out.Err == nil {
		out.Writes = c.writes
		if len(c.result) > 0 {
			out.Result = c.result
		}
	}
	return out, nil
}

// trapError keeps a trap's message without wazero's stack trace.
func trapError(err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return errors.New(strings.TrimPrefix(msg, "wasm error: "))
}
