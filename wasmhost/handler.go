// Package wasmhost is protogate's WebAssembly back end: it runs protocol
// handlers compiled to Wasm (ABI v1, package abi) inside the gateway, with
// wazero, behind the same gateway.Handler interface as the remote gRPC back
// end.
//
// A Handler compiles its module once per version (with an on-disk compile
// cache) and keeps a pool of initialised instances. Each connection is pinned
// to one instance for life; an instance runs one guest call at a time, under
// its own lock, so a guest is single-threaded as Wasm requires, and the
// gateway's per-connection ordering carries through to the guest.
//
// Faults are contained to one instance. A trap, a Go panic, running past
// call_timeout, an out-of-range pointer, an unknown status or a broken inbox
// discards the instance: its connections close with a reason naming the
// fault, and a fresh instance replaces it after a backoff. Too many faults in
// a window open a breaker that marks the module version broken; while no
// module is usable, new connections go to the configured fallback handler
// (for example the remote gRPC one) or are refused with a log line. After a
// cool-down the breaker tries one fresh instance (half-open) and closes once
// it has served without a fault; a fault meanwhile opens it again, with a
// cool-down twice as long (see Config.BreakerCooldown). A new
// module version (Reload, or the file changing) is started as one canary
// instance first; if it initialises, new connections go to it while existing
// ones stay on the old version until they close.
package wasmhost

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/protogate/protogate/gateway"
)

// Config configures a Handler. Zero values select the defaults.
type Config struct {
	// Name identifies the handler in logs and close reasons.
	Name string
	// Path is the module file. It is read at start and at every Reload,
	// and watched for changes. Leave it empty to run Wasm instead.
	Path string
	// Wasm is the module, used when Path is empty (built-in modules). It
	// is only read, never written: it may be read-only memory.
	Wasm []byte
	// Instances is the size of the instance pool. Default: GOMAXPROCS.
	Instances int
	// MemoryLimit caps the linear memory of each instance, in bytes.
	// Default: 64 MiB.
	MemoryLimit uint64
	// CallTimeout bounds every call into the guest, time it spends asleep
	// or blocked in a host function included; a call that runs longer is
	// interrupted and its instance discarded. Default: 100ms.
	CallTimeout time.Duration
	// InitTimeout bounds instantiating and initialising one instance.
	// Default: 10s.
	InitTimeout time.Duration
	// MaxCallBytes caps the bytes of one callback's payload and of one host
	// call's input (a send, a payload, a topic). Larger host calls answer
	// PARAMS_TYPE_ERROR; larger deliveries are split. Default: 2 MiB.
	MaxCallBytes int
	// Cache is a compilation cache shared with other handlers; it takes
	// precedence over CacheDir and is not closed by Close.
	Cache wazero.CompilationCache
	// CacheDir holds compiled modules across restarts. Default: none.
	CacheDir string
	// RewriteDir holds modules as rewritten for the watchdog (see package
	// instrument) across restarts, by the original's hash: with a warm
	// compile cache, rewriting is a third of a Go guest's load. Handlers
	// that share Cache share the RewriteDir of the first of them.
	// Default: CacheDir; none without it.
	RewriteDir string
	// Fallback serves new connections while the module cannot load or is
	// broken. Default: nil (such connections are refused).
	Fallback gateway.Handler
	// MaxFaults faults within FaultWindow open the breaker. Defaults: 5 in
	// one minute.
	MaxFaults   int
	FaultWindow time.Duration
	// BreakerCooldown is how long the breaker stays open before it tries
	// a fresh instance (half-open). Each failed trial doubles it, up to
	// BreakerMaxCooldown; so does opening again within FaultWindow of a
	// trial closing it. Defaults: 30s, doubling up to 10m.
	BreakerCooldown    time.Duration
	BreakerMaxCooldown time.Duration
	// BreakerTrialCalls is how many callbacks the half-open breaker's
	// trial instance must run without a fault for the breaker to close.
	// Default: 20.
	BreakerTrialCalls int
	// MaxTimers caps the guest timers (set_timer) one connection may have
	// pending; set_timer beyond it answers PERMISSION_DENY. At most
	// 65536, the cap of one instance. Default: 64.
	MaxTimers int
	// WatchInterval is how often Path is checked for changes; negative
	// disables watching. Default: 1s.
	WatchInterval time.Duration
	// Env is the environment of every instance (for example GOGC for Go
	// guests). Default: empty.
	Env map[string]string
	// Logger receives the handler's and the guests' logs.
	// Default: slog.Default().
	Logger *slog.Logger
}

