package wasmhost_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

const wait = 20 * time.Second

// tracker wraps the handler under test and remembers, per connection, the
// instance it was pinned to and its close reason.
type tracker struct {
	gateway.Handler
	mu      sync.Mutex
	byPeer  map[string]*tracked
	changed chan struct{}
}

type tracked struct {
	inst   int
	reason string
	closed bool
}

func newTracker(h gateway.Handler) *tracker {
	return &tracker{Handler: h, byPeer: make(map[string]*tracked), changed: make(chan struct{})}
}

func (tr *tracker) notify() {
	close(tr.changed)
	tr.changed = make(chan struct{})
}

func (tr *tracker) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	err := tr.Handler.OnSocketCreated(ctx, c, info)
	tr.mu.Lock()
	tr.byPeer[info.Peer.String()] = &tracked{inst: wasmhost.InstanceOf(c)}
	tr.notify()
	tr.mu.Unlock()
	return err
}

func (tr *tracker) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	err := tr.Handler.OnSocketClosed(ctx, c, reason)
	tr.mu.Lock()
	if x := tr.byPeer[c.Info().Peer.String()]; x != nil {
		x.reason, x.closed = reason, true
	}
	tr.notify()
	tr.mu.Unlock()
	return err
}

// await waits until cond holds for the connection from peer.
func (tr *tracker) await(t *testing.T, peer, what string, cond func(*tracked) bool) *tracked {
	t.Helper()
	deadline := time.After(wait)
	for {
		tr.mu.Lock()
		x := tr.byPeer[peer]
		ok := x != nil && cond(x)
		ch := tr.changed
		var cp tracked
		if x != nil {
			cp = *x
		}
		tr.mu.Unlock()
		if ok {
			return &cp
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s of %s", what, peer)
		}
	}
}

// rig serves a wasm handler on a loopback TCP listener.
type rig struct {
	h    *wasmhost.Handler
	tr   *tracker
	addr string
}

func newRig(t *testing.T, cfg wasmhost.Config) *rig {
	t.Helper()
	if cfg.Cache == nil {
		cfg.Cache = sharedCache()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CallTimeout == 0 {
		// A loaded machine running -race can stall a thread for longer
		// than the 100ms default; only the tests about timeouts use less.
		cfg.CallTimeout = 5 * time.Second
	}
	h, err := wasmhost.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{h: h, tr: newTracker(h)}
	srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln, &gateway.Listener{Name: "wasm", Type: gateway.TCP, Handler: r.tr})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		h.Close()
	})
	return r
}

// device is a client connection.
type device struct {
	t    *testing.T
	nc   net.Conn
	peer string
	inst int
}

// dial connects and waits until the gateway has pinned the connection.
func (r *rig) dial(t *testing.T) *device {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	d := &device{t: t, nc: nc, peer: nc.LocalAddr().String()}
	d.inst = r.tr.await(t, d.peer, "OnSocketCreated", func(*tracked) bool { return true }).inst
	return d
}

// echo sends msg and expects it back.
func (d *device) echo(msg string) {
	d.t.Helper()
	d.nc.SetDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write([]byte(msg)); err != nil {
		d.t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(d.nc, buf); err != nil || string(buf) != msg {
		d.t.Fatalf("echo of %q: got %q, %v", msg, buf, err)
	}
}

// expectClosed waits for the gateway to close the socket.
func (d *device) expectClosed() {
	d.t.Helper()
	d.nc.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, d.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		d.t.Fatal("socket not closed")
	}
}

