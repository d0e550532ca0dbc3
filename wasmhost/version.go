package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/wasmhost/internal/instrument"
)

// version is one compiled module and its pool of instances.
type version struct {
	h    *Handler
	gen  int
	hash string
	mod  *module               // shared by the handlers of h's engine (see shared.go)
	cm   wazero.CompiledModule // mod.cm
	fns  exports               // which callbacks the module exports

	mu          sync.Mutex
	insts       []*instance // a slot is nil while its replacement starts
	faults      []time.Time // within the fault window
	totalFaults int
	retired     bool // a newer version serves new connections
	closed      bool
	released    bool // mod released
	nextID      int

	// The crash-loop breaker (see breaker.go).
	state     breakerState
	cooldown  time.Duration // of the current or last open period; 0: never opened
	nextRetry time.Time     // while open: when the trial starts
	closedAt  time.Time     // when a trial last closed the breaker
	trial     *instance     // while half-open: the instance on trial, once started
	trips     int           // counts openings: a stale cool-down timer sees it changed
	why       string        // why the breaker last opened
}

// exports records which optional guest exports a module has.
type exports struct {
	init, created, bytes, timeout, messages, closed, timer bool
}

// exportSig is the signature ABI v1 requires of each guest export.
var exportSig = map[string]struct{ params, results []api.ValueType }{
	abi.ExportInbox:           {[]api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportInit:            {nil, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnSocketCreated: {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnReceivedBytes: {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnTimerTimeout:  {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnReceivedMsgs:  {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnSocketClosed:  {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	abi.ExportOnTimer:         {[]api.ValueType{api.ValueTypeI64, api.ValueTypeI64}, []api.ValueType{api.ValueTypeI32}},
}

// Check reports why a Handler would refuse to load wasm, or nil: a module
// the interrupt instrumentation refuses, one that does not decode or
// validate, whose memory does not fit memoryLimit (bytes; 0 for the
// default), or that does not speak ABI v1 (exports, imports). It compiles
// with wazero's interpreter, which decodes and validates exactly as the
// compiler does without generating machine code (half a second for a
// 3 MB Go module), and runs nothing. protogate validate calls it, so a
// module is judged by the code that loads it. It is safe for concurrent
// use.
func Check(wasm []byte, memoryLimit uint64) error {
	wasm, err := instrument.Module(wasm)
	if err != nil {
		return fmt.Errorf("wasmhost: compile: %w", err)
	}
	if memoryLimit == 0 {
		memoryLimit = defaultMemoryLimit
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithMemoryLimitPages(uint32(min(memoryLimit>>16, 65536))))
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("wasmhost: compile: %w", err)
	}
	defer cm.Close(ctx)
	_, err = checkModule(cm)
	return err
}

// checkModule refuses modules that do not speak ABI v1.
func checkModule(cm wazero.CompiledModule) (exports, error) {
	var ex exports
	fns := cm.ExportedFunctions()
	var markers []string
	for name := range fns {
		if strings.HasPrefix(name, abi.MarkerPrefix) {
			markers = append(markers, name)
		}
	}
	if len(markers) == 0 {
		return ex, fmt.Errorf("wasmhost: not a protogate handler: the module exports no %s* version marker (want %s)", abi.MarkerPrefix, abi.ExportMarker)
	}
	if _, ok := fns[abi.ExportMarker]; !ok {
		return ex, fmt.Errorf("wasmhost: unsupported ABI: the module exports %s, this protogate speaks %s", strings.Join(markers, ", "), abi.ExportMarker)
	}
	for name, want := range exportSig {
		def, ok := fns[name]
		if !ok {
			if name == abi.ExportInbox {
				return ex, fmt.Errorf("wasmhost: the module does not export %s", abi.ExportInbox)
			}
			continue
		}
		if !sameTypes(def.ParamTypes(), want.params) || !sameTypes(def.ResultTypes(), want.results) {
			return ex, fmt.Errorf("wasmhost: export %s has signature %v -> %v, want %v -> %v",
				name, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(want.params), typeNames(want.results))
		}
		switch name {
		case abi.ExportInit:
			ex.init = true
		case abi.ExportOnSocketCreated:
			ex.created = true
		case abi.ExportOnReceivedBytes:
			ex.bytes = true
		case abi.ExportOnTimerTimeout:
			ex.timeout = true
		case abi.ExportOnReceivedMsgs:
			ex.messages = true
		case abi.ExportOnSocketClosed:
			ex.closed = true
		case abi.ExportOnTimer:
			ex.timer = true
		}
	}
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case abi.ModuleName:
			if _, ok := hostFuncs[name]; !ok && name != instrument.YieldImport {
				return ex, fmt.Errorf("wasmhost: the module imports %s.%s, which ABI v1 does not define", mod, name)
			}
		case "wasi_snapshot_preview1":
		default:
			return ex, fmt.Errorf("wasmhost: the module imports %s.%s; only %q and wasi_snapshot_preview1 are provided", mod, name, abi.ModuleName)
		}
	}
	return ex, nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// load compiles wasm, checks its ABI and starts the pool, up to
// GOMAXPROCS instances at once: a Go guest's instance takes tens of
// milliseconds to initialise, and start-up waits for the pool. The
// version loads if any instance starts; slots whose instance did not
// start are retried in the background. It is called with h.mu held.
func (h *Handler) load(wasm []byte, hash string, gen int) (*version, error) {
	mod, err := h.eng.compile(wasm)
	if err != nil {
		return nil, err
	}
	v := &version{h: h, gen: gen, hash: hash, mod: mod, cm: mod.cm, fns: mod.fns}
	n := h.cfg.Instances
	insts := make([]*instance, n)
	errs := make([]error, n)
	// The first instance starts alone when the pool is larger than
	// what runs at once: a broken module fails once rather than
	// GOMAXPROCS times.
	par := runtime.GOMAXPROCS(0)
	if n > par {
		insts[0], errs[0] = v.newInstance()
	}
	if errs[0] == nil {
		var wg sync.WaitGroup
		sem := make(chan struct{}, par)
		for i := range n {
			if insts[i] != nil {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				insts[i], errs[i] = v.newInstance()
			})
		}
		wg.Wait()
	}
	var firstErr error
	for i, in := range insts {
		if in != nil {
			v.insts = append(v.insts, in)
		} else if firstErr == nil {
			firstErr = errs[i]
		}
	}
	if len(v.insts) == 0 {
		mod.release()
		return nil, fmt.Errorf("wasmhost: no instance started: %w", firstErr)
	}
	for range n - len(v.insts) {
		// One instance works, so this is unlucky rather than broken:
		// serve with what started and retry in the background.
		h.log.Warn("wasmhost: instance did not start; retrying", "version", gen, "err", firstErr)
		v.insts = append(v.insts, nil)
		v.scheduleReplace(len(v.insts)-1, time.Second)
	}
	return v, nil
}

// pick returns the live instance with the fewest connections; while the
// breaker is half-open, the instance on trial.
func (v *version) pick() (*instance, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch v.state {
	case breakerOpen:
		return nil, fmt.Errorf("wasmhost: %s: module version %d (sha256 %s) is broken: its breaker is open (%s) until %s",
			v.h.cfg.Name, v.gen, v.hash, v.why, v.nextRetry.Format(time.RFC3339))
	case breakerHalfOpen:
		if v.trial == nil || v.trial.dead.Load() {
			return nil, fmt.Errorf("wasmhost: %s: module version %d (sha256 %s) is broken: its breaker is half-open and the trial instance is starting",
				v.h.cfg.Name, v.gen, v.hash)
		}
		return v.trial, nil
	}
	var best *instance
	for _, in := range v.insts {
		if in == nil || in.dead.Load() {
			continue
		}
		if best == nil || in.nconns.Load() < best.nconns.Load() {
			best = in
		}
	}
	if best == nil {
		return nil, fmt.Errorf("wasmhost: %s: every instance is restarting", v.h.cfg.Name)
	}
	return best, nil
}

// isBroken reports whether the breaker is open or half-open.
func (v *version) isBroken() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state != breakerClosed
}

func (v *version) isClosed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closed
}

// faulted is called (without the instance's lock) after in died: it counts
// the fault, opens the breaker if needed (see breaker.go), and otherwise
// schedules a replacement.
func (v *version) faulted(in *instance) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	kept := v.faults[:0]
	for _, t := range v.faults {
		if now.Sub(t) < v.h.cfg.FaultWindow {
			kept = append(kept, t)
		}
	}
	v.faults = append(kept, now)
	v.totalFaults++
	slot := -1
	for i, x := range v.insts {
		if x == in {
			slot = i
			v.insts[i] = nil
		}
	}
	if v.retired || v.closed || slot < 0 {
		return
	}
	switch v.state {
	case breakerOpen:
		// A survivor of the trip: its slot stays empty until a trial
		// closes the breaker.
		return
	case breakerHalfOpen:
		what := "a fault"
		if in == v.trial {
			what = "the trial instance faulted"
		}
		v.openLocked(v.nextCooldown(), what+" while half-open")
		return
	}
	if len(v.faults) >= v.h.cfg.MaxFaults {
		why := fmt.Sprintf("%d faults within %v", len(v.faults), v.h.cfg.FaultWindow)
		cd := v.h.cfg.BreakerCooldown
		if !v.closedAt.IsZero() && now.Sub(v.closedAt) < v.h.cfg.FaultWindow {
			// The faults went on right after a trial closed it.
			cd = v.nextCooldown()
			why += " of the breaker closing"
		}
		v.openLocked(cd, why)
		return
	}
	// Back off harder the more faults the window holds.
	delay := min(50*time.Millisecond<<(len(v.faults)-1), 5*time.Second)
	v.scheduleReplace(slot, delay)
}

// scheduleReplace starts a new instance in slot after delay. v.mu is held.
func (v *version) scheduleReplace(slot int, delay time.Duration) {
	v.h.goBackground(func() {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-v.h.ctx.Done():
			t.Stop()
			return
		}
		in, err := v.newInstance()
		v.mu.Lock()
		defer v.mu.Unlock()
		if err != nil {
			if v.state != breakerClosed || v.retired || v.closed {
				return
			}
			v.h.log.Warn("wasmhost: replacement instance did not start; retrying", "version", v.gen, "err", err)
			v.scheduleReplace(slot, min(2*delay+time.Second, 10*time.Second))
			return
		}
		if v.state != breakerClosed || v.retired || v.closed || v.insts[slot] != nil {
			in.close()
			return
		}
		v.insts[slot] = in
		v.h.log.Info("wasmhost: instance replaced", "version", v.gen, "instance", in.id)
	})
}