// defaultMemoryLimit is Config.MemoryLimit's default.
const defaultMemoryLimit = 64 << 20

// Handler runs a Wasm module as a gateway.Handler. It is safe for concurrent
// use.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	eng   *engine                 // the Runtime, maybe shared (see shared.go)
	rt    wazero.Runtime          // eng.rt
	cache wazero.CompilationCache // made from CacheDir; nil otherwise
	ctx   context.Context         // canceled by Close: aborts every guest call
	stop  context.CancelFunc

	cur atomic.Pointer[version] // nil while no module is usable

	mu       sync.Mutex // serializes loads; guards the fields below
	versions []*version
	gen      int
	lastHash string // of the last module loaded successfully
	lastErr  error  // why the last load failed
	closed   bool
	file     fileStamp

	bgMu     sync.Mutex     // guards bgClosed and wg.Add
	bgClosed bool           // Close has begun: start no more goroutines
	wg       sync.WaitGroup // background goroutines: replacements, timers, watcher

	refusedLog atomic.Int64 // unix nanos of the last "refused" log line

	lastFault  atomic.Pointer[Fault]
	faultKinds [len(FaultKinds)]atomic.Uint64 // faults of every version, by kind
	reloads    atomic.Uint64                  // Reload calls that succeeded
	reloadErrs atomic.Uint64                  // Reload calls that failed

	wdMu  sync.Mutex             // guards wdSet
	wdSet map[*instance]struct{} // instances the watchdog looks after
}

var _ gateway.Handler = (*Handler)(nil)

// fallbackState marks a connection served by the fallback handler.
type fallbackState struct{}

// New starts a Handler. It fails only on a configuration error; a module
// that does not load is logged, the handler serves with its fallback (or
// refuses connections), and a later Reload or file change can fix it.
func New(cfg Config) (*Handler, error) {
	if cfg.Path == "" && len(cfg.Wasm) == 0 {
		return nil, errors.New("wasmhost: no module: set Path or Wasm")
	}
	if cfg.Name == "" {
		cfg.Name = "wasm"
	}
	if cfg.Instances <= 0 {
		cfg.Instances = runtime.GOMAXPROCS(0)
	}
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit = defaultMemoryLimit
	}
	if cfg.MemoryLimit < 1<<16 {
		return nil, fmt.Errorf("wasmhost: memory limit %d is below one page (64 KiB)", cfg.MemoryLimit)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 100 * time.Millisecond
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.MaxCallBytes <= 0 {
		cfg.MaxCallBytes = 2 << 20
	}
	if cfg.MaxFaults <= 0 {
		cfg.MaxFaults = 5
	}
	if cfg.FaultWindow <= 0 {
		cfg.FaultWindow = time.Minute
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = 30 * time.Second
	}
	if cfg.BreakerMaxCooldown <= 0 {
		cfg.BreakerMaxCooldown = 10 * time.Minute
	}
	if cfg.BreakerMaxCooldown < cfg.BreakerCooldown {
		return nil, fmt.Errorf("wasmhost: breaker max cool-down %v is shorter than the cool-down %v", cfg.BreakerMaxCooldown, cfg.BreakerCooldown)
	}
	if cfg.BreakerTrialCalls <= 0 {
		cfg.BreakerTrialCalls = 20
	}
	if cfg.MaxTimers <= 0 {
		cfg.MaxTimers = 64
	}
	if cfg.MaxTimers > maxTimersPerInstance {
		return nil, fmt.Errorf("wasmhost: max timers %d is over %d, the cap of one instance", cfg.MaxTimers, maxTimersPerInstance)
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("handler", cfg.Name), wdSet: make(map[*instance]struct{})}
	h.ctx, h.stop = context.WithCancel(context.Background())

	pages := uint32(min(cfg.MemoryLimit>>16, 65536))
	var err error
	switch {
	case cfg.Cache != nil:
		h.eng, err = acquireEngine(cfg.Cache, pages, cfg.RewriteDir)
	case cfg.CacheDir != "":
		cache, cerr := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if cerr != nil {
			return nil, fmt.Errorf("wasmhost: compile cache %s: %w", cfg.CacheDir, cerr)
		}
		h.cache = cache
		h.eng, err = privateEngine(cache, pages, cmp.Or(cfg.RewriteDir, cfg.CacheDir))
	default:
		h.eng, err = privateEngine(nil, pages, cfg.RewriteDir)
	}
	if err != nil {
		if h.cache != nil {
			h.cache.Close(context.Background())
		}
		return nil, err
	}
	h.rt = h.eng.rt

	// The watchdog runs before the first instance initialises.
	h.goBackground(h.watchdog)
	if err := h.load0(); err != nil {
		if cfg.Fallback != nil {
			h.log.Error("wasmhost: module did not load; new connections use the fallback handler", "err", err)
		} else {
			h.log.Error("wasmhost: module did not load; new connections are refused until it does", "err", err)
		}
	}
	if cfg.Path != "" && cfg.WatchInterval > 0 {
		h.goBackground(h.watch)
	}
	return h, nil
}