func readFaulty(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(faultyPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitStats polls h.Stats until cond holds.
func waitStats(t *testing.T, h *wasmhost.Handler, what string, cond func(wasmhost.Stats) bool) wasmhost.Stats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := h.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestFaultsAreContained drives every fault the faulty guest knows. Each
// time only the connections of the faulting instance close, with a reason
// naming the fault; the other instance's connections keep echoing; a new
// instance replaces the dead one and new connections work.
func TestFaultsAreContained(t *testing.T) {
	faulty := readFaulty(t)
	for _, tc := range []struct {
		cmd  string
		want string // in the close reason
		kind string // of the fault
	}{
		{"panic", "panic: ", wasmhost.FaultTrap},
		{"loop", "call_timeout", wasmhost.FaultDeadline},
		{"nap 3600000", "call_timeout", wasmhost.FaultDeadline},
		{"bomb", "out of memory", wasmhost.FaultTrap},
		{"badptr", "outside linear memory", wasmhost.FaultABI},
		{"badlen", "outside linear memory", wasmhost.FaultABI},
		{"status", "not an ABI v1 status", wasmhost.FaultABI},
		// Not the guest: a bug in the host's own Go code.
		{"hostpanic", "panic in the host", wasmhost.FaultHostPanic},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			if tc.cmd == "hostpanic" {
				wasmhost.PanicOnBytes(t, tc.cmd)
			}
			// Only the timeouts need a short call_timeout: the bomb takes
			// over 2s under -race on a loaded machine.
			timeout := 20 * time.Second
			if tc.want == "call_timeout" {
				timeout = 2 * time.Second
			}
			r := newRig(t, wasmhost.Config{
				Name:        "faulty",
				Wasm:        faulty,
				Instances:   2,
				CallTimeout: timeout,
				MemoryLimit: 32 << 20,
			})
			// Least-loaded placement alternates the two instances.
			a1, b1, a2, b2 := r.dial(t), r.dial(t), r.dial(t), r.dial(t)
			if a1.inst != a2.inst || b1.inst != b2.inst || a1.inst == b1.inst {
				t.Fatalf("placement %d %d %d %d", a1.inst, b1.inst, a2.inst, b2.inst)
			}
			for _, d := range []*device{a1, b1, a2, b2} {
				d.echo("hello")
			}
			a1.nc.Write([]byte(tc.cmd))
			a1.expectClosed()
			a2.expectClosed()
			for _, d := range []*device{a1, a2} {
				x := r.tr.await(t, d.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
				if !strings.Contains(x.reason, tc.want) {
					t.Errorf("close reason %q does not mention %q", x.reason, tc.want)
				}
			}
			// The other instance is untouched.
			b1.echo("still here")
			b2.echo("me too")
			// A replacement comes up and takes new connections.
			s := waitStats(t, r.h, "a replacement instance", func(s wasmhost.Stats) bool { return s.Instances == 2 && s.Faults == 1 })
			if f := s.LastFault; f == nil || f.Kind != tc.kind || !strings.Contains(f.Err, tc.want) || s.FaultsByKind[tc.kind] != 1 {
				t.Errorf("last fault %+v, by kind %v; want one %s fault", f, s.FaultsByKind, tc.kind)
			}
			for range 3 {
				r.dial(t).echo("fresh")
			}
		})
	}
}

// fallbackEcho is a Go handler that answers "fb:" + what it receives.
type fallbackEcho struct{}

func (fallbackEcho) OnSocketCreated(context.Context, *gateway.Conn, *gateway.ConnInfo) error {
	return nil
}
func (fallbackEcho) OnReceivedBytes(_ context.Context, c *gateway.Conn, b []byte) error {
	return c.Send(append([]byte("fb:"), b...))
}
func (fallbackEcho) OnTimerTimeout(context.Context, *gateway.Conn, gateway.TimerType) error {
	return nil
}
func (fallbackEcho) OnReceivedMessages(context.Context, *gateway.Conn, []*gateway.Message) error {
	return nil
}
func (fallbackEcho) OnSocketClosed(context.Context, *gateway.Conn, string) error { return nil }

// TestBreaker crashes instances until the breaker trips; then new
// connections go to the fallback handler, or are refused without one.
func TestBreaker(t *testing.T) {
	faulty := readFaulty(t)
	for _, withFallback := range []bool{true, false} {
		name := "refused"
		if withFallback {
			name = "fallback"
		}
		t.Run(name, func(t *testing.T) {
			cfg := wasmhost.Config{Name: "faulty", Wasm: faulty, Instances: 2, MaxFaults: 3, FaultWindow: time.Hour}
			if withFallback {
				cfg.Fallback = fallbackEcho{}
			}
			r := newRig(t, cfg)
			for i := range 3 {
				d := r.dial(t)
				if d.inst == 0 {
					t.Fatalf("crash %d: connection not pinned to an instance", i)
				}
				d.nc.Write([]byte("panic"))
				d.expectClosed()
				if i < 2 {
					waitStats(t, r.h, "replacement", func(s wasmhost.Stats) bool { return s.Instances == 2 })
				}
			}
			waitStats(t, r.h, "the breaker", func(s wasmhost.Stats) bool { return s.Broken })
			nc, err := net.DialTimeout("tcp", r.addr, wait)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(wait))
			nc.Write([]byte("hi"))
			if withFallback {
				b := make([]byte, len("fb:hi"))
				if _, err := io.ReadFull(nc, b); err != nil || string(b) != "fb:hi" {
					t.Fatalf("fallback answered %q, %v", b, err)
				}
			} else if b, _ := io.ReadAll(nc); len(b) != 0 {
				t.Fatalf("a broken module without fallback answered %q", b)
			}
		})
	}
}

