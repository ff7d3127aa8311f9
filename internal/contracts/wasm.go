package contracts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// The WebAssembly binary format's sections this package reads or writes.
const (
	sectionCustom = 0
	sectionType   = 1
	sectionImport = 2
	sectionFunc   = 3
	sectionTable  = 4
	sectionMemory = 5
	sectionGlobal = 6
	sectionExport = 7
	sectionStart  = 8
	sectionElem   = 9
	sectionCode   = 10
	sectionData   = 11
	sectionDataN  = 12
)

// sectionOrder is where each known section goes in a module: a section
// added by the instrumenter is put before the first section that follows
// it in this order.
var sectionOrder = map[byte]int{
	sectionType: 1, sectionImport: 2, sectionFunc: 3, sectionTable: 4,
	sectionMemory: 5, sectionGlobal: 6, sectionExport: 7, sectionStart: 8,
	sectionElem: 9, sectionDataN: 10, sectionCode: 11, sectionData: 12,
}

// GasExport is the name under which an instrumented module exports its gas
// counter, a mutable i64 global: the host sets it before a call, every
// metered block subtracts its cost, and the block traps once it is
// negative.
const GasExport = "__matrixos_gas"

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// Import is one function a module imports.
type Import struct {
	Module, Name string
}

// section is one section of a module as read: its ID and payload.
type section struct {
	id      byte
	payload []byte
}

// reader decodes the binary format's primitives from a byte slice; every
// read past the end or malformed number is an error, never a panic.
type reader struct {
	b   []byte
	off int
}

var errEOF = errors.New("unexpected end of data")

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errEOF
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out, nil
}

// u32 reads an unsigned LEB128 number of at most 32 bits.
func (r *reader) u32() (uint32, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || n > 5 || v > 0xFFFFFFFF {
		return 0, errors.New("malformed unsigned number")
	}
	r.off += n
	return uint32(v), nil
}

// sleb skips a signed LEB128 number of at most bits bits.
func (r *reader) sleb(bits int) error {
	maxLen := (bits + 6) / 7
	for i := 0; i < maxLen; i++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return errors.New("malformed signed number")
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n))
	return string(b), err
}

func appendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// module is a decoded module: its sections in order and what the
// instrumenter needs to know about them.
type module struct {
	sections []section
	imports  []Import
	// globals counts the globals (imported and defined): the index the
	// gas counter gets.
	globals uint32
}

// parseModule splits a module into its sections and reads its imports and
// globals. Only function imports are accepted: the host offers no memory,
// table or global.
func parseModule(wasm []byte) (*module, error) {
	if !bytes.HasPrefix(wasm, wasmHeader) {
		return nil, errors.New("not a WebAssembly 1.0 binary module")
	}
	m := &module{}
	r := &reader{b: wasm, off: len(wasmHeader)}
	last := 0
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		payload, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if id != sectionCustom {
			order, ok := sectionOrder[id]
			if !ok {
				return nil, fmt.Errorf("unknown section %d", id)
			}
			if order <= last {
				return nil, fmt.Errorf("section %d out of order or repeated", id)
			}
			last = order
		}
		m.sections = append(m.sections, section{id: id, payload: payload})
		switch id {
		case sectionType:
			if err := checkTypes(payload); err != nil {
				return nil, fmt.Errorf("type section: %w", err)
			}
		case sectionTable:
			if err := checkTables(payload); err != nil {
				return nil, fmt.Errorf("table section: %w", err)
			}
		case sectionImport:
			if err := m.readImports(payload); err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
		case sectionGlobal:
			n, err := checkGlobals(payload)
			if err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
			m.globals += n
		}
	}
	return m, nil
}

// MaxTableElements bounds a table's declared maximum: wazero grows a
// table by allocating the requested elements at once, so table.grow, which
// costs one instruction's gas whatever its operand, must not be able to
// ask for billions.
const MaxTableElements = 1024

// errFloat refuses floating point: NaN payloads differ between machines, so
// a contract that computes with floats could publish results that do not
// replay.
var errFloat = errors.New("floating point is not allowed: its NaN results differ between machines")

func isFloatType(t byte) bool { return t == 0x7D || t == 0x7C }

