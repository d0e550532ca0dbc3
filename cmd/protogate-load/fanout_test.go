package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/protogate/protogate/internal/loadstat"
)

// startNATS runs a NATS server until the test ends and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(wait) {
		t.Fatal("nats server did not start")
	}
	return ns.ClientURL()
}

// complete fails the test unless every published message reached every
// subscriber, unharmed.
func complete(t *testing.T, r *loadstat.Result) {
	t.Helper()
	clean(t, r)
	if r.Published == 0 || r.Msgs != r.Published*uint64(r.Conns) || r.P50us <= 0 || r.MsgsPerS <= 0 {
		t.Fatalf("%+v", r)
	}
}

func TestFanoutNATS(t *testing.T) {
	defer noLoadGoroutines(t)
	url := startNATS(t)
	r, _, err := runFanout(context.Background(), FanoutConfig{NATS: url, Subs: 10, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Size: 64, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	complete(t, r)
	r, notes, err := runFanout(context.Background(), FanoutConfig{NATS: url, Subs: 10, Messages: 200, Duration: time.Minute, Size: 64, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	complete(t, r)
	if r.Published != 200 {
		t.Fatalf("%+v", r)
	}
	if r.Scenario != "fanout" || r.Target != url || r.Depth != 8 || r.Conns != 10 {
		t.Fatalf("%+v", r)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "to 10 subscribers") {
		t.Fatalf("notes %q", notes)
	}
}

// At a fixed rate, the publisher publishes no faster than asked: 21
// messages at 200/s take at least 100 ms.
func TestFanoutRate(t *testing.T) {
	url := startNATS(t)
	r, _, err := runFanout(context.Background(), FanoutConfig{NATS: url, Subs: 5, Rate: 200, Messages: 21, Duration: time.Minute, Size: 100, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	complete(t, r)
	if r.Published != 21 || r.Seconds < 0.1 || r.Depth != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestFanoutSetupFails(t *testing.T) {
	if _, _, err := runFanout(context.Background(), FanoutConfig{NATS: "nats://" + closedPort(t), Subs: 1, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "publisher") {
		t.Fatalf("err = %v", err)
	}
	url := startNATS(t)
	if _, _, err := runFanout(context.Background(), FanoutConfig{NATS: url, Gateway: closedPort(t), Subs: 2, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "subscriber") {
		t.Fatalf("err = %v", err)
	}
}

func TestFanPayload(t *testing.T) {
	b := make([]byte, 70)
	fanPayload(b, 12345, 1_700_000_000_123456789)
	for _, ch := range b {
		if ch < '0' || ch > 'z' {
			t.Fatalf("payload %q is not line-safe", b)
		}
	}
	seq, wall, bad, ok := parseFan(b, 70)
	if !ok || bad != 0 || seq != 12345 || wall != 1_700_000_000_123456789 {
		t.Fatalf("parseFan = %d %d %d %v", seq, wall, bad, ok)
	}
	b[40] = '#'
	b[69] = 'A'
	if _, _, bad, ok := parseFan(b, 70); !ok || bad != 2 {
		t.Fatalf("corrupted: bad %d ok %v", bad, ok)
	}
	if _, _, bad, ok := parseFan(b[:60], 70); !ok || bad < 10 {
		t.Fatalf("short: bad %d ok %v", bad, ok)
	}
	b[3] = 'x'
	if _, _, bad, ok := parseFan(b, 70); ok || bad != 70 {
		t.Fatalf("bad header: bad %d ok %v", bad, ok)
	}
}

// A subscriber checks topics and sequence numbers.
func TestFanoutLines(t *testing.T) {
	r := &fanRun{runState: runState{errs: new(errLog)}, cfg: FanoutConfig{Size: 40, Topic: "a/b"}, prefix: []byte("MSG a/b ")}
	s := &fanSub{}
	p := make([]byte, 40)
	fanPayload(p, 5, 100)
	r.line(s, append([]byte("MSG a/b "), p...), 150)
	r.line(s, append([]byte("MSG a/c "), p...), 150) // wrong topic
	r.line(s, append([]byte("MSG a/b "), p...), 150) // repeated
	r.line(s, []byte("ERR something\r"), 150)
	r.line(s, nil, 150)
	if s.n != 1 || s.hist.Max() != 50 || s.mism.Load() != uint64(len("MSG a/c ")+40+1) || r.errs.n.Load() != 2 {
		t.Fatalf("n %d max %v mismatches %d errors %d", s.n, s.hist.Max(), s.mism.Load(), r.errs.n.Load())
	}
}