// tinyModule returns a minimal Wasm module that exports one empty function
// under each of the given names: enough to test the ABI checks without
// compiling a Go guest.
func tinyModule(names ...string) []byte {
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00) // type: () -> ()
	b = append(b, 0x03, 0x02, 0x01, 0x00)             // one function of type 0
	var exports []byte
	exports = append(exports, byte(len(names)))
	for _, n := range names {
		exports = append(exports, byte(len(n)))
		exports = append(exports, n...)
		exports = append(exports, 0x00, 0x00) // function 0
	}
	b = append(b, 0x07, byte(len(exports)))
	b = append(b, exports...)
	return append(b, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b) // code: empty body
}

func TestRefusedModules(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		env  map[string]string
		want string
	}{
		{"unknown ABI version", tinyModule("protogate_abi_v9", "protogate_inbox"), nil, "unsupported ABI: the module exports protogate_abi_v9"},
		{"no marker", tinyModule("hello"), nil, "not a protogate handler"},
		{"wrong export signature", tinyModule("protogate_abi_v1", "protogate_inbox"), nil, "export protogate_inbox has signature"},
		{"not wasm", []byte("\x7fELF not a module"), nil, "compile"},
		{"init panics", readFaulty(t), map[string]string{"PROTOGATE_FAULT_INIT": "panic"}, "no instance started"},
		{"init fails", readFaulty(t), map[string]string{"PROTOGATE_FAULT_INIT": "fail"}, "protogate_init returned UNKNOWN"},
		{"init loops", readFaulty(t), map[string]string{"PROTOGATE_FAULT_INIT": "loop"}, "call_timeout"},
		{"init sleeps", readFaulty(t), map[string]string{"PROTOGATE_FAULT_INIT": "nap"}, "call_timeout"},
		{"start function sleeps", startGuest(startSleeps...), nil, "the start function ran past call_timeout"},
		{"start function loops", startGuest(startLoops...), nil, "the start function ran past call_timeout"},
		{"initializer panics", readFaulty(t), map[string]string{"PROTOGATE_FAULT_INIT": "initialize"}, "instantiate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, wasmhost.Config{Name: "bad", Wasm: tc.wasm, Env: tc.env, InitTimeout: 2 * time.Second})
			s := r.h.Stats()
			if s.Version != 0 || !strings.Contains(s.LastError, tc.want) {
				t.Fatalf("stats %+v; want no version and an error mentioning %q", s, tc.want)
			}
			// New connections are refused, and the gateway keeps serving.
			for range 2 {
				nc, err := net.DialTimeout("tcp", r.addr, wait)
				if err != nil {
					t.Fatal(err)
				}
				nc.SetReadDeadline(time.Now().Add(wait))
				if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Fatalf("read from a refused connection: %v", err)
				}
				nc.Close()
			}
		})
	}
}

func TestGuestTimer(t *testing.T) {
	r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: readFaulty(t), Instances: 1})
	d := r.dial(t)
	d.nc.SetDeadline(time.Now().Add(wait))
	d.nc.Write([]byte("timer 30"))
	buf := make([]byte, len("timer"))
	if _, err := io.ReadFull(d.nc, buf); err != nil || string(buf) != "timer" {
		t.Fatalf("timer: %q, %v", buf, err)
	}
	// A timer of a connection that closes never fires.
	d2 := r.dial(t)
	d2.nc.Write([]byte("timer 200"))
	d2.nc.Close()
	r.tr.await(t, d2.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
	d.echo("after")
}

// TestSleepPastCallTimeout checks that call_timeout bounds a guest call
// blocked in the host, not only one that loops: a guest that sleeps
// (time.Sleep: WASI poll_oneoff, the host's nanosleep) past the deadline is
// stopped at the deadline, plus the watchdog's slack, as a timeout fault.
// With one instance, the handler serves new connections again once the
// replacement is up, not after the sleep.
func TestSleepPastCallTimeout(t *testing.T) {
	faulty := readFaulty(t)
	for _, tc := range []struct {
		name  string
		sleep time.Duration
	}{
		{"an hour", time.Hour},
		{"5s", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 100 * time.Millisecond
			r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: faulty, Instances: 1, CallTimeout: timeout})
			d := r.dial(t)
			d.echo("hello")
			start := time.Now()
			if _, err := fmt.Fprintf(d.nc, "nap %d", tc.sleep.Milliseconds()); err != nil {
				t.Fatal(err)
			}
			d.expectClosed()
			took := time.Since(start)
			t.Logf("a %v sleep under call_timeout %v: the connection closed %v after the bytes were sent", tc.sleep, timeout, took)
			if took >= tc.sleep {
				t.Fatalf("the connection closed %v after the sleep began: the sleep was not cut short", took)
			}
			x := r.tr.await(t, d.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
			if !strings.Contains(x.reason, "call_timeout") {
				t.Errorf("close reason %q does not mention call_timeout", x.reason)
			}
			waitStats(t, r.h, "a replacement instance", func(s wasmhost.Stats) bool { return s.Instances == 1 && s.Faults == 1 })
			r.dial(t).echo("fresh")
		})
	}
}

