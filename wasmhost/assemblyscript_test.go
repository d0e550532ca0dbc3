package wasmhost_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

// The guests of the AssemblyScript SDK (sdk/assemblyscript), under the
// faults that matter in AssemblyScript and over a long run. make
// sdk-guests-as builds them (make test does first).

// readASGuest reads .bin/guests/NAME-as.wasm.
func readASGuest(t *testing.T, name string) []byte {
	t.Helper()
	p := filepath.Join("..", ".bin", "guests", name+"-as.wasm")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s is not built (make sdk-guests-as builds it; make test runs that first): %v", p, err)
	}
	return b
}

// TestAssemblyScriptFaults: abort(), a throw, unreachable, an endless loop
// and running out of memory each fault only the instance that ran them:
// its connections close, the other instance's keep echoing, and a
// replacement takes new connections. A callback that returns a failure
// status closes only its own connection.
func TestAssemblyScriptFaults(t *testing.T) {
	faulty := readASGuest(t, "faulty")
	for _, tc := range []struct {
		cmd  string
		want string // in the close reason
		kind string // of the fault
	}{
		{"abort", "unreachable", wasmhost.FaultTrap},
		{"throw", "unreachable", wasmhost.FaultTrap},
		{"trap", "unreachable", wasmhost.FaultTrap},
		{"loop", "call_timeout", wasmhost.FaultDeadline},
		{"bomb", "unreachable", wasmhost.FaultTrap},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			timeout := 20 * time.Second
			if tc.want == "call_timeout" {
				timeout = 2 * time.Second
			}
			r := newRig(t, wasmhost.Config{Name: "faulty-as", Wasm: faulty, Instances: 2, CallTimeout: timeout, MemoryLimit: 32 << 20})
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
			b1.echo("still here")
			b2.echo("me too")
			s := waitStats(t, r.h, "a replacement instance", func(s wasmhost.Stats) bool { return s.Instances == 2 && s.Faults == 1 })
			if f := s.LastFault; f == nil || f.Kind != tc.kind || !strings.Contains(f.Err, tc.want) {
				t.Errorf("last fault %+v; want a %s fault", f, tc.kind)
			}
			for range 3 {
				r.dial(t).echo("fresh")
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		r := newRig(t, wasmhost.Config{Name: "faulty-as", Wasm: faulty, Instances: 1})
		a, b := r.dial(t), r.dial(t)
		a.nc.Write([]byte("fail"))
		a.expectClosed()
		x := r.tr.await(t, a.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
		if !strings.Contains(x.reason, "PERMISSION_DENY") {
			t.Errorf("close reason %q does not name the status", x.reason)
		}
		b.echo("same instance, still here")
		if s := r.h.Stats(); s.Faults != 0 {
			t.Errorf("a failed callback counted as a fault: %+v", s.LastFault)
		}
	})
	t.Run("timer", func(t *testing.T) {
		r := newRig(t, wasmhost.Config{Name: "faulty-as", Wasm: faulty, Instances: 1})
		d := r.dial(t)
		d.nc.SetDeadline(time.Now().Add(wait))
		d.nc.Write([]byte("timer 10"))
		buf := make([]byte, len("timer"))
		if _, err := io.ReadFull(d.nc, buf); err != nil || string(buf) != "timer" {
			t.Fatalf("timer: %q, %v", buf, err)
		}
	})
}

// TestAssemblyScriptMemorySettles pushes 100,000 messages through the
// AssemblyScript echo and 20,000 lines through linepubsub, both of which
// allocate per callback, and checks that the instance's linear memory
// stays flat: the incremental collector frees the garbage.
func TestAssemblyScriptMemorySettles(t *testing.T) {
	for _, tc := range []struct {
		guest string
		n     int
		msg   string
		want  string
	}{
		{"echo", 100_000, strings.Repeat("x", 1000), strings.Repeat("x", 1000)},
		{"linepubsub", 20_000, "PING\nNOPE " + strings.Repeat("y", 500) + "\n", "PONG\nERR unknown command\n"},
	} {
		t.Run(tc.guest, func(t *testing.T) {
			n := tc.n
			if testing.Short() {
				n /= 10
			}
			h, err := wasmhost.New(wasmhost.Config{Name: tc.guest + "-as", Wasm: readASGuest(t, tc.guest), Instances: 1,
				CallTimeout: 5 * time.Second, Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
			defer srv.Close()
			client, server := net.Pipe()
			defer client.Close()
			go srv.ServeConn(pipeConn{server}, &gateway.Listener{Name: "long", Type: gateway.TCP, Handler: h})
			msg, want := []byte(tc.msg), []byte(tc.want)
			buf := make([]byte, len(want))
			var early uint32
			for i := range n {
				if _, err := client.Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(client, buf); err != nil || !bytes.Equal(buf, want) {
					t.Fatalf("message %d: %q, %v", i, buf, err)
				}
				if i == n/10 {
					early = wasmhost.MemoryBytes(h)[0]
				}
			}
			late := wasmhost.MemoryBytes(h)[0]
			t.Logf("%d messages: linear memory %d KiB after %d, %d KiB at the end", n, early>>10, n/10, late>>10)
			// Flat: at most a few pages more than after the first tenth.
			if late > early+256<<10 {
				t.Fatalf("guest memory kept growing: %d KiB -> %d KiB", early>>10, late>>10)
			}
		})
	}
}
