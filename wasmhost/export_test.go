package wasmhost

import "github.com/protogate/protogate/gateway"

// InstanceOf returns the id of the instance c is pinned to, 0 for the
// fallback or none.
func InstanceOf(c *gateway.Conn) int {
	if p, ok := c.HandlerState().(*pin); ok {
		return p.in.id
	}
	return 0
}

// MemoryBytes returns the linear memory size of every live instance of the
// current version.
func MemoryBytes(h *Handler) []uint32 {
	v := h.cur.Load()
	if v == nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []uint32
	for _, in := range v.insts {
		if in != nil && !in.dead.Load() {
			in.mu.Lock()
			out = append(out, in.mod.Memory().Size())
			in.mu.Unlock()
		}
	}
	return out
}

// PanicOnBytes makes the host itself panic (not the guest) at the start of
// every on_received_bytes call whose bytes are b, until t ends.
func PanicOnBytes(t interface{ Cleanup(func()) }, b string) {
	testHook = func(cl *call) {
		if cl.op == opBytes && string(cl.b) == b {
			panic("wasmhost test: a bug in the host")
		}
	}
	t.Cleanup(func() { testHook = nil })
}

// PendingTimers returns the guest timers pending on the live instances of
// the current version, and how many connections they belong to.
func PendingTimers(h *Handler) (timers, conns int) {
	v := h.cur.Load()
	if v == nil {
		return 0, 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, in := range v.insts {
		if in != nil && !in.dead.Load() {
			in.mu.Lock()
			timers += len(in.timers)
			conns += len(in.nTimers)
			in.mu.Unlock()
		}
	}
	return timers, conns
}

// SharedModule reports whether a and b run the same compiled module on the
// same wazero Runtime (see shared.go).
func SharedModule(a, b *Handler) bool {
	va, vb := a.cur.Load(), b.cur.Load()
	return a.eng == b.eng && va != nil && vb != nil && va.mod == vb.mod
}
