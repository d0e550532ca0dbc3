package wasmhost_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/wasmhost"
)

// logRecorder is a slog.Handler that keeps the messages of the records
// whose message contains match.
type logRecorder struct {
	match string
	mu    *sync.Mutex
	msgs  *[]string
}

func newLogRecorder(match string) logRecorder {
	return logRecorder{match: match, mu: new(sync.Mutex), msgs: new([]string)}
}

func (logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecorder) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.match) {
		l.mu.Lock()
		*l.msgs = append(*l.msgs, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecorder) WithGroup(string) slog.Handler      { return l }

func (l logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), *l.msgs...)
}

// dialTrial dials until a connection is pinned to an instance: once the
// breaker is half-open and its trial instance is up (before, connections
// go to the fallback handler and are closed here).
func (r *rig) dialTrial(t *testing.T) *device {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		d := r.dial(t)
		if d.inst != 0 {
			return d
		}
		d.nc.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no connection reached a trial instance: %+v", r.h.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// crash makes d's instance fault and waits for the socket to close.
func (d *device) crash() {
	d.t.Helper()
	if _, err := d.nc.Write([]byte("panic")); err != nil {
		d.t.Fatal(err)
	}
	d.expectClosed()
}

// TestBreakerHeals drives the breaker through every transition with the
// faulty guest: crashes open it; after its cool-down it is half-open and
// one fresh instance takes new connections; a crash of that instance opens
// it again with twice the cool-down, up to the maximum; a trial instance
// that serves BreakerTrialCalls callbacks closes it and the pool is full
// again; and crashes soon after it closed open it with the cool-down where
// it was, not back at the start.
func TestBreakerHeals(t *testing.T) {
	const (
		cooldown    = 200 * time.Millisecond
		maxCooldown = 800 * time.Millisecond
		trialCalls  = 5
	)
	logs := newLogRecorder("breaker")
	r := newRig(t, wasmhost.Config{
		Name: "faulty", Wasm: readFaulty(t), Instances: 2,
		MaxFaults: 2, FaultWindow: time.Hour,
		BreakerCooldown: cooldown, BreakerMaxCooldown: maxCooldown, BreakerTrialCalls: trialCalls,
		Fallback: fallbackEcho{},
		Logger:   slog.New(logs),
	})
	if s := r.h.Stats(); s.BreakerState != wasmhost.BreakerClosed || s.Broken || s.Cooldown != 0 || !s.NextRetry.IsZero() {
		t.Fatalf("a new handler's breaker: %+v", s)
	}

	// Two crashes open it.
	for i := range 2 {
		r.dial(t).crash()
		if i == 0 {
			waitStats(t, r.h, "a replacement", func(s wasmhost.Stats) bool { return s.Instances == 2 })
		}
	}
	before := time.Now()
	s := waitStats(t, r.h, "the breaker to open", func(s wasmhost.Stats) bool { return s.Faults == 2 && s.Broken })
	if s.Cooldown != cooldown || s.BreakerState == wasmhost.BreakerClosed {
		t.Fatalf("after the trip: %+v", s)
	}
	if s.BreakerState == wasmhost.BreakerOpen && (s.NextRetry.IsZero() || s.NextRetry.After(before.Add(cooldown))) {
		t.Errorf("open until %v, want at most %v from %v", s.NextRetry, cooldown, before)
	}

	// Each trial instance crashes: open again, with the cool-down
	// doubling up to its maximum.
	faults := 2
	for _, want := range []time.Duration{2 * cooldown, 4 * cooldown, maxCooldown} {
		d := r.dialTrial(t)
		d.echo("trial")
		d.crash()
		faults++
		s := waitStats(t, r.h, "the breaker to open again", func(s wasmhost.Stats) bool { return s.Faults == faults })
		if s.Cooldown != want || !s.Broken {
			t.Fatalf("after failed trial %d: cool-down %v, want %v (%+v)", faults-2, s.Cooldown, want, s)
		}
	}

	// A trial instance that serves closes the breaker, and the pool fills
	// up again.
	d := r.dialTrial(t)
	for i := range trialCalls { // on_socket_created was one more
		d.echo("fine " + string(rune('a'+i)))
	}
	s = waitStats(t, r.h, "the breaker to close", func(s wasmhost.Stats) bool {
		return s.BreakerState == wasmhost.BreakerClosed && s.Instances == 2
	})
	if s.Broken || !s.NextRetry.IsZero() || s.Cooldown != maxCooldown {
		t.Fatalf("after the trial passed: %+v", s)
	}
	d.echo("still here")
	for range 3 {
		if n := r.dial(t); n.inst == 0 {
			t.Fatal("a new connection went to the fallback after the breaker closed")
		} else {
			n.echo("served")
		}
	}

	// Crashes soon after it closed open it with the last cool-down.
	for i := range 2 {
		r.dial(t).crash()
		if i == 0 {
			waitStats(t, r.h, "a replacement", func(s wasmhost.Stats) bool { return s.Instances == 2 })
		}
	}
	s = waitStats(t, r.h, "the breaker to open again", func(s wasmhost.Stats) bool { return s.Faults == faults+2 && s.Broken })
	if s.Cooldown != maxCooldown {
		t.Errorf("cool-down %v after faults right after closing, want %v", s.Cooldown, maxCooldown)
	}

	// A reload resets it.
	if err := r.h.Reload(); err != nil {
		t.Fatal(err)
	}
	s = r.h.Stats()
	if s.BreakerState != wasmhost.BreakerClosed || s.Broken || s.Cooldown != 0 || s.Version != 2 {
		t.Fatalf("after a reload: %+v", s)
	}
	r.dial(t).echo("reloaded")

	// One log line per transition, in order. The last cool-down may have
	// ended before the reload.
	want := []string{"open", "half-open", "open again", "half-open", "open again", "half-open", "open again",
		"half-open", "closed", "open"}
	got := logs.messages()
	if len(got) == len(want)+1 {
		want = append(want, "half-open")
	}
	if len(got) != len(want) {
		t.Fatalf("breaker log lines:\n%s\nwant %d: %v", strings.Join(got, "\n"), len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], "wasmhost: breaker "+w+":") {
			t.Errorf("log line %d %q, want breaker %s", i, got[i], w)
		}
	}
}

// TestBreakerTrialWithoutFallback checks that without a fallback (new
// connections are refused while the breaker is open: see TestBreaker) the
// half-open breaker's trial instance serves new connections, and closes
// the breaker.
func TestBreakerTrialWithoutFallback(t *testing.T) {
	r := newRig(t, wasmhost.Config{
		Name: "faulty", Wasm: readFaulty(t), Instances: 1,
		MaxFaults: 1, FaultWindow: time.Hour,
		BreakerCooldown: 200 * time.Millisecond, BreakerTrialCalls: 3,
	})
	r.dial(t).crash()
	waitStats(t, r.h, "the breaker to open", func(s wasmhost.Stats) bool { return s.Broken })
	// Refused connections retry until the trial instance takes one.
	d := r.dialTrial(t)
	d.echo("one")
	d.echo("two")
	waitStats(t, r.h, "the breaker to close", func(s wasmhost.Stats) bool { return s.BreakerState == wasmhost.BreakerClosed })
	d.echo("three")
}
