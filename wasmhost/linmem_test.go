//go:build linux

package wasmhost

import (
	"bytes"
	"log/slog"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/protogate/protogate/guests/builtin"
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

// TestLinearMemoryUnmapped checks that the mappings of closed instances
// are unmapped: twenty handlers are made and closed beside one that
// stays, and then only its mapping may be left.
func TestLinearMemoryUnmapped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mappings are Linux's")
	}
	wasm, _ := builtin.View("echo")
	cache := wazero.NewCompilationCache()
	defer cache.Close(t.Context())
	newH := func() *Handler {
		t.Helper()
		h, err := New(Config{Name: "echo", Wasm: wasm, Instances: 1, Cache: cache, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if st := h.Stats(); st.Instances != 1 {
			t.Fatalf("instances = %d: %s", st.Instances, st.LastError)
		}
		return h
	}
	// The anchor keeps the compiled module, so that the others only
	// instantiate it; its own mapping stays.
	anchor := newH()
	defer anchor.Close()
	before := mappings.Load()
	for range 20 {
		newH().Close()
	}
	if n := mappings.Load() - before; n == 0 {
		t.Log("every mapping was unmapped before the first check")
	}
	// Cleanups run once a collection finds the instances unreachable.
	deadline := time.Now().Add(30 * time.Second)
	for n := mappings.Load() - before; n > 0; n = mappings.Load() - before {
		if time.Now().After(deadline) {
			t.Fatalf("%d mappings of closed instances are still mapped", n)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
