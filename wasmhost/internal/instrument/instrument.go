// Package instrument rewrites a WebAssembly module so that its calls can be
// stopped, and preempted by the Go runtime, while they run: wasmhost runs
// every module it loads through Module before wazero compiles it.
//
// Module adds a mutable i32 global, the countdown, initialised to Every, a
// function import (protogate.protogate:yield, type [] -> []) and, at the
// head of every loop, the check
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.eqz
//	if
//	  i32.const Every
//	  global.set $countdown
//	  call $yield
//	end
//
// so that the guest calls out to Go every Every loop iterations. Code
// without loops ends on its own; recursion ends in a stack overflow.
//
// Native code cannot be preempted: without these calls a long guest call
// would hold up a garbage collection, which stops every goroutine, and the
// timers of its P (the watchdog's among them) until it ends. In Go, the
// goroutine can be preempted, and yield ends the call of an instance the
// watchdog has stopped.
//
// wazero's WithCloseOnContextDone does the same, but in v1.12.0 its check
// calls out to Go at every loop head (a Go guest's compiled functions each
// contain a loop: about 1 µs per echoed message), and every call starts a
// goroutine to watch the context (3 allocations, about 1 µs more). This
// check costs about half a nanosecond.
//
// Adding an import shifts the index of every function the module defines
// by one, so Module renumbers them wherever they appear: calls, ref.func,
// exports, the start function, element segments, constant expressions and
// the name section. DWARF custom sections, whose code offsets the checks
// invalidate, are dropped; other custom sections are kept as they are.
//
// The module is untrusted input, and Module runs before wazero validates
// it: it must fail cleanly on any bytes, in time linear in their length.
// It refuses what it does not understand (unknown opcodes, section
// layouts), as wazero would; what it accepts need not be valid, wazero
// judges that afterwards.
package instrument

import (
	"errors"
	"fmt"

	"github.com/protogate/protogate/abi"
)

// YieldImport names the function Module adds to the imports, from module
// abi.ModuleName. It is not a Go or C identifier, so no guest uses it by
// accident.
const YieldImport = "protogate:yield"

// Every is how many loop iterations an instrumented guest runs between two
// calls to YieldImport: few enough that the Go runtime never waits long to
// preempt it, many enough that the calls cost next to nothing.
const Every = 1024

// Version names the rewriting Module does. Callers that keep its output
// between runs (wasmhost keeps it beside the compile cache) key it by
// Version, so change Version whenever Module's output changes for some
// input: TestVersion fails until it is.
const Version = "1"

// Module returns a copy of the Wasm module wasm with the checks described
// in the package documentation, or an error if wasm is not a module it can
// rewrite.
func Module(wasm []byte) ([]byte, error) {
	out, err := module(wasm)
	if err != nil {
		return nil, fmt.Errorf("instrument: %w", err)
	}
	return out, nil
}