// TestSleepWithinCallTimeout checks that a guest sleep shorter than the
// deadline is a plain sleep: it lasts as long as asked and the call
// succeeds.
func TestSleepWithinCallTimeout(t *testing.T) {
	r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: readFaulty(t), Instances: 1, CallTimeout: 5 * time.Second})
	d := r.dial(t)
	start := time.Now()
	d.echo("nap 200")
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("a 200ms sleep returned after %v", took)
	}
	d.echo("ok")
	if s := r.h.Stats(); s.Faults != 0 {
		t.Fatalf("%d faults", s.Faults)
	}
}

// signalLog is a slog.Handler that closes seen when a record's message
// contains match, and drops every record.
type signalLog struct {
	match string
	once  *sync.Once
	seen  chan struct{}
}

func newSignalLog(match string) signalLog {
	return signalLog{match: match, once: new(sync.Once), seen: make(chan struct{})}
}

func (signalLog) Enabled(context.Context, slog.Level) bool { return true }
func (l signalLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.match) {
		l.once.Do(func() { close(l.seen) })
	}
	return nil
}
func (l signalLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l signalLog) WithGroup(string) slog.Handler      { return l }

// TestCloseWakesASleepingGuest checks that closing the handler does not
// wait for a guest's sleep to end, even one within its call_timeout.
func TestCloseWakesASleepingGuest(t *testing.T) {
	sig := newSignalLog("faulty: napping")
	r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: readFaulty(t), Instances: 1, CallTimeout: 2 * time.Hour,
		Logger: slog.New(sig)})
	d := r.dial(t)
	d.nc.Write([]byte("nap 3600000"))
	select {
	case <-sig.seen:
	case <-time.After(wait):
		t.Fatal("the guest did not start its nap")
	}
	closed := make(chan error, 1)
	go func() { closed <- r.h.Close() }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close waited for the guest's sleep")
	}
	d.expectClosed()
}

func TestSlowCallWithinTimeout(t *testing.T) {
	r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: readFaulty(t), Instances: 1, CallTimeout: 3 * time.Second})
	d := r.dial(t)
	d.echo("sleep 50")
	d.echo("ok")
}

// TestHotReload swaps the module file under live connections: they stay on
// the old version and keep working, new connections get the new one, and a
// broken file leaves the running version in place.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "handler.wasm")
	write := func(b []byte) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(mustBuiltin(t, "echo"))
	r := newRig(t, wasmhost.Config{Name: "reload", Path: path, Instances: 1, WatchInterval: 50 * time.Millisecond})
	old := r.dial(t)
	old.echo("v1")

	write(mustBuiltin(t, "linepubsub"))
	waitStats(t, r.h, "version 2", func(s wasmhost.Stats) bool { return s.Version == 2 })
	old.echo("still v1") // the live connection did not notice

	fresh := r.dial(t)
	fresh.nc.SetDeadline(time.Now().Add(wait))
	fresh.nc.Write([]byte("PING\n"))
	buf := make([]byte, len("PONG\n"))
	if _, err := io.ReadFull(fresh.nc, buf); err != nil || string(buf) != "PONG\n" {
		t.Fatalf("new connection on the new version: %q, %v", buf, err)
	}

	// A broken file: the reload fails, version 2 keeps serving.
	write([]byte("garbage"))
	if err := r.h.Reload(); err == nil {
		t.Fatal("reloading garbage succeeded")
	}
	if s := r.h.Stats(); s.Version != 2 || s.LastError == "" {
		t.Fatalf("after a failed reload: %+v", s)
	}
	another := r.dial(t)
	another.nc.SetDeadline(time.Now().Add(wait))
	another.nc.Write([]byte("PING\n"))
	if _, err := io.ReadFull(another.nc, buf); err != nil || string(buf) != "PONG\n" {
		t.Fatalf("after a failed reload: %q, %v", buf, err)
	}

	// Once its last connection closes, the old version is gone.
	old.nc.Close()
	waitStats(t, r.h, "the old version to drain", func(s wasmhost.Stats) bool { return s.Versions == 1 })
}
