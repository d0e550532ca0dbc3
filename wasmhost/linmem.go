package wasmhost

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// mappings counts the linear memories in mappings of their own not yet
// unmapped (see mappedMemory); tests read it.
var mappings atomic.Int64

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
