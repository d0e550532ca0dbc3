package wasmhost

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// TestLinearMemory checks both linear memories: growing keeps the contents
// and the new bytes are zero, growing past the maximum fails, and after
// Free nothing grows. A mapped memory grows in place.
func TestLinearMemory(t *testing.T) {
	const page = 65536
	for _, tc := range []struct {
		name  string
		mem   experimental.LinearMemory
		fixed bool
	}{
		{"mapped", memoryAllocator(&instance{}).Allocate(page, 3*page), true},
		{"go heap", &goMemory{buf: make([]byte, 0, page)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.mem.(*mappedMemory); tc.fixed && !ok {
				t.Skip("the kernel refused the mapping; the Go heap backs it")
			}
			b := tc.mem.Reallocate(page)
			if len(b) != page {
				t.Fatalf("len %d, want %d", len(b), page)
			}
			copy(b, "hello")
			g := tc.mem.Reallocate(2 * page)
			if len(g) != 2*page || !bytes.HasPrefix(g, []byte("hello")) {
				t.Fatalf("grown to %d bytes, starting %q", len(g), g[:5])
			}
			if !bytes.Equal(g[page:], make([]byte, page)) {
				t.Error("the new page is not zero")
			}
			if tc.fixed && unsafe.SliceData(g) != unsafe.SliceData(b) {
				t.Error("the mapped memory moved as it grew")
			}
			if _, ok := tc.mem.(*mappedMemory); ok {
				if r := tc.mem.Reallocate(4 * page); r != nil {
					t.Errorf("grew to %d bytes past the maximum of %d", len(r), 3*page)
				}
			}
			tc.mem.Free()
			if r := tc.mem.Reallocate(page); tc.fixed && r != nil {
				t.Error("grew after Free")
			}
			if tc.fixed && g[0] != 0 {
				// Free returned the pages: what is read through a stale
				// slice is zero, never a fault.
				t.Errorf("a freed page reads %q", g[:5])
			}
		})
	}
}
