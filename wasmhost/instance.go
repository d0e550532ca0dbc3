package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/gateway"
)

// instance is one instantiated module. Its goroutine runs the callbacks
// (see loop.go) and its lock serializes every guest call; the fields after
// mu are guarded by it.
type instance struct {
	v   *version
	id  int
	mod api.Module
	// ctx carries the instance to host functions. Calls are interrupted
	// with stopped, never through a context.
	ctx context.Context
	out *guestLog

	// stopped kills the instance: calls end at their next call to
	// hostYield (see package instrument).
	stopped atomic.Bool
	// done is canceled with stopped, and when the handler closes: it wakes
	// a guest call blocked in the host (a sleep, an authenticator), which
	// then ends as hostYield ends it.
	done   context.Context
	cancel context.CancelFunc

	// Guest exports, looked up once: a lookup per call would cost
	// microseconds.
	fInbox, fInit, fCreated, fBytes, fTimeout, fMessages, fClosed, fTimer api.Function

	nconns atomic.Int64 // pinned connections
	dead   atomic.Bool  // faulted or closed: takes no calls

	// The instance's goroutine runs the calls queued here (see loop.go).
	mb mailbox

	// The call in progress, for the handler's watchdog (see watch).
	calling atomic.Uint64 // sequence number of the call in progress; 0: none
	limit   atomic.Int64  // its timeout, in nanoseconds
	// The watchdog's own bookkeeping, touched only by its goroutine.
	wdSeq   uint64    // the call it saw running last tick
	wdSince time.Time // when it first saw that call

	mu        sync.Mutex
	seq       uint64
	stack     [3]uint64
	inboxPtr  uint32
	inboxCap  uint32
	buf       []byte // encoding scratch
	conns     map[uint64]*gateway.Conn
	timers    map[int64]*guestTimer
	nTimers   map[uint64]int // pending timers by connection id; made by set_timer
	nextTimer int64
	current   *gateway.Conn // the connection whose callback runs
	lastErr   string        // explains the last failed host call
	fault     string        // set by a host function before it aborts the call
	closed    bool
	// trialLeft counts the callbacks an instance on trial (see
	// breaker.go) must still run without a fault; 0 for others.
	trialLeft int
}

// guestTimer is a timer set by the guest with set_timer.
type guestTimer struct {
	conn uint64
	t    *time.Timer
}

type instanceKey struct{}

// instanceOf returns the instance whose call is running on ctx.
func instanceOf(ctx context.Context) *instance {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	return in
}

// newInstance instantiates the version's module and initialises it.
func (v *version) newInstance() (*instance, error) {
	h := v.h
	v.mu.Lock()
	v.nextID++
	id := v.nextID
	v.mu.Unlock()
	in := &instance{
		v:      v,
		id:     id,
		conns:  make(map[uint64]*gateway.Conn),
		timers: make(map[int64]*guestTimer),
		buf:    make([]byte, 0, 4096),
	}
	in.out = newGuestLog(h.log.With("version", v.gen, "instance", id), in.interrupt)
	in.ctx = context.WithValue(context.Background(), instanceKey{}, in)
	in.done, in.cancel = context.WithCancel(h.ctx)

	cfg := wazero.NewModuleConfig().
		WithName("").
		// Real clocks: with wazero's fake ones a Go guest's GC stops
		// completing (its background work waits on a clock that never
		// moves). The sleep is real too, but held to the call's
		// deadline (see nanosleep).
		WithSysWalltime().WithSysNanotime().WithNanosleep(in.nanosleep).
		WithRandSource(randReader{in}).
		WithStdout(in.out.stdout()).WithStderr(in.out.stderr()).
		// _initialize is called below, under the watchdog.
		WithStartFunctions()
	for k, val := range h.cfg.Env {
		cfg = cfg.WithEnv(k, val)
	}
	// A start function runs within InstantiateModule: under the watchdog
	// too, or one that loops or sleeps would hold the load forever.
	h.watchInstance(in)
	in.mu.Lock()
	seq := in.beginCallLocked(h.cfg.InitTimeout)
	mod, err := h.rt.InstantiateModule(experimental.WithMemoryAllocator(in.ctx, memoryAllocator(in)), v.cm, cfg)
	timedOut := in.endCallLocked(seq)
	in.mu.Unlock()
	if err != nil || timedOut {
		if mod != nil {
			mod.Close(context.Background())
		}
		h.unwatchInstance(in)
		in.cancel()
		if timedOut {
			return nil, fmt.Errorf("%w: instantiate: the start function ran past call_timeout %v", faultError{FaultDeadline}, h.cfg.InitTimeout)
		}
		return nil, fmt.Errorf("instantiate: %w%s", err, in.out.tail())
	}
	in.mod = mod
	in.fInbox = mod.ExportedFunction(abi.ExportInbox)
	in.fInit = mod.ExportedFunction(abi.ExportInit)
	in.fCreated = mod.ExportedFunction(abi.ExportOnSocketCreated)
	in.fBytes = mod.ExportedFunction(abi.ExportOnReceivedBytes)
	in.fTimeout = mod.ExportedFunction(abi.ExportOnTimerTimeout)
	in.fMessages = mod.ExportedFunction(abi.ExportOnReceivedMsgs)
	in.fClosed = mod.ExportedFunction(abi.ExportOnSocketClosed)
	in.fTimer = mod.ExportedFunction(abi.ExportOnTimer)
	if err := in.initialize(); err != nil {
		in.close()
		return nil, err
	}
	in.startLoop()
	return in, nil
}

