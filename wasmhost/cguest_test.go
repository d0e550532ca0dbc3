package wasmhost_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/wasmhost"
)

// cFaultyPath is guests/c/faulty.c built by make sdk-guests-c (make test
// builds it first).
var cFaultyPath = filepath.Join("..", ".bin", "guests", "faulty-c.wasm")

func readCFaulty(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(cFaultyPath)
	if err != nil {
		t.Fatalf("%s is not built (make sdk-guests-c builds it; make test runs that first): %v", cFaultyPath, err)
	}
	return b
}

// TestCFaultsAreContained drives the faults that matter in a C handler
// (guests/c/faulty.c, on the C SDK): a trap, an endless loop, and running
// out of memory (malloc returns NULL at the memory limit; the guest
// aborts). Each time only the connections of the faulting instance close,
// with a reason naming the fault; the other instance's connections keep
// echoing; a replacement instance takes new connections.
func TestCFaultsAreContained(t *testing.T) {
	faulty := readCFaulty(t)
	for _, tc := range []struct {
		cmd  string
		want string // in the close reason
		kind string // of the fault
		log  string // that the guest logs before it faults
	}{
		{"trap", "unreachable", wasmhost.FaultTrap, "faulty-c: trapping"},
		{"loop", "call_timeout", wasmhost.FaultDeadline, "faulty-c: looping forever"},
		{"oom", "unreachable", wasmhost.FaultTrap, "faulty-c: malloc failed after "},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			timeout := 20 * time.Second
			if tc.want == "call_timeout" {
				timeout = 2 * time.Second
			}
			sig := newSignalLog(tc.log)
			r := newRig(t, wasmhost.Config{
				Name:        "faulty-c",
				Wasm:        faulty,
				Instances:   2,
				CallTimeout: timeout,
				MemoryLimit: 32 << 20,
				Logger:      slog.New(sig),
			})
			// Least-loaded placement alternates the two instances.
			a1, b1, a2, b2 := r.dial(t), r.dial(t), r.dial(t), r.dial(t)
			if a1.inst != a2.inst || b1.inst != b2.inst || a1.inst == b1.inst {
				t.Fatalf("placement %d %d %d %d", a1.inst, b1.inst, a2.inst, b2.inst)
			}
			for _, d := range []*device{a1, b1, a2, b2} {
				d.echo("hello")
			}
			a1.nc.Write([]byte(tc.cmd + "\n"))
			a1.expectClosed()
			a2.expectClosed()
			select {
			case <-sig.seen:
			default:
				t.Errorf("the guest did not log %q before its fault", tc.log)
			}
			for _, d := range []*device{a1, a2} {
				x := r.tr.await(t, d.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
				if !strings.Contains(x.reason, tc.want) {
					t.Errorf("close reason %q does not mention %q", x.reason, tc.want)
				}
			}
			// The other instance is untouched.
			b1.echo("still here")
			b2.echo("me too")
			s := waitStats(t, r.h, "a replacement instance", func(s wasmhost.Stats) bool { return s.Instances == 2 && s.Faults == 1 })
			if f := s.LastFault; f == nil || f.Kind != tc.kind || !strings.Contains(f.Err, tc.want) {
				t.Errorf("last fault %+v; want a %s fault mentioning %q", f, tc.kind, tc.want)
			}
			for range 3 {
				r.dial(t).echo("fresh")
			}
		})
	}
}

// TestCGrowRefused: a memory.grow past the memory limit is refused (-1),
// not a fault: the C guest sees it and goes on.
func TestCGrowRefused(t *testing.T) {
	r := newRig(t, wasmhost.Config{Name: "faulty-c", Wasm: readCFaulty(t), Instances: 1, MemoryLimit: 32 << 20})
	d := r.dial(t)
	d.nc.SetDeadline(time.Now().Add(wait))
	d.nc.Write([]byte("grow\n"))
	buf := make([]byte, len("grow refused\n"))
	if _, err := io.ReadFull(d.nc, buf); err != nil || string(buf) != "grow refused\n" {
		t.Fatalf("grow: %q, %v", buf, err)
	}
	d.echo("after")
	if s := r.h.Stats(); s.Faults != 0 {
		t.Fatalf("%d faults", s.Faults)
	}
}
