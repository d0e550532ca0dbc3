package wasmhost_test

import (
	"bytes"
	"encoding/binary"

	"github.com/protogate/protogate/abi"
)

// Helpers that assemble a module in the binary format.

// leb encodes v as an unsigned LEB128.
func leb(v uint32) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func vec(items ...[]byte) []byte {
	out := leb(uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func sec(id byte, body []byte) []byte {
	return append(append([]byte{id}, leb(uint32(len(body)))...), body...)
}

func str(s string) []byte { return append(leb(uint32(len(s))), s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func fbody(code ...byte) []byte { return withLocals([]byte{0x00}, code...) }

func withLocals(locals []byte, code ...byte) []byte {
	b := append(append([]byte(nil), locals...), code...)
	return append(leb(uint32(len(b))), b...)
}

var wasmHeader = []byte("\x00asm\x01\x00\x00\x00")

// startGuest is a minimal ABI v1 guest (the marker and an inbox) whose
// start function, which runs while it is instantiated, is start: the code
// of a [] -> [] function that may call function 0, WASI's poll_oneoff.
// Its memory holds a poll_oneoff clock subscription at 0 for an hour,
// room for the event at 64 and for the count at 96.
func startGuest(start ...byte) []byte {
	types := vec(
		[]byte{0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f}, // 0: poll_oneoff
		[]byte{0x60, 0x00, 0x00},                               // 1: [] -> []
		[]byte{0x60, 0x01, 0x7f, 0x01, 0x7f},                   // 2: [i32] -> [i32]
	)
	imports := vec(cat(str("wasi_snapshot_preview1"), str("poll_oneoff"), []byte{0x00}, leb(0))) // func 0
	funcs := vec(leb(1), leb(1), leb(2))                                                         // 1 start, 2 marker, 3 inbox
	memory := vec([]byte{0x00, 0x01})
	exports := vec(
		cat(str("memory"), []byte{0x02}, leb(0)),
		cat(str(abi.ExportMarker), []byte{0x00}, leb(2)),
		cat(str(abi.ExportInbox), []byte{0x00}, leb(3)),
	)
	code := vec(
		fbody(append(start, 0x0b)...),
		fbody(0x0b),
		fbody(0x41, 0x80, 0x08, 0x0b), // inbox at 1024
	)
	// subscription: userdata u64, tag u8 (0: clock) at 8, then the clock
	// at 16: id u32 (1: monotonic), timeout u64 at 24, precision u64,
	// flags u16 at 40 (0: relative).
	sub := make([]byte, 48)
	binary.LittleEndian.PutUint32(sub[16:], 1)
	binary.LittleEndian.PutUint64(sub[24:], 3600e9)
	data := vec(cat([]byte{0x00, 0x41, 0x00, 0x0b}, leb(uint32(len(sub))), sub))
	return cat(wasmHeader,
		sec(1, types), sec(2, imports), sec(3, funcs), sec(5, memory),
		sec(7, exports), sec(8, leb(1)), sec(10, code), sec(11, data))
}

// startSleeps is the code of a start function that sleeps for an hour:
// poll_oneoff(0, 64, 1, 96).
var startSleeps = []byte{0x41, 0x00, 0x41, 0xc0, 0x00, 0x41, 0x01, 0x41, 0xe0, 0x00, 0x10, 0x00, 0x1a}

// startLoops is the code of a start function that loops forever.
var startLoops = []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}
