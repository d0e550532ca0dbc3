package wasmhost_test

import (
	"log/slog"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/protogate/protogate/wasmhost"
)

// TestHandlersShareModule checks that handlers of one compilation cache and
// memory limit share the compiled module, that others do not, and that
// closing one leaves the others serving.
func TestHandlersShareModule(t *testing.T) {
	cache := wazero.NewCompilationCache()
	defer cache.Close(t.Context())
	wasm := mustBuiltin(t, "echo")
	newH := func(limit uint64, c wazero.CompilationCache) *wasmhost.Handler {
		t.Helper()
		h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: wasm, Instances: 1, MemoryLimit: limit, Cache: c, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if st := h.Stats(); st.Instances != 1 {
			t.Fatalf("instances = %d, want 1 (%s)", st.Instances, st.LastError)
		}
		return h
	}
	a, b := newH(0, cache), newH(0, cache)
	defer b.Close()
	if !wasmhost.SharedModule(a, b) {
		t.Error("two handlers of one cache and memory limit do not share their module")
	}
	other := newH(32<<20, cache)
	defer other.Close()
	if wasmhost.SharedModule(a, other) {
		t.Error("handlers of different memory limits share a Runtime")
	}
	private := newH(0, nil)
	defer private.Close()
	if wasmhost.SharedModule(a, private) {
		t.Error("a handler without a shared cache shares a Runtime")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The survivor still runs its module: a reload of the same bytes keeps
	// it, and a new handler shares it.
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	c := newH(0, cache)
	defer c.Close()
	if !wasmhost.SharedModule(b, c) {
		t.Error("a handler made after another closed does not share the survivor's module")
	}
}