func module(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errors.New("not a wasm module")
	}
	if wasm[4] != 1 || wasm[5] != 0 || wasm[6] != 0 || wasm[7] != 0 {
		return nil, fmt.Errorf("unsupported wasm binary version % x", wasm[4:8])
	}
	type section struct {
		id   byte
		body []byte
	}
	var sections []section
	r := reader{b: wasm, pos: 8}
	for r.pos < len(r.b) {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		sections = append(sections, section{id, body})
	}

	// First pass: count what the new entities' indices depend on.
	var ins instrumenter
	var nGlobals uint32
	yieldType := -1
	nTypes := uint32(0)
	for _, s := range sections {
		err := checkAllocs(s.id, s.body)
		switch {
		case err != nil:
		case s.id == secType:
			nTypes, yieldType, err = findVoidType(s.body)
		case s.id == secImport:
			ins.funcImports, nGlobals, err = countImports(s.body)
		case s.id == secGlobal:
			r := reader{b: s.body}
			nGlobals += r.u32()
			err = r.err
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, err)
		}
	}
	var newType []byte
	if yieldType < 0 {
		yieldType = int(nTypes)
		newType = []byte{0x60, 0x00, 0x00}
	}
	g := appendU32(nil, nGlobals)         // the countdown's index
	c := append([]byte{0x23}, g...)       // global.get
	c = append(c, 0x41, 0x01, 0x6b, 0x24) // i32.const 1, i32.sub, global.set
	c = append(c, g...)
	c = append(c, 0x23) // global.get
	c = append(c, g...)
	c = append(c, 0x45, 0x04, 0x40, 0x41) // i32.eqz, if, i32.const
	c = appendS32(c, Every)
	c = append(c, 0x24) // global.set
	c = append(c, g...)
	c = append(c, 0x10) // call $yield
	c = appendU32(c, ins.funcImports)
	ins.check = append(c, 0x0b) // end

	var newImport []byte
	newImport = appendName(newImport, abi.ModuleName)
	newImport = appendName(newImport, YieldImport)
	newImport = append(newImport, 0x00) // func
	newImport = appendU32(newImport, uint32(yieldType))
	newGlobal := []byte{0x7f, 0x01, 0x41} // (mut i32) (i32.const Every)
	newGlobal = append(appendS32(newGlobal, Every), 0x0b)

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	// Sections the module may lack are added before the first section
	// that must follow them.
	added := map[byte][]byte{
		secType:   newType,
		secImport: newImport,
		secGlobal: newGlobal,
	}
	emitMissing := func(next byte) {
		for _, id := range []byte{secType, secImport, secGlobal} {
			if item, ok := added[id]; ok && sectionOrder(id) < sectionOrder(next) {
				delete(added, id)
				if item != nil {
					emit(id, append([]byte{1}, item...))
				}
			}
		}
	}
	for _, s := range sections {
		var body []byte
		var err error
		switch s.id {
		case secCustom:
			body, err = ins.custom(s.body)
			if body == nil && err == nil {
				continue // dropped
			}
		case secType, secImport, secGlobal:
			emitMissing(s.id)
			item := added[s.id]
			delete(added, s.id)
			body = s.body
			if s.id == secGlobal {
				body, err = ins.globals(body)
			}
			if err == nil && item != nil {
				body = appendVecItem(body, item)
			}
		case secTable:
			emitMissing(s.id)
			body, err = ins.tables(s.body)
		case secExport:
			emitMissing(s.id)
			body, err = ins.exports(s.body)
		case secStart:
			emitMissing(s.id)
			r := reader{b: s.body}
			body = appendU32(nil, ins.fn(r.u32()))
			err = r.err
		case secElement:
			emitMissing(s.id)
			body, err = ins.elements(s.body)
		case secCode:
			emitMissing(s.id)
			body, err = ins.code(s.body)
		default:
			emitMissing(s.id)
			body = s.body
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, err)
		}
		emit(s.id, body)
	}
	emitMissing(0xff)
	return out, nil
}

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionOrder ranks non-custom sections in the order the binary format
// requires; unknown ids (and 0xff, the end) rank last.
func sectionOrder(id byte) int {
	for i, x := range []byte{secType, secImport, secFunction, secTable, secMemory, secTag, secGlobal,
		secExport, secStart, secElement, secDataCount, secCode, secData} {
		if id == x {
			return i
		}
	}
	return 100
}

// maxLocals caps the locals of one function, as V8 does: wazero v1.12.0
// allocates them all before validating the function, and a few bytes can
// declare 2^32 - 1.
const maxLocals = 50000

// checkAllocs refuses the counts that wazero v1.12.0's decoder allocates
// for before it reads what they count: a section's item count larger than
// the bytes that hold the items (each takes one at least), and a data
// segment longer than its section. 17 bytes could make it allocate 32 GiB:
// a fatal out-of-memory error, not an error wasmhost could report. Every
// other count's items Module reads itself, and refuses if they are
// missing, before wazero sees the module.
func checkAllocs(id byte, body []byte) error {
	switch id {
	case secType, secImport, secFunction, secTable, secMemory, secGlobal, secExport, secElement, secCode, secData, secTag:
	default:
		return nil
	}
	w := rewriter{reader: reader{b: body}}
	n := w.u32()
	if w.err == nil && uint64(n) > uint64(len(w.b)-w.pos) {
		return fmt.Errorf("%d items in %d bytes", n, len(w.b)-w.pos)
	}
	if id != secData {
		return w.err
	}
	var ins instrumenter
	for ; n > 0 && w.err == nil; n-- {
		switch flags := w.u32(); flags {
		case 0: // active, memory 0
			w.constExpr(&ins)
		case 1: // passive
		case 2: // active, with a memory index
			w.u32()
			w.constExpr(&ins)
		default:
			return fmt.Errorf("data segment flags %d", flags)
		}
		w.bytes(int(w.u32()))
	}
	return w.err
}

