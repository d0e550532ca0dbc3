package wasmhost

import (
	"runtime"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mappedMemory is a linear memory in an anonymous mapping of its own,
// reserved at the memory's maximum size up front and faulted in by the
// kernel as the guest touches it. Growing it never copies: with wazero's
// default memory a Go guest's start-up alone copies its heap several times
// over as it grows, a third of the warm start-up (see RATIONALE.md), and a
// grown memory's old copy lingers on the Go heap until a collection. The
// reservation is address space only (MAP_NORESERVE): 64 MiB per instance
// at the default memory_limit.
//
// Free, called by wazero when the module closes, returns the pages to the
// kernel at once, but the mapping itself is unmapped only when the
// instance that made it is unreachable: wazero keeps the slice in its
// module instance after Free, and a read through it (a host function
// finishing after the guest exited, say) must see zeros, not fault. Calls
// run one at a time under the instance's lock, as does Reallocate.
type mappedMemory struct {
	buf   []byte // the whole reservation
	freed bool
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.freed || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

func (m *mappedMemory) Free() {
	if m.freed {
		return
	}
	m.freed = true
	// Errors leave the pages mapped until unmap: memory, not safety.
	syscall.Madvise(m.buf, syscall.MADV_DONTNEED)
}

// unmap releases the reservation. It runs as the owner's cleanup.
func unmap(buf []byte) {
	if syscall.Munmap(buf) == nil {
		mappings.Add(-1)
	}
}

// memoryAllocator returns the allocator of owner's linear memory: a
// mapping of its own (see mappedMemory), unmapped once owner is
// unreachable, or the Go heap if the kernel refuses the mapping (a strict
// overcommit policy or an address-space limit).
func memoryAllocator(owner *instance) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		const page = 65536
		size := (max + page - 1) / page * page
		if size == 0 || size > 1<<32 || uint64(int(size)) != size {
			return &goMemory{buf: make([]byte, 0, capacity)}
		}
		buf, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err != nil {
			return &goMemory{buf: make([]byte, 0, capacity)}
		}
		mappings.Add(1)
		runtime.AddCleanup(owner, unmap, buf)
		return &mappedMemory{buf: buf}
	})
}