// initialize runs the reactor's _initialize, if it has one, and then
// protogate_init, under InitTimeout each.
func (in *instance) initialize() error {
	timeout := in.v.h.cfg.InitTimeout
	in.mu.Lock()
	defer in.mu.Unlock()
	if f := in.mod.ExportedFunction(abi.ExportReactorInitialize); f != nil {
		if _, err := in.callRawLocked(f, "instantiate: "+abi.ExportReactorInitialize, timeout, 0, 0, 0); err != nil {
			return err
		}
	}
	if in.fInit == nil {
		return nil
	}
	st, err := in.callLocked(in.fInit, "protogate_init", timeout, 0, 0, 0)
	if err == nil && st != abi.StatusSuccess {
		err = fmt.Errorf("protogate_init returned %s%s", st.String(), in.out.tail())
	}
	return err
}

// kill stops the call in progress, and every later one, within
// instrument.Every loop iterations: the instance is unusable afterwards. It may
// be called from any goroutine.
func (in *instance) kill() {
	in.stopped.Store(true)
	in.cancel()
}

// errInterrupted ends a call that hostYield stops.
var errInterrupted = errors.New("wasmhost: guest call interrupted")

// hostYield is the function the checks of package instrument call every
// instrument.Every loop iterations. Merely calling out to Go lets the Go runtime preempt the
// goroutine. A killed instance's call ends here.
func hostYield(ctx context.Context, _ api.Module, _ []uint64) {
	if in := instanceOf(ctx); in != nil && in.stopped.Load() {
		panic(errInterrupted)
	}
}

// interrupt ends the call in progress, as hostYield does, if the instance
// was killed. Host code that may run long for one guest call (the guest
// sizes its buffers) calls it as it goes.
func (in *instance) interrupt() {
	if in.stopped.Load() {
		panic(errInterrupted)
	}
}

// randReader is an instance's WASI random source: crypto/rand, read in
// pieces so that the watchdog can stop a random_get as large as the
// guest's memory (64 MiB take about a second).
type randReader struct{ in *instance }

func (r randReader) Read(p []byte) (int, error) {
	r.in.interrupt()
	return rand.Read(p[:min(len(p), 64<<10)])
}

// nanosleep is the instance's WASI sleep: wazero calls it for poll_oneoff
// with a clock subscription, which is how a Go guest's time.Sleep (and any
// other guest's sleep) blocks. It sleeps as long as asked unless the
// instance is killed meanwhile; then it ends the call as hostYield does. So
// the watchdog stops a sleeping call at its timeout just as it stops a
// looping one, and the call faults with the same reason, "ran past
// call_timeout": a sleep never outlives the call's deadline, and the guest
// never goes on as if it had slept.
func (in *instance) nanosleep(ns int64) {
	if ns > 0 {
		t := time.NewTimer(time.Duration(ns))
		select {
		case <-t.C:
		case <-in.done.Done():
			t.Stop()
		}
	}
	if in.done.Err() != nil {
		panic(errInterrupted)
	}
}