// findVoidType returns the number of types and the index of the first
// [] -> [] function type, or -1.
func findVoidType(body []byte) (n uint32, void int, err error) {
	r := reader{b: body}
	n = r.u32()
	void = -1
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); form != 0x60 {
			return 0, 0, fmt.Errorf("type %d: unsupported form %#x", i, form)
		}
		// Counts come from the input: every loop over one stops at the
		// first error, or a few bytes would run it 2^32 times.
		params := r.u32()
		for j := uint32(0); j < params && r.err == nil; j++ {
			r.valtype()
		}
		results := r.u32()
		for j := uint32(0); j < results && r.err == nil; j++ {
			r.valtype()
		}
		if params == 0 && results == 0 && void < 0 {
			void = int(i)
		}
	}
	return n, void, r.err
}

// countImports returns how many functions and globals the module imports.
func countImports(body []byte) (funcs, globals uint32, err error) {
	r := reader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func: type index
			r.u32()
			funcs++
		case 0x01: // table: reftype, limits
			r.valtype()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: valtype, mutability
			r.valtype()
			r.byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, 0, fmt.Errorf("unknown import kind %#x", kind)
		}
	}
	return funcs, globals, r.err
}

// appendVecItem appends item to a vector section body (a count, then the
// items).
func appendVecItem(body, item []byte) []byte {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+len(item)+5), n+1)
	out = append(out, body[r.pos:]...)
	return append(out, item...)
}

// instrumenter rewrites the parts of a module that name functions or hold
// code.
type instrumenter struct {
	funcImports uint32 // functions imported before yield
	check       []byte // inserted after every loop instruction
}

// fn maps a function index of the original module to the instrumented one:
// the yield import comes after the module's imports, before its own
// functions.
func (ins *instrumenter) fn(i uint32) uint32 {
	if i >= ins.funcImports {
		return i + 1
	}
	return i
}

// rewriter copies a body while replacing some of its parts.
type rewriter struct {
	reader
	out    []byte
	copied int // r.b[:copied] is in out
}

// flush copies the bytes read since the last replacement.
func (w *rewriter) flush() {
	w.out = append(w.out, w.b[w.copied:w.pos]...)
	w.copied = w.pos
}

// fnIndex reads a function index and writes it renumbered.
func (w *rewriter) fnIndex(ins *instrumenter) {
	w.flush()
	i := w.u32()
	w.out = appendU32(w.out, ins.fn(i))
	w.copied = w.pos
}

// constExpr copies a constant expression up to its end, renumbering
// ref.func.
func (w *rewriter) constExpr(ins *instrumenter) {
	for w.err == nil {
		switch op := w.byte(); op {
		case 0x0b: // end
			return
		case 0x41, 0x42, 0xd0: // i32.const, i64.const, ref.null
			w.leb()
		case 0x43:
			w.bytes(4)
		case 0x44:
			w.bytes(8)
		case 0x23: // global.get
			w.u32()
		case 0xd2: // ref.func
			w.fnIndex(ins)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constants
		case 0xfd: // v128.const
			if sub := w.u32(); sub != 12 {
				w.err = fmt.Errorf("opcode 0xfd %d in a constant expression", sub)
				return
			}
			w.bytes(16)
		default:
			w.err = fmt.Errorf("opcode %#x in a constant expression", op)
			return
		}
	}
}

func (ins *instrumenter) globals(body []byte) ([]byte, error) {
	w := rewriter{reader: reader{b: body}}
	for n := w.u32(); n > 0 && w.err == nil; n-- {
		w.valtype()
		w.byte()
		w.constExpr(ins)
	}
	w.flush()
	return w.out, w.err
}

// tables renumbers the ref.func of tables with an initializer
// (0x40 0x00 tabletype expr).
func (ins *instrumenter) tables(body []byte) ([]byte, error) {
	w := rewriter{reader: reader{b: body}}
	for n := w.u32(); n > 0 && w.err == nil; n-- {
		init := w.err == nil && w.pos < len(w.b) && w.b[w.pos] == 0x40
		if init {
			w.byte()
			if w.byte() != 0x00 {
				return nil, errors.New("table initializer: reserved byte not 0")
			}
		}
		w.valtype()
		w.limits()
		if init {
			w.constExpr(ins)
		}
	}
	w.flush()
	return w.out, w.err
}