// checkValueTypes reads a vector of value types, refusing floats.
func checkValueTypes(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	types, err := r.bytes(int(n))
	if err != nil {
		return err
	}
	if slices.ContainsFunc(types, isFloatType) {
		return errFloat
	}
	return nil
}

// checkTypes refuses function signatures with float parameters or results.
func checkTypes(payload []byte) error {
	r := &reader{b: payload}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type %d: not a function type", i)
		}
		if err := checkValueTypes(r); err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		if err := checkValueTypes(r); err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
	}
	if !r.done() {
		return errors.New("trailing bytes")
	}
	return nil
}

// checkTables refuses tables without a declared maximum or with one above
// MaxTableElements.
func checkTables(payload []byte) error {
	r := &reader{b: payload}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.byte(); err != nil { // element type
			return err
		}
		flags, err := r.byte()
		if err != nil {
			return err
		}
		if _, err := r.u32(); err != nil { // minimum
			return err
		}
		if flags != 0x01 {
			return fmt.Errorf("table %d: a table must declare a maximum of at most %d elements", i, MaxTableElements)
		}
		max, err := r.u32()
		if err != nil {
			return err
		}
		if max > MaxTableElements {
			return fmt.Errorf("table %d: maximum %d elements is above %d", i, max, MaxTableElements)
		}
	}
	if !r.done() {
		return errors.New("trailing bytes")
	}
	return nil
}

// checkGlobals reads the global section, refusing float globals, and
// returns the number of globals it defines.
func checkGlobals(payload []byte) (uint32, error) {
	r := &reader{b: payload}
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		t, err := r.byte()
		if err != nil {
			return 0, err
		}
		if isFloatType(t) {
			return 0, fmt.Errorf("global %d: %w", i, errFloat)
		}
		if _, err := r.byte(); err != nil { // mutability
			return 0, err
		}
		if err := skipConstExpr(r); err != nil {
			return 0, fmt.Errorf("global %d: %w", i, err)
		}
	}
	if !r.done() {
		return 0, errors.New("trailing bytes")
	}
	return n, nil
}

// skipConstExpr reads past an initializer expression up to its end.
func skipConstExpr(r *reader) error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		if op == 0x0B {
			return nil
		}
		if err := skipImmediates(r, op, math.MaxUint32); err != nil {
			return err
		}
	}
}

func (m *module) readImports(payload []byte) error {
	r := &reader{b: payload}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		mod, err := r.name()
		if err != nil {
			return err
		}
		name, err := r.name()
		if err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		if kind != 0x00 {
			return fmt.Errorf("%s.%s: only functions may be imported", mod, name)
		}
		if _, err := r.u32(); err != nil {
			return err
		}
		m.imports = append(m.imports, Import{Module: mod, Name: name})
	}
	if !r.done() {
		return errors.New("trailing bytes")
	}
	return nil
}

func (m *module) section(id byte) (int, bool) {
	for i, s := range m.sections {
		if s.id == id {
			return i, true
		}
	}
	return 0, false
}

// setSection replaces a section's payload, or adds the section where the
// binary format's order puts it.
func (m *module) setSection(id byte, payload []byte) {
	if i, ok := m.section(id); ok {
		m.sections[i].payload = payload
		return
	}
	at := len(m.sections)
	for i, s := range m.sections {
		if s.id != sectionCustom && sectionOrder[s.id] > sectionOrder[id] {
			at = i
			break
		}
	}
	m.sections = slices.Insert(m.sections, at, section{id: id, payload: payload})
}

func (m *module) encode() []byte {
	out := slices.Clone(wasmHeader)
	for _, s := range m.sections {
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.payload)))
		out = append(out, s.payload...)
	}
	return out
}