// errFault wraps every error that discards an instance. It is a
// gateway.ErrHandlerFault, so that stats count it as a fault, not as the
// guest's answer.
var errFault error = faultError{}

// faultError is errFault with the fault's kind (FaultKinds).
type faultError struct{ kind string }

func (faultError) Error() string { return "wasm fault" }

// Is makes every faultError an errFault and a gateway.ErrHandlerFault.
func (faultError) Is(target error) bool {
	_, ok := target.(faultError)
	return ok || target == gateway.ErrHandlerFault
}

// The kinds of faults, as counted in Stats.FaultsByKind.
const (
	FaultDeadline  = "deadline"   // a call ran past call_timeout
	FaultTrap      = "trap"       // the guest trapped: unreachable, out of bounds, stack overflow, ...
	FaultABI       = "abi"        // the guest broke the ABI: a bad status, pointer or length
	FaultHostPanic = "host_panic" // a host function panicked on what the guest passed
)

// FaultKinds lists every kind of fault.
var FaultKinds = [...]string{FaultDeadline, FaultTrap, FaultABI, FaultHostPanic}

// faultKind returns the kind of a fault error; FaultTrap if it names none.
func faultKind(err error) string {
	var fe faultError
	if errors.As(err, &fe) && fe.kind != "" {
		return fe.kind
	}
	return FaultTrap
}

// callRawLocked calls f with up to three parameters under a deadline and
// returns its first result. An error (wrapping errFault) means the instance
// faulted; the caller must then call faultLocked. in.mu is held.
func (in *instance) callRawLocked(f api.Function, name string, timeout time.Duration, a, b, c uint64) (uint64, error) {
	in.stack = [3]uint64{a, b, c}
	in.fault = ""
	seq := in.beginCallLocked(timeout)
	err := f.CallWithStack(in.ctx, in.stack[:])
	timedOut := in.endCallLocked(seq)
	switch {
	case timedOut:
		return 0, fmt.Errorf("%w: %s ran past call_timeout %v", faultError{FaultDeadline}, name, timeout)
	case in.fault != "":
		return 0, fmt.Errorf("%w: %s: %s", faultError{FaultABI}, name, in.fault)
	case err != nil:
		return 0, fmt.Errorf("%w: %s: %s%s", faultError{FaultTrap}, name, describeTrap(err), in.out.tail())
	}
	return in.stack[0], nil
}

// beginCallLocked shows the watchdog a call into the guest that starts
// now, to be stopped after timeout, and returns its sequence number.
func (in *instance) beginCallLocked(timeout time.Duration) uint64 {
	in.seq++
	in.limit.Store(int64(timeout))
	in.calling.Store(in.seq)
	return in.seq
}

// endCallLocked ends the call seq and reports whether the watchdog stopped
// it.
func (in *instance) endCallLocked(seq uint64) (timedOut bool) {
	return !in.calling.CompareAndSwap(seq, 0)
}

// callLocked is callRawLocked for exports that return a status.
func (in *instance) callLocked(f api.Function, name string, timeout time.Duration, a, b, c uint64) (abi.Status, error) {
	r, err := in.callRawLocked(f, name, timeout, a, b, c)
	if err != nil {
		return 0, err
	}
	st := abi.Status(int32(uint32(r)))
	if !st.Valid() {
		return 0, fmt.Errorf("%w: %s returned %d, not an ABI v1 status", faultError{FaultABI}, name, int32(uint32(r)))
	}
	return st, nil
}

