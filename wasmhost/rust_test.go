package wasmhost_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/wasmhost"
)

// readSDKGuest reads a guest that make sdk-guests builds into .bin/guests/
// (make test runs that first).
func readSDKGuest(t *testing.T, name string) []byte {
	t.Helper()
	p := filepath.Join("..", ".bin", "guests", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s is not built (make sdk-guests builds it; make test runs that first): %v", p, err)
	}
	return b
}

// TestRustFaultsAreContained drives the faults Rust code can cause, through
// guests/rust/faulty (built with sdk/rust): a panic (wasm32-wasi aborts: a
// trap), an endless loop (call_timeout) and allocating until an allocation
// fails (Rust aborts: a trap). Each closes only the connections of the
// faulting instance; the other instance's connections keep echoing and a
// replacement takes new ones. A callback that returns an error closes only
// its own connection.
func TestRustFaultsAreContained(t *testing.T) {
	faulty := readSDKGuest(t, "faulty-rust.wasm")
	for _, tc := range []struct {
		cmd  string
		want string // in the close reason
		kind string // of the fault; "" for none
	}{
		{"panic", "asked to panic", wasmhost.FaultTrap}, // the SDK's panic hook writes it to stderr
		{"loop", "call_timeout", wasmhost.FaultDeadline},
		{"bomb", "memory allocation of 1048576 bytes failed", wasmhost.FaultTrap},
		{"fail", "returned PERMISSION_DENY", ""},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			timeout := 20 * time.Second
			if tc.want == "call_timeout" {
				timeout = 2 * time.Second
			}
			r := newRig(t, wasmhost.Config{
				Name:        "faulty-rust",
				Wasm:        faulty,
				Instances:   2,
				CallTimeout: timeout,
				MemoryLimit: 32 << 20,
			})
			a1, b1, a2, b2 := r.dial(t), r.dial(t), r.dial(t), r.dial(t)
			if a1.inst != a2.inst || b1.inst != b2.inst || a1.inst == b1.inst {
				t.Fatalf("placement %d %d %d %d", a1.inst, b1.inst, a2.inst, b2.inst)
			}
			for _, d := range []*device{a1, b1, a2, b2} {
				d.echo("hello")
			}
			a1.nc.Write([]byte(tc.cmd + "\n"))
			a1.expectClosed()
			x := r.tr.await(t, a1.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
			if !strings.Contains(x.reason, tc.want) {
				t.Errorf("close reason %q does not mention %q", x.reason, tc.want)
			}
			if tc.kind == "" {
				// Not a fault: the instance and a2 live on.
				a2.echo("alive")
				b1.echo("still here")
				if s := r.h.Stats(); s.Faults != 0 {
					t.Errorf("a failed callback counted as a fault: %+v", s)
				}
				return
			}
			a2.expectClosed()
			x = r.tr.await(t, a2.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
			if !strings.Contains(x.reason, tc.want) {
				t.Errorf("close reason of the instance's other connection %q does not mention %q", x.reason, tc.want)
			}
			b1.echo("still here")
			b2.echo("me too")
			s := waitStats(t, r.h, "a replacement instance", func(s wasmhost.Stats) bool { return s.Instances == 2 && s.Faults == 1 })
			if f := s.LastFault; f == nil || f.Kind != tc.kind || s.FaultsByKind[tc.kind] != 1 {
				t.Errorf("last fault %+v, by kind %v; want one %s fault", f, s.FaultsByKind, tc.kind)
			} else {
				t.Logf("fault: %s", f.Err)
			}
			for range 3 {
				r.dial(t).echo("fresh")
			}
		})
	}
}
