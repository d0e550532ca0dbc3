package wasmhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/protogate/protogate/wasmhost/internal/instrument"
)

// Handlers that share a compilation cache (Config.Cache) and a memory
// limit share one wazero Runtime, an engine, and on it one compiled module
// per module content: ten handlers of builtin:echo decode, validate and
// keep the 2 MB module once, not ten times, and compile it once. What
// stays per handler is what must: its instances (linear memory, globals,
// tables), their goroutines and the handler's own bookkeeping.
//
// Sharing is safe because nothing of a handler lives in the Runtime: the
// host module and WASI are stateless (a host function finds its instance
// through the call's context), instances are anonymous modules, and a
// wazero CompiledModule may be instantiated any number of times,
// concurrently. A handler without a shared cache (none, or its own
// CacheDir) keeps a private engine, as before.

// engineKey identifies the handlers that can share an engine: wazero fixes
// the memory limit per Runtime, and a Runtime compiles through one cache.
type engineKey struct {
	cache wazero.CompilationCache
	pages uint32
}

// engine is a wazero Runtime with WASI and the host module instantiated,
// and the modules compiled on it.
type engine struct {
	key     engineKey
	rewrite string // Config.RewriteDir; "": none
	rt      wazero.Runtime
	shared  bool
	refs    int // handlers using it; guarded by enginesMu (private: 1)

	mu   sync.Mutex
	mods map[[sha256.Size]byte]*module
}

// module is a compiled module shared by the versions of every handler of
// an engine whose module has the same bytes.
type module struct {
	e     *engine
	sum   [sha256.Size]byte
	ready chan struct{} // closed once cm, fns and err are set
	cm    wazero.CompiledModule
	fns   exports
	err   error
	refs  int // guarded by e.mu
}

var (
	enginesMu sync.Mutex
	engines   = make(map[engineKey]*engine)
)

// newRuntime makes a Runtime with WASI and the host module.
func newRuntime(rc wazero.RuntimeConfig) (wazero.Runtime, error) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasmhost: wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return rt, nil
}

// runtimeConfig is the wazero configuration of an engine.
func runtimeConfig(pages uint32, cache wazero.CompilationCache) wazero.RuntimeConfig {
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(pages).
		// Guest calls are interrupted by the checks package
		// instrument adds, which cost much less than wazero's own.
		WithCloseOnContextDone(false)
	if cache != nil {
		rc = rc.WithCompilationCache(cache)
	}
	return rc
}

// acquireEngine returns the engine shared by the handlers of cache (which
// must not be nil) and pages, making it on first use. Release it with
// release. It is safe for concurrent use.
func acquireEngine(cache wazero.CompilationCache, pages uint32, rewrite string) (*engine, error) {
	key := engineKey{cache, pages}
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if e := engines[key]; e != nil {
		e.refs++
		return e, nil
	}
	rt, err := newRuntime(runtimeConfig(pages, cache))
	if err != nil {
		return nil, err
	}
	e := &engine{key: key, rewrite: rewrite, rt: rt, shared: true, refs: 1, mods: make(map[[sha256.Size]byte]*module)}
	engines[key] = e
	return e, nil
}

// privateEngine returns an engine used by one handler only.
func privateEngine(cache wazero.CompilationCache, pages uint32, rewrite string) (*engine, error) {
	rt, err := newRuntime(runtimeConfig(pages, cache))
	if err != nil {
		return nil, err
	}
	return &engine{key: engineKey{cache, pages}, rewrite: rewrite, rt: rt, refs: 1, mods: make(map[[sha256.Size]byte]*module)}, nil
}

// release drops a handler's reference; the last one closes the Runtime
// (and with it anything still instantiated on it).
func (e *engine) release() error {
	if e.shared {
		enginesMu.Lock()
		e.refs--
		last := e.refs == 0
		if last {
			delete(engines, e.key)
		}
		enginesMu.Unlock()
		if !last {
			return nil
		}
	}
	return e.rt.Close(context.Background())
}

// compile returns the compiled module of wasm (before instrumentation),
// compiling and checking it unless another version of this engine already
// holds it, and takes a reference to it, which release drops. Concurrent
// compiles of the same bytes compile once; of different bytes, in
// parallel. A failure is not remembered: the next compile tries again.
func (e *engine) compile(wasm []byte) (*module, error) {
	sum := sha256.Sum256(wasm)
	e.mu.Lock()
	if m := e.mods[sum]; m != nil {
		m.refs++
		e.mu.Unlock()
		<-m.ready
		if m.err != nil {
			m.release()
			return nil, m.err
		}
		return m, nil
	}
	m := &module{e: e, sum: sum, ready: make(chan struct{}), refs: 1}
	e.mods[sum] = m
	e.mu.Unlock()

	m.cm, m.fns, m.err = compileChecked(e.rt, wasm, sum, e.rewrite)
	if m.err != nil {
		// Waiters see the error; later compiles start afresh.
		e.mu.Lock()
		if e.mods[sum] == m {
			delete(e.mods, sum)
		}
		e.mu.Unlock()
		close(m.ready)
		return nil, m.err
	}
	close(m.ready)
	return m, nil
}

// compileChecked instruments, compiles and checks wasm, whose sha256 is
// sum, on rt, keeping the instrumented module in dir (if not "").
func compileChecked(rt wazero.Runtime, wasm []byte, sum [sha256.Size]byte, dir string) (wazero.CompiledModule, exports, error) {
	ctx := context.Background()
	var kept string
	if dir != "" {
		kept = filepath.Join(dir, "protogate-instrument-"+instrument.Version, hex.EncodeToString(sum[:]))
	}
	mod, fresh := readRewritten(kept), false
	for {
		if mod == nil {
			var err error
			if mod, err = instrumentModule(wasm); err != nil {
				return nil, exports{}, fmt.Errorf("wasmhost: compile: %w", err)
			}
			fresh = true
		}
		cm, err := rt.CompileModule(ctx, mod)
		if err != nil && !fresh {
			// Whatever made the kept module unusable, instrumenting
			// afresh replaces it.
			mod = nil
			continue
		}
		if err != nil {
			return nil, exports{}, fmt.Errorf("wasmhost: compile: %w", err)
		}
		ex, err := checkModule(cm)
		if err != nil {
			cm.Close(ctx)
			return nil, exports{}, err
		}
		if fresh && kept != "" {
			writeRewritten(kept, mod)
		}
		return cm, ex, nil
	}
}

// instrumentModule is instrument.Module; tests count its calls.
var instrumentModule = instrument.Module

// readRewritten returns the instrumented module kept at path, or nil if
// there is none or it is not whole: it ends with its own sha256.
func readRewritten(path string) []byte {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < sha256.Size {
		return nil
	}
	mod, tail := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if sum := sha256.Sum256(mod); !bytes.Equal(sum[:], tail) {
		return nil
	}
	return mod
}

// writeRewritten keeps the instrumented module wasm at path, followed by
// its sha256, replacing the file whole or not at all. A failure costs the
// next start the rewriting, nothing else, so it is not reported.
func writeRewritten(path string, wasm []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return
	}
	sum := sha256.Sum256(wasm)
	_, err = f.Write(wasm)
	if err == nil {
		_, err = f.Write(sum[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// release drops a reference to m; the last one closes the compiled module.
func (m *module) release() {
	e := m.e
	e.mu.Lock()
	m.refs--
	last := m.refs == 0
	if last && e.mods[m.sum] == m {
		delete(e.mods, m.sum)
	}
	e.mu.Unlock()
	if last && m.cm != nil {
		m.cm.Close(context.Background())
	}
}