// describeTrap turns a wazero error into a short reason.
func describeTrap(err error) string {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return fmt.Sprintf("guest exited with code %d", ee.ExitCode())
	}
	msg := err.Error()
	if i := strings.Index(msg, "\nwasm stack trace"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// faultLocked discards the instance after err: it closes every connection
// pinned to it except the one whose callback failed (the gateway closes that
// one when the callback returns the error). in.mu is held; the caller must
// call v.faulted after unlocking.
func (in *instance) faultLocked(err error) {
	if in.dead.Swap(true) {
		return
	}
	reason := "{shutdown,{wasm_fault," + err.Error() + "}}"
	kind := faultKind(err)
	in.v.h.lastFault.Store(&Fault{Time: time.Now(), Version: in.v.gen, Kind: kind, Err: err.Error()})
	for i, k := range FaultKinds {
		if k == kind {
			in.v.h.faultKinds[i].Add(1)
		}
	}
	in.v.h.log.Error("wasmhost: instance faulted; closing its connections", "version", in.v.gen,
		"instance", in.id, "connections", len(in.conns), "err", err)
	for _, c := range in.conns {
		if c != in.current {
			c.CloseWithReason(reason)
		}
	}
	in.stopTimersLocked()
	in.closeModuleLocked()
}

func (in *instance) closeModuleLocked() {
	if in.closed {
		return
	}
	in.closed = true
	in.dead.Store(true)
	in.kill()
	in.stopLoop()
	in.v.h.unwatchInstance(in)
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
}

// close closes the instance for good. A call in progress is interrupted.
func (in *instance) close() {
	in.kill()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stopTimersLocked()
	in.closeModuleLocked()
}

// stopTimersLocked stops every guest timer. in.mu is held.
func (in *instance) stopTimersLocked() {
	for _, t := range in.timers {
		t.t.Stop()
	}
	clear(in.timers)
	clear(in.nTimers)
}

// dropTimerLocked stops and forgets timer id. in.mu is held.
func (in *instance) dropTimerLocked(id int64, t *guestTimer) {
	t.t.Stop()
	delete(in.timers, id)
	if n := in.nTimers[t.conn] - 1; n > 0 {
		in.nTimers[t.conn] = n
	} else {
		delete(in.nTimers, t.conn)
	}
}

func (in *instance) isClosed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closed
}

// closeIfIdle closes an instance of a retired version once it has no
// connections.
func (in *instance) closeIfIdle() {
	if in.nconns.Load() == 0 {
		in.close()
	}
}

// deadErr is what callbacks on a dead instance return.
func (in *instance) deadErr() error {
	return fmt.Errorf("wasmhost: %s: instance %d of version %d is gone", in.v.h.cfg.Name, in.id, in.v.gen)
}

// inboxLocked returns the guest address of an inbox of at least n bytes.
func (in *instance) inboxLocked(n int) (uint32, error) {
	if n <= int(in.inboxCap) && in.inboxPtr != 0 {
		return in.inboxPtr, nil
	}
	if n > in.v.h.cfg.MaxCallBytes+64<<10 {
		return 0, fmt.Errorf("wasmhost: payload of %d bytes over the limit", n)
	}
	size := uint32(4096)
	for int(size) < n {
		size *= 2
	}
	r, err := in.callRawLocked(in.fInbox, abi.ExportInbox, in.v.h.cfg.CallTimeout, uint64(size), 0, 0)
	if err != nil {
		return 0, err
	}
	ptr := uint32(r)
	if ptr == 0 {
		return 0, fmt.Errorf("%w: %s(%d) returned a null pointer", faultError{FaultABI}, abi.ExportInbox, size)
	}
	if end := uint64(ptr) + uint64(size); end > uint64(in.mod.Memory().Size()) {
		return 0, fmt.Errorf("%w: %s(%d) returned %#x, past the end of memory", faultError{FaultABI}, abi.ExportInbox, size, ptr)
	}
	in.inboxPtr, in.inboxCap = ptr, size
	return ptr, nil
}