// Instrument returns the module with gas metering added, and the functions
// it imports. It appends a mutable i64 global, exported as GasExport, and
// inserts at the start of every function body and of every block, loop,
// if and else a charge of the instructions directly inside it: the charge
// subtracts their number from the global and traps (unreachable) when the
// result is negative. Before each memory.copy, memory.fill and
// memory.init it calls a function it adds, which charges 1 + length/64.
// Every backward branch goes to a loop's start and
// every call to a function's, so a module cannot run longer than its gas
// allows. A module whose code names the global the instrumenter adds
// (an index beyond its own globals), has a start function, uses instructions outside the core
// MVP, sign-extension, bulk memory and reference types sets, uses floating
// point (types, locals, globals or instructions: NaN payloads differ
// between machines), has a table without a maximum of at most
// MaxTableElements, or is malformed is refused with an error.
func Instrument(wasm []byte) ([]byte, []Import, error) {
	m, err := parseModule(wasm)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := m.section(sectionStart); ok {
		return nil, nil, errors.New("a start function is not allowed: contracts run only through " + Entry)
	}
	gas := m.globals
	var globals []byte
	if i, ok := m.section(sectionGlobal); ok {
		r := &reader{b: m.sections[i].payload}
		n, _ := r.u32() // read once by parseModule
		globals = appendU32(nil, n+1)
		globals = append(globals, r.b[r.off:]...)
	} else {
		globals = appendU32(nil, 1)
	}
	globals = append(globals, 0x7E, 0x01, 0x42, 0x00, 0x0B) // mut i64 = i64.const 0
	exports, err := addGasExport(m, gas)
	if err != nil {
		return nil, nil, fmt.Errorf("export section: %w", err)
	}
	if i, ok := m.section(sectionCode); ok {
		if err := m.meter(m.sections[i].payload, gas); err != nil {
			return nil, nil, err
		}
	}
	m.setSection(sectionGlobal, globals)
	m.setSection(sectionExport, exports)
	return m.encode(), m.imports, nil
}

// addGasExport returns the export section with the gas counter added.
func addGasExport(m *module, gas uint32) ([]byte, error) {
	var n uint32
	var rest []byte
	if i, ok := m.section(sectionExport); ok {
		r := &reader{b: m.sections[i].payload}
		var err error
		if n, err = r.u32(); err != nil {
			return nil, err
		}
		rest = r.b[r.off:]
		for j := uint32(0); j < n; j++ {
			name, err := r.name()
			if err != nil {
				return nil, err
			}
			if name == GasExport {
				return nil, fmt.Errorf("the module exports %s itself", GasExport)
			}
			if _, err := r.byte(); err != nil {
				return nil, err
			}
			if _, err := r.u32(); err != nil {
				return nil, err
			}
		}
		if !r.done() {
			return nil, errors.New("trailing bytes")
		}
	}
	out := appendU32(nil, n+1)
	out = append(out, rest...)
	out = appendU32(out, uint32(len(GasExport)))
	out = append(out, GasExport...)
	out = append(out, 0x03)
	return appendU32(out, gas), nil
}

// meter replaces the code section with every function body metered, and
// adds the function the bulk memory instructions call to pay for their
// length (see chargeLengthBody).
func (m *module) meter(code []byte, gas uint32) error {
	types, typeIndex, err := m.appendEntry(sectionType, []byte{0x60, 0x01, 0x7F, 0x01, 0x7F}) // (i32) -> i32
	if err != nil {
		return fmt.Errorf("type section: %w", err)
	}
	funcs, defined, err := m.appendEntry(sectionFunc, appendU32(nil, typeIndex))
	if err != nil {
		return fmt.Errorf("function section: %w", err)
	}
	chargeLength := uint32(len(m.imports)) + defined
	metered, err := meterCode(code, gas, chargeLength)
	if err != nil {
		return fmt.Errorf("code section: %w", err)
	}
	r := &reader{b: metered}
	n, _ := r.u32() // written by meterCode
	if n != defined {
		return fmt.Errorf("%d function bodies for %d functions", n, defined)
	}
	helper := chargeLengthBody(gas)
	out := appendU32(nil, n+1)
	out = append(out, r.b[r.off:]...)
	out = appendU32(out, uint32(len(helper)))
	out = append(out, helper...)
	m.setSection(sectionType, types)
	m.setSection(sectionFunc, funcs)
	m.setSection(sectionCode, out)
	return nil
}