// watchdog stops guest calls that run past their timeout. One goroutine
// per handler samples every instance's call in progress a few times per
// CallTimeout, which costs a guest call two atomic operations instead of
// arming and stopping a timer. A call it has seen running for its whole
// timeout is stopped: never early, and at most about two ticks late.
// (Guests call out to Go regularly, see package instrument, so a long call
// cannot keep the watchdog's timer from firing.)
func (h *Handler) watchdog() {
	tick := max(min(h.cfg.CallTimeout, h.cfg.InitTimeout)/4, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var insts []*instance
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		h.wdMu.Lock()
		insts = insts[:0]
		for in := range h.wdSet {
			insts = append(insts, in)
		}
		h.wdMu.Unlock()
		for _, in := range insts {
			seq := in.calling.Load()
			switch {
			case seq == 0:
				in.wdSeq = 0
			case seq != in.wdSeq:
				in.wdSeq, in.wdSince = seq, now
			case now.Sub(in.wdSince) >= time.Duration(in.limit.Load()):
				if in.calling.CompareAndSwap(seq, 0) {
					in.kill()
				}
			}
		}
		clear(insts)
	}
}

// watchInstance and unwatchInstance add and remove an instance from the
// watchdog's set.
func (h *Handler) watchInstance(in *instance) {
	h.wdMu.Lock()
	h.wdSet[in] = struct{}{}
	h.wdMu.Unlock()
}

func (h *Handler) unwatchInstance(in *instance) {
	h.wdMu.Lock()
	delete(h.wdSet, in)
	h.wdMu.Unlock()
}

// Reload loads the module again (from Path, or Wasm) and switches to it if
// it differs from the running version or that version is broken. The new
// version starts its pool (see load); if no instance of it starts, the
// running version stays and the error says why.
func (h *Handler) Reload() error {
	err := h.load0()
	if err != nil {
		h.reloadErrs.Add(1)
	} else {
		h.reloads.Add(1)
	}
	return err
}

// load0 loads the module and switches to it; New and Reload use it.
func (h *Handler) load0() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("wasmhost: handler closed")
	}
	wasm := h.cfg.Wasm
	if h.cfg.Path != "" {
		st, _ := statFile(h.cfg.Path)
		h.file = st
		b, err := os.ReadFile(h.cfg.Path)
		if err != nil {
			h.lastErr = fmt.Errorf("wasmhost: %w", err)
			return h.lastErr
		}
		wasm = b
	}
	sum := sha256.Sum256(wasm)
	hash := hex.EncodeToString(sum[:6])
	if cur := h.cur.Load(); cur != nil && cur.hash == hash && !cur.isBroken() {
		return nil
	}
	h.gen++
	v, err := h.load(wasm, hash, h.gen)
	if err != nil {
		h.lastErr = err
		return err
	}
	old := h.cur.Swap(v)
	h.versions = append(h.versions, v)
	h.lastHash, h.lastErr = hash, nil
	if old != nil {
		h.log.Info("wasmhost: new module version serves new connections; existing ones stay on the old",
			"version", v.gen, "sha256", hash, "old_version", old.gen, "old_sha256", old.hash)
		old.retire()
	} else {
		h.log.Info("wasmhost: module loaded", "version", v.gen, "sha256", hash, "instances", h.cfg.Instances)
	}
	h.pruneLocked()
	return nil
}