// deliverLocked runs one callback for c: it writes payload into the inbox
// (if not nil) and calls f(conn, arg), where arg is the payload's length
// when there is one. A non-success status fails the callback. If the
// instance faulted, faulted is true and the caller must call v.faulted once
// it has unlocked in.mu.
func (in *instance) deliverLocked(c *gateway.Conn, f api.Function, name string, payload []byte, arg uint64) (err error, faulted bool) {
	if in.dead.Load() {
		return in.deadErr(), false
	}
	if f == nil {
		return nil, false
	}
	if payload != nil {
		var ptr uint32
		if ptr, err = in.inboxLocked(len(payload)); err == nil {
			if !in.mod.Memory().Write(ptr, payload) {
				err = fmt.Errorf("%w: inbox at %#x is out of memory", faultError{FaultABI}, ptr)
			}
			arg = uint64(len(payload))
		}
	}
	var st abi.Status
	if err == nil {
		in.current = c
		st, err = in.callLocked(f, name, in.v.h.cfg.CallTimeout, c.ID(), arg, 0)
	}
	if err != nil {
		if errors.Is(err, errFault) {
			in.current = c
			in.faultLocked(err)
			in.current = nil
			return err, true
		}
		in.current = nil
		return err, false
	}
	in.current = nil
	if in.trialLeft > 0 {
		// A status other than SUCCESS is the guest's answer: it served.
		if in.trialLeft--; in.trialLeft == 0 {
			in.v.h.goBackground(func() { in.v.trialPassed(in) })
		}
	}
	if st != abi.StatusSuccess {
		return fmt.Errorf("wasmhost: %s returned %s", name, st.String()), false
	}
	return nil, false
}

// deliver is deliverLocked with the locking done.
func (in *instance) deliver(c *gateway.Conn, f api.Function, name string, payload []byte, arg uint64) error {
	err, faulted := func() (error, bool) {
		in.mu.Lock()
		defer in.mu.Unlock() // also on a panic: see loop
		return in.deliverLocked(c, f, name, payload, arg)
	}()
	if faulted {
		in.v.faulted(in)
	}
	return err
}

// createdNow pins c to the instance and runs the guest's on_socket_created. It
// reports false if the instance died before c could be pinned.
func (in *instance) createdNow(c *gateway.Conn, info *gateway.ConnInfo) (bool, error) {
	pinned, err, faulted := in.createdLocked(c, info)
	if faulted {
		in.v.faulted(in)
	}
	return pinned, err
}

func (in *instance) createdLocked(c *gateway.Conn, info *gateway.ConnInfo) (pinned bool, err error, faulted bool) {
	in.mu.Lock()
	defer in.mu.Unlock() // also on a panic: see loop
	if in.dead.Load() {
		return false, nil, false
	}
	in.conns[c.ID()] = c
	in.nconns.Add(1)
	if in.fCreated == nil {
		return true, nil, false
	}
	ci := abi.ConnInfo{
		SockType: int32(info.SockType),
		Peer:     abi.Address{Host: info.Peer.Addr().String(), Port: uint32(info.Peer.Port())},
		Local:    abi.Address{Host: info.Local.Addr().String(), Port: uint32(info.Local.Port())},
	}
	switch {
	case info.PeerCert != nil:
		ci.HasPeerCert = true
		ci.PeerCert = abi.CertInfo{CN: info.PeerCert.CN, DN: info.PeerCert.DN}
	case info.PSKIdentity != "":
		// As on the gRPC wire: peercert.cn carries a DTLS PSK identity.
		ci.HasPeerCert = true
		ci.PeerCert = abi.CertInfo{CN: info.PSKIdentity}
	}
	in.buf = abi.AppendSocketCreated(in.buf[:0], c.Handle(), &ci)
	err, faulted = in.deliverLocked(c, in.fCreated, abi.ExportOnSocketCreated, in.buf, 0)
	return true, err, faulted
}

func (in *instance) receivedBytesNow(c *gateway.Conn, b []byte) error {
	if b == nil {
		b = []byte{}
	}
	return in.deliver(c, in.fBytes, abi.ExportOnReceivedBytes, b, 0)
}

func (in *instance) timerTimeoutNow(c *gateway.Conn, t gateway.TimerType) error {
	return in.deliver(c, in.fTimeout, abi.ExportOnTimerTimeout, nil, uint64(t))
}