// appendEntry returns a vector section's payload with entry appended (a
// section the module lacks is empty) and the entry's index.
func (m *module) appendEntry(id byte, entry []byte) ([]byte, uint32, error) {
	var n uint32
	var rest []byte
	if i, ok := m.section(id); ok {
		r := &reader{b: m.sections[i].payload}
		var err error
		if n, err = r.u32(); err != nil {
			return nil, 0, err
		}
		rest = r.b[r.off:]
	}
	out := appendU32(nil, n+1)
	out = append(out, rest...)
	return append(out, entry...), n, nil
}

// lengthShift sets what a bulk memory instruction (memory.copy, fill
// and init) costs beyond its own instruction: 1 + length/64.
const lengthShift = 6

// chargeLengthBody is the body of the function the instrumenter calls
// just before each bulk memory instruction, whose length operand is on
// top of the stack: (n i32) -> i32 takes 1 + n/64 gas, traps when the
// gas runs out and gives n back to the instruction.
func chargeLengthBody(gas uint32) []byte {
	b := []byte{0x00, 0x23} // no locals; global.get gas
	b = appendU32(b, gas)
	// local.get 0, i64.extend_i32_u, i64.const shift, i64.shr_u,
	// i64.const 1, i64.add, i64.sub
	b = append(b, 0x20, 0x00, 0xAD, 0x42, lengthShift, 0x88, 0x42, 0x01, 0x7C, 0x7D, 0x24)
	b = appendU32(b, gas) // global.set gas
	b = append(b, 0x23)
	b = appendU32(b, gas)
	// i64.const 0, i64.lt_s, if (empty), unreachable, end, local.get 0, end
	return append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0B, 0x20, 0x00, 0x0B)
}

// meterCode returns the code section with every function body metered;
// chargeLength is the function that bulk memory instructions call first.
func meterCode(payload []byte, gas, chargeLength uint32) ([]byte, error) {
	r := &reader{b: payload}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		metered, err := meterBody(body, gas, chargeLength)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(metered)))
		out = append(out, metered...)
	}
	if !r.done() {
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

// charge is where a metered block starts and what it costs, or (length
// set) where a bulk memory instruction is that pays for its length.
type charge struct {
	at     int
	cost   int64
	length bool
}

// maxBodyNesting bounds the blocks open at once in a function body.
const maxBodyNesting = 1024

// meterBody inserts the charges into one function body (its locals, then
// its expression).
func meterBody(body []byte, gas, chargeLength uint32) ([]byte, error) {
	r := &reader{b: body}
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	for i := uint32(0); i < groups; i++ {
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		t, err := r.byte()
		if err != nil {
			return nil, err
		}
		if isFloatType(t) {
			return nil, errFloat
		}
	}
	var charges []charge
	open := []int{len(charges)} // the charges of the blocks open now
	charges = append(charges, charge{at: r.off})
	for len(open) > 0 {
		if r.done() {
			return nil, errors.New("body ends inside a block")
		}
		charges[open[len(open)-1]].cost++
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch op {
		case 0x02, 0x03, 0x04: // block, loop, if
			if err := skipBlockType(r); err != nil {
				return nil, err
			}
			if len(open) >= maxBodyNesting {
				return nil, errors.New("blocks nested too deeply")
			}
			open = append(open, len(charges))
			charges = append(charges, charge{at: r.off})
		case 0x05: // else
			if len(open) < 2 {
				return nil, errors.New("else outside an if")
			}
			open[len(open)-1] = len(charges)
			charges = append(charges, charge{at: r.off})
		case 0x0B: // end
			open = open[:len(open)-1]
		default:
			if op == 0xFC && isBulkMemory(r) {
				charges = append(charges, charge{at: r.off - 1, length: true})
			}
			if err := skipImmediates(r, op, gas); err != nil {
				return nil, err
			}
		}
	}
	if !r.done() {
		return nil, errors.New("bytes after the body's end")
	}
	out := make([]byte, 0, len(body)+len(charges)*24)
	prev := 0
	for _, c := range charges {
		out = append(out, body[prev:c.at]...)
		if c.length {
			out = append(out, 0x10) // call
			out = appendU32(out, chargeLength)
		} else {
			out = appendCharge(out, gas, c.cost)
		}
		prev = c.at
	}
	return append(out, body[prev:]...), nil
}

// appendCharge appends: gas -= cost; if gas < 0 { unreachable }.
func appendCharge(b []byte, gas uint32, cost int64) []byte {
	b = append(b, 0x23) // global.get
	b = appendU32(b, gas)
	b = append(b, 0x42) // i64.const
	b = appendS64(b, cost)
	b = append(b, 0x7D, 0x24) // i64.sub, global.set
	b = appendU32(b, gas)
	b = append(b, 0x23)
	b = appendU32(b, gas)
	// i64.const 0, i64.lt_s, if (empty), unreachable, end
	return append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0B)
}