func (ins *instrumenter) exports(body []byte) ([]byte, error) {
	w := rewriter{reader: reader{b: body}}
	for n := w.u32(); n > 0 && w.err == nil; n-- {
		w.name()
		if kind := w.byte(); kind == 0x00 {
			w.fnIndex(ins)
		} else {
			w.u32()
		}
	}
	w.flush()
	return w.out, w.err
}

func (ins *instrumenter) elements(body []byte) ([]byte, error) {
	w := rewriter{reader: reader{b: body}}
	for n := w.u32(); n > 0 && w.err == nil; n-- {
		flags := w.u32()
		if flags > 7 {
			return nil, fmt.Errorf("element segment flags %d", flags)
		}
		if flags&1 == 0 { // active
			if flags&2 != 0 {
				w.u32() // table index
			}
			w.constExpr(ins)
		}
		exprs := flags&4 != 0
		if flags&3 != 0 { // an element kind or reference type
			w.valtype()
		}
		for m := w.u32(); m > 0 && w.err == nil; m-- {
			if exprs {
				w.constExpr(ins)
			} else {
				w.fnIndex(ins)
			}
		}
	}
	w.flush()
	return w.out, w.err
}

// custom returns a custom section as it goes into the instrumented module:
// the name section renumbered, DWARF dropped (nil), others unchanged.
func (ins *instrumenter) custom(body []byte) ([]byte, error) {
	r := reader{b: body}
	name := r.name()
	if r.err != nil {
		return nil, fmt.Errorf("custom section: %w", r.err)
	}
	switch {
	case len(name) > 7 && name[:7] == ".debug_":
		return nil, nil
	case name != "name":
		return body, nil
	}
	// Subsections: 0 module name (kept), 1 function names and 2 local
	// names (renumbered), others (dropped: they would need more care).
	out := append([]byte(nil), body[:r.pos]...)
	for r.pos < len(r.b) && r.err == nil {
		id := r.byte()
		sub := r.bytes(int(r.u32()))
		if r.err != nil {
			break
		}
		var nb []byte
		w := rewriter{reader: reader{b: sub}}
		switch id {
		case 0:
			w.name()
			nb = sub
		case 1:
			for n := w.u32(); n > 0 && w.err == nil; n-- {
				w.fnIndex(ins)
				w.name()
			}
		case 2:
			for n := w.u32(); n > 0 && w.err == nil; n-- {
				w.fnIndex(ins)
				for m := w.u32(); m > 0 && w.err == nil; m-- {
					w.u32()
					w.name()
				}
			}
		default:
			continue
		}
		if w.err != nil {
			return nil, nil // a malformed name section is only dropped
		}
		if id != 0 {
			w.flush()
			nb = w.out
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	if r.err != nil {
		return nil, nil
	}
	return out, nil
}

// code instruments every function body of a code section.
func (ins *instrumenter) code(sec []byte) ([]byte, error) {
	r := reader{b: sec}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(sec)+len(sec)/8), n)
	w := rewriter{}
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			break
		}
		w = rewriter{reader: reader{b: code}, out: w.out[:0]}
		if err := ins.body(&w); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(w.out)))
		out = append(out, w.out...)
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.pos != len(sec) {
		return nil, errors.New("trailing bytes after the last function")
	}
	return out, nil
}