// deliveryBatchBytes caps one on_received_messages call's payload (a single
// larger message still goes alone). The gateway hands over everything that
// queued while the connection was busy, up to MaxPendingMessages; at 1 KiB
// a message that is a megabyte for the guest to decode and answer in one
// call, which on a loaded machine (or with the guest's garbage collector
// running) can take longer than call_timeout. Smaller calls keep each one
// short.
const deliveryBatchBytes = 64 << 10

// receivedMessagesNow encodes msgs as ReceivedMessagesRequest batches that fit
// the call limit and delivers them.
func (in *instance) receivedMessagesNow(c *gateway.Conn, msgs []*gateway.Message) error {
	if in.fMessages == nil {
		return nil
	}
	limit := min(in.v.h.cfg.MaxCallBytes, deliveryBatchBytes)
	for len(msgs) > 0 {
		n, err, faulted := in.messagesLocked(c, msgs, limit)
		if faulted {
			in.v.faulted(in)
		}
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// messagesLocked delivers the first messages of msgs that fit limit in one
// call and reports how many it delivered.
func (in *instance) messagesLocked(c *gateway.Conn, msgs []*gateway.Message, limit int) (n int, err error, faulted bool) {
	in.mu.Lock()
	defer in.mu.Unlock() // also on a panic: see loop
	buf := abi.AppendReceivedMessages(in.buf[:0], c.Handle())
	for _, m := range msgs {
		am := abi.Message{Node: m.Node, ID: m.ID, QoS: uint32(m.QoS), From: m.From, Topic: m.Topic, Payload: m.Payload, Timestamp: uint64(m.Timestamp)}
		before := len(buf)
		buf = abi.AppendMessageField(buf, &am)
		if len(buf) > limit && n > 0 {
			buf = buf[:before]
			break
		}
		n++
	}
	in.buf = buf
	err, faulted = in.deliverLocked(c, in.fMessages, abi.ExportOnReceivedMsgs, buf, 0)
	return n, err, faulted
}

// socketClosedNow tells the guest and unpins c.
func (in *instance) socketClosedNow(c *gateway.Conn, reason string) error {
	err, faulted := in.socketClosedLocked(c, reason)
	if faulted {
		in.v.faulted(in)
	}
	v := in.v
	v.mu.Lock()
	retired := v.retired
	v.mu.Unlock()
	if retired {
		in.closeIfIdle()
		v.closeIfDrained()
	}
	return err
}

func (in *instance) socketClosedLocked(c *gateway.Conn, reason string) (err error, faulted bool) {
	in.mu.Lock()
	defer in.mu.Unlock() // also on a panic: see loop
	if in.fClosed != nil && !in.dead.Load() {
		in.buf = abi.AppendSocketClosed(in.buf[:0], c.Handle(), reason)
		err, faulted = in.deliverLocked(c, in.fClosed, abi.ExportOnSocketClosed, in.buf, 0)
	}
	if _, ok := in.conns[c.ID()]; ok {
		delete(in.conns, c.ID())
		in.nconns.Add(-1)
	}
	if in.nTimers[c.ID()] > 0 {
		for id, t := range in.timers {
			if t.conn == c.ID() {
				in.dropTimerLocked(id, t)
			}
		}
	}
	return err, faulted
}

// fireTimerNow runs a guest timer: on_timer(conn, id) on the instance, unless
// the timer was canceled or its connection is gone.
func (in *instance) fireTimerNow(id int64) {
	c := func() *gateway.Conn {
		in.mu.Lock()
		defer in.mu.Unlock()
		t, ok := in.timers[id]
		if !ok {
			return nil
		}
		in.dropTimerLocked(id, t)
		return in.conns[t.conn]
	}()
	if c == nil || in.fTimer == nil {
		return
	}
	// The gateway does not know of this callback, so a failure is reported
	// by closing the connection here.
	if err := in.deliver(c, in.fTimer, abi.ExportOnTimer, nil, uint64(id)); err != nil {
		c.CloseWithReason(abi.ErrorReason(abi.CallbackTimer, err.Error()))
	}
}