// pruneLocked forgets versions that have closed.
func (h *Handler) pruneLocked() {
	kept := h.versions[:0]
	for _, v := range h.versions {
		if !v.isClosed() {
			kept = append(kept, v)
		}
	}
	clear(h.versions[len(kept):])
	h.versions = kept
}

// Close stops the handler: every instance and the runtime are closed and
// background goroutines end. Connections still pinned to instances fail
// their next callback; close the gateway first.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	versions := h.versions
	h.versions = nil
	h.cur.Store(nil)
	h.mu.Unlock()
	h.bgMu.Lock()
	h.bgClosed = true
	h.bgMu.Unlock()
	h.stop()
	for _, v := range versions {
		v.close()
	}
	h.wg.Wait()
	err := h.eng.release()
	if h.cache != nil {
		h.cache.Close(context.Background())
	}
	return err
}

// goBackground runs f on a goroutine the handler waits for in Close. It
// reports false, without running f, once the handler is closing.
func (h *Handler) goBackground(f func()) bool {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if h.bgClosed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
	return true
}

// Fault records an instance fault: a trap, a guest past its deadline, a
// broken ABI.
type Fault struct {
	Time    time.Time
	Version int    // the module version that faulted
	Kind    string // one of FaultKinds
	Err     string // what happened
}

// Stats is a snapshot of a Handler, for monitoring and tests.
type Stats struct {
	Module    string // the module's path, or "" for a module given as bytes
	Version   int    // generation of the current module version; 0 if none
	SHA256    string // prefix of the current module's digest
	Broken    bool   // the current version's breaker is open or half-open
	Instances int    // live instances of the current version
	Faults    int    // faults of the current version
	Versions  int    // versions still serving connections
	LastError string // why the last load failed, if it did
	LastFault *Fault // the last fault of any version, if any
	// FaultsByKind counts the faults of every version since the handler
	// started, by kind (FaultKinds).
	FaultsByKind map[string]uint64
	Reloads      uint64 // Reload calls (SIGHUP, file change, API) that succeeded
	ReloadErrors uint64 // Reload calls that failed
	// BreakerState is the current version's breaker: BreakerClosed,
	// BreakerOpen or BreakerHalfOpen ("" without a version).
	BreakerState string
	// NextRetry is when the open breaker tries a fresh instance; zero
	// unless BreakerState is BreakerOpen.
	NextRetry time.Time
	// Cooldown is the cool-down of the breaker's current or last open
	// period; 0 if it never opened.
	Cooldown time.Duration
}

// Stats returns a snapshot of h.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	s := Stats{Module: h.cfg.Path, LastFault: h.lastFault.Load(), Reloads: h.reloads.Load(), ReloadErrors: h.reloadErrs.Load(),
		FaultsByKind: make(map[string]uint64, len(FaultKinds))}
	for i, k := range FaultKinds {
		s.FaultsByKind[k] = h.faultKinds[i].Load()
	}
	for _, v := range h.versions {
		if !v.isClosed() {
			s.Versions++
		}
	}
	if h.lastErr != nil {
		s.LastError = h.lastErr.Error()
	}
	h.mu.Unlock()
	if v := h.cur.Load(); v != nil {
		v.mu.Lock()
		s.Version, s.SHA256, s.Faults = v.gen, v.hash, v.totalFaults
		s.Broken, s.BreakerState, s.Cooldown = v.state != breakerClosed, v.state.String(), v.cooldown
		if v.state == breakerOpen {
			s.NextRetry = v.nextRetry
		}
		for _, in := range v.insts {
			if in != nil && !in.dead.Load() {
				s.Instances++
			}
		}
		v.mu.Unlock()
	}
	return s
}

