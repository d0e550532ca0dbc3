//go:build !linux

package wasmhost

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator returns the allocator of owner's linear memory: the Go
// heap, as wazero's default, outside Linux.
func memoryAllocator(owner *instance) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		return &goMemory{buf: make([]byte, 0, capacity)}
	})
}
