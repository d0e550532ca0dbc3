package wasmhost_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/wasmhost"
)

// expect reads exactly want from the device.
func (d *device) expect(want string) {
	d.t.Helper()
	d.nc.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(d.nc, got); err != nil || string(got) != want {
		d.t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// say writes msg to the device's connection.
func (d *device) say(msg string) {
	d.t.Helper()
	d.nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write([]byte(msg)); err != nil {
		d.t.Fatal(err)
	}
}

// TestGuestTimerCap checks max_timers: set_timer past the connection's cap
// answers PERMISSION_DENY (5) and the connection keeps working; the cap is
// per connection, not per instance; timers that fired or ended with their
// connection free their room.
func TestGuestTimerCap(t *testing.T) {
	const max = 4
	r := newRig(t, wasmhost.Config{Name: "faulty", Wasm: readFaulty(t), Instances: 1, MaxTimers: max})
	a := r.dial(t)
	a.say("timers 10 600000") // ten minutes: they never fire in the test
	a.expect("timers 4 error 5")
	a.echo("still here")
	a.say("timer 600000")
	a.expect("timer error 5")

	// Another connection on the same instance has room of its own.
	b := r.dial(t)
	if b.inst != a.inst {
		t.Fatalf("instances %d and %d; want one", a.inst, b.inst)
	}
	b.say("timers 4 20")
	b.expect("timers 4" + strings.Repeat("timer", 4))
	// Fired, they make room again.
	b.say("timers 5 600000")
	b.expect("timers 4 error 5")

	if n, conns := wasmhost.PendingTimers(r.h); n != 8 || conns != 2 {
		t.Fatalf("%d timers pending for %d connections, want 8 for 2", n, conns)
	}

	// Timers end with their connection.
	a.nc.Close()
	r.tr.await(t, a.peer, "OnSocketClosed", func(x *tracked) bool { return x.closed })
	if n, conns := wasmhost.PendingTimers(r.h); n != 4 || conns != 1 {
		t.Fatalf("after a close: %d timers pending for %d connections, want 4 for 1", n, conns)
	}
	c := r.dial(t)
	c.say("timers 4 600000")
	c.expect("timers 4")
	if s := r.h.Stats(); s.Faults != 0 {
		t.Fatalf("%d faults", s.Faults)
	}
}