// pickFor chooses the instance a new connection is pinned to, or reports
// why none can take it.
func (h *Handler) pickFor() (*instance, error) {
	v := h.cur.Load()
	if v == nil {
		h.mu.Lock()
		err := h.lastErr
		h.mu.Unlock()
		if err == nil {
			err = errors.New("no module loaded")
		}
		return nil, fmt.Errorf("wasmhost: %s: module unavailable: %w", h.cfg.Name, err)
	}
	return v.pick()
}

// OnSocketCreated implements gateway.Handler: it pins the connection to an
// instance, or hands it to the fallback.
func (h *Handler) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	for range 3 {
		in, err := h.pickFor()
		if err != nil {
			if h.cfg.Fallback != nil {
				c.SetHandlerState(fallbackState{})
				return h.cfg.Fallback.OnSocketCreated(ctx, c, info)
			}
			h.logRefused(err)
			return err
		}
		ok, err := in.created(c, info)
		if ok {
			c.SetHandlerState(&pin{in: in})
			return err
		}
		// The instance died between pick and pin: pick again.
	}
	return fmt.Errorf("wasmhost: %s: no healthy instance", h.cfg.Name)
}

// logRefused logs a refused connection at most once per second.
func (h *Handler) logRefused(err error) {
	now := time.Now().UnixNano()
	last := h.refusedLog.Load()
	if now-last >= int64(time.Second) && h.refusedLog.CompareAndSwap(last, now) {
		h.log.Warn("wasmhost: connection refused", "err", err)
	}
}

// pin is the handler state of a connection pinned to an instance.
type pin struct {
	in   *instance
	last time.Duration // when OnReceivedBytes last ran, since hotEpoch
}

// route returns the instance a connection is pinned to, or the fallback.
func (h *Handler) route(c *gateway.Conn) (*instance, gateway.Handler, error) {
	p, fb, err := h.routePin(c)
	if p != nil {
		return p.in, nil, nil
	}
	return nil, fb, err
}

func (h *Handler) routePin(c *gateway.Conn) (*pin, gateway.Handler, error) {
	switch s := c.HandlerState().(type) {
	case *pin:
		return s, nil, nil
	case fallbackState:
		return nil, h.cfg.Fallback, nil
	}
	return nil, nil, fmt.Errorf("wasmhost: %s: connection %s was never created here", h.cfg.Name, c.Handle())
}

// OnReceivedBytes implements gateway.Handler.
func (h *Handler) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	p, fb, err := h.routePin(c)
	switch {
	case err != nil:
		return err
	case fb != nil:
		return fb.OnReceivedBytes(ctx, c, b)
	}
	// A busy connection's bytes go to the guest on the connection's own
	// goroutine; a quiet one's on the instance's (see loop.go).
	now := time.Since(hotEpoch)
	hot := now-p.last < hotWindow && p.last != 0
	p.last = now
	if hot {
		return p.in.receivedBytesHere(c, b)
	}
	return p.in.receivedBytes(c, b)
}

// OnTimerTimeout implements gateway.Handler.
func (h *Handler) OnTimerTimeout(ctx context.Context, c *gateway.Conn, t gateway.TimerType) error {
	in, fb, err := h.route(c)
	switch {
	case err != nil:
		return err
	case fb != nil:
		return fb.OnTimerTimeout(ctx, c, t)
	}
	return in.timerTimeout(c, t)
}

// OnReceivedMessages implements gateway.Handler.
func (h *Handler) OnReceivedMessages(ctx context.Context, c *gateway.Conn, msgs []*gateway.Message) error {
	in, fb, err := h.route(c)
	switch {
	case err != nil:
		return err
	case fb != nil:
		return fb.OnReceivedMessages(ctx, c, msgs)
	}
	return in.receivedMessages(c, msgs)
}

// OnSocketClosed implements gateway.Handler: the guest hears of it (if its
// instance is alive) and the connection is unpinned.
func (h *Handler) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	in, fb, err := h.route(c)
	switch {
	case err != nil:
		return nil // OnSocketCreated failed before pinning: nothing to do
	case fb != nil:
		return fb.OnSocketClosed(ctx, c, reason)
	}
	return in.socketClosed(c, reason)
}