func skipBlockType(r *reader) error {
	if r.done() {
		return errEOF
	}
	switch c := r.b[r.off]; {
	case c == 0x40, c == 0x7F, c == 0x7E, c == 0x70, c == 0x6F:
		r.off++
		return nil
	case isFloatType(c):
		return errFloat
	default:
		return r.sleb(33) // a type index
	}
}

// isFloatOpcode reports whether an instruction (outside the 0xFC prefix)
// loads, stores, makes or computes with a float.
func isFloatOpcode(op byte) bool {
	switch {
	case op == 0x2A, op == 0x2B, op == 0x38, op == 0x39: // f32/f64 load, store
		return true
	case op == 0x43, op == 0x44: // f32.const, f64.const
		return true
	case op >= 0x5B && op <= 0x66: // float comparisons
		return true
	case op >= 0x8B && op <= 0xA6: // float arithmetic
		return true
	case op >= 0xA8 && op <= 0xAB, op >= 0xAE && op <= 0xBF: // conversions, reinterpretations
		return true
	}
	return false
}

// skipImmediates reads past an instruction's immediates (the opcode read),
// refusing opcodes outside the accepted sets, floats and any access to the
// gas counter.
func skipImmediates(r *reader, op byte, gas uint32) error {
	if isFloatOpcode(op) {
		return errFloat
	}
	switch {
	case op == 0x00, op == 0x01, op == 0x0F, op == 0x1A, op == 0x1B, op == 0xD1,
		op >= 0x45 && op <= 0xC4:
		return nil
	case op == 0x0C, op == 0x0D, op == 0x10, op >= 0x20 && op <= 0x22,
		op == 0x25, op == 0x26, op == 0x3F, op == 0x40, op == 0xD2:
		_, err := r.u32()
		return err
	case op == 0x23, op == 0x24: // global.get, global.set
		idx, err := r.u32()
		if err == nil && idx >= gas {
			err = fmt.Errorf("global index %d out of range", idx)
		}
		return err
	case op == 0x0E: // br_table
		n, err := r.u32()
		for i := uint64(0); err == nil && i <= uint64(n); i++ {
			_, err = r.u32()
		}
		return err
	case op == 0x11: // call_indirect
		return skipU32s(r, 2)
	case op == 0x1C: // select t*
		n, err := r.u32()
		if err != nil {
			return err
		}
		types, err := r.bytes(int(n))
		if err == nil && slices.ContainsFunc(types, isFloatType) {
			err = errFloat
		}
		return err
	case op >= 0x28 && op <= 0x3E: // memory access: align, offset
		return skipU32s(r, 2)
	case op == 0x41:
		return r.sleb(32)
	case op == 0x42:
		return r.sleb(64)
	case op == 0xD0: // ref.null
		_, err := r.byte()
		return err
	case op == 0xFC:
		return skipMisc(r)
	}
	return fmt.Errorf("instruction 0x%02x is not allowed", op)
}

// isBulkMemory reports whether the 0xFC-prefixed instruction whose
// sub-opcode r is at is memory.init, memory.copy or memory.fill, whose
// last operand is a length in bytes.
func isBulkMemory(r *reader) bool {
	sub, err := (&reader{b: r.b, off: r.off}).u32()
	return err == nil && (sub == 8 || sub == 10 || sub == 11)
}

// skipMisc reads past a 0xFC-prefixed instruction.
func skipMisc(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating conversions from floats
		return errFloat
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		return skipU32s(r, 2)
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		return skipU32s(r, 1)
	}
	return fmt.Errorf("instruction 0xfc %d is not allowed", sub)
}

func skipU32s(r *reader, n int) error {
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}