// body rewrites one function body: the check after every loop, function
// indices renumbered.
func (ins *instrumenter) body(w *rewriter) error {
	// Locals: a vector of (count, valtype).
	var locals uint64
	for n := w.u32(); n > 0 && w.err == nil; n-- {
		locals += uint64(w.u32())
		w.valtype()
	}
	if locals > maxLocals {
		return fmt.Errorf("%d locals, more than %d", locals, maxLocals)
	}
	for w.pos < len(w.b) && w.err == nil {
		op := w.byte()
		switch {
		case op == 0x03: // loop blocktype
			w.blocktype()
			w.flush()
			w.out = append(w.out, ins.check...)
		case op == 0x10 || op == 0x12 || op == 0xd2: // call, return_call, ref.func
			w.fnIndex(ins)
		case op == 0x02 || op == 0x04 || op == 0x06: // block, if, try: blocktype
			w.blocktype()
		case op <= 0x01 || op == 0x05 || op == 0x0a || op == 0x0b || op == 0x0f || op == 0x19 ||
			op == 0x1a || op == 0x1b || op == 0xd1 || 0x45 <= op && op <= 0xc4:
			// No immediates.
		case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0c || op == 0x0d ||
			op == 0x18 || 0x20 <= op && op <= 0x26 || op == 0x3f || op == 0x40:
			// One index: catch, throw, rethrow, br, br_if, delegate,
			// local.*, global.*, table.get/set, memory.size/grow.
			w.u32()
		case op == 0x0e: // br_table
			for n := w.u32(); n > 0 && w.err == nil; n-- {
				w.u32()
			}
			w.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			w.u32()
			w.u32()
		case op == 0x1c: // select t*
			for n := w.u32(); n > 0 && w.err == nil; n-- {
				w.valtype()
			}
		case op == 0x1f: // try_table blocktype catch*
			w.blocktype()
			for n := w.u32(); n > 0 && w.err == nil; n-- {
				switch kind := w.byte(); kind {
				case 0x00, 0x01:
					w.u32()
					w.u32()
				case 0x02, 0x03:
					w.u32()
				default:
					return fmt.Errorf("unknown catch kind %#x", kind)
				}
			}
		case 0x28 <= op && op <= 0x3e: // loads and stores
			w.memarg()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			w.leb()
		case op == 0x43:
			w.bytes(4)
		case op == 0x44:
			w.bytes(8)
		case op == 0xd0: // ref.null heaptype
			w.leb()
		case op == 0xfc:
			switch sub := w.u32(); {
			case sub <= 7: // saturating truncations
			case sub == 8 || sub == 10 || sub == 12 || sub == 14:
				w.u32()
				w.u32()
			case sub <= 17:
				w.u32()
			default:
				return fmt.Errorf("unknown opcode 0xfc %d", sub)
			}
		case op == 0xfd: // SIMD
			switch sub := w.u32(); {
			case sub <= 11 || sub == 92 || sub == 93:
				w.memarg()
			case sub == 12 || sub == 13:
				w.bytes(16)
			case 21 <= sub && sub <= 34:
				w.byte()
			case 84 <= sub && sub <= 91:
				w.memarg()
				w.byte()
			}
		case op == 0xfe: // threads
			if sub := w.u32(); sub == 0x03 {
				w.byte()
			} else {
				w.memarg()
			}
		default:
			return fmt.Errorf("unknown opcode %#x at byte %d", op, w.pos-1)
		}
	}
	if w.err != nil {
		return w.err
	}
	w.flush()
	return nil
}

// reader decodes the binary format. The first error sticks; later reads
// return zero values.
type reader struct {
	b   []byte
	pos int
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) byte() byte {
	if r.err != nil || r.pos >= len(r.b) {
		r.err = errTruncated
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.pos {
		r.err = errTruncated
		return nil
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 too long")
	return 0
}

// leb skips a signed or unsigned LEB128 of up to 64 bits.
func (r *reader) leb() {
	for range 10 {
		if c := r.byte(); r.err != nil || c&0x80 == 0 {
			return
		}
	}
	r.err = errors.New("LEB128 too long")
}

func (r *reader) name() string {
	return string(r.bytes(int(r.u32())))
}

func (r *reader) limits() {
	flags := r.byte()
	r.leb()
	if flags&1 != 0 {
		r.leb()
	}
}

// valtype skips a value type: one byte (numeric, vector or an abstract
// reference type), or 0x63 or 0x64 and a heap type, (ref null ht) and
// (ref ht), which wazero v1.12.0 accepts by default.
func (r *reader) valtype() {
	if b := r.byte(); b == 0x63 || b == 0x64 {
		r.leb()
	}
}

// blocktype skips a block type: 0x40, a value type or a type index (an
// s33).
func (r *reader) blocktype() {
	if r.err == nil && r.pos < len(r.b) && (r.b[r.pos] == 0x63 || r.b[r.pos] == 0x64) {
		r.valtype()
		return
	}
	r.leb()
}

// memarg skips a memory argument: alignment (bit 6 flags a memory index,
// multi-memory) and offset.
func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 {
		r.u32()
	}
	r.leb()
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS32 appends v as a signed LEB128 (an i32.const immediate).
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
