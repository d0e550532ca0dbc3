package wasmhost

import (
	"github.com/tetratelabs/wazero/experimental"
)

// goMemory is a linear memory on the Go heap, grown by copying, as wazero
// keeps one by default. It backs an instance's memory where a mapping of
// its own cannot be had (see mappedMemory).
type goMemory struct{ buf []byte }

func (m *goMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		m.buf = append(m.buf[:cap(m.buf)], make([]byte, size-uint64(cap(m.buf)))...)
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *goMemory) Free() { m.buf = nil }

var _ experimental.LinearMemory = (*goMemory)(nil)
