package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// clean fails the test unless r shows no errors and no mismatches.
func clean(t *testing.T, r *loadstat.Result) {
	t.Helper()
	if r.Errors != 0 || r.Mismatch != 0 || r.Lost != 0 {
		t.Fatalf("errors %d, mismatches %d, lost %d: %+v", r.Errors, r.Mismatch, r.Lost, r)
	}
}

func TestEchoPingPong(t *testing.T) {
	addr := startServeEcho(t, false)
	r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 4, Size: 64, Depth: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Label: "floor"})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs == 0 || r.MsgsPerS <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.Seconds < 0.3 {
		t.Fatalf("result %+v", r)
	}
	if r.Scenario != "echo" || r.Target != "floor" || r.Conns != 4 || r.Size != 64 || r.Depth != 1 {
		t.Fatalf("result %+v", r)
	}
}

func TestEchoMessages(t *testing.T) {
	defer noLoadGoroutines(t)
	addr := startServeEcho(t, false)
	for _, tc := range []struct {
		name               string
		conns, size, depth int
		messages           int64
	}{
		{"pingpong", 3, 64, 1, 1000},
		{"pipelined", 4, 64, 8, 5000},
		{"pipelined-big", 2, 3000, 5, 300}, // payloads split across reads and writes
		{"tiny", 3, 5, 4, 999},             // shorter than the header
		{"huge", 2, 200 << 10, 2, 20},      // larger than a batch
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: tc.conns, Size: tc.size, Depth: tc.depth, Messages: tc.messages, Duration: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			clean(t, r)
			if r.Msgs != uint64(tc.messages) {
				t.Fatalf("%d round trips, want exactly %d", r.Msgs, tc.messages)
			}
		})
	}
}

func TestEchoMismatches(t *testing.T) {
	addr := startTCP(t, corruptEcho)
	for _, depth := range []int{1, 4} {
		r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 3, Size: 64, Depth: depth, Messages: 200, Duration: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		// 200 messages of 64 bytes: one byte in 97 is flipped.
		if r.Mismatch < 100 || r.Errors != 0 || r.Msgs != 200 {
			t.Fatalf("depth %d: %+v", depth, r)
		}
	}
}

// A connection the server closes is an error; the others go on, and the
// run ends when none is left.
func TestEchoServerCloses(t *testing.T) {
	addr := startTCP(t, func(i int, c net.Conn) {
		if i%2 == 0 {
			c.Close()
			return
		}
		echoBack(c)
	})
	r, notes, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 4, Size: 64, Messages: 400, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 2 || r.Msgs != 400 || r.Mismatch != 0 {
		t.Fatalf("%+v", r)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "2 errors") {
		t.Fatalf("notes %q", notes)
	}

	// All connections closed mid-run: the run ends long before -duration.
	addr = startTCP(t, func(i int, c net.Conn) {
		io.CopyN(c, c, 64*10)
		c.Close()
	})
	r, _, err = runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 3, Size: 64, Depth: 2, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 3 || r.Seconds > 600 {
		t.Fatalf("%+v", r)
	}
}

// A server that never answers: the watchdog closes the connections after
// the timeout and counts them.
func TestEchoStalled(t *testing.T) {
	defer noLoadGoroutines(t)
	addr := startTCP(t, func(_ int, c net.Conn) { io.Copy(io.Discard, c) })
	for _, depth := range []int{1, 3} {
		r, notes, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 2, Depth: depth, Duration: time.Hour, Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 2 || r.Msgs != 0 {
			t.Fatalf("%+v", r)
		}
		if len(notes) != 1 || !strings.Contains(notes[0], "no reply") {
			t.Fatalf("notes %q", notes)
		}
	}
}

func TestEchoCanceled(t *testing.T) {
	defer noLoadGoroutines(t)
	addr := startServeEcho(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	var log lockedBuffer
	log.onWrite = cancel // stop at the first progress line
	r, _, err := runEcho(ctx, EchoConfig{Addr: addr, Conns: 2, Depth: 2, Duration: time.Hour, Progress: 20 * time.Millisecond, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Seconds > 600 || !strings.HasPrefix(log.String(), "echo "+addr+": ") || !strings.Contains(log.String(), "round trips") {
		t.Fatalf("%+v; progress %q", r, log.String())
	}
}

func TestEchoNoServer(t *testing.T) {
	_, _, err := runEcho(context.Background(), EchoConfig{Addr: closedPort(t), Conns: 3, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "no connection") || !strings.HasPrefix(err.Error(), "protogate-load: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestEchoTLS(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveListener(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	addr := ln.Addr().String()
	r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 2, Depth: 3, Messages: 500, Duration: time.Minute, TLS: tlsConfig(addr, true)})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs != 500 {
		t.Fatalf("%+v", r)
	}
	// Without -insecure, the self-signed certificate is refused.
	if _, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 1, Messages: 1, Duration: time.Minute, TLS: tlsConfig(addr, false)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v", err)
	}
}

// lockedBuffer is a log that calls onWrite after each write.
type lockedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	onWrite func()
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	if b.onWrite != nil {
		b.onWrite()
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPayload(t *testing.T) {
	a, b := newTemplate(1, 40), newTemplate(2, 40)
	if bytes.Equal(a, b) {
		t.Fatal("two connections share a pattern")
	}
	stamp(a, 7, 1<<40+5)
	if idx, seq, ok := header(a); !ok || idx != 7 || seq != 1<<40+5 {
		t.Fatalf("header = %d %d %v", idx, seq, ok)
	}
	c := append([]byte(nil), a...)
	c[3] ^= 1
	c[30] ^= 2
	if d := diff(c, a); d != 2 {
		t.Fatalf("diff = %d", d)
	}
	if d := diff(a[:35], a); d != 5 {
		t.Fatalf("diff of a short payload = %d", d)
	}
	short := make([]byte, 5)
	stamp(short, 1, 2) // must not panic
}

func TestQuota(t *testing.T) {
	var q quota
	q.left.Store(100)
	if g := q.take(64); g != 64 {
		t.Fatal(g)
	}
	if g := q.take(64); g != 36 {
		t.Fatal(g)
	}
	if g := q.take(64); g != 0 {
		t.Fatal(g)
	}
	q.give(10)
	if g := q.take(64); g != 10 {
		t.Fatal(g)
	}
}

// TestEchoRate checks that -rate spaces the dials: 20 connections at 200 a
// second take at least 19 intervals of 5 ms to open, before the run.
func TestEchoRate(t *testing.T) {
	addr := startServeEcho(t, false)
	t0 := time.Now()
	r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 20, Rate: 200, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if took := time.Since(t0); took < 95*time.Millisecond+50*time.Millisecond {
		t.Fatalf("20 conns at 200/s and a 50 ms run took %v", took)
	}
	if r.Conns != 20 || r.Msgs == 0 {
		t.Fatalf("result %+v", r)
	}
}