// retire stops v taking new connections; instances close as their last
// connection does.
func (v *version) retire() {
	v.mu.Lock()
	v.retired = true
	idle := make([]*instance, 0, len(v.insts))
	for _, in := range v.insts {
		if in != nil && in.nconns.Load() == 0 {
			idle = append(idle, in)
		}
	}
	v.mu.Unlock()
	for _, in := range idle {
		in.closeIfIdle()
	}
	v.closeIfDrained()
}

// closeIfDrained closes the compiled module once a retired version has no
// instances left.
func (v *version) closeIfDrained() {
	v.mu.Lock()
	if !v.retired || v.closed {
		v.mu.Unlock()
		return
	}
	for _, in := range v.insts {
		if in != nil && !in.isClosed() {
			v.mu.Unlock()
			return
		}
	}
	v.closed = true
	v.mu.Unlock()
	v.releaseModule()
	v.h.log.Info("wasmhost: old module version drained and closed", "version", v.gen, "sha256", v.hash)
}

// close closes every instance and the compiled module.
func (v *version) close() {
	v.mu.Lock()
	v.closed = true
	insts := v.insts
	v.insts = nil
	v.mu.Unlock()
	for _, in := range insts {
		if in != nil {
			in.close()
		}
	}
	v.releaseModule()
}

// releaseModule drops v's reference to its compiled module, once.
func (v *version) releaseModule() {
	v.mu.Lock()
	done := v.released
	v.released = true
	v.mu.Unlock()
	if !done {
		v.mod.release()
	}
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	size    int64
	modTime time.Time
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

// watch reloads the module when its file changes.
func (h *Handler) watch() {
	t := time.NewTicker(h.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		st, err := statFile(h.cfg.Path)
		if err != nil {
			continue // being replaced; look again next tick
		}
		h.mu.Lock()
		changed := st != h.file
		h.mu.Unlock()
		if !changed {
			continue
		}
		if err := h.Reload(); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Error("wasmhost: reload after file change failed; the running version stays", "path", h.cfg.Path, "err", err)
		}
	}
}
